"""ODE/SDE integrators with one ``step()`` API, NFE counting and forward/backward integration.

| solver | order | NFE/step | notes |
|---|---|---|---|
| ``euler`` | 1 | 1 | |
| ``midpoint`` | 2 | 2 | |
| ``heun`` | 2 | 2 | EDM's 2nd-order sampler |
| ``rk4`` | 4 | 4 | |
| ``dopri5`` | 5(4) | 6 (FSAL) | adaptive, PI control |
| ``euler_maruyama`` | weak 1 | 1 | SDEs |
"""

from __future__ import annotations

from monge.errors import InputError
from monge.solvers.base import Field, Solver, SolveResult, StepOutput, eval_field
from monge.solvers.dopri import Dopri5, PIController
from monge.solvers.fixed import RK4, Euler, Heun, Midpoint
from monge.solvers.integrate import integrate, time_grid
from monge.solvers.sde import EulerMaruyama

ODE_SOLVERS: dict[str, type[Solver]] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "dopri5": Dopri5,
}


def make_solver(name: str) -> Solver:
    """Build an ODE solver by name (see the table above)."""
    if name not in ODE_SOLVERS:
        raise InputError(f"solver: unknown name {name!r}; expected one of {sorted(ODE_SOLVERS)}")
    return ODE_SOLVERS[name]()


__all__ = ["ODE_SOLVERS", "RK4", "Dopri5", "Euler", "EulerMaruyama", "Field", "Heun", "Midpoint",
           "PIController", "SolveResult", "Solver", "StepOutput", "eval_field", "integrate",
           "make_solver", "time_grid"]
