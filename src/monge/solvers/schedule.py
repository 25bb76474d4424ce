"""The noise schedule a field exposes, as the exponential-integrator and σ̄-variable solvers see it.

A model wrapper from :mod:`monge.paths` has a ``path`` whose ``marginal_schedule()`` is an affine
path x_t = α(t)·x1 + σ(t)·ε (the path itself for affine paths; α = b, σ = √(a² + γ²) for a
stochastic interpolant). :class:`Schedule` reads α, σ and λ = log(α/σ) in float64 (Python
floats, so λ may be ±∞ at the ends of a path) and turns one field call into the predictions a
solver needs (clean data x̂1, noise ε̂, velocity). Reached by duck typing: this module never
imports :mod:`monge.paths`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.solvers.base import Field, batch_times


class Schedule:
    """α(t), σ(t), λ(t) of a field's path and predictions from one field call.

    Args:
        field: a model wrapper (it has ``path`` with ``marginal_schedule()`` and ``predict``).
        solver: the solver's name, for the error message.

    Raises:
        InputError: the field is a plain function, or its path has no noise schedule.
    """

    def __init__(self, field: Field, solver: str):
        path = getattr(field, "path", None)
        view = path.marginal_schedule() if hasattr(path, "marginal_schedule") else None
        if view is None or not hasattr(field, "predict"):
            raise InputError(f"{solver}: needs a model wrapper whose path has a noise schedule "
                             "(monge.paths.ModelWrapper on an affine path or interpolant); "
                             "for a plain field use euler, heun, rk4, dopri5 or ab1-ab4")
        self.view = view
        # The wrapper converts exactly when the schedule is its own path; otherwise (an
        # interpolant) the velocity is converted with the marginal view's formulas.
        self.native = view is path
        self._cache: dict[float, tuple[float, float]] = {}

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        """(α(t), σ(t)) as float64 Python floats."""
        if t not in self._cache:
            tt = torch.tensor([float(t)], dtype=torch.float64)
            self._cache[t] = (float(self.view.alpha(tt)), float(self.view.sigma(tt)))
        return self._cache[t]

    def log_snr(self, t: float) -> float:
        """λ(t) = log(α/σ): −∞ where α = 0, +∞ where σ = 0."""
        a, s = self.alpha_sigma(t)
        if s <= 0.0:
            return math.inf
        return math.log(a / s) if a > 0.0 else -math.inf

    def sigma_bar(self, t: float) -> float:
        """σ̄ = σ/α = e^(−λ) (+∞ where α = 0)."""
        a, s = self.alpha_sigma(t)
        return s / a if a > 0.0 else math.inf

    def predict(self, field: Field, kinds: Sequence[str], x: Tensor, t: float,
                cond: dict[str, Any]) -> tuple[Tensor, ...]:
        """The predictions ``kinds`` (``x1``, ``epsilon``, ``velocity``) at (x, t): one call."""
        tb = batch_times(x, t)
        if self.native:
            out = field.predict(tuple(kinds), x, tb, **cond)
            return tuple(out)
        v = field(x, tb, **cond)
        return tuple(self.view.convert(v, "velocity", k, x, tb) for k in kinds)

