"""Flow-matching / denoising objectives: an MSE on a declared target under a time weighting.

Lipman et al. (2023), "Flow Matching for Generative Modeling"; Liu et al. (2023), "Flow Straight
and Fast"; Ho et al. (2020) for the ε-target. "The Principles of Diffusion Models" (Lai et al.
2025) shows that DDPM, DSM and FM are all MSEs on one parameterisation (velocity, x1, ε, score)
under a weighting w(t): monge exposes ``target`` and ``weighting`` separately.

Per training example: draw (x0, x1) from the coupling, t from the time sampler, form
x_t = α(t)·x1 + σ(t)·x0, and regress ``model(x_t, t, y)`` on the target of the declared kind.
Cost: one forward/backward pass of the model per step plus the coupling's cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from monge.couplings import Coupling, IndependentCoupling, Pairing
from monge.errors import InputError
from monge.paths import PREDICTIONS, AffinePath, Prediction
from monge.train.conditioning import LabelConditioning
from monge.train.time_samplers import TimeSampler, UniformTime

Weighting = Callable[[Tensor, AffinePath], Tensor]


def _no_weight(t: Tensor, path: AffinePath) -> Tensor:
    return torch.ones_like(t)


def _snr(t: Tensor, path: AffinePath) -> Tensor:
    t64 = t.to(torch.float64)
    return ((path.alpha(t64) / path.sigma(t64)) ** 2).to(t.dtype)


def _min_snr5(t: Tensor, path: AffinePath) -> Tensor:
    """Min-SNR-γ weighting with γ = 5 (Hang et al. 2023), for an ε target: min(SNR, 5)/SNR."""
    snr = _snr(t, path)
    return torch.clamp(snr, max=5.0) / snr.clamp_min(1e-12)


WEIGHTINGS: dict[str, Weighting] = {"none": _no_weight, "snr": _snr, "min-snr-5": _min_snr5}


@dataclass
class LossOutput:
    """Loss value and the per-example pieces (for logging and diagnostics)."""

    loss: Tensor
    per_example: Tensor
    t: Tensor


def paired_batch(coupling: Coupling, time_sampler: TimeSampler, x0: Tensor, x1: Tensor,
                 y1: Tensor | None, generator: torch.Generator | None
                 ) -> tuple[Pairing, Tensor]:
    """Pair a minibatch with the coupling and draw one time per pair: the first step of every
    objective (the generator is consumed in this order: coupling, then times)."""
    pairing = coupling(x0, x1, y1=y1, generator=generator)
    x1p = pairing.x1
    t = time_sampler.sample(x1p.shape[0], generator=generator, dtype=x1p.dtype,
                            device=x1p.device)
    return pairing, t


class FlowMatchingLoss(nn.Module):
    """MSE between the model output and the path target of kind ``target``.

    Args:
        path: the probability path.
        target: what the model predicts: ``velocity`` (flow matching), ``x1``, ``epsilon``
            (denoising) or ``score``.
        weighting: name in ``WEIGHTINGS`` or a callable ``w(t, path) -> [B]``.
        time_sampler: distribution of training times (default U[0, 1]).
        coupling: how x0 and x1 are paired (default independent).
        cond_dropout: probability of replacing the class label by the null class
            (``num_classes``) for classifier-free guidance; 0 disables it.
        num_classes: number of classes of a class-conditional model. Labels are passed to the
            model (as ``y``) only when it is set; otherwise they only reach the coupling
            (e.g. label-aware OT for an unconditional model).
    """

    def __init__(self, path: AffinePath, target: Prediction = "velocity",
                 weighting: str | Weighting = "none", time_sampler: TimeSampler | None = None,
                 coupling: Coupling | None = None, cond_dropout: float = 0.0,
                 num_classes: int | None = None):
        super().__init__()
        if target not in PREDICTIONS:
            raise InputError(f"target: unknown {target!r}; expected one of {PREDICTIONS}")
        if isinstance(weighting, str):
            if weighting not in WEIGHTINGS:
                raise InputError(f"weighting: unknown {weighting!r}; expected one of "
                                 f"{sorted(WEIGHTINGS)}")
            weighting = WEIGHTINGS[weighting]
        self.path, self.target, self.weighting = path, target, weighting
        self.time_sampler = time_sampler or UniformTime()
        self.coupling = coupling or IndependentCoupling()
        self.labels = LabelConditioning(num_classes, cond_dropout)

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None) -> LossOutput:
        pairing, t = paired_batch(self.coupling, self.time_sampler, x0, x1, y1, generator)
        x0, x1, y1 = pairing.x0, pairing.x1, pairing.y1
        xt = self.path.sample_xt(x0, x1, t)
        cond = self.labels(y1, generator)
        pred = model(xt, t, **cond)
        target = self.path.target(self.target, x0, x1, t)
        per_example = (pred - target).pow(2).flatten(1).mean(1) * self.weighting(t, self.path)
        if pairing.weights is not None:
            per_example = per_example * pairing.weights
        return LossOutput(per_example.mean(), per_example.detach(), t)
