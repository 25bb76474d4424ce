"""Euler–Maruyama for Itô SDEs dx = f(x, t)·dt + g(t)·dW.

Kloeden & Platen (1992), "Numerical Solution of Stochastic Differential Equations", §10.2. Strong
order 1/2, weak order 1; 1 NFE per step. The field passed to the solver is the drift f; the
diffusion g(t) is a scalar function of time given to the solver. For a backward-in-time solve
(t_next < t) the noise scale is √|h|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from monge.core.checks import make_generator
from monge.solvers.base import Field, Solver, StepOutput, eval_field


class EulerMaruyama(Solver):
    """Euler–Maruyama: x' = x + h·f(x, t) + g(t)·√|h|·z, z ~ N(0, I). Weak order 1.

    Args:
        diffusion: g(t) -> float (or a float for constant diffusion).
        generator: torch.Generator or seed for the Brownian increments (reproducible runs).
    """

    name, stochastic = "euler_maruyama", True
    order, strong_order, weak_order = 1, 0.5, 1.0

    def __init__(self, diffusion: Callable[[float], float] | float,
                 generator: torch.Generator | int | None = None):
        self.diffusion = diffusion if callable(diffusion) else (lambda t, g=float(diffusion): g)
        self._seed = generator

    def init(self, field: Field, x: Tensor, grid: Tensor, cond: dict[str, Any]
             ) -> tuple[Any, int]:
        gen = self._seed if isinstance(self._seed, torch.Generator) else make_generator(
            self._seed, x.device)
        return gen, 0

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        h = t_next - t
        gen = state
        drift = eval_field(field, x, t, cond)
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        g = float(self.diffusion(t))
        return StepOutput(x + h * drift + g * abs(h) ** 0.5 * z, 1, state=gen)
