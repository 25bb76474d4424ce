"""MeanFlow: training a flow map's average velocity with the MeanFlow identity.

Geng, Deng, Bai, Kolter & He (2025), "Mean Flows for One-step Generative Modeling", eq. 6, in
monge's time convention (t = 0 source → t = 1 data, jump from t to s ≥ t). From
(s − t)·u(x_t, t, s) = ∫_t^s v(x_τ, τ) dτ, differentiating in t along the trajectory gives

    u(x_t, t, s) = v(x_t, t) + (s − t)·(d/dt) u(x_t, t, s),
    (d/dt) u = ∂_t u + v·∇_x u = JVP of u along the tangent (v, 1, 0) in (x, t, s).

The loss regresses u_θ(x_t, t, s) on the stop-gradient target v + (s − t)·JVP. With
``teacher=None`` v is the conditional velocity x1 − x0 of the linear path (MeanFlow trained from
data); with a teacher field it is the teacher's marginal velocity (distillation). A fraction
``flow_fraction`` of pairs has s = t (plain flow matching). Cost: one JVP (about 3 forward
passes) and one backward pass per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from monge.distill.jvp import jvp
from monge.errors import InputError
from monge.train.losses import LossOutput


class MeanFlowLoss(nn.Module):
    """The MeanFlow objective for a :class:`~monge.distill.flow_map.FlowMap`'s network.

    Args:
        teacher: velocity field v(x, t) to distil, or None (conditional velocity from data).
        flow_fraction: probability of s = t for a pair (the paper uses 0.75 with t ≠ s for the
            rest; 0.5 here by default).
        jvp_method: ``auto``, ``forward`` or ``fd`` (see :func:`monge.distill.jvp.jvp`).
    """

    def __init__(self, teacher: Callable[..., Tensor] | None = None, flow_fraction: float = 0.5,
                 jvp_method: str = "auto"):
        super().__init__()
        if not 0.0 <= flow_fraction <= 1.0:
            raise InputError(f"flow_fraction: must lie in [0, 1], got {flow_fraction}")
        self.teacher, self.flow_fraction, self.jvp_method = teacher, flow_fraction, jvp_method

    def target(self, network: nn.Module, x: Tensor, t: Tensor, s: Tensor, v: Tensor,
               **cond: Tensor) -> Tensor:
        """The stop-gradient MeanFlow target v + (s − t)·du/dt at (x, t, s); ``cond`` (e.g.
        ``y``) is passed to the network."""
        def u(xx, tt, ss):
            return network(xx, tt, ss, **cond)
        _, du = jvp(u, (x, t, s), (v, torch.ones_like(t), torch.zeros_like(s)),
                    method=self.jvp_method)
        d = (s - t).reshape(-1, *[1] * (x.ndim - 1))
        return (v + d * du).detach()

    def forward(self, network: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None, **_: Any) -> LossOutput:
        b = x1.shape[0]
        dev = x1.device
        g_dev = generator.device if generator is not None else dev
        a = torch.rand(b, generator=generator, device=g_dev).to(dev, x1.dtype)
        c = torch.rand(b, generator=generator, device=g_dev).to(dev, x1.dtype)
        t, s = torch.minimum(a, c), torch.maximum(a, c)
        same = torch.rand(b, generator=generator, device=g_dev).to(dev) < self.flow_fraction
        s = torch.where(same, t, s)
        tb = t.reshape(-1, *[1] * (x1.ndim - 1))
        xt = (1 - tb) * x0 + tb * x1
        cond = {} if y1 is None else {"y": y1}
        if self.teacher is None:
            v = x1 - x0
        else:
            with torch.no_grad():
                v = self.teacher(xt, t, **cond)
        tgt = self.target(network, xt, t, s, v, **cond)
        pred = network(xt, t, s, **cond)
        per = ((pred - tgt) ** 2).flatten(1).mean(1)
        return LossOutput(loss=per.mean(), per_example=per.detach(), t=t)
