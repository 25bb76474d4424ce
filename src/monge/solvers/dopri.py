"""Adaptive Dormand–Prince 5(4) (its step-size control is in :mod:`monge.solvers.controllers`).

Dormand & Prince (1980), "A family of embedded Runge–Kutta formulae". Seven stages with the
first-same-as-last property: 6 new field evaluations per accepted step (the 7th stage is the next
step's first). The 5th-order solution is propagated (local extrapolation) and the embedded 4th-order
solution gives the local error estimate.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from monge.solvers.base import Field, Solver, StepOutput, eval_field
from monge.solvers.state import State, combine, linear

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

    Use with :func:`monge.solvers.integrate` and a
    :class:`~monge.solvers.controllers.PIController`; its ``step`` may also be
    called on a fixed grid (then it behaves as a 6-stage 5th-order method).
    """

    name, order, adaptive, nfe_per_step = "dopri5", 5, True, 6

    def init(self, field: Field, x: State, grid: Tensor, cond: dict[str, Any]
             ) -> tuple[Any, int]:
        return eval_field(field, x, float(grid[0]), cond), 1

    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        nfe = 0
        k1 = state
        if k1 is None:
            k1, nfe = eval_field(field, x, t, cond), 1
        ks = [k1]
        for i in range(1, 7):
            xi = combine(x, [(h * a_ij, kj) for a_ij, kj in zip(_A[i], ks, strict=False)
                             if a_ij != 0.0])
            if i == 6:
                x_new = xi  # row 7 of A equals the 5th-order weights
                ks.append(eval_field(field, x_new, t_next, cond))
            else:
                ks.append(eval_field(field, xi, t + _C[i] * h, cond))
            nfe += 1
        err = linear([(h * e, k) for e, k in zip(_E, ks, strict=True) if e != 0.0])
        return StepOutput(x_new, nfe, error=err, state=ks[6])
