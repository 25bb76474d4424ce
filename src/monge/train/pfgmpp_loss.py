"""The PFGM++ training objective with EDM's noise distribution and weighting.

Xu et al. (ICML 2023), "PFGM++: Unlocking the Potential of Physics-Inspired Generative Models",
with the EDM hyper-parameter transfer r = σ√D (Karras et al. 2022, "Elucidating the Design Space
of Diffusion-Based Generative Models"). Spec: ``papers/pfgmpp.md``.

Per example: ln σ ~ N(P_mean, P_std²); x = x1 + σ·x0 with x0 the PFGM++ unit noise (radius from
the Beta(N/2, D/2) law, :meth:`monge.paths.pfgmpp.PFGMPPPath.noise`); loss
λ(σ)·mean||D_θ(x, σ) − x1||² with λ(σ) = (σ² + σ_d²)/(σσ_d)². The model is a denoiser field in
monge time (e.g. :class:`monge.paths.pfgmpp.EDMPreconditioner`), called at t = path.sigma_to_t(σ).
Cost: one forward/backward pass per step plus O(B) Gamma draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.core.checks import check_finite, check_same_batch
from monge.errors import InputError
from monge.paths.pfgmpp import PFGMPPPath
from monge.train.conditioning import LabelConditioning
from monge.train.losses import LossOutput


class PFGMPPLoss(nn.Module):
    """PFGM++ denoising loss; a drop-in for :class:`monge.train.FlowMatchingLoss` in the Trainer.

    It draws its own perturbation: the ``x0`` of the batch (Gaussian noise from the sampler) is
    ignored, because the PFGM++ noise is not Gaussian for finite D.

    Args:
        path: the :class:`PFGMPPPath` (its D, and σ(t) for the time passed to the model).
        p_mean, p_std: log-normal noise-level distribution (EDM: −1.2, 1.2).
        sigma_data: σ_d of the EDM weighting (match the :class:`EDMPreconditioner`).
        cond_dropout: probability of replacing the label by the null class (classifier-free
            guidance); 0 disables it.
        num_classes: classes of a class-conditional model; labels reach the model only when
            set (see :class:`~monge.train.conditioning.LabelConditioning`).

    Example:
        >>> from monge.paths.pfgmpp import EDMPreconditioner
        >>> from monge.models import MLP
        >>> path = PFGMPPPath(D=64)
        >>> model = EDMPreconditioner(MLP(4, hidden=16, depth=2), path)
        >>> out = PFGMPPLoss(path)(model, torch.randn(8, 4), torch.randn(8, 4))
        >>> out.per_example.shape
        torch.Size([8])
    """

    def __init__(self, path: PFGMPPPath | None = None, *, p_mean: float = -1.2,
                 p_std: float = 1.2, sigma_data: float = 0.5, cond_dropout: float = 0.0,
                 num_classes: int | None = None):
        super().__init__()
        if p_std <= 0 or sigma_data <= 0:
            raise InputError("PFGMPPLoss: p_std and sigma_data must be positive")
        self.path = path or PFGMPPPath()
        self.p_mean, self.p_std, self.sigma_data = float(p_mean), float(p_std), float(sigma_data)
        self.labels = LabelConditioning(num_classes, cond_dropout)

    def weight(self, sigma: Tensor) -> Tensor:
        """EDM's λ(σ) = (σ² + σ_d²)/(σσ_d)²."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def forward(self, model: nn.Module, x0: Tensor | None, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None) -> LossOutput:
        """Loss on a data batch x1 (``x0`` is ignored; see the class docstring)."""
        check_finite(x1, "x1")
        if y1 is not None:
            check_same_batch(x1, y1, "x1", "y1")
        n = x1.shape[0]
        z = torch.randn(n, generator=generator, dtype=torch.float64,
                        device=generator.device if generator is not None else x1.device)
        sigma = torch.exp(self.p_mean + self.p_std * z).to(x1.device)
        t = self.path.sigma_to_t(sigma).to(x1.dtype)
        # the noise level the model will see is σ(t) of the cast t: use that one throughout
        sigma = self.path.sigma(t.to(torch.float64))
        x = self.path.perturb(x1, sigma, generator=generator)
        cond = self.labels(y1, generator)
        pred = model(x, t, **cond)
        per_example = (pred - x1).pow(2).flatten(1).mean(1) * self.weight(sigma).to(x1.dtype)
        return LossOutput(per_example.mean(), per_example.detach(), t)

    def __repr__(self) -> str:
        D = "inf" if math.isinf(self.path.D) else f"{self.path.D:g}"
        return f"PFGMPPLoss(D={D}, p_mean={self.p_mean}, p_std={self.p_std})"


__all__ = ["PFGMPPLoss"]
