"""ODE/SDE integrators with one ``step()`` API, one loop, step-size controllers and NFE counting.

Every solver is registered in ``SOLVERS`` (name, order, NFE per step); ``make_solver(name)`` builds
one and an unknown name gets one error listing the valid names. Adding a solver is one new module
plus one ``SOLVERS.register(...)`` line (see ``docs/contributing.md``).
"""

from __future__ import annotations

from monge.core.registry import Registry
from monge.solvers.base import Field, Solver, SolveResult, StepOutput, eval_field
from monge.solvers.controllers import Controller, FixedGrid, PIController
from monge.solvers.dopri import Dopri5
from monge.solvers.fixed import RK4, Euler, Heun, Midpoint
from monge.solvers.grids import GRIDS, make_grid
from monge.solvers.integrate import integrate, time_grid
from monge.solvers.sde import EulerMaruyama

SOLVERS: Registry[Solver] = Registry("solver")
"""The ODE solvers ``monge run``/``sample``/``eval`` accept by name."""

for _cls in (Euler, Midpoint, Heun, RK4, Dopri5):
    SOLVERS.register(_cls.name, _cls, description=(_cls.__doc__ or "").splitlines()[0],
                     order=_cls.order, nfe_per_step=_cls.nfe_per_step,
                     adaptive="yes" if _cls.adaptive else "")


def make_solver(name: str, **options) -> Solver:
    """Build a registered ODE solver by name (``SOLVERS.names()``)."""
    return SOLVERS.build(name, **options)


__all__ = ["GRIDS", "RK4", "SOLVERS", "Controller", "Dopri5", "Euler", "EulerMaruyama", "Field",
           "FixedGrid", "Heun", "Midpoint", "PIController", "SolveResult", "Solver", "StepOutput",
           "eval_field", "integrate", "make_grid", "make_solver", "time_grid"]
