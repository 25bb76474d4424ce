"""The integration loop: one sampler signature and one loop for every solver and controller.

``integrate(field, x, solver, steps=N)`` (uniform grid), ``integrate(field, x, solver, grid=ts)``
(explicit grid, e.g. from :mod:`monge.solvers.grids`), or ``integrate(field, x, Dopri5())``
(adaptive; a :class:`~monge.solvers.controllers.PIController` chooses the steps). Forward
(t0 < t1) and backward (t0 > t1, inversion) integration use the same code, and the state may be a
tensor or a tuple of tensors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from monge.errors import ConvergenceWarning, InputError
from monge.solvers.base import Field, Solver, SolveResult
from monge.solvers.controllers import Controller, FixedGrid, PIController
from monge.solvers.grids import make_grid
from monge.solvers.grids import uniform_grid as time_grid
from monge.solvers.state import State, all_finite, check_state, first, stack_states


def integrate(
    field: Field,
    x: State,
    solver: Solver,
    *,
    steps: int | None = None,
    grid: Sequence[float] | Tensor | str | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    controller: Controller | None = None,
    cond: dict[str, Any] | None = None,
    return_trajectory: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    enable_grad: bool = False,
) -> SolveResult:
    """Integrate dx/dt = field(x, t, **cond) from t0 to t1 with ``solver``.

    Exactly one time specification is needed: ``steps`` (uniform grid), ``grid`` (explicit,
    monotone times), ``steps`` with a named ``grid`` (``"logsnr"``, ``"karras:7"``,
    ``"shift:3"``; see :mod:`monge.solvers.grids`) or, for an adaptive solver, neither (then
    ``controller`` or a default ``PIController()`` chooses the steps). A fixed-step solver
    never defaults to one step. A solve whose final state holds NaN/Inf is flagged
    ``converged=False`` with a message saying so.

    Args:
        field: velocity (or drift) ``field(x, t, **cond)`` with t of shape [B]; for a tuple
            state it takes and returns a tuple of the same structure.
        x: initial state at t0: a tensor [B, ...] or a tuple of tensors sharing B.
        solver: a :class:`~monge.solvers.base.Solver`.
        steps, grid: time specification for fixed-step integration (a named grid is built
            once from ``steps``, t0, t1 and the field's schedule).
        t0, t1: start and end times (t1 < t0 integrates backward, e.g. for inversion).
        controller: step-size controller (default: the grid, or ``PIController()``).
        cond: conditioning passed untouched to the field (e.g. ``{"y": labels}``).
        return_trajectory: keep every accepted state ([T+1, B, ...]) in the result.
        callback: called after every accepted step with a dict with keys ``x`` (new state),
            ``t`` (time reached), ``t_prev``, ``step`` (index), ``nfe`` (total so far) and
            ``denoised`` (the model's clean-data prediction at ``t_prev`` when the step had it,
            else None).
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
    x = check_state(x)
    if isinstance(grid, str):
        if steps is None:
            raise InputError(f"integrate: a named grid ({grid!r}) needs steps=")
        grid = make_grid(grid, steps, t0, t1, model=field, dim=first(x)[0].numel())
        steps = None
    if grid is not None and steps is not None:
        raise InputError("integrate: give either steps or grid, not both")
    for name, value in (("t0", t0), ("t1", t1)):
        if not math.isfinite(float(value)):
            raise InputError(f"{name}: must be finite, got {value}")
    if controller is None:
        if grid is not None or steps is not None:
            ts = (torch.as_tensor(grid, dtype=torch.float64) if grid is not None
                  else time_grid(steps, t0, t1))
            controller = FixedGrid(ts)
        elif solver.adaptive:
            controller = PIController()
        else:
            raise InputError(f"integrate: {solver.name} is a fixed-step solver; give steps= or "
                             "grid= (monge never silently takes a single step)")
    elif grid is not None or steps is not None:
        raise InputError("integrate: give a controller or steps/grid, not both")
    if isinstance(controller, FixedGrid):
        t0, t1 = float(controller.grid[0]), float(controller.grid[-1])
        n_steps = controller.grid.numel() - 1
        if n_steps < solver.min_steps:
            raise InputError(f"{solver.name}: a multistep method of order {solver.min_steps} "
                             f"needs at least {solver.min_steps} steps, got {n_steps}")
    elif float(t0) == float(t1):
        raise InputError(f"t0, t1: an adaptive solve needs t1 != t0, got {t0}")
    calls = getattr(field, "nfe", None)
    with torch.set_grad_enabled(enable_grad):
        res = _loop(field, x, solver, controller, float(t0), float(t1), cond,
                    return_trajectory, callback)
    if isinstance(calls, int):
        res.network_calls = field.nfe - calls
    return res


def _loop(field, x, solver: Solver, controller: Controller, t0: float, t1: float, cond, keep,
          callback) -> SolveResult:
    grid = (controller.grid if isinstance(controller, FixedGrid)
            else torch.tensor([t0, t1], dtype=torch.float64))
    state, nfe = solver.init(field, x, grid, cond)
    run, extra = controller.start(field, x, t0, t1, solver, state, cond)
    nfe += extra
    t, times, traj = t0, [t0], ([x] if keep else None)
    n_acc = n_rej = 0
    while not run.done(t):
        t_next = run.propose(t)
        if run.failed:
            break
        out = solver.step(field, x, t, t_next, state, cond)
        nfe += out.nfe
        if run.judge(x, out, solver):
            n_acc += 1
            t_prev, t, x, state = t, t_next, out.x, out.state
            times.append(t)
            if keep:
                traj.append(x)
            if callback is not None:
                callback({"x": x, "t": t, "t_prev": t_prev, "step": n_acc - 1, "nfe": nfe,
                          "denoised": out.denoised})
        else:
            n_rej += 1
            state = solver.reset_after_reject(state)
    converged, message = not run.failed, run.failed
    if converged and not all_finite(x):
        converged, message = False, "the final state holds NaN or Inf values"
    if not converged:
        warnings.warn(f"{solver.name}: {message}; result flagged converged=False",
                      ConvergenceWarning, stacklevel=3)
    return SolveResult(x=x, nfe=nfe, n_accepted=n_acc, n_rejected=n_rej,
                       times=torch.tensor(times, dtype=torch.float64),
                       trajectory=stack_states(traj) if keep else None, converged=converged,
                       message=message)
