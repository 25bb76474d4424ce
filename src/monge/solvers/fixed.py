"""Explicit fixed-step Runge–Kutta methods: Euler, midpoint, Heun, RK4.

Each is a few lines over the shared :class:`~monge.solvers.base.Solver` API and works on tensor
and tuple states alike. Global error is O(h^order); cost is ``nfe_per_step`` field evaluations per
step. Standard references: Hairer, Nørsett & Wanner, "Solving Ordinary Differential Equations I"
(1993), §II.1.
"""

from __future__ import annotations

from typing import Any

from monge.solvers.base import Field, Solver, StepOutput, eval_field, velocity_and_denoised
from monge.solvers.state import State, combine


class Euler(Solver):
    """Forward Euler: x' = x + h·f(x, t). Order 1, 1 NFE per step.

    When the field is a model wrapper (it has ``predict``), the same network call also gives the
    clean-data prediction x̂1, returned as the step's ``denoised``.
    """

    name, order, nfe_per_step = "euler", 1, 1

    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        v, x1 = velocity_and_denoised(field, x, t, cond)
        return StepOutput(combine(x, [(t_next - t, v)]), 1, denoised=x1)


class Midpoint(Solver):
    """Explicit midpoint rule. Order 2, 2 NFE per step."""

    name, order, nfe_per_step = "midpoint", 2, 2

    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, combine(x, [(0.5 * h, k1)]), t + 0.5 * h, cond)
        return StepOutput(combine(x, [(h, k2)]), 2)


class Heun(Solver):
    """Heun's method (explicit trapezoidal rule, as in EDM's 2nd-order sampler). Order 2, 2 NFE.

    Karras et al. (2022) take a plain Euler step for the last step into σ = 0; in monge the time
    grid ends at t = 1 where fields are finite, so every step is a full Heun step.
    """

    name, order, nfe_per_step = "heun", 2, 2

    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, combine(x, [(h, k1)]), t_next, cond)
        return StepOutput(combine(x, [(0.5 * h, k1), (0.5 * h, k2)]), 2)


class RK4(Solver):
    """Classical 4th-order Runge–Kutta. Order 4, 4 NFE per step."""

    name, order, nfe_per_step = "rk4", 4, 4

    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, combine(x, [(0.5 * h, k1)]), t + 0.5 * h, cond)
        k3 = eval_field(field, combine(x, [(0.5 * h, k2)]), t + 0.5 * h, cond)
        k4 = eval_field(field, combine(x, [(h, k3)]), t_next, cond)
        return StepOutput(combine(x, [(h / 6, k1), (h / 3, k2), (h / 3, k3), (h / 6, k4)]), 4)
