"""Explicit fixed-step Runge–Kutta methods: Euler, midpoint, Heun, RK4.

Each is a few lines over the shared :class:`~monge.solvers.base.Solver` API. Global error is
O(h^order); cost is ``nfe_per_step`` field evaluations per step. Standard references: Hairer,
Nørsett & Wanner, "Solving Ordinary Differential Equations I" (1993), §II.1.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from monge.solvers.base import Field, Solver, StepOutput, eval_field


class Euler(Solver):
    """Forward Euler: x' = x + h·f(x, t). Order 1, 1 NFE per step."""

    name, order, nfe_per_step = "euler", 1, 1

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        return StepOutput(x + h * eval_field(field, x, t, cond), 1)


class Midpoint(Solver):
    """Explicit midpoint rule. Order 2, 2 NFE per step."""

    name, order, nfe_per_step = "midpoint", 2, 2

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, x + 0.5 * h * k1, t + 0.5 * h, cond)
        return StepOutput(x + h * k2, 2)


class Heun(Solver):
    """Heun's method (explicit trapezoidal rule, as in EDM's 2nd-order sampler). Order 2, 2 NFE.

    Karras et al. (2022) take a plain Euler step for the last step into σ = 0; in monge the time
    grid ends at t = 1 where fields are finite, so every step is a full Heun step.
    """

    name, order, nfe_per_step = "heun", 2, 2

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, x + h * k1, t_next, cond)
        return StepOutput(x + 0.5 * h * (k1 + k2), 2)


class RK4(Solver):
    """Classical 4th-order Runge–Kutta. Order 4, 4 NFE per step."""

    name, order, nfe_per_step = "rk4", 4, 4

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        k1 = eval_field(field, x, t, cond)
        k2 = eval_field(field, x + 0.5 * h * k1, t + 0.5 * h, cond)
        k3 = eval_field(field, x + 0.5 * h * k2, t + 0.5 * h, cond)
        k4 = eval_field(field, x + h * k3, t_next, cond)
        return StepOutput(x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4), 4)
