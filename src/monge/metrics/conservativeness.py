"""Conservativeness of a field: Jacobian asymmetry, loop circulation and the harmless-error test.

A score ∇log p_t, and on an affine path with a standard Gaussian source also the marginal
velocity v_t(x) = (α̇/α)·x + (α̇σ²/α − σ̇σ)·∇log p_t(x), is a gradient field: its Jacobian
J = ∂v/∂x is symmetric and its line integrals are path independent. A trained network need not
be. Vuong, McCann, Santos & Lin, "Are We Really Learning the Score Function? Reinterpreting
Diffusion Models Through Wasserstein Gradient Flow Matching" (TMLR 2025, arXiv 2509.00336;
``shared/papers/wgf-score.md``) show that trained networks violate both constraints yet sample
well, because only ∇·(p_t v) moves density. This module measures the violation and runs the
experiment behind that explanation:

- :func:`jacobian_asymmetry`: the differential constraint, A(x) = ‖J − Jᵀ‖_F / ‖J‖_F, exact
  (:func:`field_jacobian`, D reverse-mode passes) in low dimension or by Hutchinson probes.
- :func:`loop_circulation`: the integral constraint, ∮ v·dl / ∮ ‖v‖‖dl‖ around small circles in
  random 2-planes (periodic trapezoid rule).
- :func:`conservativeness_report`: both, per time, as :class:`ConservativenessResult` rows.
- :func:`harmless_perturbations` / :func:`harmless_error_test`: add a rotated-score error (which
  leaves every marginal unchanged) or a conservative error of the same size, and measure the
  W2 of the generated samples.

**Hutchinson estimator of ‖J − Jᵀ‖²_F.** With K = J − Jᵀ and any probe v with E[v vᵀ] = I,
E‖Kv‖² = E[vᵀKᵀKv] = tr(KᵀK) = ‖K‖²_F, and Kv = Jv − Jᵀv costs one JVP and one VJP:
‖Kv‖² = ‖Jv‖² + ‖Jᵀv‖² − 2 vᵀJJv, unbiased; E‖Jv‖² = E‖Jᵀv‖² = ‖J‖²_F from the same calls.
(The spec's E_{u,v}[(uᵀJv − vᵀJu)²] = E‖Kv‖² too, with more variance and calls.) The JVP is
taken as the VJP of a VJP (J v = ∂(Jᵀu)ᵀv/∂u), which works for fields that call
``torch.autograd.grad`` themselves, such as :class:`monge.models.EnergyMLP`.

**Which errors are harmless (ODE transport only).** The marginals of dx/dt = v_t(x) obey the
continuity equation ∂_t p_t + ∇·(p_t v_t) = 0. If r_t satisfies ∇·(p_t r_t) = 0 for every t, then
p_t also solves the equation for v + r from the same p_0, so (by uniqueness for Lipschitz
fields) every marginal is unchanged; only the map x0 ↦ x1 changes. For a constant antisymmetric
matrix A, p_t r = A∇p_t gives ∇·(A∇p_t) = Σ_ij A_ij ∂_i∂_j p_t = 0 (antisymmetric against a
symmetric Hessian), i.e. the *rotated score* r = A∇log p_t is harmless; more generally so is
r = p_t⁻¹ A∇ψ for any smooth ψ (in 2-D A = c·R, R the 90° rotation, as in the spec). For an
isotropic Gaussian p_t = N(μ_t, σ_t² I) it is r = −A(x − μ_t)/σ_t², a rotation about the mean.
This needs the true marginals p_t of the *unperturbed* flow (an exact field), and it is a
statement about the probability-flow ODE: an SDE sampler uses the score also in its noise
balance, where a rotated error is not harmless. A conservative error g = ∇φ generally has
∇·(p_t g) ≠ 0 and moves the marginals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from monge.core.checks import make_generator
from monge.core.estimators import probe_vector
from monge.errors import InputError
from monge.metrics.wasserstein import wasserstein2

__all__ = [
    "AsymmetryEstimate",
    "CirculationEstimate",
    "ConservativenessReport",
    "ConservativenessResult",
    "HarmlessErrorResult",
    "HarmlessErrorRow",
    "HarmlessPerturbations",
    "antisymmetric_matrix",
    "conservativeness_report",
    "field_jacobian",
    "harmless_error_test",
    "harmless_perturbations",
    "jacobian_asymmetry",
    "loop_circulation",
    "random_potential",
]

Field = Callable[..., Tensor]
EXACT_MAX_DIM = 16
"""``method="auto"`` computes the exact Jacobian up to this dimension, Hutchinson probes above."""
METHODS = ("auto", "exact", "hutchinson")


# --------------------------------------------------------------------------------------------
# input checks and field evaluation
# --------------------------------------------------------------------------------------------
def _check_field(field: object, name: str = "field") -> None:
    if not callable(field):
        raise InputError(f"{name}: expected a callable field(x, t, **cond), got "
                         f"{type(field).__name__}")


def _check_points(x: object, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise InputError(f"{name}: expected a tensor of shape [B, ...], got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        raise InputError(f"{name}: expected shape [B, ...] with B >= 1 and at least one value "
                         f"per sample, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise InputError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name}: contains NaN or Inf values")
    return x.detach()


def _check_time(t: object, x: Tensor, name: str = "t") -> Tensor:
    """The time as ``[B]`` in x's dtype/device, checked to lie in [0, 1]."""
    try:
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).detach()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name}: expected a number or a tensor [B], got {t!r}") from None
    if tt.ndim == 0:
        tt = tt.expand(x.shape[0])
    if tt.shape != (x.shape[0],):
        raise InputError(f"{name}: expected a scalar or shape [{x.shape[0]}], got "
                         f"{tuple(tt.shape)}")
    if not bool(torch.isfinite(tt).all()) or bool((tt < 0).any()) or bool((tt > 1).any()):
        raise InputError(f"{name}: times must be finite and lie in [0, 1]")
    return tt


def _check_cond(cond: Mapping[str, Any] | None) -> dict[str, Any]:
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise InputError(f"cond: expected a mapping of keyword arguments, got "
                         f"{type(cond).__name__}")
    return dict(cond)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _slice_cond(cond: dict[str, Any], sl: slice, batch: int) -> dict[str, Any]:
    """Per-sample conditioning tensors (leading dimension ``batch``) cut to the chunk ``sl``."""
    return {k: (v[sl] if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == batch else v)
            for k, v in cond.items()}


def _repeat_cond(cond: dict[str, Any], repeats: int, batch: int) -> dict[str, Any]:
    return {k: (v.repeat_interleave(repeats, dim=0)
                if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == batch else v)
            for k, v in cond.items()}


def _evaluate(field: Field, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
    out = field(x, t, **cond)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(f"field: must return a tensor of x's shape {tuple(x.shape)}, got "
                         f"{shape}")
    return out


def _differentiable_output(field: Field, x: Tensor, t: Tensor,
                           cond: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """(leaf input requiring grad, field output flattened to [B, D]) with a graph to x."""
    xg = x.detach().requires_grad_(True)
    out = _evaluate(field, xg, t, cond)
    if not out.requires_grad:
        raise InputError("field: its output carries no gradient to x (is it evaluated under "
                         "torch.no_grad() or detached?); the Jacobian needs autograd")
    return xg, out.reshape(x.shape[0], -1)


def _grad(out: Tensor, inp: Tensor, weight: Tensor, *, create_graph: bool = False) -> Tensor:
    (g,) = torch.autograd.grad(out, inp, weight, retain_graph=True, create_graph=create_graph,
                               allow_unused=True)
    return torch.zeros_like(inp) if g is None else g


def _chunks(batch: int, size: int) -> Iterator[slice]:
    for start in range(0, batch, size):
        yield slice(start, min(start + size, batch))


# --------------------------------------------------------------------------------------------
# Jacobian asymmetry (the differential constraint)
# --------------------------------------------------------------------------------------------
def field_jacobian(field: Field, x: Tensor, t: Tensor | float, *,
                   cond: Mapping[str, Any] | None = None, batch_size: int = 4096) -> Tensor:
    """Exact Jacobian ``J[b, i, j] = ∂v_i/∂x_j`` of a field at each point, ``[B, D, D]``.

    Method: D reverse-mode passes, pass i giving row i at every point at once (the gradient of
    Σ_b v_i(x_b) in x); this assumes the field treats samples independently (no batch
    statistics). Plain ``torch.autograd`` is used rather than ``vmap(jacrev(...))`` because
    monge's networks check their inputs with data-dependent control flow (e.g.
    ``bool(torch.isfinite(t).all())``), which ``torch.func.vmap`` cannot trace, and a per-point
    ``jacrev`` loop would cost B calls. Cost: one forward and D backward passes per chunk of
    ``batch_size`` points.

    Args:
        field: ``field(x, t, **cond) -> tensor of x's shape``, differentiable in x.
        x: points ``[B, *shape]`` (D = prod(shape)).
        t: time in [0, 1] (a number or ``[B]``).
        cond: keyword conditioning; tensors with leading dimension B are split with the points.
        batch_size: points per field call.

    Returns:
        ``[B, D, D]`` in the field's output dtype.

    Raises:
        InputError: bad points, times or conditioning, or a field without a gradient to x.

    Example:
        >>> m = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
        >>> field_jacobian(lambda x, t: x @ m.T, torch.randn(4, 2), 0.5)[0].tolist()
        [[1.0, 2.0], [0.0, 3.0]]
    """
    _check_field(field)
    x = _check_points(x)
    tt = _check_time(t, x)
    cond = _check_cond(cond)
    batch_size = _positive_int(batch_size, "batch_size")
    blocks = []
    for sl in _chunks(x.shape[0], batch_size):
        with torch.enable_grad():
            xg, out = _differentiable_output(field, x[sl], tt[sl], _slice_cond(cond, sl,
                                                                               x.shape[0]))
            d = out.shape[1]
            rows = []
            for i in range(d):
                w = torch.zeros_like(out)
                w[:, i] = 1.0
                rows.append(_grad(out, xg, w).reshape(out.shape[0], d))
        blocks.append(torch.stack(rows, dim=1).detach())
    return torch.cat(blocks)


@dataclass(frozen=True)
class AsymmetryEstimate:
    """Per-point Jacobian asymmetry of a field.

    Attributes:
        per_point: ``‖J − Jᵀ‖_F / ‖J‖_F`` at each point, ``[B]`` (0 where ‖J‖_F = 0; in
            [0, 2]; 0 for a gradient field, 2 for an antisymmetric J).
        antisymmetric_sq: ``‖J − Jᵀ‖²_F`` per point, ``[B]`` (exact, or the unbiased
            Hutchinson estimate).
        jacobian_sq: ``‖J‖²_F`` per point, ``[B]``.
        antisymmetric_sq_std_error: standard error of ``antisymmetric_sq`` over probes
            (Hutchinson with ≥ 2 probes; else ``None``).
        curl: the scalar curl ``∂_1v_2 − ∂_2v_1`` per point for 2-D fields with the exact
            method (``‖J − Jᵀ‖_F = √2·|curl|``), else ``None``.
        method: ``exact`` or ``hutchinson``.
        probes: probes per point (0 for exact).
    """

    per_point: Tensor
    antisymmetric_sq: Tensor
    jacobian_sq: Tensor
    antisymmetric_sq_std_error: Tensor | None
    curl: Tensor | None
    method: str
    probes: int

    @property
    def mean(self) -> float:
        """Mean over points of ``‖J − Jᵀ‖_F / ‖J‖_F``."""
        return float(self.per_point.mean())

    @property
    def std_error(self) -> float:
        """Standard error of :attr:`mean` over points (NaN for one point)."""
        n = self.per_point.numel()
        return float(self.per_point.std() / math.sqrt(n)) if n > 1 else float("nan")

    @property
    def pooled(self) -> float:
        """``sqrt(Σ‖J − Jᵀ‖²_F / Σ‖J‖²_F)`` over points: a ratio of two unbiased Hutchinson
        estimates, so much less biased by few probes than :attr:`mean`."""
        den = float(self.jacobian_sq.sum())
        return math.sqrt(float(self.antisymmetric_sq.sum()) / den) if den > 0 else 0.0

    @property
    def antisymmetric_rms(self) -> float:
        """``sqrt(mean ‖J − Jᵀ‖²_F)``: the unnormalised size of the non-conservative part
        (linear in the field, so it grows in proportion to an added rotational error)."""
        return math.sqrt(max(float(self.antisymmetric_sq.mean()), 0.0))


def _ratio(num_sq: Tensor, den_sq: Tensor) -> Tensor:
    num, den = num_sq.clamp_min(0).sqrt(), den_sq.clamp_min(0).sqrt()
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny),
                       torch.zeros_like(num))


def jacobian_asymmetry(field: Field, x: Tensor, t: Tensor | float, *, method: str = "auto",
                       probes: int = 16, distribution: str = "rademacher",
                       generator: torch.Generator | int | None = None,
                       cond: Mapping[str, Any] | None = None,
                       batch_size: int = 4096) -> AsymmetryEstimate:
    """Jacobian asymmetry ``A(x) = ‖J − Jᵀ‖_F / ‖J‖_F`` of a field at each point.

    Method: the differential test of conservativeness in Vuong et al. (2025, arXiv 2509.00336):
    a gradient field has a symmetric Jacobian. ``exact`` builds J with :func:`field_jacobian`
    (D backward passes per chunk). ``hutchinson`` uses K probes v (E[v vᵀ] = I) per point and
    the unbiased estimates ‖J − Jᵀ‖²_F ≈ mean ‖Jv − Jᵀv‖² and
    ‖J‖²_F ≈ mean (‖Jv‖² + ‖Jᵀv‖²)/2 (see the module docstring); Jᵀv is a VJP and Jv the VJP
    of a VJP, so each probe costs two backward passes. The per-point ratio of estimates is
    biased for few probes; :attr:`AsymmetryEstimate.pooled` is much less so. ``auto`` is
    exact up to D = :data:`EXACT_MAX_DIM`.

    Args:
        field: ``field(x, t, **cond) -> tensor of x's shape``, differentiable in x (any
            monge field: a :class:`~monge.paths.ModelWrapper`, an analytic field, a score).
        x: points ``[B, *shape]``, e.g. samples of p_t.
        t: time in [0, 1] (a number or ``[B]``).
        method: ``auto``, ``exact`` or ``hutchinson``.
        probes: Hutchinson probes per point.
        distribution: ``rademacher`` (lower variance) or ``gaussian`` probes.
        generator: ``torch.Generator`` or seed of the probes (None: non-deterministic).
        cond: keyword conditioning passed to the field (per-sample tensors are split).
        batch_size: points per field call.

    Returns:
        :class:`AsymmetryEstimate` (per-point values; ``.mean``, ``.pooled``).

    Raises:
        InputError: bad points, times, method, probes, or a field without a gradient to x.

    Example:
        >>> rot = lambda x, t: x @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        >>> jacobian_asymmetry(rot, torch.randn(5, 2), 0.5).mean
        2.0
    """
    _check_field(field)
    x = _check_points(x)
    tt = _check_time(t, x)
    cond = _check_cond(cond)
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    probes = _positive_int(probes, "probes")
    batch_size = _positive_int(batch_size, "batch_size")
    dim = x[0].numel()
    if method == "auto":
        method = "exact" if dim <= EXACT_MAX_DIM else "hutchinson"
    if method == "exact":
        jac = field_jacobian(field, x, tt, cond=cond, batch_size=batch_size)
        anti = jac - jac.transpose(1, 2)
        anti_sq, jac_sq = anti.pow(2).sum((1, 2)), jac.pow(2).sum((1, 2))
        curl = jac[:, 1, 0] - jac[:, 0, 1] if dim == 2 else None
        return AsymmetryEstimate(_ratio(anti_sq, jac_sq), anti_sq, jac_sq, None, curl,
                                 "exact", 0)
    if distribution not in ("rademacher", "gaussian"):
        raise InputError(f"distribution: expected 'rademacher' or 'gaussian', got "
                         f"{distribution!r}")
    gen = make_generator(generator, x.device)
    anti_parts, jac_parts, se_parts = [], [], []
    for sl in _chunks(x.shape[0], batch_size):
        with torch.enable_grad():
            xg, out = _differentiable_output(field, x[sl], tt[sl], _slice_cond(cond, sl,
                                                                               x.shape[0]))
            u = torch.zeros_like(out, requires_grad=True)
            jt_u = _grad(out, xg, u, create_graph=True)          # Jᵀu, linear in u
            anti_k, jac_k = [], []
            for _ in range(probes):
                v = probe_vector(out.detach(), gen, distribution)
                jtv = _grad(out, xg, v).reshape_as(v)             # VJP: Jᵀv
                jv = (_grad(jt_u, u, v.reshape_as(xg)) if jt_u.requires_grad
                      else torch.zeros_like(v))                   # JVP: J v = ∂(uᵀJ v)/∂u
                anti_k.append((jv - jtv).pow(2).sum(1).detach())
                jac_k.append(0.5 * (jv.pow(2).sum(1) + jtv.pow(2).sum(1)).detach())
        anti_s, jac_s = torch.stack(anti_k), torch.stack(jac_k)
        anti_parts.append(anti_s.mean(0))
        jac_parts.append(jac_s.mean(0))
        se_parts.append(anti_s.std(0) / math.sqrt(probes) if probes > 1 else None)
    anti_sq, jac_sq = torch.cat(anti_parts), torch.cat(jac_parts)
    se = torch.cat(se_parts) if probes > 1 else None  # type: ignore[arg-type]
    return AsymmetryEstimate(_ratio(anti_sq, jac_sq), anti_sq, jac_sq, se, None,
                             "hutchinson", probes)


# --------------------------------------------------------------------------------------------
# loop circulation (the integral constraint)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CirculationEstimate:
    """Circulation of a field around small circles centred at each point.

    Attributes:
        normalized: ``∮ v·dl / ∮ ‖v‖‖dl‖`` per point and loop, ``[B, loops]``, signed, in
            [−1, 1] (0 where v vanishes on the loop).
        circulation: ``∮ v·dl`` (counter-clockwise in the plane (e1, e2)), ``[B, loops]``.
        planar_curl: ``∮ v·dl / (πρ²)``, ``[B, loops]``; tends to e2ᵀ(J − Jᵀ)e1 as ρ → 0
            (Stokes), exactly so for a linear field.
        planes: the orthonormal pairs (e1, e2) of each loop, ``[B, loops, 2, D]``.
        radius: the loop radius ρ.
        points: quadrature points per loop.
    """

    normalized: Tensor
    circulation: Tensor
    planar_curl: Tensor
    planes: Tensor
    radius: float
    points: int

    @property
    def mean_abs(self) -> float:
        """Mean over points and loops of ``|∮ v·dl| / ∮ ‖v‖‖dl‖``."""
        return float(self.normalized.abs().mean())

    @property
    def std_error(self) -> float:
        """Standard error of :attr:`mean_abs` (loops averaged per point first)."""
        per_point = self.normalized.abs().mean(1)
        n = per_point.numel()
        return float(per_point.std() / math.sqrt(n)) if n > 1 else float("nan")

    @property
    def mean_abs_planar_curl(self) -> float:
        """Mean over points and loops of ``|∮ v·dl| / (πρ²)``."""
        return float(self.planar_curl.abs().mean())


def _random_planes(batch: int, loops: int, dim: int, gen: torch.Generator, dtype: torch.dtype,
                   device: torch.device) -> Tensor:
    g = torch.randn(batch, loops, 2, dim, generator=gen, dtype=dtype, device=device)
    e1 = g[:, :, 0] / g[:, :, 0].norm(dim=-1, keepdim=True)
    e2 = g[:, :, 1] - (g[:, :, 1] * e1).sum(-1, keepdim=True) * e1
    e2 = e2 / e2.norm(dim=-1, keepdim=True)
    return torch.stack([e1, e2], dim=2)


def loop_circulation(field: Field, x: Tensor, t: Tensor | float, *, radius: float,
                     points: int = 64, loops: int = 1,
                     generator: torch.Generator | int | None = None,
                     planes: Tensor | None = None, cond: Mapping[str, Any] | None = None,
                     batch_size: int = 4096) -> CirculationEstimate:
    """Normalised circulation ``∮ v·dl / ∮ ‖v‖‖dl‖`` around circles of radius ρ at each point.

    Method: the integral test of conservativeness in Vuong et al. (2025, arXiv 2509.00336): a
    gradient field has zero circulation around every closed loop. Each loop is the circle
    γ(θ) = x + ρ(cos θ·e1 + sin θ·e2) in a random 2-plane (e1, e2 orthonormal, Gaussian then
    Gram–Schmidt), integrated with the periodic trapezoid rule at θ_k = 2πk/n, which is exact
    for trigonometric polynomials of degree < n (so for any linear field once n ≥ 3) and
    converges spectrally for smooth fields. The normalised value is dimensionless but depends
    on ρ (≈ ρ·ω/(2‖v‖) for small ρ, ω = e2ᵀ(J − Jᵀ)e1); compare fields at equal ρ, or use the
    ρ-free ``planar_curl`` = ∮ v·dl/(πρ²) → ω. (The spec's ∮ v·dl / (ρ·∮ ‖v‖‖dl‖) is
    ``normalized/ρ``.) Cost: ``points·loops`` field evaluations per point.

    Args:
        field: ``field(x, t, **cond) -> tensor of x's shape``.
        x: loop centres ``[B, *shape]`` (at least 2 values per sample).
        t: time in [0, 1] (a number or ``[B]``).
        radius: loop radius ρ > 0, in the units of x (small against the data scale, large
            against rounding: see the spec's pitfalls).
        points: quadrature points n per loop (≥ 3).
        loops: random loops per point.
        generator: ``torch.Generator`` or seed of the planes (ignored with ``planes``).
        planes: optional fixed planes ``[B, loops, 2, D]`` (orthonormal rows).
        cond: keyword conditioning (per-sample tensors are repeated along each loop).
        batch_size: field evaluations per call.

    Returns:
        :class:`CirculationEstimate`.

    Raises:
        InputError: bad points, times, radius, points, loops or planes.

    Example:
        >>> rot = lambda x, t: x @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        >>> c = loop_circulation(rot, torch.zeros(3, 2), 0.5, radius=0.1)
        >>> round(c.mean_abs, 6)
        1.0
    """
    _check_field(field)
    x = _check_points(x)
    tt = _check_time(t, x)
    cond = _check_cond(cond)
    if (isinstance(radius, bool) or not isinstance(radius, int | float)
            or not math.isfinite(radius) or radius <= 0):
        raise InputError(f"radius: expected a positive number, got {radius!r}")
    points = _positive_int(points, "points")
    if points < 3:
        raise InputError(f"points: a loop needs at least 3 quadrature points, got {points}")
    loops = _positive_int(loops, "loops")
    batch_size = _positive_int(batch_size, "batch_size")
    batch, dim = x.shape[0], x[0].numel()
    if dim < 2:
        raise InputError(f"x: loops need at least 2 dimensions, got {dim} value per sample")
    if planes is None:
        planes = _random_planes(batch, loops, dim, make_generator(generator, x.device),
                                x.dtype, x.device)
    elif not isinstance(planes, Tensor) or planes.shape != (batch, loops, 2, dim):
        shape = tuple(planes.shape) if isinstance(planes, Tensor) else type(planes).__name__
        raise InputError(f"planes: expected shape {(batch, loops, 2, dim)}, got {shape}")
    planes = planes.to(dtype=x.dtype, device=x.device)
    theta = 2 * math.pi * torch.arange(points, dtype=x.dtype, device=x.device) / points
    cos, sin = theta.cos()[:, None], theta.sin()[:, None]
    flat = x.reshape(batch, dim)
    rho = float(radius)
    centres_per_call = max(1, batch_size // (points * loops))
    circ_parts, norm_parts = [], []
    for sl in _chunks(batch, centres_per_call):
        e1, e2 = planes[sl, :, 0, None, :], planes[sl, :, 1, None, :]   # [b, L, 1, D]
        direction = cos * e1 + sin * e2                                 # [b, L, n, D]
        tangent = -sin * e1 + cos * e2                                  # dγ/dθ / ρ
        b = flat[sl].shape[0]
        on_loop = (flat[sl, None, None, :] + rho * direction).reshape(b * loops * points,
                                                                      *x.shape[1:])
        reps = loops * points
        sub_cond = _repeat_cond(_slice_cond(cond, sl, batch), reps, b)
        with torch.no_grad():
            v = _evaluate(field, on_loop, tt[sl].repeat_interleave(reps), sub_cond)
        v = v.detach().reshape(b, loops, points, dim).to(x.dtype)
        weight = 2 * math.pi / points
        circ_parts.append(weight * rho * (v * tangent).sum((-1, -2)))
        norm_parts.append(weight * rho * v.norm(dim=-1).sum(-1))
    circ, norm = torch.cat(circ_parts), torch.cat(norm_parts)
    normalized = torch.where(norm > 0, circ / norm.clamp_min(torch.finfo(norm.dtype).tiny),
                             torch.zeros_like(circ))
    return CirculationEstimate(normalized, circ, circ / (math.pi * rho**2), planes, rho, points)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConservativenessResult:
    """Conservativeness of a field at one time.

    Attributes:
        t: the time.
        asymmetry: mean over points of ``‖J − Jᵀ‖_F / ‖J‖_F`` (0 for a gradient field).
        asymmetry_std_error: its standard error over points.
        pooled_asymmetry: ``sqrt(Σ‖J − Jᵀ‖²_F / Σ‖J‖²_F)`` over points.
        curl: mean ``|∂_1v_2 − ∂_2v_1|`` for a 2-D field (exact method), else ``None``.
        circulation: mean ``|∮ v·dl| / ∮ ‖v‖‖dl‖`` over points and loops (0 for a gradient
            field; depends on ``radius``).
        circulation_std_error: its standard error over points.
        planar_curl: mean ``|∮ v·dl| / (πρ²)`` (ρ-free for small loops).
        radius: loop radius ρ used.
        points: number of points.
        method: ``exact`` or ``hutchinson``.
        probes: Hutchinson probes per point (0 for exact).
    """

    t: float
    asymmetry: float
    asymmetry_std_error: float
    pooled_asymmetry: float
    curl: float | None
    circulation: float
    circulation_std_error: float
    planar_curl: float
    radius: float
    points: int
    method: str
    probes: int


@dataclass(frozen=True)
class ConservativenessReport:
    """One :class:`ConservativenessResult` per time (iterable, indexable)."""

    results: tuple[ConservativenessResult, ...]

    def __iter__(self) -> Iterator[ConservativenessResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> ConservativenessResult:
        return self.results[index]

    def rows(self) -> list[dict[str, Any]]:
        """The results as plain dicts (for JSON or a table)."""
        return [asdict(r) for r in self.results]


def _samples_at(x_samples: Any, times: Sequence[float]) -> list[Tensor]:
    if isinstance(x_samples, Tensor):
        return [_check_points(x_samples, "x_samples")] * len(times)
    if callable(x_samples):
        return [_check_points(x_samples(t), f"x_samples({t})") for t in times]
    if isinstance(x_samples, Sequence) and not isinstance(x_samples, str):
        if len(x_samples) != len(times):
            raise InputError(f"x_samples: expected one tensor per time ({len(times)}), got "
                             f"{len(x_samples)}")
        return [_check_points(x, f"x_samples[{i}]") for i, x in enumerate(x_samples)]
    raise InputError("x_samples: expected a tensor [B, ...], a sequence of them (one per time) "
                     f"or a callable t -> tensor, got {type(x_samples).__name__}")


def conservativeness_report(field: Field, x_samples: Tensor | Sequence[Tensor] |
                            Callable[[float], Tensor], times: Sequence[float] | float, *,
                            method: str = "auto", probes: int = 16,
                            distribution: str = "rademacher", radius: float | None = None,
                            radius_fraction: float = 0.05, loop_points: int = 64,
                            loops: int = 1, generator: torch.Generator | int | None = None,
                            cond: Mapping[str, Any] | None = None,
                            batch_size: int = 4096) -> ConservativenessReport:
    """Jacobian asymmetry and loop circulation of a field at each of several times.

    Method: :func:`jacobian_asymmetry` (differential constraint) and :func:`loop_circulation`
    (integral constraint) on the given points at each t, the diagnostics of Vuong et al.
    (2025, arXiv 2509.00336) for "is this network a gradient field?". Analytic scores and
    affine-path velocities with a Gaussian source give ≈ 0 (float round-off), as does
    :class:`monge.models.EnergyMLP`; an unconstrained network gives > 0 (often largest near the
    data end, t → 1 in monge's time). The loop radius defaults to ``radius_fraction`` times the
    RMS per-coordinate spread of the points at that t.

    Args:
        field: ``field(x, t, **cond) -> tensor of x's shape``.
        x_samples: points where the field is probed: one tensor ``[B, *shape]`` for every
            time, a sequence with one tensor per time (e.g. samples of each p_t), or a callable
            ``t -> tensor``.
        times: time(s) in [0, 1].
        method, probes, distribution: see :func:`jacobian_asymmetry`.
        radius: loop radius ρ (``None``: ``radius_fraction`` × spread).
        radius_fraction: see ``radius``.
        loop_points, loops: quadrature points per loop, loops per point.
        generator: ``torch.Generator`` or seed (probes and loop planes).
        cond: keyword conditioning passed to the field.
        batch_size: field evaluations per call.

    Returns:
        :class:`ConservativenessReport` with one :class:`ConservativenessResult` per time.

    Raises:
        InputError: empty or out-of-range times, bad samples or options.

    Example:
        >>> grad_field = lambda x, t: -x * (1 + t[:, None])
        >>> rep = conservativeness_report(grad_field, torch.randn(64, 2), [0.2, 0.8],
        ...                               generator=0)
        >>> [round(r.asymmetry, 12) for r in rep], [round(r.circulation, 6) for r in rep]
        ([0.0, 0.0], [0.0, 0.0])
    """
    _check_field(field)
    ts = [times] if isinstance(times, int | float) and not isinstance(times, bool) else times
    try:
        ts = [float(t) for t in ts]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"times: expected numbers in [0, 1], got {times!r}") from None
    if not ts or any(not (0.0 <= t <= 1.0) for t in ts):
        raise InputError(f"times: expected a non-empty list of numbers in [0, 1], got {times!r}")
    if radius is None and (isinstance(radius_fraction, bool)
                           or not isinstance(radius_fraction, int | float)
                           or not radius_fraction > 0):
        raise InputError(f"radius_fraction: expected a positive number, got {radius_fraction!r}")
    samples = _samples_at(x_samples, ts)
    gen = make_generator(generator, samples[0].device)
    results = []
    for t, x in zip(ts, samples, strict=True):
        rho = radius
        if rho is None:
            if x.shape[0] < 2:
                raise InputError("radius: give it explicitly for a single point (the default "
                                 "scales with the spread of the points)")
            spread = float(x.reshape(x.shape[0], -1).var(0).mean().sqrt())
            rho = radius_fraction * (spread if spread > 0 else 1.0)
        asym = jacobian_asymmetry(field, x, t, method=method, probes=probes,
                                  distribution=distribution, generator=gen, cond=cond,
                                  batch_size=batch_size)
        circ = loop_circulation(field, x, t, radius=rho, points=loop_points, loops=loops,
                                generator=gen, cond=cond, batch_size=batch_size)
        results.append(ConservativenessResult(
            t=t, asymmetry=asym.mean, asymmetry_std_error=asym.std_error,
            pooled_asymmetry=asym.pooled,
            curl=None if asym.curl is None else float(asym.curl.abs().mean()),
            circulation=circ.mean_abs, circulation_std_error=circ.std_error,
            planar_curl=circ.mean_abs_planar_curl, radius=rho, points=x.shape[0],
            method=asym.method, probes=asym.probes))
    return ConservativenessReport(tuple(results))


# --------------------------------------------------------------------------------------------
# the harmless-error test
# --------------------------------------------------------------------------------------------
def antisymmetric_matrix(dim: int, *, generator: torch.Generator | int | None = None,
                         dtype: torch.dtype = torch.float64,
                         device: torch.device | str | None = None) -> Tensor:
    """An antisymmetric matrix A (Aᵀ = −A) of spectral norm 1.

    In 2-D it is the 90° rotation R = [[0, −1], [1, 0]] (deterministic); in higher dimension
    ``(G − Gᵀ)/2`` for a Gaussian G, rescaled. A∇log p_t is the harmless rotated score.

    Raises:
        InputError: ``dim < 2``.
    """
    dim = _positive_int(dim, "dim")
    if dim < 2:
        raise InputError(f"dim: an antisymmetric rotation needs dim >= 2, got {dim}")
    if dim == 2:
        return torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=dtype, device=device)
    g = torch.randn(dim, dim, generator=make_generator(generator), dtype=torch.float64)
    a = 0.5 * (g - g.T)
    return (a / torch.linalg.matrix_norm(a, ord=2)).to(dtype=dtype, device=device)


def random_potential(dim: int, *, features: int = 32, length_scale: float = 1.0,
                     generator: torch.Generator | int | None = None,
                     dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> Callable[[Tensor], Tensor]:
    """The gradient ∇φ of a random smooth potential φ(x) = Σ_j a_j cos(ω_j·x + b_j).

    Random Fourier features (Rahimi & Recht, 2007): ω_j ~ N(0, I/ℓ²), b_j ~ U[0, 2π),
    a_j ~ N(0, 1/features). ∇φ is exactly conservative (a gradient field); it serves as the
    conservative control error of :func:`harmless_perturbations`.

    Args:
        dim: dimension D of x.
        features: number of Fourier features.
        length_scale: ℓ, the scale over which φ varies (in the units of x).
        generator: seed or ``torch.Generator``.

    Returns:
        ``grad(x) -> ∇φ(x)`` for x ``[B, *shape]`` with prod(shape) = D, in x's dtype.
    """
    dim, features = _positive_int(dim, "dim"), _positive_int(features, "features")
    if not isinstance(length_scale, int | float) or not length_scale > 0:
        raise InputError(f"length_scale: expected a positive number, got {length_scale!r}")
    gen = make_generator(generator)
    omega = torch.randn(features, dim, generator=gen, dtype=torch.float64) / length_scale
    phase = 2 * math.pi * torch.rand(features, generator=gen, dtype=torch.float64)
    amp = torch.randn(features, generator=gen, dtype=torch.float64) / math.sqrt(features)
    omega, phase, amp = (p.to(dtype=dtype, device=device) for p in (omega, phase, amp))

    def grad(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        w, b, a = (p.to(dtype=flat.dtype, device=flat.device) for p in (omega, phase, amp))
        return (-(a * torch.sin(flat @ w.T + b)) @ w).reshape(x.shape)

    return grad


@dataclass
class HarmlessPerturbations:
    """A field with a harmless rotated-score error and one with a conservative error of the
    same size (built by :func:`harmless_perturbations`).

    Attributes:
        rotated: ``v + c·A∇log p_t`` (same marginals as v for the ODE).
        conservative: ``v + c·λ(t)∇φ`` with ``λ(t)`` matching the RMS size under p_t.
        rotation: the antisymmetric matrix A ``[D, D]``.
        scale: c.
        times: calibration times ``[K]`` (λ is linear in t between them).
        rms_rotated: ``sqrt(E_{p_t}‖A∇log p_t‖²)`` at each calibration time (times c gives the
            size of both errors).
        gain: λ(t) at each calibration time.
    """

    rotated: Field
    conservative: Field
    rotation: Tensor
    scale: float
    times: Tensor
    rms_rotated: Tensor
    gain: Tensor

    @property
    def perturbation_rms(self) -> float:
        """Time-averaged RMS size c·sqrt(E_{p_t}‖error‖²) of either error (trapezoid in t)."""
        rms, ts = self.scale * self.rms_rotated, self.times
        return float(torch.trapezoid(rms, ts) / (ts[-1] - ts[0])) if ts.numel() > 1 else float(
            rms[0])


def _interp(t: Tensor, grid: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``values`` on the increasing ``grid`` at ``t``."""
    t = t.to(grid.dtype).clamp(grid[0], grid[-1])
    idx = torch.searchsorted(grid, t, right=True).clamp(1, grid.numel() - 1)
    lo, hi = grid[idx - 1], grid[idx]
    w = (t - lo) / (hi - lo)
    return values[idx - 1] * (1 - w) + values[idx] * w


def harmless_perturbations(velocity: Field, score: Callable[[Tensor, Tensor], Tensor],
                           marginal_sampler: Callable[[int, float], Tensor], scale: float, *,
                           rotation: Tensor | None = None,
                           potential: Callable[[Tensor], Tensor] | None = None,
                           calibration_times: int = 17, calibration_points: int = 2000,
                           generator: torch.Generator | int | None = None
                           ) -> HarmlessPerturbations:
    """Build ``v + c·A∇log p_t`` (harmless) and ``v + c·λ(t)∇φ`` (conservative, same size).

    Method: Vuong et al. (2025, arXiv 2509.00336), the "harmless error" construction. With A
    antisymmetric, r = A∇log p_t satisfies ∇·(p_t r) = ∇·(A∇p_t) = 0, so adding it to the ODE
    velocity leaves every marginal p_t unchanged (module docstring); for an isotropic Gaussian
    p_t = N(μ_t, σ_t² I) it is r = −A(x − μ_t)/σ_t². The control adds the gradient of a random
    smooth potential (:func:`random_potential` by default), rescaled at each time by
    λ(t) = RMS_{p_t}‖A∇log p_t‖ / RMS_{p_t}‖∇φ‖ (estimated on ``calibration_points`` samples of
    p_t at ``calibration_times`` equally spaced times, linear in between), so both errors have
    the same RMS size under p_t at every t; λ depends on t only, so λ(t)∇φ stays a gradient
    field. Exactly harmless only when ``velocity`` is the exact field of the marginals p_t that
    ``score`` and ``marginal_sampler`` describe (an analytic Gaussian / Gaussian-mixture field),
    and only for ODE sampling.

    Args:
        velocity: the exact field ``v(x, t, **cond)``, e.g. ``GaussianMixture.field(path)``.
        score: ``score(x, t) -> ∇log p_t(x)`` of x's shape (t of shape [B]).
        marginal_sampler: ``marginal_sampler(n, t) -> [n, *shape]`` samples of p_t.
        scale: c ≥ 0 (c = 0 returns v twice).
        rotation: antisymmetric A ``[D, D]`` (default :func:`antisymmetric_matrix`, R in 2-D).
        potential: ``x -> ∇φ(x)`` (default :func:`random_potential` with ℓ = the data spread).
        calibration_times: number K ≥ 2 of calibration times in [0, 1].
        calibration_points: samples of p_t per calibration time.
        generator: seed or ``torch.Generator`` (default rotation and potential).

    Returns:
        :class:`HarmlessPerturbations`.

    Raises:
        InputError: a non-antisymmetric or wrongly shaped rotation, negative scale, bad counts.
    """
    _check_field(velocity)
    _check_field(score, "score")
    _check_field(marginal_sampler, "marginal_sampler")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale >= 0 \
            or not math.isfinite(scale):
        raise InputError(f"scale: expected a finite number >= 0, got {scale!r}")
    calibration_times = _positive_int(calibration_times, "calibration_times")
    if calibration_times < 2:
        raise InputError(f"calibration_times: need at least 2, got {calibration_times}")
    calibration_points = _positive_int(calibration_points, "calibration_points")
    gen = make_generator(generator)
    grid = torch.linspace(0.0, 1.0, calibration_times, dtype=torch.float64)
    samples = [_check_points(marginal_sampler(calibration_points, float(t)),
                             f"marginal_sampler(n, {float(t)})") for t in grid]
    dim = samples[0][0].numel()
    if rotation is None:
        rotation = antisymmetric_matrix(dim, generator=gen)
    if not isinstance(rotation, Tensor) or rotation.shape != (dim, dim):
        shape = tuple(rotation.shape) if isinstance(rotation, Tensor) else type(rotation).__name__
        raise InputError(f"rotation: expected shape {(dim, dim)}, got {shape}")
    rot = rotation.detach().to(torch.float64)
    if not torch.allclose(rot, -rot.T, atol=1e-12 * max(1.0, float(rot.abs().max()))):
        raise InputError("rotation: must be antisymmetric (A.T == -A); only then is "
                         "A ∇log p_t harmless")
    if potential is None:
        spread = float(samples[-1].reshape(calibration_points, -1).std(0).mean())
        potential = random_potential(dim, length_scale=spread if spread > 0 else 1.0,
                                     generator=gen)
    _check_field(potential, "potential")

    def rotated_score(x: Tensor, t: Tensor) -> Tensor:
        s = score(x, t).reshape(x.shape[0], -1)
        return (s @ rot.to(dtype=s.dtype, device=s.device).T).reshape(x.shape)

    rms_rot, rms_pot = [], []
    for t, xs in zip(grid, samples, strict=True):
        tt = torch.full((xs.shape[0],), float(t), dtype=xs.dtype, device=xs.device)
        r, g = rotated_score(xs, tt), potential(xs)
        rms_rot.append(float(r.reshape(xs.shape[0], -1).pow(2).sum(1).mean().sqrt()))
        rms_pot.append(float(g.reshape(xs.shape[0], -1).pow(2).sum(1).mean().sqrt()))
    rms_rotated = torch.tensor(rms_rot, dtype=torch.float64)
    gain = rms_rotated / torch.tensor(rms_pot, dtype=torch.float64).clamp_min(1e-300)
    c = float(scale)

    def rotated(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        v = velocity(x, t, **cond)
        return v if c == 0 else v + c * rotated_score(x, t).to(v.dtype)

    def conservative(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        v = velocity(x, t, **cond)
        if c == 0:
            return v
        tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x.shape[0])
        lam = _interp(tt.to(grid.device), grid, gain).to(dtype=v.dtype, device=v.device)
        return v + c * lam.reshape(-1, *([1] * (x.ndim - 1))) * potential(x).to(v.dtype)

    return HarmlessPerturbations(rotated, conservative, rot, c, grid, rms_rotated, gain)


@dataclass(frozen=True)
class HarmlessErrorRow:
    """The harmless-error test at one error scale c.

    Attributes:
        scale: c.
        w2_rotated: W2 of samples generated with ``v + c·A∇log p_t`` to reference data.
        w2_conservative: W2 of samples generated with the same-size conservative error.
        asymmetry_rotated, asymmetry_conservative: mean ‖J − Jᵀ‖_F/‖J‖_F at ``probe_time``.
        antisymmetric_rms_rotated: ``sqrt(E‖J − Jᵀ‖²_F)`` of the rotated field at
            ``probe_time`` (∝ c for an exact base field; the spec's "curl grows ∝ c").
        perturbation_rms: time-averaged RMS size of either error.
    """

    scale: float
    w2_rotated: float
    w2_conservative: float
    asymmetry_rotated: float
    asymmetry_conservative: float
    antisymmetric_rms_rotated: float
    perturbation_rms: float


@dataclass(frozen=True)
class HarmlessErrorResult:
    """Rows of :func:`harmless_error_test` and the sampling-noise floor.

    Attributes:
        rows: one :class:`HarmlessErrorRow` per scale.
        noise_floor: W2 between two independent reference samples of the test's size (what
            a perfect sampler scores).
        probe_time: the time of the asymmetry columns.
    """

    rows: tuple[HarmlessErrorRow, ...]
    noise_floor: float
    probe_time: float


def harmless_error_test(velocity: Field, score: Callable[[Tensor, Tensor], Tensor],
                        marginal_sampler: Callable[[int, float], Tensor],
                        sample: Callable[[Field], Tensor], *,
                        scales: Sequence[float] = (0.0, 1.0, 5.0), n_reference: int = 2000,
                        probe_time: float = 0.5, probe_points: int = 512,
                        rotation: Tensor | None = None,
                        potential: Callable[[Tensor], Tensor] | None = None,
                        generator: torch.Generator | int | None = None,
                        calibration_points: int = 2000,
                        max_points: int = 4000) -> HarmlessErrorResult:
    """W2 of generated samples under a rotated-score error vs a conservative one of equal size.

    Method: for each c in ``scales``, :func:`harmless_perturbations` builds ``v + c·A∇log p_t``
    and ``v + c·λ(t)∇φ``; ``sample`` integrates each (the caller's ODE solver and source batch,
    the same for every field) and the exact W2 (:func:`~monge.metrics.wasserstein2`) to fresh
    samples of p_1 is recorded, with the Jacobian asymmetry of both fields at ``probe_time``.
    The claim of Vuong et al. (2025, arXiv 2509.00336): the rotated error leaves W2 at the
    noise floor for every c while the field becomes strongly non-conservative; the
    conservative error of the same size raises W2. ODE transport only.

    Args:
        velocity, score, marginal_sampler: the exact field, its marginals' score and a sampler
            of p_t (see :func:`harmless_perturbations`).
        sample: ``sample(field) -> samples at t = 1``, e.g.
            ``lambda f: integrate(f, x0, RK4(), steps=200).x``.
        scales: error scales c ≥ 0.
        n_reference: size of the reference samples of p_1.
        probe_time: time of the asymmetry measurement.
        probe_points: samples of p_{probe_time} for the asymmetry.
        rotation, potential, calibration_points: see :func:`harmless_perturbations`.
        generator: seed or ``torch.Generator`` (rotation, potential, probes).
        max_points: passed to :func:`~monge.metrics.wasserstein2`.

    Returns:
        :class:`HarmlessErrorResult`.

    Raises:
        InputError: empty scales, bad counts, or the errors of :func:`harmless_perturbations`.
    """
    _check_field(sample, "sample")
    scales = [float(c) for c in scales]
    if not scales:
        raise InputError("scales: expected at least one error scale")
    n_reference = _positive_int(n_reference, "n_reference")
    probe_points = _positive_int(probe_points, "probe_points")
    gen = make_generator(generator)
    reference = _check_points(marginal_sampler(n_reference, 1.0), "marginal_sampler(n, 1)")
    floor = wasserstein2(_check_points(marginal_sampler(n_reference, 1.0),
                                       "marginal_sampler(n, 1)"), reference,
                         max_points=max_points)
    probe = _check_points(marginal_sampler(probe_points, float(probe_time)),
                          f"marginal_sampler(n, {probe_time})")
    dim = probe[0].numel()
    if rotation is None:
        rotation = antisymmetric_matrix(dim, generator=gen)
    if potential is None:
        spread = float(reference.reshape(n_reference, -1).std(0).mean())
        potential = random_potential(dim, length_scale=spread if spread > 0 else 1.0,
                                     generator=gen)
    rows = []
    for c in scales:
        pert = harmless_perturbations(velocity, score, marginal_sampler, c, rotation=rotation,
                                      potential=potential, generator=gen,
                                      calibration_points=calibration_points)
        w2_rot = wasserstein2(sample(pert.rotated), reference, max_points=max_points)
        w2_con = wasserstein2(sample(pert.conservative), reference, max_points=max_points)
        a_rot = jacobian_asymmetry(pert.rotated, probe, probe_time, generator=gen)
        a_con = jacobian_asymmetry(pert.conservative, probe, probe_time, generator=gen)
        rows.append(HarmlessErrorRow(c, w2_rot, w2_con, a_rot.mean, a_con.mean,
                                     a_rot.antisymmetric_rms, pert.perturbation_rms))
    return HarmlessErrorResult(tuple(rows), floor, float(probe_time))
