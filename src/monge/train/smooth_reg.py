"""Step-wise variation regularisation (Smooth Diffusion) as a training option.

Guo, Xu, Pu, Ni, Wang, Vasu, Song, Huang & Shi (CVPR 2024), "Smooth Diffusion: Crafting Smooth
Latent Spaces in Diffusion Models", in monge's time convention (t = 0 source/noise → t = 1
data). The map from the source draw ε to the one-step clean estimate x̂1(ε) =
predict_x1(α_t·x1 + σ_t·ε, t) should change the output by the same amount for the same input
change everywhere: with a random output direction y ~ N(0, I)·σ_t/√d (d the sample size) and
the vector–Jacobian product g = ∇_ε⟨x̂1(ε), y⟩ (through x_t and the network, with
``create_graph=True``), the per-sample length r = ‖g‖ is pulled to a running mean a
(a ← a + 0.01·(mean r − a), detached):

    L = L_base + λ·mean((r − a)²)

a path-length penalty in the StyleGAN2 style. ε and t are drawn fresh for the regulariser
(t uniform in the path's training range). Cost per step: one extra forward pass and a double
backward through the network (about 2–3× a plain step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from monge.errors import InputError
from monge.paths import ModelWrapper
from monge.paths.base import ProbabilityPath
from monge.train.losses import LossOutput


class SmoothnessRegularizedLoss(nn.Module):
    """``base`` + λ·(step-wise variation penalty) of Smooth Diffusion.

    Args:
        base: the objective to regularise (``loss(model, x0, x1, y1, generator)``).
        weight: λ (> 0).
        path: the probability path of the model.
        prediction: the network's parameterisation (velocity, x1, epsilon).
        decay: the running mean's step (the paper: 0.01).
        reg_batch_size: examples of the batch the penalty uses (None: all).
    """

    def __init__(self, base: nn.Module, weight: float, path: ProbabilityPath,
                 prediction: str = "velocity", decay: float = 0.01,
                 reg_batch_size: int | None = None):
        super().__init__()
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                math.isfinite(weight) and weight > 0):
            raise InputError(f"smooth_reg: the weight must be a positive finite number, got "
                             f"{weight!r}")
        if not 0 < decay <= 1:
            raise InputError(f"decay: must lie in (0, 1], got {decay}")
        if prediction not in path.predictions:
            raise InputError(f"prediction: {prediction!r} is not a parameterisation of "
                             f"{path.name}; expected one of {path.predictions}")
        if reg_batch_size is not None and reg_batch_size < 1:
            raise InputError(f"reg_batch_size: must be positive, got {reg_batch_size}")
        self.base, self.weight, self.path, self.prediction = base, float(weight), path, prediction
        self.decay, self.reg_batch_size = float(decay), reg_batch_size
        self.num_classes = getattr(getattr(base, "labels", None), "num_classes", None)
        # both buffers: the trainer's checkpoint keeps a loss's buffers, so a resumed run
        # continues the running mean instead of restarting it from the next batch
        self.register_buffer("running_length", torch.zeros((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.last_penalty = float("nan")

    @property
    def coupling(self) -> Any:
        """The base loss's coupling (the trainer reads and swaps it for prefetched pairs)."""
        return getattr(self.base, "coupling", None)

    @coupling.setter
    def coupling(self, value: Any) -> None:
        self.base.coupling = value

    def lengths(self, model: nn.Module, eps: Tensor, x1: Tensor, t: Tensor, y: Tensor,
                cond: dict[str, Any]) -> Tensor:
        """r = ‖∇_ε⟨x̂1(α_t x1 + σ_t ε), y⟩‖ per sample, in the graph (double backward)."""
        field = ModelWrapper(model, self.path, self.prediction)
        eps = eps.detach().requires_grad_(True)
        shape = (-1, *[1] * (x1.ndim - 1))
        sched = self.path.marginal_schedule()
        a = sched.alpha(t).to(x1.dtype).reshape(shape)
        s = sched.sigma(t).to(x1.dtype).reshape(shape)
        x1_hat = field.predict("x1", a * x1 + s * eps, t, **cond)
        (g,) = torch.autograd.grad((x1_hat * y).sum(), eps, create_graph=True)
        return g.flatten(1).norm(dim=1)

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None, **kwargs: Any) -> LossOutput:
        out = self.base(model, x0, x1, y1, generator, **kwargs)
        n = x1.shape[0] if self.reg_batch_size is None else min(self.reg_batch_size,
                                                                x1.shape[0])
        x1r = x1[:n]
        g_dev = generator.device if generator is not None else x1.device
        lo, hi = self.path.t_clamp(self.prediction), 1.0 - self.path.t_clamp(self.prediction)
        t = (lo + (hi - lo) * torch.rand(n, generator=generator, device=g_dev)).to(
            x1.device, x1.dtype)
        eps = torch.randn(x1r.shape, generator=generator, device=g_dev).to(x1.device,
                                                                          x1.dtype)
        d = x1r[0].numel()
        sig = self.path.marginal_schedule().sigma(t).to(x1.dtype).reshape(
            -1, *[1] * (x1.ndim - 1))
        y = torch.randn(x1r.shape, generator=generator, device=g_dev).to(
            x1.device, x1.dtype) * sig / math.sqrt(d)
        cond = {"y": y1[:n]} if self.num_classes is not None and y1 is not None else {}
        r = self.lengths(model, eps, x1r, t, y, cond)
        with torch.no_grad():
            mean = r.detach().double().mean()
            if int(self.updates) == 0:
                self.running_length.copy_(mean)
            else:
                self.running_length.add_(self.decay * (mean - self.running_length))
            self.updates += 1
        penalty = ((r - self.running_length.to(r.dtype)) ** 2).mean()
        self.last_penalty = float(penalty.detach())
        return LossOutput(out.loss + self.weight * penalty, out.per_example, out.t)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, decay={self.decay}, reg_batch_size={self.reg_batch_size}"
