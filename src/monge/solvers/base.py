"""The solver protocol: one ``step()`` API for every ODE/SDE integrator.

A solver advances a state x from time t to t_next for a field ``field(x, t, **cond)`` (t of shape
[B]). The state is a tensor or a tuple of tensors (:mod:`monge.solvers.state`); a field on a tuple
state returns the same structure. A solver declares its ``order`` (ODE order; a test measures it
over the registry) and, for SDE solvers, ``strong_order`` and ``weak_order``; ``adaptive`` says it
returns a local error estimate for a step-size controller. ``init`` sees the whole time grid (the
fixed grid, or ``[t0, t1]`` for an adaptive solve), so a multistep method can plan its last steps.
Information carried between steps (FSAL stages, multistep history, momentum, a generator) lives in
the ``state`` returned by ``init`` and ``step``, never in ``self``: a solver object holds only its
settings and can be reused for any number of solves.

Solvers reach a schedule (log-SNR, α, σ) only through the field, by duck typing (a model wrapper
from :mod:`monge.paths` exposes ``predict`` and ``path``); nothing here imports ``monge.paths``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.solvers.state import State, first

Field = Callable[..., Any]
"""``field(x, t, **cond) -> dx/dt`` with t of shape [B]; x and the result share one structure."""


def batch_times(x: State, t: float | Tensor) -> Tensor:
    """A scalar time as a [B] tensor in the dtype/device of the state's leading tensor."""
    x0 = first(x)
    if isinstance(t, Tensor) and t.ndim == 1:
        return t.to(dtype=x0.dtype, device=x0.device)
    return torch.full((x0.shape[0],), float(t), dtype=x0.dtype, device=x0.device)


def eval_field(field: Field, x: State, t: float | Tensor, cond: dict[str, Any]) -> State:
    """Call ``field(x, t_batch, **cond)`` with a scalar time expanded to shape [B]."""
    return field(x, batch_times(x, t), **cond)


def velocity_and_denoised(field: Field, x: State, t: float | Tensor, cond: dict[str, Any]
                          ) -> tuple[State, Tensor | None]:
    """The velocity at (x, t) and, when the field is a model wrapper whose path has an x1
    prediction, the clean-data prediction x̂1 from the same network call (else None)."""
    predict = getattr(field, "predict", None)
    kinds = getattr(getattr(field, "path", None), "predictions", ())
    if predict is not None and "x1" in kinds and isinstance(x, Tensor):
        v, x1 = predict(("velocity", "x1"), x, batch_times(x, t), **cond)
        return v, x1
    return eval_field(field, x, t, cond), None


@dataclass
class StepOutput:
    """What one solver step returns.

    Attributes:
        x: state at t_next.
        nfe: field evaluations spent in this step.
        error: for adaptive solvers, the local error estimate (same structure as x), else None.
        state: solver state to pass to the next step (FSAL stages, history, momentum).
        denoised: the model's clean-data prediction x̂1 at the step's start, when the step
            obtained it (passed to the callback as ``denoised``).
    """

    x: State
    nfe: int
    error: State | None = None
    state: Any = None
    denoised: Tensor | None = None


class Solver(ABC):
    """Base class of every integrator.

    Subclasses set ``name``, ``order`` (and for SDEs ``strong_order``/``weak_order``) and
    implement ``step``. ``init`` may evaluate the field (and says so through its NFE count).
    """

    name: str = "solver"
    order: float = 1
    strong_order: float | None = None
    weak_order: float | None = None
    nfe_per_step: int = 1
    adaptive: bool = False
    stochastic: bool = False
    min_steps: int = 1
    """Fewest steps a fixed-grid solve may take (a multistep method of order k needs k)."""
    needs_schedule: bool = False
    """True for solvers that need a model wrapper with a noise schedule (exponential
    integrators); they refuse a plain function with one error."""

    def init(self, field: Field, x: State, grid: Tensor, cond: dict[str, Any]
             ) -> tuple[Any, int]:
        """Prepare the solver state at (x, grid[0]); return (state, nfe spent).

        Args:
            grid: the float64 time grid of a fixed-step solve, or ``[t0, t1]`` for an adaptive one.
        """
        return None, 0

    @abstractmethod
    def step(self, field: Field, x: State, t: float, t_next: float, state: Any,
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
        x: final state (a tensor, or a tuple for a tuple state).
        nfe: total number of field evaluations (network calls for a model wrapper).
        n_accepted: accepted steps.
        n_rejected: rejected steps (adaptive solvers).
        times: [T+1] times of the accepted grid (float64), t0 first.
        trajectory: [T+1, B, ...] states on that grid when requested, else None.
        converged: False when the solve stopped early (max_steps, min_step) or its state is not
            finite.
        message: why, when it did not converge.
        network_calls: network evaluations counted by the field (a model wrapper's ``nfe``)
            during the solve; differs from ``nfe`` under guidance (2 calls per evaluation).
            None for a field that does not count.
    """

    x: State
    nfe: int
    n_accepted: int
    n_rejected: int
    times: Tensor
    trajectory: State | None = None
    converged: bool = True
    message: str = ""
    network_calls: int | None = None
