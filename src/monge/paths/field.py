"""Model wrappers: turn a network's prediction into a velocity field for the solvers.

A network trained on a path predicts one parameterisation (velocity, x1, ε or score). Solvers
integrate velocities, so :class:`VelocityField` converts with the path's exact formulas. It has the
same ``forward(x, t, **cond)`` signature as any field, so every solver (and later every guidance or
re-timing wrapper) composes with it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from monge.errors import InputError
from monge.paths.affine import PREDICTIONS, AffinePath, Prediction


class VelocityField(nn.Module):
    """Velocity u(x, t) = convert(model(x, t, **cond), prediction → velocity) on ``path``.

    The conversions from x1, ε or score divide by α or σ, which vanish at the ends of some paths
    (e.g. ε → velocity at t = 0 of the linear path). For those predictions t is clamped to
    [t_clamp, 1 − t_clamp]; a velocity prediction is passed through untouched.

    Args:
        model: network ``model(x, t, **cond)`` with t of shape [B].
        path: the path it was trained on.
        prediction: what the network predicts (``velocity``, ``x1``, ``epsilon``, ``score``).
        t_clamp: distance kept from the singular ends for non-velocity predictions.
    """

    def __init__(self, model: nn.Module, path: AffinePath, prediction: Prediction = "velocity",
                 t_clamp: float = 1e-3):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise InputError(f"prediction: unknown {prediction!r}; expected one of {PREDICTIONS}")
        self.model, self.path, self.prediction, self.t_clamp = model, path, prediction, t_clamp

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        if self.prediction == "velocity":
            return self.model(x, t, **cond)
        t = t.clamp(self.t_clamp, 1.0 - self.t_clamp)
        out = self.model(x, t, **cond)
        return self.path.convert(out, self.prediction, "velocity", x, t)

