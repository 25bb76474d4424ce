"""The integration loop: one sampler signature for every solver.

``integrate(field, x, solver, steps=N)`` (fixed grid), ``integrate(field, x, solver, grid=ts)``
(explicit grid), or ``integrate(field, x, Dopri5(), controller=PIController(...))`` (adaptive).
Forward (t0 < t1) and backward (t0 > t1, inversion) integration use the same code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from monge.errors import ConvergenceWarning, InputError
from monge.solvers.base import Field, Solver, SolveResult
from monge.solvers.dopri import PIController


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0) -> Tensor:
    """Uniform grid of ``steps`` steps from t0 to t1 (float64, steps + 1 points)."""
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


@torch.no_grad()
def integrate(
    field: Field,
    x: Tensor,
    solver: Solver,
    *,
    steps: int | None = None,
    grid: Sequence[float] | Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    controller: PIController | None = None,
    cond: dict[str, Any] | None = None,
    return_trajectory: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    enable_grad: bool = False,
) -> SolveResult:
    """Integrate dx/dt = field(x, t, **cond) from t0 to t1 with ``solver``.

    Exactly one time specification is needed: ``steps`` (uniform grid), ``grid`` (explicit,
    monotone times) or, for an adaptive solver, neither (then ``controller`` or a default
    ``PIController()`` chooses the steps). A fixed-step solver never defaults to one step.

    Args:
        field: velocity (or drift) ``field(x, t, **cond)`` with t of shape [B].
        x: initial state [B, ...] at t0.
        solver: a :class:`~monge.solvers.base.Solver`.
        steps, grid: time specification for fixed-step integration.
        t0, t1: start and end times (t1 < t0 integrates backward, e.g. for inversion).
        controller: step-size controller for adaptive solvers.
        cond: conditioning passed untouched to the field (e.g. ``{"y": labels}``).
        return_trajectory: keep every accepted state ([T+1, B, ...]) in the result.
        callback: called after every accepted step with a dict with keys ``x`` (new state),
            ``t`` (time reached), ``t_prev``, ``step`` (index) and ``nfe`` (total so far).
        enable_grad: keep autograd on (for training through the solver).

    Returns:
        :class:`~monge.solvers.base.SolveResult` with the final state and statistics.

    Example:
        >>> import torch
        >>> from monge.solvers import integrate, Heun
        >>> res = integrate(lambda x, t: -x, torch.ones(4, 2), Heun(), steps=10)
        >>> res.nfe
        20
    """
    cond = cond or {}
    if not isinstance(x, Tensor):
        raise InputError(f"x: expected a tensor, got {type(x).__name__}")
    if grid is not None and steps is not None:
        raise InputError("integrate: give either steps or grid, not both")
    with torch.set_grad_enabled(enable_grad):
        if grid is not None or steps is not None:
            ts = (torch.as_tensor(grid, dtype=torch.float64) if grid is not None
                  else time_grid(steps, t0, t1))
            return _integrate_fixed(field, x, solver, ts, cond, return_trajectory, callback)
        if not solver.adaptive:
            raise InputError(f"integrate: {solver.name} is a fixed-step solver; give steps= or "
                             "grid= (monge never silently takes a single step)")
        return _integrate_adaptive(field, x, solver, float(t0), float(t1),
                                   controller or PIController(), cond, return_trajectory,
                                   callback)


def _integrate_fixed(field, x, solver, ts, cond, keep, callback) -> SolveResult:
    if ts.ndim != 1 or ts.numel() < 2:
        raise InputError("grid: expected a 1-D sequence of at least two times")
    d = ts[1:] - ts[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise InputError("grid: times must be strictly monotone")
    state, nfe = solver.init(field, x, float(ts[0]), cond)
    traj = [x] if keep else None
    for i in range(ts.numel() - 1):
        t, tn = float(ts[i]), float(ts[i + 1])
        out = solver.step(field, x, t, tn, state, cond)
        x, state, nfe = out.x, out.state, nfe + out.nfe
        if keep:
            traj.append(x)
        if callback is not None:
            callback({"x": x, "t": tn, "t_prev": t, "step": i, "nfe": nfe})
    return SolveResult(x=x, nfe=nfe, n_accepted=ts.numel() - 1, n_rejected=0, times=ts,
                       trajectory=torch.stack(traj) if keep else None)


def _integrate_adaptive(field, x, solver, t0, t1, ctl: PIController, cond, keep,
                        callback) -> SolveResult:
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    state, nfe = solver.init(field, x, t0, cond)
    if state is None:
        raise InputError(f"integrate: {solver.name} must provide its first stage from init()")
    h, extra = ctl.initial_step(field, x, t0, t1, state, solver.order, cond)
    nfe += extra
    t, times, traj = t0, [t0], ([x] if keep else None)
    n_acc = n_rej = 0
    prev_err = 1.0
    converged, message = True, ""
    while direction * (t1 - t) > 1e-12 * max(1.0, span):
        if n_acc + n_rej >= ctl.max_steps:
            converged, message = False, f"max_steps={ctl.max_steps} reached at t={t:.6g}"
            break
        if h < ctl.min_step:
            converged, message = False, f"step size {h:.3g} below min_step at t={t:.6g}"
            break
        h = min(h, abs(t1 - t))
        t_next = t1 if abs(t1 - t) - h <= 1e-12 * max(1.0, span) else t + direction * h
        out = solver.step(field, x, t, t_next, state, cond)
        nfe += out.nfe
        err = ctl.error_norm(out.error, x, out.x)
        if not (err == err) or err == float("inf"):  # NaN/Inf: shrink hard
            n_rej += 1
            h *= ctl.factor_min
            state = solver.reset_after_reject(state)
            continue
        if err <= 1.0:
            n_acc += 1
            t_prev, t, x, state = t, t_next, out.x, out.state
            times.append(t)
            if keep:
                traj.append(x)
            if callback is not None:
                callback({"x": x, "t": t, "t_prev": t_prev, "step": n_acc - 1, "nfe": nfe})
            h *= ctl.next_factor(err, prev_err, solver.order)
            prev_err = err
        else:
            n_rej += 1
            h *= max(ctl.factor_min, ctl.safety * err ** (-1.0 / solver.order))
            state = solver.reset_after_reject(state)
    if not converged:
        warnings.warn(f"{solver.name}: {message}; result flagged converged=False",
                      ConvergenceWarning, stacklevel=3)
    return SolveResult(x=x, nfe=nfe, n_accepted=n_acc, n_rejected=n_rej,
                       times=torch.tensor(times, dtype=torch.float64),
                       trajectory=torch.stack(traj) if keep else None, converged=converged,
                       message=message)
