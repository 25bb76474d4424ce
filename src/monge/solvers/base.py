"""The solver protocol: one ``step()`` API for every ODE/SDE integrator.

A solver advances a state x from time t to t_next for a field ``field(x, t, **cond)`` (t of shape
[B]). It declares its ``order`` (a test measures it) and whether it is ``adaptive`` (it returns a
local error estimate) or ``stochastic``. Solvers that carry information between steps (FSAL
stages, multistep history, momentum) keep it in the opaque ``state`` returned by ``init`` and
``step``; the integration loop only passes it along, so multistep and momentum methods need no
change to the loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Field = Callable[..., Tensor]


def eval_field(field: Field, x: Tensor, t: float | Tensor, cond: dict[str, Any]) -> Tensor:
    """Call ``field(x, t_batch, **cond)`` with a scalar time expanded to shape [B]."""
    if isinstance(t, Tensor) and t.ndim == 1:
        tb = t.to(dtype=x.dtype, device=x.device)
    else:
        tb = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    return field(x, tb, **cond)


@dataclass
class StepOutput:
    """What one solver step returns.

    Attributes:
        x: state at t_next.
        nfe: field evaluations spent in this step.
        error: for adaptive solvers, the local error estimate (same shape as x), else None.
        state: solver state to pass to the next step (FSAL stages, history, momentum).
    """

    x: Tensor
    nfe: int
    error: Tensor | None = None
    state: Any = None


class Solver(ABC):
    """Base class of every integrator.

    Subclasses set ``order`` and implement ``step``. ``init`` may evaluate the field (and say so
    through its NFE count) to prepare a state.
    """

    name: str = "solver"
    order: int = 1
    nfe_per_step: int = 1
    adaptive: bool = False
    stochastic: bool = False

    def init(self, field: Field, x: Tensor, t: float, cond: dict[str, Any]) -> tuple[Any, int]:
        """Prepare the solver state at (x, t); return (state, nfe spent)."""
        return None, 0

    @abstractmethod
    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        """Advance x from t to t_next (t_next < t integrates backward)."""

    def reset_after_reject(self, state: Any) -> Any:
        """State to retry a rejected step with (adaptive solvers only)."""
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass
class SolveResult:
    """The outcome of an integration.

    Attributes:
        x: final state.
        nfe: total number of field evaluations.
        n_accepted: accepted steps.
        n_rejected: rejected steps (adaptive solvers).
        times: [T+1] times of the accepted grid (float64), t0 first.
        trajectory: [T+1, B, ...] states on that grid when requested, else None.
        converged: False when an adaptive solve stopped early (max_steps or min_step).
        message: why it stopped when it did not converge.
    """

    x: Tensor
    nfe: int
    n_accepted: int
    n_rejected: int
    times: Tensor
    trajectory: Tensor | None = None
    converged: bool = True
    message: str = ""
