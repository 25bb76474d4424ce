"""Adaptive Dormand–Prince 5(4) and a PI step-size controller.

Dormand & Prince (1980), "A family of embedded Runge–Kutta formulae"; PI control after
Gustafsson (1991) as in Hairer & Wanner, "Solving ODEs I/II" (§IV.2). Seven stages with the
first-same-as-last property: 6 new field evaluations per accepted step (the 7th stage is the next
step's first). The 5th-order solution is propagated (local extrapolation) and the embedded 4th-order
solution gives the local error estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.solvers.base import Field, Solver, StepOutput, eval_field

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


class Dopri5(Solver):
    """Dormand–Prince 5(4): order 5 with an embedded order-4 error estimate (FSAL, 6 NFE/step).

    Use with :func:`monge.solvers.integrate` and a :class:`PIController`; its ``step`` may also be
    called on a fixed grid (then it behaves as a 6-stage 5th-order method).
    """

    name, order, adaptive, nfe_per_step = "dopri5", 5, True, 6

    def init(self, field: Field, x: Tensor, t: float, cond: dict[str, Any]) -> tuple[Any, int]:
        return eval_field(field, x, t, cond), 1

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        nfe = 0
        k1 = state
        if k1 is None:
            k1, nfe = eval_field(field, x, t, cond), 1
        ks = [k1]
        for i in range(1, 7):
            xi = x
            for a_ij, kj in zip(_A[i], ks, strict=False):
                if a_ij != 0.0:
                    xi = xi + (h * a_ij) * kj
            if i == 6:
                x_new = xi  # row 7 of A equals the 5th-order weights
                ks.append(eval_field(field, x_new, t_next, cond))
            else:
                ks.append(eval_field(field, xi, t + _C[i] * h, cond))
            nfe += 1
        err = sum((h * e) * k for e, k in zip(_E, ks, strict=True) if e != 0.0)
        return StepOutput(x_new, nfe, error=err, state=ks[6])


@dataclass
class PIController:
    """Proportional–integral step-size control for adaptive solvers.

    The error norm is the RMS of ``error / (atol + rtol·max(|x|, |x_new|))``; a step is accepted
    when it is ≤ 1. The next step is h·clip(safety·e_n^(−β1)·e_{n−1}^(β2), factor_min, factor_max)
    with Hairer's gains β1 = 1/(q+1) − 0.75·β2, q the order of the error estimator.

    Attributes:
        rtol, atol: relative and absolute tolerances.
        safety: safety factor (< 1).
        beta2: integral gain (0.04 in Hairer's DOPRI5 code; 0 gives I-control).
        factor_min, factor_max: bounds of the step-size ratio.
        min_step: smallest |h| allowed before giving up (result flagged not converged).
        max_steps: most steps (accepted + rejected) before giving up.
        first_step: initial |h|; None selects it automatically (2 extra NFE).
    """

    rtol: float = 1e-5
    atol: float = 1e-5
    safety: float = 0.9
    beta2: float = 0.04
    factor_min: float = 0.2
    factor_max: float = 10.0
    min_step: float = 1e-8
    max_steps: int = 10_000
    first_step: float | None = None

    def __post_init__(self) -> None:
        if self.rtol <= 0 and self.atol <= 0:
            raise InputError("PIController: rtol or atol must be positive")
        if self.rtol < 0 or self.atol < 0:
            raise InputError("PIController: rtol and atol must be non-negative")

    def error_norm(self, error: Tensor, x: Tensor, x_new: Tensor) -> float:
        scale = self.atol + self.rtol * torch.maximum(x.abs(), x_new.abs())
        return float(torch.sqrt(torch.mean((error / scale) ** 2)))

    def initial_step(self, field: Field, x: Tensor, t0: float, t1: float, f0: Tensor,
                     order: int, cond: dict[str, Any]) -> tuple[float, int]:
        """Hairer's starting-step heuristic (one extra NFE); returns (|h|, nfe)."""
        if self.first_step is not None:
            return float(self.first_step), 0
        scale = self.atol + self.rtol * x.abs()
        d0 = float(torch.sqrt(torch.mean((x / scale) ** 2)))
        d1 = float(torch.sqrt(torch.mean((f0 / scale) ** 2)))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, abs(t1 - t0))
        direction = 1.0 if t1 >= t0 else -1.0
        f1 = eval_field(field, x + direction * h0 * f0, t0 + direction * h0, cond)
        d2 = float(torch.sqrt(torch.mean(((f1 - f0) / scale) ** 2))) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
        return min(100 * h0, h1, abs(t1 - t0)), 1

    def next_factor(self, err: float, prev_err: float, order: int) -> float:
        """Step-size ratio from the current and previous error norms (q = order − 1)."""
        q = order - 1
        beta1 = 1.0 / (q + 1) - 0.75 * self.beta2
        err = max(err, 1e-10)
        factor = self.safety * err ** (-beta1) * max(prev_err, 1e-4) ** self.beta2
        return min(self.factor_max, max(self.factor_min, factor))
