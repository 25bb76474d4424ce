"""One posterior-sampling template for linear inverse problems y = A x + σ_y·n over any monge
model, affine path and solver, with DPS, ΠGDM, FlowChef, D-Flow, hard replacement and FLAIR
(:mod:`monge.inverse.flair`) as instances.

A method is four choices (the table below), run by one of three loops:

- **guided ODE** (:class:`LikelihoodGuidance`: ΠGDM) -- a velocity modification. The model
  is wrapped so that its velocity becomes the PF-ODE velocity of the conditional marginals,
  u(x, t) + σ²λ̇·∇ₓ log p̂(y | x_t) (on an affine path u = (α̇/α)x + σ²λ̇·∇log p_t, so a score
  term s becomes σ²λ̇·s in the velocity; λ = log α/σ), and any monge solver integrates it
  through :func:`monge.solvers.integrate`. Each guided evaluation is one network call plus one
  vector-Jacobian product through the network.
- **corrected steps** (:class:`StepCorrection`: DPS, FlowChef, replace) -- a modification of the
  state after each step. The start-of-step prediction (u, x̂1) comes from one network call, the
  solver step reuses it (no second call for single-call solvers such as Euler and DDIM), and the
  method then moves the new state using x̂1: DPS back-propagates through that call, FlowChef and
  replace never differentiate the network.
- **own loops**: D-Flow optimises the initial noise through a differentiable monge ODE solve;
  FLAIR optimises a point estimate with its own variational loop (no ODE).

| method | x̂1 estimate | covariance of x1 given x_t | state update | projection |
|---|---|---|---|---|
| DPS | network, with its Jacobian | 0 (point estimate) | − ζ_i ∇ₓ‖y − A x̂1‖² after a step | none |
| ΠGDM | network, with its Jacobian | r_t² I | + σ²λ̇·Jᵀ Aᵀ (r_t² AAᵀ + σ_y² I)⁻¹ (y − A x̂1) | none |
| FlowChef | network, Jacobian dropped | 0 | − η ∇ₓ‖A x̂1 − y‖² at frozen velocity | none |
| replace | network | 0 | DDIM re-noise of the projected x̂1 | x̂1 + A⁺(y − A x̂1) |
| D-Flow | the ODE solution Φ(x0) | exact (the flow map) | Adam on x0 through Φ | none |
| FLAIR | network at a noised μ | point mass at μ | score-distillation step | data loop |

Time runs from t = 0 (noise) to t = 1 (data) as everywhere in monge; the FlowChef and FLAIR
papers run it the other way (t = 1 noise), converted here as in ``DESIGN.md`` (t_monge = 1 − t).
Accounting: ``nfe`` counts network forward calls (the model wrapper's counter),
``gradient_calls`` counts vector-Jacobian products through the network (backward passes), and
``cost = nfe + gradient_calls``.

References: Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy
Inverse Problems", ICLR 2023 (DPS); Song, Vahdat, Mardani, Kautz, "Pseudoinverse-Guided Diffusion
Models for Inverse Problems", ICLR 2023 (ΠGDM); Patel, Wen, Metaxas, Yang, "Steering Rectified
Flow Models in the Vector Field for Controlled Image Generation", arXiv 2412.00100 (FlowChef);
Ben-Hamu, Puny, Gat, Karrer, Singer, Lipman, "D-Flow: Differentiating through Flows for
Controlled Generation", ICML 2024 (D-Flow); Wang, Yu, Zhang, "Zero-Shot Image Restoration Using
Denoising Diffusion Null-Space Model", ICLR 2023 (projection of x̂1, the replacement baseline);
Erbach et al., "Solving Inverse Problems with FLAIR", arXiv 2506.02680 (FLAIR).
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from monge.core.checks import check_finite, make_generator
from monge.core.registry import Registry
from monge.errors import InputError
from monge.inverse.operators import LinearOperator, Mask, check_sigma_y
from monge.paths.model import ModelWrapper
from monge.solvers import Solver, integrate, make_solver
from monge.solvers.grids import uniform_grid

# ---------------------------------------------------------------------------------------------
# The problem

_DENSE_LIMIT = 4096


class InverseProblem:
    """A linear Gaussian observation y = A x + σ_y·n and the algebra every method needs.

    Args:
        operator: the degradation operator A.
        y: ``[*output_shape]`` (one observation, shared by all samples) or
            ``[B, *output_shape]`` (one per sample).
        sigma_y: observation noise std (≥ 0).
        where: the caller's name, for error messages.
    """

    def __init__(self, operator: LinearOperator, y: Tensor, sigma_y: float,
                 where: str = "posterior_sample"):
        if not isinstance(operator, LinearOperator):
            raise InputError(f"{where}: operator must be a monge.inverse LinearOperator, got "
                             f"{type(operator).__name__}")
        self.sigma_y = check_sigma_y(sigma_y, where)
        if not isinstance(y, Tensor) or not torch.is_floating_point(y):
            got = y.dtype if isinstance(y, Tensor) else type(y).__name__
            raise InputError(f"{where}: y must be a floating-point tensor, got {got}")
        out = tuple(operator.output_shape)
        if tuple(y.shape) == out:
            y = y[None]
        elif not (y.ndim == len(out) + 1 and tuple(y.shape[1:]) == out):
            raise InputError(f"{where}: y must have shape {list(out)} or [B, "
                             f"{', '.join(map(str, out))}] for {type(operator).__name__}, got "
                             f"{tuple(y.shape)}")
        check_finite(y, f"{where}: y")
        self.operator, self.y = operator, y
        self._eig: tuple[Tensor, Tensor] | None = None
        self._norm2: float | None = None
        self.dense = operator.output_dim <= _DENSE_LIMIT
        """True when A Aᵀ is small enough (m ≤ 4096) to be formed and eigen-decomposed."""

    @property
    def batch(self) -> int:
        """Number of observations (1: one observation shared by every sample)."""
        return self.y.shape[0]

    @property
    def n_measurements(self) -> int:
        """Observed entries per sample (a mask's rows of zeros are not measurements)."""
        op = self.operator
        return op.n_observed if isinstance(op, Mask) else op.output_dim

    def forward(self, x: Tensor) -> Tensor:
        """A x."""
        return self.operator.forward(x)

    def residual(self, x: Tensor) -> Tensor:
        """A x − y ``[B, *output_shape]``."""
        return self.operator.forward(x) - self.y.to(x.dtype)

    def consistency(self, x: Tensor) -> Tensor:
        """‖A x − y‖ per sample ``[B]``."""
        return self.residual(x).reshape(x.shape[0], -1).norm(dim=1)

    def y_like(self, x: Tensor) -> Tensor:
        """y expanded to x's batch ``[B, *output_shape]``."""
        return self.y.to(x.dtype).expand(x.shape[0], *self.y.shape[1:])

    def project(self, x: Tensor) -> Tensor:
        """x + A⁺(y − A x): the nearest point with A x = y (for an exact pseudo-inverse)."""
        return x + self.operator.pinv(self.y_like(x) - self.operator.forward(x))

    def _gram_eig(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Eigen-decomposition of A Aᵀ ``[m, m]`` (built once from m adjoint/forward calls)."""
        if self._eig is None:
            op, m = self.operator, self.operator.output_dim
            basis = torch.eye(m, dtype=torch.float64, device=like.device)
            gram = op.forward(op.adjoint(basis.reshape(m, *op.output_shape))).reshape(m, m)
            vals, vecs = torch.linalg.eigh(0.5 * (gram + gram.T))
            self._eig = (vals.clamp_min(0.0), vecs)
        vals, vecs = self._eig
        return vals.to(like.dtype), vecs.to(like.dtype)

    def operator_norm2(self, like: Tensor) -> float:
        """‖A‖² (largest eigenvalue of A Aᵀ; 100 power iterations on AᵀA when m is large)."""
        if self._norm2 is None:
            if self.dense:
                self._norm2 = float(self._gram_eig(like)[0].max())
            else:
                op = self.operator
                g = torch.Generator(device=like.device).manual_seed(0)
                v = torch.randn((1, *op.input_shape), generator=g, dtype=like.dtype,
                                device=like.device)
                for _ in range(100):
                    w = op.adjoint(op.forward(v))
                    self._norm2 = float(w.norm() / v.norm())
                    v = w / w.norm()
        return self._norm2

    def gram_solve(self, e: Tensor, r2: Tensor) -> Tensor:
        """(r² A Aᵀ + σ_y² I)⁻¹ e per sample (r2 ``[B]``), restricted to where the matrix is
        non-zero (a pseudo-inverse: eigen-directions with r²λ + σ_y² = 0 get weight 0).
        Exact through the eigen-decomposition of A Aᵀ when m ≤ 4096, else conjugate gradients
        (at most 100 iterations, relative residual 1e-8) with A Aᵀ applied matrix-free."""
        if not self.dense:
            return self._gram_cg(e, r2)
        vals, vecs = self._gram_eig(e)
        flat = e.reshape(e.shape[0], -1)
        denom = r2.to(e.dtype)[:, None] * vals[None] + self.sigma_y**2
        inv = torch.where(denom > 0, 1.0 / denom.clamp_min(torch.finfo(e.dtype).tiny), 0.0)
        return (((flat @ vecs) * inv) @ vecs.T).reshape(e.shape)

    def _gram_cg(self, e: Tensor, r2: Tensor) -> Tensor:
        op, sigma2 = self.operator, self.sigma_y**2
        scale = _per_sample(r2, e)

        def apply(v: Tensor) -> Tensor:
            return scale * op.forward(op.adjoint(v)) + sigma2 * v

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).reshape(a.shape[0], -1).sum(1)

        x = torch.zeros_like(e)
        r = e.clone()
        p = r.clone()
        rs = dot(r, r)
        target = 1e-16 * rs.clamp_min(torch.finfo(e.dtype).tiny)
        for _ in range(100):
            if bool((rs <= target).all()):
                break
            ap = apply(p)
            alpha = rs / dot(p, ap).clamp_min(torch.finfo(e.dtype).tiny)
            x = x + _per_sample(alpha, e) * p
            r = r - _per_sample(alpha, e) * ap
            rs_new = dot(r, r)
            p = r + _per_sample(rs_new / rs.clamp_min(torch.finfo(e.dtype).tiny), e) * p
            rs = rs_new
        return x


# ---------------------------------------------------------------------------------------------
# Schedule helpers


def _check_model(model: Any, where: str) -> Any:
    """The model wrapper and its affine path (x_t = α x1 + σ ε with exact conversions)."""
    path = getattr(model, "path", None)
    if not (isinstance(model, ModelWrapper) and path is not None):
        raise InputError(f"{where}: model must be a monge.paths.ModelWrapper (posterior "
                         f"sampling needs x̂1 through its path's conversions), got "
                         f"{type(model).__name__}")
    view = path.marginal_schedule()
    if view is not path or "x1" not in path.predictions or "epsilon" not in path.predictions:
        raise InputError(f"{where}: the model's path ({path!r}) must be an affine path "
                         "x_t = α·x1 + σ·ε (linear, VP, VE, EDM, ...)")
    return path


def _coefficients(path: Any, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(α, σ, α̇, σ̇) at times t [B] in float64."""
    t64 = t.to(torch.float64)
    return path.alpha(t64), path.sigma(t64), path.d_alpha(t64), path.d_sigma(t64)


def score_to_velocity_coefficient(path: Any, t: Tensor) -> Tensor:
    """σ²·λ̇ = σ²(α̇/α − σ̇/σ) at times t [B] (float64): on an affine path a score term s adds
    σ²λ̇·s to the velocity. Zero where α = 0, where x_t carries no information about x1 (so the
    likelihood p(y | x_t) does not depend on x_t). Evaluated at t ≤ 1 − 1e-9, the one-sided
    limit at the data end (σ̇ = −∞ there on a VP path, while σ·σ̇ stays finite)."""
    a, s, da, ds = _coefficients(path, t.to(torch.float64).clamp(max=1.0 - 1e-9))
    safe = torch.where(a > 0, a, torch.ones_like(a))
    return torch.where(a > 0, s * (da * s / safe - ds), torch.zeros_like(a))


_T_INSIDE = 1e-4
"""Time at which guidance is evaluated in place of a time where α = 0 (the limit is finite)."""


def _batch(x: Tensor, t: float | Tensor) -> Tensor:
    if isinstance(t, Tensor) and t.ndim == 1:
        return t.to(dtype=x.dtype, device=x.device)
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """A [B] tensor shaped to broadcast against x [B, ...]."""
    return v.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


# ---------------------------------------------------------------------------------------------
# Results and context


@dataclass
class PosteriorResult:
    """The outcome of :func:`posterior_sample`.

    Attributes:
        x: ``[B, *input_shape]`` the samples (detached).
        method: the method's registry name.
        nfe: network forward calls (the model wrapper's counter).
        gradient_calls: vector-Jacobian products through the network (backward passes).
        seconds: wall time of the call.
        consistency: ``[B]`` ‖A x − y‖ per sample (compare with σ_y·√m).
        steps: time steps of the sampler (FLAIR: regulariser steps; D-Flow: steps of one ODE
            solve).
        info: method-specific figures (e.g. D-Flow's loss history, FLAIR's data steps).
    """

    x: Tensor
    method: str
    nfe: int
    gradient_calls: int
    seconds: float
    consistency: Tensor
    steps: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        """Forward-equivalent network passes: nfe + gradient_calls."""
        return self.nfe + self.gradient_calls


@dataclass
class PosteriorContext:
    """What a method sees: the model, problem, solver, time grid and counters.

    Attributes:
        model: the model wrapper (velocity via ``model(x, t)``, x̂1 via ``predict``).
        path: its affine path.
        problem: the observation.
        solver: the monge solver (None for methods without an ODE).
        grid: float64 time grid from t = 0 (noise) to t = 1 (data) unless given otherwise.
        cond: conditioning passed untouched to the model.
        generator: the random source (after the initial noise was drawn).
        gradient_calls: VJPs through the network so far (methods add to it).
        info: method-specific figures copied into the result.
    """

    model: ModelWrapper
    path: Any
    problem: InverseProblem
    solver: Solver | None
    grid: Tensor
    cond: dict[str, Any]
    generator: torch.Generator
    gradient_calls: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, kinds: Sequence[str], x: Tensor, t: float | Tensor
                ) -> tuple[Tensor, ...]:
        """Predictions of ``kinds`` at (x, t) from one network call."""
        out = self.model.predict(tuple(kinds), x, _batch(x, t), **self.cond)
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# The method protocol and registry


class PosteriorMethod(ABC):
    """One posterior-sampling method: a choice of x̂1 estimate, covariance approximation, state
    update and data-consistency projection (module docstring), run on a
    :class:`PosteriorContext`.

    Subclasses set ``name``, ``default_solver`` (None: the method integrates no ODE) and
    ``network_gradient`` (True when it back-propagates through the network), and implement
    :meth:`run`.
    """

    name: ClassVar[str] = "method"
    default_solver: ClassVar[str | None] = "euler"
    network_gradient: ClassVar[bool] = False

    def covariance(self, ctx: PosteriorContext, t: Tensor) -> Tensor:
        """r_t² with Cov[x1 | x_t] ≈ r_t²·I at times t [B] (0: a point estimate)."""
        return torch.zeros_like(t, dtype=torch.float64)

    @abstractmethod
    def run(self, ctx: PosteriorContext, x: Tensor) -> Tensor:
        """Samples ``[B, *input_shape]`` from the initial noise x (t = grid[0])."""

    def time_grid(self, steps: int | None, grid: Sequence[float] | Tensor | None) -> Tensor:
        """The float64 time grid from ``steps`` (uniform on [0, 1]) or an explicit ``grid``."""
        return _time_grid(steps, grid)

    def steps_of(self, grid: Tensor) -> int:
        """Number of steps the method takes on ``grid``."""
        return grid.numel() - 1


POSTERIOR_METHODS: Registry[PosteriorMethod] = Registry("posterior method")
"""The posterior-sampling methods :func:`posterior_sample` accepts by name."""


def make_posterior_method(name: str, **options: Any) -> PosteriorMethod:
    """Build a registered method by name (``POSTERIOR_METHODS.names()``) with its options; an
    unknown option is one :class:`~monge.errors.InputError` naming it."""
    if not isinstance(name, str):
        raise InputError(f"posterior method: name must be a string, got {type(name).__name__}")
    entry = POSTERIOR_METHODS.entry(name)
    factory = entry.factory
    fields = {f.name for f in dataclasses.fields(factory)} if dataclasses.is_dataclass(
        factory) else set()
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise InputError(f"{entry.name}: unknown option(s) {unknown}; expected some of "
                         f"{sorted(fields)}")
    return factory(**options)


def _positive(value: Any, what: str, *, allow_zero: bool = False, integer: bool = False
              ) -> None:
    ok_type = (isinstance(value, int) if integer else isinstance(value, int | float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or (
            value < 0 if allow_zero else value <= 0):
        kind = "an int" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{what}: must be {kind} {bound}, got {value!r}")


def _fraction(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InputError(f"{what}: must be a number in [0, 1], got {value!r}")


def _choice(value: Any, what: str, options: Sequence[str]) -> None:
    if value not in options:
        raise InputError(f"{what}: must be one of {list(options)}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Guided ODE: ΠGDM


class _GuidedModel(ModelWrapper):
    """The model with its velocity replaced by u + σ²λ̇·∇ₓ log p̂(y | x_t) (a velocity
    modification, so every monge solver integrates it). One inner network call and, where the
    guidance is non-zero, one VJP through the network per evaluation."""

    def __init__(self, model: ModelWrapper, method: LikelihoodGuidance, ctx: PosteriorContext):
        super().__init__(model, model.path, "velocity", t_clamp=0.0)
        self.method, self.ctx = method, ctx

    def network_output(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        self.nfe += 1
        ctx, problem = self.ctx, self.ctx.problem
        if self.method.is_off():
            return self.network.predict("velocity", x, t, **cond)
        # Where α = 0 the likelihood gradient vanishes but σ²λ̇ is infinite; their product has
        # the finite limit (α̇ − ασ̇/σ)·Cov[x1]·Aᵀ W (y − A x̂1), so evaluate just inside
        # (zeroing it instead costs the guided ODE its order: a first-order error at t = 0).
        alpha = _coefficients(ctx.path, t)[0]
        t = torch.where(alpha > 0, t, t.clamp(min=_T_INSIDE))
        coef = score_to_velocity_coefficient(ctx.path, t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            u, x1 = self.network.predict(("velocity", "x1"), xg, t, **cond)
            if not bool((coef != 0).any()):
                return u.detach()
            e = problem.y_like(x1) - problem.forward(x1)                # y − A x̂1
            w = self.method.weigh(ctx, e.detach(), t)                   # W_t (y − A x̂1)
            (g,) = torch.autograd.grad(x1, xg, grad_outputs=problem.operator.adjoint(w))
        ctx.gradient_calls += 1
        return (u + _per_sample(coef, u) * g).detach()


class LikelihoodGuidance(PosteriorMethod):
    """Base of ΠGDM-type guidance: integrate the PF-ODE of p(x_t | y) with the likelihood score
    ∇ₓ log p̂(y | x_t) = Jᵀ Aᵀ W_t (y − A x̂1(x_t)), J = ∂x̂1/∂x_t through the network.

    Subclasses give W_t (:meth:`weigh`). Cost per solver evaluation: one network call + one VJP.
    """

    network_gradient = True

    @abstractmethod
    def weigh(self, ctx: PosteriorContext, e: Tensor, t: Tensor) -> Tensor:
        """W_t e for residuals e = y − A x̂1 ``[B, *output_shape]`` at times t [B]."""

    def is_off(self) -> bool:
        """True when the guidance is identically zero (no VJP is then spent)."""
        return False

    def run(self, ctx: PosteriorContext, x: Tensor) -> Tensor:
        guided = _GuidedModel(ctx.model, self, ctx)
        res = integrate(guided, x, ctx.solver, grid=ctx.grid, cond=ctx.cond)
        ctx.info["converged"] = res.converged
        return res.x


@POSTERIOR_METHODS.register("pigdm", aliases=("pgdm",), description="pseudo-inverse guidance: "
                            "likelihood with covariance r_t² AAᵀ + σ_y² I, VJP through the "
                            "network")
@dataclass
class PiGDM(LikelihoodGuidance):
    """Pseudoinverse-guided diffusion (ΠGDM; Song, Vahdat, Mardani & Kautz, ICLR 2023).

    p(x1 | x_t) ≈ N(x̂1, r_t² I), so p(y | x_t) ≈ N(A x̂1, r_t² AAᵀ + σ_y² I) and the
    likelihood score is Jᵀ Aᵀ (r_t² AAᵀ + σ_y² I)⁻¹ (y − A x̂1), a vector-Jacobian product through
    the network. r_t² = v σ²/(α² v + σ²) is the posterior variance of x1 given x_t for a prior
    N(·, v I) (the paper's σ_t²/(1 + σ_t²) for v = 1 on a VP path). For a single isotropic
    Gaussian prior with variance v the approximation is exact, so the guided ODE samples the
    exact posterior up to discretisation error (a test checks the exact transport map and
    Heun's second order). (r_t² AAᵀ + σ_y² I)⁻¹ is applied through the eigen-decomposition of
    A Aᵀ, built once (conjugate gradients when m > 4096). Simplification: the paper adds the
    guidance to DDIM/DDPM updates with its own step weights; here it enters the deterministic
    PF-ODE through the exact score-to-velocity factor σ²λ̇, so any monge solver integrates it.

    Args:
        data_variance: v, the per-coordinate variance assumed for x1 (1 for standardised data).
        weight: multiplier of the guidance term (1: the paper's).
    """

    data_variance: float = 1.0
    weight: float = 1.0
    name: ClassVar[str] = "pigdm"

    def __post_init__(self) -> None:
        _positive(self.data_variance, "pigdm: data_variance")
        _positive(self.weight, "pigdm: weight", allow_zero=True)

    def covariance(self, ctx: PosteriorContext, t: Tensor) -> Tensor:
        a, s, _, _ = _coefficients(ctx.path, t)
        v = float(self.data_variance)
        return v * s**2 / (a**2 * v + s**2)

    def is_off(self) -> bool:
        return self.weight == 0

    def weigh(self, ctx: PosteriorContext, e: Tensor, t: Tensor) -> Tensor:
        return self.weight * ctx.problem.gram_solve(e, self.covariance(ctx, t))


# ---------------------------------------------------------------------------------------------
# Corrected steps: DPS, FlowChef and hard replacement


class _StartOfStep:
    """A field that answers the step's first evaluation (at the step's start state and time)
    from predictions already made, and calls the model for any other point. So a solver step
    costs no extra network call for the estimate the correction needs."""

    def __init__(self, model: ModelWrapper):
        self.model, self.path = model, model.path
        self._x: Tensor | None = None
        self._t: float | None = None
        self._raw: Tensor | None = None

    def remember(self, x: Tensor, t: float, raw: Tensor) -> None:
        self._x, self._t, self._raw = x, t, raw

    def predict(self, kind: str | Sequence[str], x: Tensor, t: Tensor, **cond: Any):
        hit = (x is self._x and t.ndim == 1 and t.shape[0] == x.shape[0]
               and bool((t == _batch(x, self._t)).all()))
        if not hit:
            return self.model.predict(kind, x, t, **cond)
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        tc = _clamped(self.model, t)
        preds = tuple(self.path.convert(self._raw, self.model.prediction, k, x, tc)
                      for k in kinds)
        return preds[0] if isinstance(kind, str) else preds

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.predict("velocity", x, t, **cond)


def _clamped(model: ModelWrapper, t: Tensor) -> Tensor:
    return t.clamp(model.t_clamp, 1.0 - model.t_clamp) if model.t_clamp > 0 else t


class StepCorrection(PosteriorMethod):
    """Base of DPS, FlowChef and hard replacement: a monge solver step, then a correction of the
    new state computed from the start-of-step estimate (u, x̂1).

    Loop, per step t → t': one network call at (x, t) gives the raw prediction; the solver step
    reuses it for its first evaluation; ``x' ← correct(ctx, x, step(x), raw, t, t')``. With
    ``network_gradient`` (DPS) the call is made with autograd on, so ``raw`` carries the graph
    from x through the network and ``correct`` may back-propagate through it.
    """

    @abstractmethod
    def correct(self, ctx: PosteriorContext, x: Tensor, x_next: Tensor, raw: Tensor,
                t: float, t_next: float, index: int) -> Tensor:
        """The corrected state at t' (``x_next`` is the solver's)."""

    def run(self, ctx: PosteriorContext, x: Tensor) -> Tensor:
        model, solver = ctx.model, ctx.solver
        field = _StartOfStep(model)
        ts = [float(v) for v in ctx.grid]
        with torch.no_grad():
            state, _ = solver.init(field, x, ctx.grid, ctx.cond)
            for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
                tb = _batch(x, t)
                if self.network_gradient:               # keep the graph from x through the net
                    with torch.enable_grad():
                        x = x.detach().requires_grad_(True)
                        raw = model.network_output(x, _clamped(model, tb), **ctx.cond)
                else:
                    raw = model.network_output(x, _clamped(model, tb), **ctx.cond)
                field.remember(x, t, raw.detach())
                out = solver.step(field, x, t, t_next, state, ctx.cond)
                state = out.state
                x = self.correct(ctx, x, out.x.detach(), raw, t, t_next, i).detach()
        return x

    @staticmethod
    def convert(ctx: PosteriorContext, raw: Tensor, kind: str, x: Tensor, t: float) -> Tensor:
        """The start-of-step prediction ``raw`` as ``kind`` at (x, t) (no network call)."""
        tc = _clamped(ctx.model, _batch(x, t))
        return ctx.path.convert(raw, ctx.model.prediction, kind, x, tc)


@POSTERIOR_METHODS.register("dps", description="diffusion posterior sampling: the gradient of "
                            "‖y − A x̂1(x_t)‖² through the network after each step")
@dataclass
class DPS(StepCorrection):
    """Diffusion posterior sampling (Chung, Kim, Mccann, Klasky & Ye, ICLR 2023, Algorithm 1).

    p(y | x_t) ≈ p(y | x̂1(x_t)) (a point estimate: covariance 0). After each solver step from
    x_i, x_{i+1} ← x_{i+1} − ζ_i ∇_{x_i}‖y − A x̂1(x_i)‖², the gradient back-propagated through
    the network (J = ∂x̂1/∂x_t in full) from the same network call the step used, with
    ζ_i = ζ/‖y − A x̂1(x_i)‖ per sample (the paper's normalised step, Appendix C) or ζ_i = ζ.
    Simplification: the paper steps with DDPM's ancestral sampler; here any monge ODE solver
    (DDIM/Euler), as in the DDIM variants of DPS. ζ is per step, as in the paper, so the total
    push grows with the number of steps. One network call and one VJP per step; ζ = 0 is the
    unconditioned sampler (no VJP spent).

    Note: the Bayesian weighting ζ_i = h·σ²λ̇/(2σ_y²) without normalisation would put DPS on
    the conditional PF-ODE, but with covariance 0 it over-weights the likelihood at the noise
    end and drives states far off the prior (measured on the 2-D mixture); ΠGDM is that ODE
    with the covariance r_t² that cures it.

    Args:
        step_size: ζ (≥ 0). With ``normalize`` every step has a fixed length, so the final
            residual ‖A x − y‖ settles near ζ: choose ζ of the order of σ_y·√m.
        normalize: divide ζ by ‖y − A x̂1‖ per sample (the paper's choice).
    """

    step_size: float = 0.05
    normalize: bool = True
    name: ClassVar[str] = "dps"
    network_gradient: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _positive(self.step_size, "dps: step_size", allow_zero=True)
        if not isinstance(self.normalize, bool):
            raise InputError(f"dps: normalize must be a bool, got {self.normalize!r}")

    def correct(self, ctx: PosteriorContext, x: Tensor, x_next: Tensor, raw: Tensor,
                t: float, t_next: float, index: int) -> Tensor:
        if self.step_size == 0:
            return x_next
        problem = ctx.problem
        with torch.enable_grad():
            x1 = self.convert(ctx, raw, "x1", x, t)
            sq = problem.residual(x1).reshape(x.shape[0], -1).pow(2).sum(1)
            (g,) = torch.autograd.grad(sq.sum(), x)
        ctx.gradient_calls += 1
        zeta = torch.full_like(sq, float(self.step_size)).detach()
        if self.normalize:
            zeta = zeta / sq.detach().sqrt().clamp_min(torch.finfo(sq.dtype).tiny)
        return x_next - _per_sample(zeta, x) * g


@POSTERIOR_METHODS.register("flowchef", description="gradient-free steering: the state moved "
                            "by the task-loss gradient on x̂1 at a frozen velocity")
@dataclass
class FlowChef(StepCorrection):
    """FlowChef (Patel, Wen, Metaxas & Yang, arXiv 2412.00100): steer the sampling trajectory
    with the gradient of the task loss L = ‖A x̂1 − y‖² at the clean estimate, never
    back-propagating through the network.

    Gradient skipping: the exact guidance gradient is (∂x̂1/∂x_t)ᵀ ∇L, with ∂x̂1/∂x_t depending
    on the network's Jacobian; FlowChef freezes the velocity (computed once, without gradients),
    so x̂1(x) = convert(u_frozen, x, t) and ∂x̂1/∂x = κ(t)·I exactly (κ = −σ̇/(α̇σ − ασ̇), 1 on the
    linear path as in the paper). Per steered step: ``iterations`` gradient steps
    x ← x − η ∇ₓ L(x̂1(x)) at the frozen u, then the solver step from the uncorrected state,
    shifted by the correction (for Euler exactly the paper's x' = x_corr + h·u with the
    pre-correction velocity). Steering stops after the first ``steer_until`` share of the steps.
    One network call per step, no VJP.

    Args:
        step_size: η·2‖A‖², i.e. the learning rate normalised by the operator norm (1: one
            step puts A x̂1 on y for an operator with orthonormal rows).
        iterations: gradient steps per steered time step (the paper: 1 in pixel space).
        steer_until: share of the time steps that are steered (the paper's ``max_steps``).
    """

    step_size: float = 0.5
    iterations: int = 1
    steer_until: float = 1.0
    name: ClassVar[str] = "flowchef"

    def __post_init__(self) -> None:
        _positive(self.step_size, "flowchef: step_size", allow_zero=True)
        _positive(self.iterations, "flowchef: iterations", integer=True)
        _fraction(self.steer_until, "flowchef: steer_until")

    def correct(self, ctx: PosteriorContext, x: Tensor, x_next: Tensor, raw: Tensor,
                t: float, t_next: float, index: int) -> Tensor:
        n_steps = ctx.grid.numel() - 1
        if index >= round(self.steer_until * n_steps) or self.step_size == 0:
            return x_next
        problem = ctx.problem
        lr = self.step_size / (2.0 * problem.operator_norm2(x))
        u = self.convert(ctx, raw, "velocity", x, t)       # frozen: no gradient to the network
        tc = _clamped(ctx.model, _batch(x, t))
        xc = x
        for _ in range(self.iterations):
            with torch.enable_grad():
                xg = xc.detach().requires_grad_(True)
                x1 = ctx.path.convert(u, "velocity", "x1", xg, tc)
                loss = problem.residual(x1).pow(2).sum()
                (g,) = torch.autograd.grad(loss, xg)
            xc = xc - lr * g
        ctx.info["steered_steps"] = ctx.info.get("steered_steps", 0) + 1
        return x_next + (xc - x)


@POSTERIOR_METHODS.register("replace", description="naive baseline: project x̂1 onto A x = y "
                            "and re-noise each step")
@dataclass
class Replace(StepCorrection):
    """Hard data consistency, the naive baseline: after each step the clean estimate is
    projected, x̂1 ← x̂1 + A⁺(y − A x̂1) (observed coordinates replaced for a mask), and the state
    is re-noised from it.

    ``renoise="model"``: deterministic DDIM re-noising with the model's own noise estimate,
    x' = α' (x̂1 + A⁺(y − A x̂1)) + σ' ε̂, implemented as the solver step plus
    α'·A⁺(y − A x̂1) (identical for DDIM, and for Euler on the linear path, where DDIM and Euler
    coincide; the null-space projection of Wang et al., ICLR 2023). ``"fresh"``:
    x' = α' x̂1_proj + σ' z with fresh noise z (the solver step is discarded). σ_y is ignored (the
    observation is trusted exactly), so the last step returns A x = y.

    Args:
        renoise: ``"model"`` or ``"fresh"``.
    """

    renoise: str = "model"
    name: ClassVar[str] = "replace"

    def __post_init__(self) -> None:
        _choice(self.renoise, "replace: renoise", ("model", "fresh"))

    def correct(self, ctx: PosteriorContext, x: Tensor, x_next: Tensor, raw: Tensor,
                t: float, t_next: float, index: int) -> Tensor:
        problem = ctx.problem
        x1 = self.convert(ctx, raw, "x1", x, t)
        fix = problem.operator.pinv(problem.y_like(x1) - problem.forward(x1))
        a2, s2, _, _ = _coefficients(ctx.path, _batch(x, t_next))
        a2, s2 = _per_sample(a2, x), _per_sample(s2, x)
        if self.renoise == "model":
            return x_next + a2 * fix
        z = torch.randn(x.shape, generator=ctx.generator, dtype=x.dtype, device=x.device)
        return a2 * (x1 + fix) + s2 * z


# ---------------------------------------------------------------------------------------------
# D-Flow


@POSTERIOR_METHODS.register("dflow", aliases=("d-flow",), description="optimise the initial "
                            "noise through the differentiable ODE solve")
@dataclass
class DFlow(PosteriorMethod):
    """D-Flow (Ben-Hamu et al., ICML 2024): optimise the source noise x0 so that the ODE solution
    Φ(x0) (a monge solve on the template's grid, differentiated by autograd) fits the data:
    min_x0 ‖A Φ(x0) − y‖² + reg·R(x0).

    R = ``"chi"``: −log χ_d(‖x0‖) = ½‖x0‖² − (d − 1) log‖x0‖, which keeps ‖x0‖ on the shell of
    typical noise (the paper's regulariser); ``"gaussian"``: ½‖x0‖² (then reg = 2σ_y² makes
    the objective the negative log posterior of x0); ``"none"``. The flow itself is the implicit
    prior the paper relies on. Simplification: Adam instead of the paper's L-BFGS (a fixed cost
    per iteration, so the accounting below is exact). Cost: each iteration is one forward solve
    (steps × solver NFE network calls) and one backward pass through it (as many VJPs), plus a
    final solve; all are counted in the result.

    Args:
        iterations: optimiser steps.
        lr: Adam learning rate.
        regulariser: ``"chi"``, ``"gaussian"`` or ``"none"``.
        reg: weight of the regulariser.
    """

    iterations: int = 50
    lr: float = 0.2
    regulariser: str = "chi"
    reg: float = 0.1
    name: ClassVar[str] = "dflow"
    network_gradient: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _positive(self.iterations, "dflow: iterations", integer=True, allow_zero=True)
        _positive(self.lr, "dflow: lr")
        _choice(self.regulariser, "dflow: regulariser", ("chi", "gaussian", "none"))
        _positive(self.reg, "dflow: reg", allow_zero=True)

    def _penalty(self, z: Tensor) -> Tensor:
        if self.regulariser == "none" or self.reg == 0:
            return z.new_zeros(())
        sq = z.reshape(z.shape[0], -1).pow(2).sum(1)
        if self.regulariser == "gaussian":
            return self.reg * 0.5 * sq.sum()
        d = z[0].numel()
        return self.reg * (0.5 * sq - 0.5 * (d - 1) * torch.log(sq.clamp_min(1e-30))).sum()

    def run(self, ctx: PosteriorContext, x: Tensor) -> Tensor:
        z = x.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        history = []
        for _ in range(self.iterations):
            opt.zero_grad()
            res = integrate(ctx.model, z, ctx.solver, grid=ctx.grid, cond=ctx.cond,
                            enable_grad=True)
            data = ctx.problem.residual(res.x).pow(2).sum()
            loss = data + self._penalty(z)
            loss.backward()
            ctx.gradient_calls += res.network_calls or 0
            opt.step()
            history.append(float(data.detach()) / x.shape[0])
        with torch.no_grad():
            res = integrate(ctx.model, z.detach(), ctx.solver, grid=ctx.grid, cond=ctx.cond)
        ctx.info["data_loss"] = history
        ctx.info["iterations"] = self.iterations
        return res.x


# ---------------------------------------------------------------------------------------------
# The entry point


def _initial_noise(model: ModelWrapper, problem: InverseProblem, x0: Tensor | None,
                   n_samples: int | None, generator: torch.Generator) -> Tensor:
    shape = tuple(problem.operator.input_shape)
    if x0 is not None:
        if not isinstance(x0, Tensor) or x0.ndim != len(shape) + 1 or tuple(x0.shape[1:]) != shape:
            got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise InputError(f"posterior_sample: x0 must have shape [B, "
                             f"{', '.join(map(str, shape))}], got {got}")
        if n_samples is not None and n_samples != x0.shape[0]:
            raise InputError(f"posterior_sample: n_samples = {n_samples} but x0 has "
                             f"{x0.shape[0]} rows")
        return check_finite(x0.detach(), "posterior_sample: x0")
    if n_samples is None:
        n_samples = problem.batch
    _positive(n_samples, "posterior_sample: n_samples", integer=True)
    return model.path.prior_sample((n_samples, *shape), generator=generator,
                                   dtype=problem.y.dtype, device=problem.y.device)


def _time_grid(steps: int | None, grid: Sequence[float] | Tensor | None) -> Tensor:
    if grid is not None:
        if steps is not None:
            raise InputError("posterior_sample: give either steps or grid, not both")
        ts = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
        if ts.numel() < 2 or not bool(torch.isfinite(ts).all()) or not bool(
                (ts.diff() > 0).all()) or float(ts[0]) < 0 or float(ts[-1]) > 1:
            raise InputError("posterior_sample: grid must be increasing times in [0, 1] "
                             "(t = 0 noise, t = 1 data), at least two")
        return ts
    if steps is None:
        raise InputError("posterior_sample: give steps= or grid= (monge never defaults to "
                         "one step)")
    _positive(steps, "posterior_sample: steps", integer=True)
    return uniform_grid(steps, 0.0, 1.0)


def posterior_sample(model: ModelWrapper, operator: LinearOperator, y: Tensor, sigma_y: float,
                     method: str | PosteriorMethod = "flowchef", *, steps: int | None = None,
                     grid: Sequence[float] | Tensor | None = None,
                     solver: str | Solver | None = None, n_samples: int | None = None,
                     x0: Tensor | None = None, cond: dict[str, Any] | None = None,
                     generator: int | torch.Generator | None = None,
                     **options: Any) -> PosteriorResult:
    """Sample x given y = A x + σ_y·n under the model's prior with one posterior method.

    Args:
        model: a :class:`~monge.paths.ModelWrapper` on an affine path (any prediction).
        operator: the degradation operator A.
        y: ``[*output_shape]`` (one observation for every sample) or ``[B, *output_shape]``.
        sigma_y: observation noise std (≥ 0).
        method: a name in ``POSTERIOR_METHODS`` (``dps``, ``pigdm``, ``flowchef``, ``dflow``,
            ``replace``, ``flair``) with its ``options``, or a :class:`PosteriorMethod`.
        steps, grid: the time grid from t = 0 (noise) to t = 1 (data): ``steps`` uniform
            steps or explicit increasing times (FLAIR: regulariser steps, see there).
        solver: a monge solver or its name (default: the method's, ``euler``); FLAIR takes
            none.
        n_samples: number of samples (default: one per observation row, or x0's rows).
        x0: initial noise ``[B, *input_shape]`` (default: the path's prior, from generator).
        cond: conditioning passed untouched to the model.
        generator: seed or generator of every random draw (reproducible runs).
        **options: the method's options (e.g. ``step_size`` for DPS).

    Returns:
        :class:`PosteriorResult` with the samples, NFE, gradient calls, wall time and the data
        consistency ‖A x − y‖ per sample.

    Example:
        >>> import torch
        >>> from monge.inverse import Mask, posterior_sample
        >>> from monge.paths import GaussianMixture, LinearPath, ModelWrapper
        >>> prior = GaussianMixture(torch.tensor([[-2., 0.], [2., 0.]]), torch.full((2,), .5))
        >>> model = ModelWrapper(prior.field(LinearPath()), LinearPath(), "velocity")
        >>> op = Mask(torch.tensor([1., 0.]))
        >>> res = posterior_sample(model, op, torch.tensor([2., 0.], dtype=torch.float64), 0.1,
        ...                        "pigdm", steps=50, n_samples=8, generator=0)
        >>> res.nfe, bool((res.x[:, 0] - 2).abs().max() < 0.5)
        (50, True)
    """
    start = time.perf_counter()
    if isinstance(method, PosteriorMethod):
        if options:
            raise InputError(f"posterior_sample: options {sorted(options)} given with a "
                             f"{type(method).__name__} instance; set them on the instance")
    elif isinstance(method, str):
        method = make_posterior_method(method, **options)
    else:
        raise InputError(f"posterior_sample: method must be a name or a PosteriorMethod, got "
                         f"{type(method).__name__}")
    path = _check_model(model, "posterior_sample")
    problem = InverseProblem(operator, y, sigma_y)
    gen = make_generator(generator, device=problem.y.device)
    x = _initial_noise(model, problem, x0, n_samples, gen).to(problem.y.dtype)
    if problem.batch not in (1, x.shape[0]):
        raise InputError(f"posterior_sample: y has {problem.batch} observations but there are "
                         f"{x.shape[0]} samples; give one observation or one per sample")
    ts = method.time_grid(steps, grid)
    if method.default_solver is None:
        if solver is not None:
            raise InputError(f"{method.name}: integrates no ODE; leave solver unset")
        solver_obj = None
    else:
        solver_obj = make_solver(solver or method.default_solver) if (
            solver is None or isinstance(solver, str)) else solver
        if not isinstance(solver_obj, Solver) or solver_obj.adaptive or solver_obj.stochastic:
            raise InputError(f"{method.name}: solver must be a fixed-step ODE solver, got "
                             f"{solver!r}")
    ctx = PosteriorContext(model, path, problem, solver_obj, ts, dict(cond or {}), gen)
    before = model.nfe
    out = method.run(ctx, x).detach()
    return PosteriorResult(x=out, method=method.name, nfe=model.nfe - before,
                           gradient_calls=ctx.gradient_calls,
                           seconds=time.perf_counter() - start,
                           consistency=problem.consistency(out), steps=method.steps_of(ts),
                           info=ctx.info)


__all__ = ["DPS", "POSTERIOR_METHODS", "DFlow", "FlowChef", "InverseProblem",
           "LikelihoodGuidance", "PiGDM", "PosteriorContext", "PosteriorMethod",
           "PosteriorResult", "Replace", "StepCorrection", "make_posterior_method",
           "posterior_sample", "score_to_velocity_coefficient"]
