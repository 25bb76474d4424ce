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
from monge.solvers.exponential import (
    DDIM,
    DPMSolverPlusPlus,
    DPMSolverPP2M,
    DPMSolverPP2MSDE,
    DPMSolverPP3M,
    UniPC,
)
from monge.solvers.fixed import RK4, Euler, Heun, Midpoint
from monge.solvers.grids import GRIDS, make_grid, parse_grid
from monge.solvers.integrate import integrate, time_grid
from monge.solvers.multistep import AB1, AB2, AB3, AB4, GHVB, AdamsBashforth, HeavyBall
from monge.solvers.schedule import Schedule
from monge.solvers.sde import EulerMaruyama

SOLVERS: Registry[Solver] = Registry("solver")
"""The ODE/SDE solvers ``monge run``/``sample``/``eval`` accept by name."""

_ALIASES = {AB4: ("plms",), DPMSolverPP2M: ("dpmpp2m", "dpm++2m"),
            DPMSolverPP3M: ("dpmpp3m", "dpm++3m")}
_ORDER_TEXT = {UniPC: "3", HeavyBall: "1", GHVB: "⌊q⌋–⌈q⌉", DPMSolverPP2MSDE: "weak 1"}

for _cls in (Euler, Midpoint, Heun, RK4, Dopri5, DDIM, DPMSolverPP2M, DPMSolverPP3M,
             DPMSolverPP2MSDE, UniPC, AB1, AB2, AB3, AB4, HeavyBall, GHVB):
    SOLVERS.register(_cls.name, _cls, description=(_cls.__doc__ or "").splitlines()[0],
                     aliases=_ALIASES.get(_cls, ()),
                     order=_ORDER_TEXT.get(_cls, _cls.order), nfe_per_step=_cls.nfe_per_step,
                     adaptive="yes" if _cls.adaptive else "",
                     schedule="yes" if getattr(_cls, "needs_schedule", False) else "")


def make_solver(name: str, **options) -> Solver:
    """Build a registered ODE solver by name (``SOLVERS.names()``)."""
    return SOLVERS.build(name, **options)


__all__ = ["AB1", "AB2", "AB3", "AB4", "DDIM", "GHVB", "GRIDS", "RK4", "SOLVERS",
           "AdamsBashforth", "Controller", "DPMSolverPP2M", "DPMSolverPP2MSDE", "DPMSolverPP3M",
           "DPMSolverPlusPlus", "Dopri5", "Euler", "EulerMaruyama", "Field", "FixedGrid",
           "HeavyBall", "Heun", "Midpoint", "PIController", "Schedule", "SolveResult", "Solver",
           "StepOutput", "UniPC", "eval_field", "integrate", "make_grid", "make_solver",
           "parse_grid", "time_grid"]
