"""Time grids as pure functions, registered by name (``GRIDS``).

A grid function returns the float64 times t0, ..., tN of an N-step solve. A grid that depends on a
schedule (uniform in log-SNR, Karras ρ) reaches it through the model wrapper's ``path``, by duck
typing, so this module never imports :mod:`monge.paths`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from monge.core.registry import Registry
from monge.errors import InputError

GRIDS: Registry = Registry("grid")


@GRIDS.register("uniform", description="equal steps in t")
def uniform_grid(steps: int, t0: float = 0.0, t1: float = 1.0, model: Any = None) -> Tensor:
    """Uniform grid of ``steps`` steps from t0 to t1 (float64, steps + 1 points)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


def make_grid(name: str, steps: int, t0: float = 0.0, t1: float = 1.0,
              model: Any = None) -> Tensor:
    """The grid registered as ``name`` with ``steps`` steps from t0 to t1."""
    return GRIDS.build(name, steps=steps, t0=t0, t1=t1, model=model)
