"""Shortcut models: a flow map conditioned on its step size, trained by self-consistency.

Frans, Hafner, Levine & Abbeel (2024), "One Step Diffusion via Shortcut Models", in monge's
time convention (t = 0 source → t = 1 data). The network u(x, t, t + d) is the
:class:`~monge.distill.flow_map.FlowMap`'s average velocity with the step size d = s − t as its
conditioning (the :class:`~monge.distill.flow_map.TwoTimeMLP` embeds s − t). Two targets share
one batch:

- **flow matching** at d = 0: u(x_t, t, t) → v, the conditional velocity x1 − x0 (from data) or
  a teacher's velocity (distillation);
- **self-consistency** at d ∈ {1/M, 2/M, 4/M, ..., 1/2} (powers of two): one jump of size 2d
  equals two jumps of size d,

      u(x_t, t, t + 2d) ← sg[ ½·(u(x_t, t, t + d) + u(x′, t + d, t + 2d)) ],
      x′ = x_t + d·u(x_t, t, t + d),

  with t drawn on the grid of multiples of 2d in [0, 1 − 2d] (so every jump stays in [0, 1]).

A fraction ``consistency_fraction`` of each batch (the paper: 1/4) gets the self-consistency
target. Sampling is :func:`~monge.distill.flow_map.flow_map_sample` with K uniform jumps (best
when K is a power of two up to M). Cost per step: one student forward/backward on the batch and
two no-grad student forwards on the self-consistency part (plus one teacher call when
distilling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from monge.errors import InputError
from monge.train.losses import LossOutput


class ShortcutLoss(nn.Module):
    """The shortcut-model objective for a step-size-conditioned network u(x, t, s).

    Args:
        teacher: velocity field v(x, t, **cond) for the d = 0 target, or None (the conditional
            velocity x1 − x0 of the linear path: a shortcut model trained from data).
        max_steps: M, the finest step count (a power of two); the smallest jump is 1/M.
        consistency_fraction: the share of each batch with the self-consistency target.
    """

    def __init__(self, teacher: Callable[..., Tensor] | None = None, max_steps: int = 128,
                 consistency_fraction: float = 0.25):
        super().__init__()
        if (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 2
                or max_steps & (max_steps - 1)):
            raise InputError(f"max_steps: must be a power of two >= 2, got {max_steps!r}")
        if not 0.0 < consistency_fraction < 1.0:
            raise InputError(f"consistency_fraction: must lie in (0, 1), got "
                             f"{consistency_fraction}")
        self.teacher, self.max_steps = teacher, max_steps
        self.consistency_fraction = consistency_fraction
        self.teacher_nfe = 0

    def forward(self, network: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None, **_: Any) -> LossOutput:
        b, dev, dt = x1.shape[0], x1.device, x1.dtype
        g_dev = generator.device if generator is not None else dev
        nc = max(1, int(round(b * self.consistency_fraction)))
        nf = b - nc
        cond = {} if y1 is None else {"y": y1}

        def rand(n: int) -> Tensor:
            return torch.rand(n, generator=generator, device=g_dev).to(dev, dt)

        def bshape(v: Tensor) -> Tensor:
            return v.reshape(-1, *[1] * (x1.ndim - 1))

        # self-consistency part: d = 2^-k / ... with 2d ≤ 1, t a multiple of 2d
        levels = int(math.log2(self.max_steps))           # d ∈ {1/M, ..., 1/2}
        k = torch.randint(1, levels + 1, (nc,), generator=generator, device=g_dev).to(dev)
        d = (2.0 ** (-k.to(dt)))                          # 2d ∈ {2/M, ..., 1}
        slots = torch.round(1.0 / (2 * d))                 # number of 2d-jumps in [0, 1]
        idx = torch.floor(rand(nc) * slots).clamp(max=slots - 1)
        tc = idx * 2 * d
        tf = rand(nf)
        t = torch.cat([tf, tc])
        s = torch.cat([tf, tc + 2 * d])
        xt = (1 - bshape(t)) * x0 + bshape(t) * x1
        with torch.no_grad():
            if self.teacher is None:
                v = (x1 - x0)[:nf]
            else:
                v = self.teacher(xt[:nf], tf, **{k_: c[:nf] for k_, c in cond.items()})
                self.teacher_nfe += 1
            cc = {k_: c[nf:] for k_, c in cond.items()}
            xc = xt[nf:]
            u1 = network(xc, tc, tc + d, **cc)
            x_mid = xc + bshape(d) * u1
            u2 = network(x_mid, tc + d, tc + 2 * d, **cc)
            target = torch.cat([v, 0.5 * (u1 + u2)])
        pred = network(xt, t, s, **cond)
        per = ((pred - target) ** 2).flatten(1).mean(1)
        return LossOutput(loss=per.mean(), per_example=per.detach(), t=t)
