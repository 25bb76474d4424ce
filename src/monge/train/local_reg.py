"""Local regularisation of a learned field's adaptive-solver cost (one differentiated dopri5 step).

Pal, Edelman & Rackauckas (ICML 2023), "Locally Regularized Neural Differential Equations: Some
Black Boxes Were Meant to Remain Closed!". An adaptive solver's cost is set by its local error
estimates, so penalising the error estimate of *one* solver step at a random time t_r makes the
learned dynamics cheaper to integrate without differentiating through a whole solve (the global
regulariser of RegNeuralDE, Kelly et al. 2020 / Pal et al. 2021, sums it over every step):

    t_r ~ U[0, 1),  x_r = state at t_r,
    dt  = the starting step a fresh adaptive integrator picks at (x_r, t_r) (Hairer's heuristic),
    e   = dt·Σ_i (b5_i − b4_i)·k_i          (dopri5's embedded 5(4) difference, differentiated),
    EEst = sqrt(mean((e / (atol + rtol·max(|x_r|, |x_next|)))²)),
    R   = EEst · dt,       loss = task loss + λ·R.

EEst is the norm :class:`~monge.solvers.controllers.PIController` accepts or rejects steps with,
at the same rtol/atol as the inference solve (the spec's first pitfall: a different norm or
tolerance optimises a different heuristic).

In monge the task loss is simulation-free (flow matching), so the state x_r comes either from the
path (``start="interpolant"``: x_r = x_{t_r} of the training pair, no solve; an analogue the
paper does not have, biased toward the path's marginals rather than the model's own flow) or from
the model's own flow (``start="ode"``: a no-grad dopri5 solve of the model from the source
sample x0 to t_r at the same tolerances; the paper's unbiased variant). The paper's *biased*
variant (t_r drawn from the accepted step times of the task's forward solve) saves nothing here,
where training does no forward solve, so it is not offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from monge.errors import InputError
from monge.paths import ModelWrapper
from monge.paths.base import ProbabilityPath
from monge.solvers import Dopri5, PIController, integrate
from monge.solvers.base import Field
from monge.solvers.controllers import scaled_error_norm
from monge.solvers.state import State
from monge.train.losses import LossOutput

START_STATES = ("interpolant", "ode")
"""Where the regularised step starts: on the path (simulation-free) or on the model's flow."""


@dataclass
class LocalError:
    """One regularised dopri5 step.

    Attributes:
        reg: R = EEst·dt (a scalar tensor in the graph of the field's parameters).
        eest: EEst, the tolerance-scaled RMS error of the step (tensor, in the graph).
        dt: the step size taken (the initial-step heuristic's choice; a constant in the graph).
        t: the start time of the step.
        x_next: the 5th-order state at t + dt.
        nfe: field evaluations spent (1 first stage + 1 heuristic + 6 stages = 8; 7 with a
            given dt).
    """

    reg: Tensor
    eest: Tensor
    dt: float
    t: float
    x_next: State
    nfe: int


def local_error(field: Field, x: State, t: float, *, rtol: float = 1e-5, atol: float = 1e-5,
                t1: float = 1.0, cond: dict[str, Any] | None = None,
                dt: float | None = None) -> LocalError:
    """The local-regularisation term of one fresh dopri5 step from (x, t) toward t1.

    Exactly the first step :func:`monge.solvers.integrate` takes from (x, t) with
    ``Dopri5()`` and ``PIController(rtol, atol)``: the first stage k1, the controller's starting
    step (Hairer's heuristic, reused from :meth:`PIController.initial_step`, capped at
    ``t1 − t``), then one step differentiated through its 7 stages. The heuristic's step is
    evaluated without gradient, so dt is a constant for autograd (a deliberate choice: it
    keeps the step the integrator chose, as the paper's code does, without differentiating
    the heuristic's own min/max branches).

    Cost: 8 field evaluations, 7 of them (k1..k7) kept for backward.

    Args:
        field: ``field(x, t, **cond)`` with t of shape [B].
        x: the state at t (a tensor or a tuple of tensors).
        t: start time, ``t < t1``.
        rtol, atol: tolerances of the inference solve being made cheaper.
        t1: end of the integration interval (caps the step).
        cond: conditioning passed to the field.
        dt: a given step in (0, t1 − t] instead of the heuristic's (then 7 NFE); None: the
            heuristic.

    Returns:
        :class:`LocalError`.

    Example:
        >>> import torch
        >>> out = local_error(lambda x, t: torch.cos(5 * x), torch.ones(4, 2), 0.3)
        >>> out.nfe, out.dt > 0, float(out.reg) > 0
        (8, True, True)
    """
    t, t1 = float(t), float(t1)
    if not (math.isfinite(t) and math.isfinite(t1) and t < t1):
        raise InputError(f"t: the regularised step needs t < t1, got t={t}, t1={t1}")
    if dt is not None and not (isinstance(dt, int | float) and math.isfinite(dt)
                               and 0 < dt <= t1 - t):
        raise InputError(f"dt: must lie in (0, t1 - t] = (0, {t1 - t:.6g}], got {dt!r}")
    cond = cond or {}
    solver = Dopri5()
    controller = PIController(rtol=rtol, atol=atol, first_step=dt)
    k1, nfe = solver.init(field, x, torch.tensor([t, t1], dtype=torch.float64), cond)
    with torch.no_grad():
        dt, nfe_h = controller.initial_step(field, x, t, t1, k1, solver.order, cond)
    out = solver.step(field, x, t, t + dt, k1, cond)
    eest = scaled_error_norm(out.error, x, out.x, rtol, atol)
    return LocalError(reg=eest * dt, eest=eest, dt=dt, t=t, x_next=out.x,
                      nfe=nfe + nfe_h + out.nfe)


@dataclass
class LocalRegStep:
    """What the last call of :class:`LocallyRegularizedLoss` computed (floats, for logging).

    Attributes:
        reg: R = EEst·dt; eest: EEst; dt: the step; t: t_r;
        nfe: field evaluations spent on R this call (the step's 8, plus the solve to t_r for
            ``start="ode"``).
    """

    reg: float
    eest: float
    dt: float
    t: float
    nfe: int


class LocallyRegularizedLoss(nn.Module):
    """A training loss plus λ·R, the local error estimate of one differentiated dopri5 step.

    Method (Pal, Edelman & Rackauckas, ICML 2023; see the module docstring): per batch, draw
    t_r ~ U[0, 1) from the training generator (after the base loss's draws), take the state at
    t_r, and add ``weight · EEst · dt`` of one fresh dopri5 step from there
    (:func:`local_error`), with the norm and tolerances of the inference solve
    (dopri5 under ``PIController(rtol, atol)``). dt is the step the controller's starting
    heuristic picks and is a constant for autograd.

    Start states:
        - ``"interpolant"``: x_r = ``path.sample_xt(x0, x1, t_r)`` on the batch's pairs as the
          loss receives them (with a prefetched OT coupling these are already the coupled
          pairs). Simulation-free.
        - ``"ode"``: x_r is the model's own ODE state at t_r, from a no-grad dopri5 solve from
          ``path.initial_state(x0)`` at the same tolerances (the paper's unbiased sampling).

    Cost per training step, on ``reg_batch_size`` examples (default the whole batch): 8 network
    evaluations, 7 of them differentiated, so about 8× the forward/backward work of plain flow
    matching at the same batch; ``"ode"`` adds a forward-only solve from 0 to t_r (on average
    about half the model's dopri5 NFE at these tolerances). ``extra_nfe`` counts these
    evaluations since construction; ``last`` (a :class:`LocalRegStep`) holds the last call's
    R, EEst, dt, t_r and NFE.

    Class labels reach the model as ``y`` exactly when the base loss passes them (a base loss
    with ``labels.num_classes`` set), without label dropout.

    Args:
        base: the task loss, ``base(model, x0, x1, y1, generator) -> LossOutput``.
        weight: λ > 0.
        path: the path the model is trained on (for x_{t_r}, the initial state and the
            velocity conversion).
        prediction: what the network predicts (the field is
            ``ModelWrapper(model, path, prediction)``).
        rtol, atol: tolerances of the inference solve.
        start: ``"interpolant"`` or ``"ode"``.
        reg_batch_size: regularise only the first this-many examples of each batch (None: all).
        start_tol: rtol = atol of the no-grad solve to t_r for ``start="ode"`` (None: ``rtol``
            and ``atol``). The start only has to lie on the model's flow, not be accurate to
            the regulariser's tolerance, so a looser solve is a cheaper approximation.

    Returns (forward):
        the base :class:`~monge.train.losses.LossOutput` with ``loss`` replaced by
        ``loss + weight·R``; ``per_example`` and ``t`` are the base loss's.

    Example:
        >>> import torch
        >>> from monge.models import MLP
        >>> from monge.paths import LinearPath
        >>> from monge.train import FlowMatchingLoss
        >>> path = LinearPath()
        >>> loss = LocallyRegularizedLoss(FlowMatchingLoss(path), 0.1, path)
        >>> out = loss(MLP(2, hidden=16), torch.randn(8, 2), torch.randn(8, 2))
        >>> loss.extra_nfe, out.loss.ndim
        (8, 0)
    """

    def __init__(self, base: nn.Module, weight: float, path: ProbabilityPath,
                 prediction: str = "velocity", rtol: float = 1e-5, atol: float = 1e-5,
                 start: str = "interpolant", reg_batch_size: int | None = None,
                 start_tol: float | None = None):
        super().__init__()
        if not callable(base):
            raise InputError(f"base: expected a loss module, got {type(base).__name__}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                math.isfinite(weight) and weight > 0):
            raise InputError(f"local_reg: the weight must be a positive finite number, got "
                             f"{weight!r}")
        for name, tol in (("rtol", rtol), ("atol", atol)):
            if isinstance(tol, bool) or not isinstance(tol, int | float) or not (
                    math.isfinite(tol) and tol >= 0):
                raise InputError(f"{name}: must be a finite number >= 0, got {tol!r}")
        if rtol <= 0 and atol <= 0:
            raise InputError("rtol, atol: at least one must be positive")
        if start not in START_STATES:
            raise InputError(f"local_reg_start: unknown {start!r}; expected one of "
                             f"{START_STATES}")
        if reg_batch_size is not None and (isinstance(reg_batch_size, bool) or not isinstance(
                reg_batch_size, int) or reg_batch_size < 1):
            raise InputError(f"reg_batch_size: expected a positive integer or None, got "
                             f"{reg_batch_size!r}")
        if start_tol is not None and (isinstance(start_tol, bool) or not isinstance(
                start_tol, int | float) or not (math.isfinite(start_tol) and start_tol > 0)):
            raise InputError(f"start_tol: must be a positive finite number or None, got "
                             f"{start_tol!r}")
        if prediction not in path.predictions:
            raise InputError(f"prediction: {prediction!r} is not a parameterisation of "
                             f"{path.name}; expected one of {path.predictions}")
        self.base, self.weight, self.path, self.prediction = base, float(weight), path, prediction
        self.rtol, self.atol, self.start = float(rtol), float(atol), start
        self.reg_batch_size, self.start_tol = reg_batch_size, start_tol
        self.num_classes = getattr(getattr(base, "labels", None), "num_classes", None)
        self.extra_nfe = 0
        self.last: LocalRegStep | None = None

    @property
    def coupling(self) -> Any:
        """The base loss's coupling (the trainer reads and swaps it for prefetched pairs)."""
        return getattr(self.base, "coupling", None)

    @coupling.setter
    def coupling(self, value: Any) -> None:
        self.base.coupling = value

    def start_state(self, field: Field, x0: Tensor, x1: Tensor, t_r: float,
                    cond: dict[str, Any]) -> tuple[Tensor, int]:
        """The state at t_r the regularised step starts from, and the NFE it cost (no grad)."""
        with torch.no_grad():
            if self.start == "interpolant":
                t = torch.full((x1.shape[0],), t_r, dtype=x1.dtype, device=x1.device)
                return self.path.sample_xt(x0, x1, t), 0
            x = self.path.initial_state(x0)
            if t_r <= 0.0:
                return x, 0
            rtol, atol = ((self.rtol, self.atol) if self.start_tol is None
                          else (self.start_tol, self.start_tol))
            res = integrate(field, x, Dopri5(), t0=0.0, t1=t_r, cond=cond,
                            controller=PIController(rtol=rtol, atol=atol))
            return res.x, res.nfe

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None, **kwargs: Any) -> LossOutput:
        out = self.base(model, x0, x1, y1, generator, **kwargs)
        n = x0.shape[0] if self.reg_batch_size is None else min(self.reg_batch_size,
                                                                x0.shape[0])
        x0r, x1r = x0[:n], x1[:n]
        cond = {"y": y1[:n]} if self.num_classes is not None and y1 is not None else {}
        device = generator.device if generator is not None else x0.device
        t_r = float(torch.rand((), generator=generator, device=device, dtype=torch.float64))
        field = ModelWrapper(model, self.path, self.prediction)
        x_r, nfe = self.start_state(field, x0r, x1r, t_r, cond)
        step = local_error(field, x_r, t_r, rtol=self.rtol, atol=self.atol, t1=1.0, cond=cond)
        nfe += step.nfe
        self.extra_nfe += nfe
        self.last = LocalRegStep(float(step.reg.detach()), float(step.eest.detach()), step.dt,
                                 t_r, nfe)
        return LossOutput(out.loss + self.weight * step.reg, out.per_example, out.t)

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, start={self.start!r}, rtol={self.rtol}, "
                f"atol={self.atol}, reg_batch_size={self.reg_batch_size}, "
                f"start_tol={self.start_tol}")
