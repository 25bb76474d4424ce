"""Quadratic objectives of stochastic interpolants: velocity b, denoiser η_z and score s.

Albergo, Boffi & Vanden-Eijnden (2023), "Stochastic Interpolants: A Unifying Framework for Flows
and Diffusions" (arXiv 2303.08797), §2–3. For x_t = I(t, x0, x1) + γ(t)·z each field is the
unique minimiser of a quadratic objective

    L_b(b̂) = E[ ½|b̂(t, x_t)|² − (∂_t I + γ̇ z)·b̂(t, x_t) ],
    L_η(η̂) = E[ ½|η̂(t, x_t)|² − z·η̂(t, x_t) ],
    L_s(ŝ) = E[ ½|ŝ(t, x_t)|² + γ⁻¹ z·ŝ(t, x_t) ],

each equal to ½·E|f̂ − target|² minus a constant independent of f̂ (targets ∂_t I + γ̇ z, z and
−z/γ), so both forms have the same gradient for every draw. ``form="mse"`` reports the
(non-negative) regression value |f̂ − target|²/D, as :class:`~monge.train.FlowMatchingLoss`
does; ``form="quadratic"`` reports (|f̂|² − 2 f̂·target)/D, i.e. the paper's integrand × 2/D,
whose minimum over f̂ is −E|f|²/D at the true field f.

Antithetic estimator (the paper's variance reduction for the 1/γ term): evaluate the model at
x_t⁺ = I + γz and x_t⁻ = I − γz, with targets built from +z and −z, and average the two. For
small γ, ŝ(x_t⁺) ≈ ŝ(x_t⁻) and the ±z/γ terms cancel to leading order, so the gradient variance
stays bounded where the plain estimator's grows like 1/γ². Cost: two model evaluations per
example (one forward pass on a batch of 2B).

One network per field: train b (``target="velocity"``) and η (``target="denoiser"``) or s
(``target="score"``) as two separate trainings with the same :class:`~monge.train.Trainer`; the
sampler (:mod:`monge.paths.interpolant_sampling`) combines them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from monge.couplings import Coupling, IndependentCoupling
from monge.errors import InputError
from monge.paths.interpolant import (
    INTERPOLANT_TARGETS,
    InterpolantTarget,
    StochasticInterpolant,
    make_interpolant,
)
from monge.train.conditioning import LabelConditioning
from monge.train.losses import LossOutput, paired_batch
from monge.train.time_samplers import TimeSampler, UniformTime

LossForm = Literal["mse", "quadratic"]


class InterpolantLoss(nn.Module):
    """Regression of one stochastic-interpolant field: b, v = E[∂_t I|x], η_z or s.

    Per step: pair (x0, x1) with the coupling, draw t from the time sampler, then z ~ N(0, I),
    form x_t = I(t, x0, x1) + γ(t)·z and compare ``model(x_t, t, y)`` with the target of kind
    ``target``. Same call signature as :class:`~monge.train.FlowMatchingLoss`, so the
    :class:`~monge.train.Trainer` trains it unchanged. Draw order (coupling, t, z) matches
    FlowMatchingLoss: with ``gamma="zero"`` and ``target="velocity"`` the loss is exactly the
    flow-matching loss of the equivalent affine path.

    Args:
        interpolant: a :class:`~monge.paths.interpolant.StochasticInterpolant` (default linear
            I with γ = √(2t(1−t))).
        target: ``velocity`` (b), ``interpolant_velocity`` (v), ``denoiser`` (η_z) or
            ``score`` (s).
        antithetic: use the antithetic pair (±z); default True for ``score``/``denoiser``.
        form: ``mse`` (|f̂ − target|²/D, as in FlowMatchingLoss) or ``quadratic`` (the
            paper's objective in the same scaling, (|f̂|² − 2 f̂·target)/D).
        time_sampler: training times; default U[t_min, 1 − t_min] with t_min = 1e-3 (γ̇ and 1/γ
            are singular at the ends).
        coupling: how x0 and x1 are paired (default independent; an OT coupling with γ > 0
            approaches the Schrödinger bridge).
        cond_dropout: probability of replacing the label by the null class ``num_classes``.
        num_classes: classes of a class-conditional model; labels reach the model only when
            set (see :class:`~monge.train.conditioning.LabelConditioning`).

    Example:
        >>> from monge.models import MLP
        >>> loss = InterpolantLoss(target="score")
        >>> out = loss(MLP(2, hidden=16), torch.randn(8, 2), torch.randn(8, 2))
        >>> out.per_example.shape
        torch.Size([8])
    """

    def __init__(self, interpolant: StochasticInterpolant | None = None,
                 target: InterpolantTarget = "velocity", antithetic: bool | None = None,
                 form: LossForm = "mse", time_sampler: TimeSampler | None = None,
                 coupling: Coupling | None = None, cond_dropout: float = 0.0,
                 num_classes: int | None = None):
        super().__init__()
        if target not in INTERPOLANT_TARGETS:
            raise InputError(f"target: unknown {target!r}; expected one of "
                             f"{INTERPOLANT_TARGETS}")
        if form not in ("mse", "quadratic"):
            raise InputError(f"form: expected 'mse' or 'quadratic', got {form!r}")
        if interpolant is not None and not isinstance(interpolant, StochasticInterpolant):
            raise InputError(f"interpolant: expected a StochasticInterpolant, got "
                             f"{type(interpolant).__name__}")
        self.interpolant = interpolant or make_interpolant()
        if target in ("denoiser", "score") and self.interpolant.is_deterministic:
            raise InputError(f"target: {target!r} needs γ > 0; the interpolant has gamma "
                             "'zero'")
        self.target = target
        self.antithetic = (target in ("denoiser", "score")) if antithetic is None else antithetic
        self.form = form
        self.time_sampler = time_sampler or UniformTime(1e-3, 1.0 - 1e-3)
        self.coupling = coupling or IndependentCoupling()
        self.labels = LabelConditioning(num_classes, cond_dropout)

    def _per_example(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.form == "mse":
            return (pred - target).pow(2).flatten(1).mean(1)
        return (pred.pow(2) - 2.0 * pred * target).flatten(1).mean(1)

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None) -> LossOutput:
        """Loss on one minibatch; ``per_example`` is [B] (the ± pair averaged when antithetic)."""
        pairing, t = paired_batch(self.coupling, self.time_sampler, x0, x1, y1, generator)
        x0, x1, y1 = pairing.x0, pairing.x1, pairing.y1
        n = x1.shape[0]
        z = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        cond = self.labels(y1, generator)
        si = self.interpolant
        if self.antithetic:
            zz = torch.cat([z, -z])
            x0r, x1r, tr = torch.cat([x0, x0]), torch.cat([x1, x1]), torch.cat([t, t])
            cond2 = {k: torch.cat([v, v]) for k, v in cond.items()}
            pred = model(si.sample_xt(x0r, x1r, tr, zz), tr, **cond2)
            per = self._per_example(pred, si.target(self.target, x0r, x1r, tr, zz))
            per_example = 0.5 * (per[:n] + per[n:])
        else:
            pred = model(si.sample_xt(x0, x1, t, z), t, **cond)
            per_example = self._per_example(pred, si.target(self.target, x0, x1, t, z))
        if pairing.weights is not None:
            per_example = per_example * pairing.weights
        return LossOutput(per_example.mean(), per_example.detach(), t)

    def __repr__(self) -> str:
        return (f"InterpolantLoss({self.interpolant!r}, target={self.target!r}, "
                f"antithetic={self.antithetic}, form={self.form!r})")


__all__ = ["InterpolantLoss", "LossForm"]
