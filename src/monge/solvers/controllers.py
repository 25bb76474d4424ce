"""Step-size controllers: which time comes next, and whether a step is accepted.

One integration loop (:func:`monge.solvers.integrate`) drives every solver; what differs between a
fixed grid and adaptive control is this object:

- :class:`FixedGrid` walks a given monotone grid and accepts every step;
- :class:`PIController` proposes steps from the solver's local error estimate with
  proportional–integral control (Gustafsson 1991; Hairer & Wanner, "Solving ODEs I/II", §IV.2).

A controller's per-solve progress lives in the run object it returns from ``start``, so one
controller instance can serve many solves.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.solvers.base import Field, Solver, StepOutput, eval_field
from monge.solvers.state import State, combine, leaves


def scaled_error_norm(error: State, x: State, x_new: State, rtol: float, atol: float
                      ) -> Tensor:
    """RMS of ``error / (atol + rtol·max(|x|, |x_new|))`` over every leaf, as a tensor.

    Differentiable in the error (the local regulariser of :mod:`monge.train.local_reg` trains
    on it); the weights are detached, so a model cannot lower it by inflating its states."""
    total, count = None, 0
    for e, a, b in zip(leaves(error), leaves(x), leaves(x_new), strict=True):
        weight = (atol + rtol * torch.maximum(a.abs(), b.abs())).detach()
        part = ((e / weight) ** 2).sum()
        total = part if total is None else total + part
        count += e.numel()
    if total is None:
        return torch.zeros(())
    return torch.sqrt(total / max(count, 1))


def error_norm(error: State, x: State, x_new: State, rtol: float, atol: float) -> float:
    """RMS of ``error / (atol + rtol·max(|x|, |x_new|))`` over every leaf of the state: the
    adaptive controller's acceptance test (as a float)."""
    with torch.no_grad():
        return float(scaled_error_norm(error, x, x_new, rtol, atol))


class ControllerRun(ABC):
    """The progress of one solve under a controller."""

    grid: Tensor
    """Times the solver's ``init`` sees: the whole fixed grid, or ``[t0, t1]``."""
    failed: str = ""
    """Why the solve must stop unconverged (empty while it may go on)."""

    @abstractmethod
    def done(self, t: float) -> bool:
        """True once t has reached the end."""

    @abstractmethod
    def propose(self, t: float) -> float:
        """The next time to step to from t."""

    @abstractmethod
    def judge(self, x: State, out: StepOutput, solver: Solver) -> bool:
        """Accept (True) or reject the step just taken, and adapt the next proposal."""


class Controller(ABC):
    """A step-size policy. ``start`` returns the run object of one solve and the NFE it spent."""

    @abstractmethod
    def start(self, field: Field, x: State, t0: float, t1: float, solver: Solver, state: Any,
              cond: dict[str, Any]) -> tuple[ControllerRun, int]:
        ...


def check_grid(grid: Tensor) -> Tensor:
    """Validate a float64 time grid: 1-D, ≥ 2 finite, strictly monotone times."""
    if grid.ndim != 1 or grid.numel() < 2:
        raise InputError("grid: expected a 1-D sequence of at least two times")
    if not bool(torch.isfinite(grid).all()):
        raise InputError(f"grid: times must be finite, got {grid.tolist()[:4]}...")
    d = grid[1:] - grid[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise InputError("grid: times must be strictly monotone")
    return grid


class FixedGrid(Controller):
    """Step exactly on ``grid`` (float64, strictly monotone); every step is accepted.

    Args:
        grid: the times t0, t1, ..., tN (forward or backward).
    """

    def __init__(self, grid: Tensor):
        self.grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))

    def start(self, field, x, t0, t1, solver, state, cond):
        return _FixedRun(self.grid), 0


class _FixedRun(ControllerRun):
    def __init__(self, grid: Tensor):
        self.grid = grid
        self._times = grid.tolist()
        self._i = 0

    def done(self, t: float) -> bool:
        return self._i >= len(self._times) - 1

    def propose(self, t: float) -> float:
        return self._times[self._i + 1]

    def judge(self, x, out, solver) -> bool:
        self._i += 1
        return True


@dataclass
class PIController(Controller):
    """Proportional–integral step-size control for adaptive solvers.

    The error norm is :func:`error_norm` (RMS of error / (atol + rtol·max(|x|, |x_new|))); a step
    is accepted when it is ≤ 1. The next step is h·clip(safety·e_n^(−β1)·e_{n−1}^(β2),
    factor_min, factor_max) with Hairer's gains β1 = 1/(q+1) − 0.75·β2, q = order − 1 the order
    of the error estimator. A non-finite error (NaN/Inf stage) rejects the step and shrinks h by
    ``factor_min``; the stop message then says the field produced non-finite values.

    Attributes:
        rtol, atol: relative and absolute tolerances.
        safety: safety factor (< 1).
        beta2: integral gain (0.04 in Hairer's DOPRI5 code; 0 gives I-control).
        factor_min, factor_max: bounds of the step-size ratio.
        min_step: smallest |h| allowed before giving up (result flagged not converged).
        max_steps: most steps (accepted + rejected) before giving up.
        first_step: initial |h|; None selects it automatically (1 extra NFE).
    """

    rtol: float = 1e-5
    atol: float = 1e-5
    safety: float = 0.9
    beta2: float = 0.04
    factor_min: float = 0.2
    factor_max: float = 10.0
    min_step: float = 1e-8
    max_steps: int = 10_000
    first_step: float | None = None

    def __post_init__(self) -> None:
        if self.rtol <= 0 and self.atol <= 0:
            raise InputError("PIController: rtol or atol must be positive")
        if self.rtol < 0 or self.atol < 0:
            raise InputError("PIController: rtol and atol must be non-negative")

    def error_norm(self, error: State, x: State, x_new: State) -> float:
        return error_norm(error, x, x_new, self.rtol, self.atol)

    def initial_step(self, field: Field, x: State, t0: float, t1: float, f0: State,
                     order: float, cond: dict[str, Any]) -> tuple[float, int]:
        """Hairer's starting-step heuristic (one extra NFE); returns (|h|, nfe)."""
        if self.first_step is not None:
            return float(self.first_step), 0
        d0 = error_norm(x, x, x, self.rtol, self.atol)
        d1 = error_norm(f0, x, x, self.rtol, self.atol)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 or not math.isfinite(d1) else 0.01 * d0 / d1
        h0 = min(h0, abs(t1 - t0))
        direction = 1.0 if t1 >= t0 else -1.0
        f1 = eval_field(field, combine(x, [(direction * h0, f0)]), t0 + direction * h0, cond)
        diff = combine(f1, [(-1.0, f0)])
        d2 = error_norm(diff, x, x, self.rtol, self.atol) / h0
        if not math.isfinite(d2) or not math.isfinite(d1):
            return max(1e-6, h0 * 1e-3), 1
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
        return min(100 * h0, h1, abs(t1 - t0)), 1

    def next_factor(self, err: float, prev_err: float, order: float) -> float:
        """Step-size ratio from the current and previous error norms (q = order − 1)."""
        q = order - 1
        beta1 = 1.0 / (q + 1) - 0.75 * self.beta2
        err = max(err, 1e-10)
        factor = self.safety * err ** (-beta1) * max(prev_err, 1e-4) ** self.beta2
        return min(self.factor_max, max(self.factor_min, factor))

    def start(self, field, x, t0, t1, solver, state, cond):
        if not solver.adaptive:
            raise InputError(f"PIController: {solver.name} gives no error estimate; use a "
                             "fixed grid (steps= or grid=)")
        if state is None:
            raise InputError(f"integrate: {solver.name} must provide its first stage from init()")
        h, nfe = self.initial_step(field, x, t0, t1, state, solver.order, cond)
        return _PIRun(self, t0, t1, h), nfe


class _PIRun(ControllerRun):
    def __init__(self, ctl: PIController, t0: float, t1: float, h: float):
        self.ctl, self.t1, self.h = ctl, t1, h
        self.grid = torch.tensor([t0, t1], dtype=torch.float64)
        self.direction = 1.0 if t1 >= t0 else -1.0
        self.tiny = 1e-12 * max(1.0, abs(t1 - t0))
        self.prev_err, self.steps, self.nonfinite = 1.0, 0, 0

    def done(self, t: float) -> bool:
        return self.direction * (self.t1 - t) <= self.tiny

    def propose(self, t: float) -> float:
        ctl = self.ctl
        if self.steps >= ctl.max_steps:
            self.failed = f"max_steps={ctl.max_steps} reached at t={t:.6g}"
        elif self.h < ctl.min_step:
            why = (f"the field returned non-finite values ({self.nonfinite} rejected steps); "
                   if self.nonfinite else "")
            self.failed = f"{why}step size {self.h:.3g} below min_step at t={t:.6g}"
        self.h = min(self.h, abs(self.t1 - t))
        if abs(self.t1 - t) - self.h <= self.tiny:
            return self.t1
        return t + self.direction * self.h

    def judge(self, x, out, solver) -> bool:
        ctl = self.ctl
        self.steps += 1
        err = ctl.error_norm(out.error, x, out.x)
        if not math.isfinite(err):
            self.nonfinite += 1
            self.h *= ctl.factor_min
            return False
        if err <= 1.0:
            self.h *= ctl.next_factor(err, self.prev_err, solver.order)
            self.prev_err = err
            return True
        self.h *= max(ctl.factor_min, ctl.safety * err ** (-1.0 / solver.order))
        return False
