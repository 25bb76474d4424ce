"""Consistency distillation (and LCM) on the linear path, as a flow map to the data end.

Song, Dhariwal, Chen & Sutskever (2023), "Consistency Models", Algorithm 2, in monge's time
convention (t = 0 noise → t = 1 data). A consistency function maps any point of a trajectory to
its end, f(x_t, t) = x1. Written as the flow map f(x, t) = x + (1 − t)·u(x, t, 1) it meets the
boundary condition f(x, 1) = x exactly (c_skip = 1, c_out = 1 − t), so a consistency model is
the s = 1 case of :class:`~monge.distill.flow_map.FlowMap`.

Training: draw x1 from the data, an interval n of the grid t_0 < ... < t_N (one per batch, so
the teacher's step is one batched call), x_{t_n} on the path; take one teacher step to x̂ at
t_{n+1} with any registered solver; minimise
d(f_θ(x_{t_n}, t_n), f_θ⁻(x̂, t_{n+1})) with θ⁻ an EMA of θ (the target network), d = pseudo-
Huber (Song & Dhariwal 2024) or L2. Cost per step: the teacher's one step (its NFE) + two
student forwards + one backward.

**Latent consistency distillation** (Luo et al. 2023, "Latent Consistency Models", LCM) is the
same loss with three options: a *skipping-step* grid (``intervals`` = T/k, e.g. 50 = 1000/20:
each teacher step spans k of the teacher's T steps), a *guided* teacher with the guidance weight
w drawn per sample from ``guidance`` = (w_min, w_max) and fed to both teacher and student
(``w=`` in the condition; the student needs a guidance-weight input, see
:class:`~monge.models.embeddings.GuidanceEmbedding`), and class labels from the data. LCM's
teacher step is DDIM, which on the linear path is exactly the Euler step
(α_s·x̂1 + σ_s·ε̂ = x + (s − t)·v), so ``solver="euler"`` is LCM's solver here. LCM's guidance
ω is monge's w − 1 (w = 1 is the conditional model). With ``ema=None`` the target is the
online network under no-grad (LCM-LoRA).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from monge.distill.flow_map import FlowMap
from monge.errors import InputError
from monge.solvers import SolveResult, make_solver
from monge.train.losses import LossOutput


def _to_end(network: nn.Module, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
    d = (1.0 - t).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return x + d * network(x, t, torch.ones_like(t), **cond)


class ConsistencyDistillationLoss(nn.Module):
    """Consistency distillation of a velocity teacher into a two-time network u(x, t, s).

    Args:
        teacher: the teacher's velocity field v(x, t, **cond) (e.g. a ModelWrapper; a
            guided teacher such as ClassifierFreeGuidance when ``guidance`` is set), or None:
            **consistency training** (Song et al. 2023, Algorithm 3): the next point is the
            same pair's path point x_{t_{n+1}} = (1 − t_{n+1})·x0 + t_{n+1}·x1 (no teacher).
        solver: registered solver for the teacher's one step (``euler``, ``heun``, ...).
        intervals: N, the number of grid intervals on [0, 1 − δ] (uniform).
        ema: decay μ of the target network θ⁻ (updated once per call, before the loss), or
            None: the online network under no-grad (LCM-LoRA).
        distance: ``huber`` (pseudo-Huber, c = 0.00054·√d) or ``l2``.
        guidance: (w_min, w_max): draw w ~ U[w_min, w_max] per sample and pass ``w`` to the
            teacher and the student (LCM), or None.
    """

    def __init__(self, teacher: Callable[..., Tensor] | None, solver: str = "heun",
                 intervals: int = 18, ema: float | None = 0.95, distance: str = "huber",
                 guidance: tuple[float, float] | None = None):
        super().__init__()
        if isinstance(intervals, bool) or not isinstance(intervals, int) or intervals < 1:
            raise InputError(f"intervals: must be a positive integer, got {intervals!r}")
        if ema is not None and not 0.0 <= ema < 1.0:
            raise InputError(f"ema: must lie in [0, 1) or be None, got {ema}")
        if distance not in ("huber", "l2"):
            raise InputError(f"distance: expected huber or l2, got {distance!r}")
        if guidance is not None:
            lo, hi = (float(v) for v in guidance)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi):
                raise InputError(f"guidance: expected 0 <= w_min <= w_max, got {guidance}")
            guidance = (lo, hi)
        self.teacher, self.solver = teacher, make_solver(solver)
        if self.solver.adaptive or self.solver.stochastic or getattr(
                self.solver, "min_steps", 1) > 1 or getattr(self.solver, "needs_schedule",
                                                            False):
            raise InputError(f"solver: the teacher's step must be a one-step ODE method on a "
                             f"plain field (euler, heun, midpoint, rk4), got {solver!r}")
        self.intervals, self.ema, self.distance = intervals, ema, distance
        self.guidance = guidance
        self.target_net: nn.Module | None = None
        self.teacher_nfe = 0

    @torch.no_grad()
    def _update_target(self, network: nn.Module) -> nn.Module:
        if self.ema is None:
            return network
        if self.target_net is None:
            self.target_net = copy.deepcopy(network).requires_grad_(False)
        else:
            for p_t, p in zip(self.target_net.parameters(), network.parameters(), strict=True):
                p_t.mul_(self.ema).add_(p.detach(), alpha=1.0 - self.ema)
        return self.target_net

    def forward(self, network: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None, **_: Any) -> LossOutput:
        target_net = self._update_target(network)
        b, n = x1.shape[0], self.intervals
        g_dev = generator.device if generator is not None else x1.device
        # one interval per batch, so the teacher's step is one batched call
        k = int(torch.randint(0, n, (1,), generator=generator, device=g_dev))
        tv, tn = k / n * (1.0 - 1e-3), (k + 1) / n * (1.0 - 1e-3)
        t = torch.full((b,), tv, dtype=x1.dtype, device=x1.device)
        t_next = torch.full((b,), tn, dtype=x1.dtype, device=x1.device)
        xt = (1 - tv) * x0 + tv * x1
        cond: dict[str, Tensor] = {} if y1 is None else {"y": y1}
        if self.guidance is not None:
            lo, hi = self.guidance
            u = torch.rand(b, generator=generator, device=g_dev).to(x1.device, x1.dtype)
            cond["w"] = lo + (hi - lo) * u
        with torch.no_grad():
            if self.teacher is None:                     # consistency training
                x_next = (1 - tn) * x0 + tn * x1
            else:
                calls = getattr(self.teacher, "nfe", None)
                state, nfe = self.solver.init(self.teacher, xt,
                                              torch.tensor([tv, tn], dtype=torch.float64), cond)
                step = self.solver.step(self.teacher, xt, tv, tn, state, cond)
                x_next = step.x
                # network calls when the teacher counts them (a guided step costs 2), else NFE
                after = getattr(self.teacher, "nfe", None)
                self.teacher_nfe += (after - calls if isinstance(calls, int) and isinstance(
                    after, int) else nfe + step.nfe)
            target = _to_end(target_net, x_next, t_next, cond)
        pred = _to_end(network, xt, t, cond)
        diff = (pred - target).flatten(1)
        if self.distance == "l2":
            per = (diff ** 2).mean(1)
        else:
            c = 0.00054 * math.sqrt(diff.shape[1])
            per = torch.sqrt((diff ** 2).sum(1) + c * c) - c
        return LossOutput(loss=per.mean(), per_example=per.detach(), t=t)


def consistency_sample(flow_map: FlowMap, x: Tensor, steps: int = 1,
                       generator: torch.Generator | None = None,
                       source: Callable[[int], Tensor] | None = None,
                       cond: dict[str, Tensor] | None = None) -> SolveResult:
    """Multistep consistency sampling on the linear path: jump to the end, go back to the next
    time t_k = k/steps with a fresh source draw, x = (1 − t_k)·x0' + t_k·x̂1, repeat (Song et al.
    2023, Algorithm 1). ``source(n)`` draws the fresh x0' (default N(0, I) from ``generator``;
    a model trained from a data source needs its own source here); ``cond`` (``y``, ``w``) is
    passed to every call. NFE = steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    b = x.shape[0]
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    for k in range(steps):
        t = torch.full((b,), float(times[k]), dtype=x.dtype, device=x.device)
        x1 = flow_map(x, t, torch.ones_like(t), **(cond or {}))
        if k == steps - 1:
            x = x1
            break
        tn = float(times[k + 1])
        z = (source(b).to(x) if source is not None else
             torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
        x = (1 - tn) * z + tn * x1
    ok = bool(torch.isfinite(x).all())
    return SolveResult(x=x, nfe=steps, n_accepted=steps, n_rejected=0, times=times,
                       converged=ok, message="" if ok else "non-finite samples")
