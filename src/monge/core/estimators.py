"""Matrix-free stochastic estimators: Hutchinson trace, Lanczos, top eigenvalue, SLQ density.

One engine, written against plain callables ``matvec(v) -> A v`` so that every layer can use it:
the Hessian trace and sharpness of :mod:`monge.dynamics.hessian` (matvec = a Hessian-vector
product) and the divergence estimator of ODE likelihoods (matvec = a vector-Jacobian product of a
velocity field, with ``batch_dims=1`` for one trace per sample) share this code.

- :func:`hutchinson_trace`: unbiased tr(A) with its standard error (``probes`` matvecs).
- :func:`lanczos`: tridiagonal (alpha, beta), full reorthogonalisation (``iters`` matvecs).
- :func:`top_eigenvalue`: largest eigenvalue (Lanczos) or dominant one (power).
- :func:`spectral_density_slq`: stochastic Lanczos quadrature nodes/weights and density
  (``probes·iters`` matvecs).

References: M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
Laplacian smoothing splines", 1990; C. Lanczos, 1950; G. H. Golub & G. Meurant, "Matrices,
Moments and Quadrature", 1994; S. Ubaru, J. Chen & Y. Saad, "Fast estimation of tr(f(A)) via
stochastic Lanczos quadrature", SIMAX 2017; B. Ghorbani, S. Krishnan & Y. Xiao, "An investigation
into neural net optimization via Hessian eigenvalue density", ICML 2019.

Only torch and :mod:`monge.errors` are imported (bottom layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from monge.errors import InputError

__all__ = ["EigenResult", "LanczosResult", "SpectralDensity", "TraceEstimate",
           "hutchinson_trace", "lanczos", "probe_vector", "spectral_density_slq",
           "top_eigenvalue"]

MatVec = Callable[[Tensor], Tensor]
DISTRIBUTIONS = ("rademacher", "gaussian")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _generator(generator: torch.Generator | int | None, device: torch.device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator(device=device)
    if generator is None:
        g.seed()
    else:
        g.manual_seed(int(generator))
    return g


def _like(dim_or_like: int | Tensor, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> Tensor:
    """A zero tensor fixing the probe shape, dtype and device."""
    if isinstance(dim_or_like, Tensor):
        return torch.zeros_like(dim_or_like, dtype=dtype or dim_or_like.dtype,
                                device=device or dim_or_like.device)
    if isinstance(dim_or_like, bool) or not isinstance(dim_or_like, int) or dim_or_like < 1:
        raise InputError(f"dim_or_like: expected a positive int or a tensor, got {dim_or_like!r}")
    return torch.zeros(dim_or_like, dtype=dtype or torch.get_default_dtype(), device=device)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return value


def probe_vector(like: Tensor, generator: torch.Generator,
                 distribution: str = "rademacher") -> Tensor:
    """One random probe with E[v v^T] = I, shaped like ``like``.

    Args:
        like: tensor giving shape, dtype and device.
        generator: source of randomness (on ``like``'s device).
        distribution: ``rademacher`` (entries ±1, the minimum-variance choice for real A) or
            ``gaussian`` (standard normal).
    """
    if distribution == "rademacher":
        v = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
        return v.to(like.dtype).mul_(2).sub_(1)
    if distribution == "gaussian":
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    raise InputError(f"distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")


def _apply(matvec: MatVec, v: Tensor, name: str = "matvec") -> Tensor:
    out = matvec(v)
    if not isinstance(out, Tensor) or out.shape != v.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(f"{name}: must return a tensor of the probe's shape {tuple(v.shape)}, "
                         f"got {shape}")
    return out


# --------------------------------------------------------------------------------------------
# Hutchinson
# --------------------------------------------------------------------------------------------
@dataclass
class TraceEstimate:
    """A Hutchinson trace estimate.

    Attributes:
        estimate: mean over probes of v^T A v (a 0-d tensor, or one entry per batch index when
            ``batch_dims > 0``).
        std_error: standard error of that mean (sample std / sqrt(probes)); NaN for one probe.
        probes: number of probes used.
        samples: the per-probe values v_k^T A v_k, shape ``[probes, *batch]``.
        distribution: probe distribution.
    """

    estimate: Tensor
    std_error: Tensor
    probes: int
    samples: Tensor
    distribution: str

    def __float__(self) -> float:
        return float(self.estimate)


def hutchinson_trace(matvec: MatVec, dim_or_like: int | Tensor, *, probes: int = 100,
                     generator: torch.Generator | int | None = None,
                     distribution: str = "rademacher", batch_dims: int = 0,
                     dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> TraceEstimate:
    """Hutchinson's unbiased estimator tr(A) ≈ (1/K) Σ_k v_k^T A v_k with E[v v^T] = I.

    Method: K independent Rademacher (or Gaussian) probes; the variance of one sample is
    2 Σ_{i≠j} A_ij² (Rademacher) or 2||A||_F² (Gaussian, symmetric A), so the standard error falls
    as K^{-1/2}. Cost: K matvecs. Paper: Hutchinson (1990).

    Args:
        matvec: ``v -> A v`` for a tensor v shaped like the probe (any shape; A acts on the
            flattened trailing dimensions).
        dim_or_like: the dimension n (probes are 1-D) or a tensor whose shape/dtype/device the
            probes copy.
        probes: number of probes K ≥ 1.
        generator: ``torch.Generator`` or integer seed (None: non-deterministic).
        distribution: ``rademacher`` or ``gaussian``.
        batch_dims: leading probe dimensions that index independent traces (e.g. 1 for the
            per-sample divergence of a field on x of shape [B, D]): the estimate has shape
            ``like.shape[:batch_dims]``.
        dtype, device: probe dtype/device when ``dim_or_like`` is an int.

    Returns:
        :class:`TraceEstimate`.
    """
    _check_positive_int(probes, "probes")
    like = _like(dim_or_like, dtype, device)
    if not 0 <= batch_dims < max(like.ndim, 1):
        raise InputError(f"batch_dims: expected 0..{like.ndim - 1}, got {batch_dims}")
    if distribution not in DISTRIBUTIONS:
        raise InputError(f"distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")
    gen = _generator(generator, like.device)
    reduce = tuple(range(batch_dims, like.ndim))
    vals = []
    for _ in range(probes):
        v = probe_vector(like, gen, distribution)
        av = _apply(matvec, v)
        vals.append((v * av).sum(dim=reduce) if reduce else v * av)
    samples = torch.stack(vals)
    est = samples.mean(0)
    if probes > 1:
        se = samples.std(0, unbiased=True) / math.sqrt(probes)
    else:
        se = torch.full_like(est, float("nan"))
    return TraceEstimate(est, se, probes, samples, distribution)


# --------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------
@dataclass
class LanczosResult:
    """The Lanczos tridiagonalisation T = Q^T A Q of a symmetric operator.

    Attributes:
        alpha: diagonal of T, shape [m] (m ≤ iters; smaller after an invariant-subspace
            breakdown).
        beta: off-diagonal of T, shape [m - 1].
        basis: orthonormal Lanczos vectors Q, shape [m, n] (flattened).
        norm_v0: the norm of the starting vector.
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor
    norm_v0: float

    def tridiagonal(self) -> Tensor:
        """The dense m×m tridiagonal matrix T."""
        t = torch.diag(self.alpha)
        if self.beta.numel():
            t = t + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)
        return t

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values θ (ascending) and the squared first components τ² of T's eigenvectors
        (the Gauss quadrature weights of the spectral measure of v0; they sum to 1)."""
        theta, vecs = torch.linalg.eigh(self.tridiagonal())
        return theta, vecs[0] ** 2


def lanczos(matvec: MatVec, v0: Tensor, iters: int, *, tol: float | None = None) -> LanczosResult:
    """Lanczos iteration with full reorthogonalisation for a symmetric operator A.

    Method: three-term recurrence β_{j} q_{j+1} = A q_j − α_j q_j − β_{j−1} q_{j−1}, each new vector
    re-orthogonalised twice against all previous ones (classical Gram–Schmidt, "twice is
    enough"), which keeps Q orthonormal to rounding so that Ritz values do not duplicate. Stops
    early when β_j falls below ``tol``·||A|| (an invariant subspace was found). Cost: ``iters``
    matvecs and O(iters²·n) for the reorthogonalisation; memory O(iters·n). Paper: Lanczos (1950);
    Golub & Van Loan, "Matrix Computations", §10.

    Args:
        matvec: ``v -> A v`` with v shaped like ``v0``.
        v0: starting vector (any shape, non-zero); its dtype/device are used throughout.
        iters: maximum number of Lanczos steps m ≥ 1.
        tol: relative breakdown tolerance (default: 100·machine epsilon of the dtype).

    Returns:
        :class:`LanczosResult` with alpha [m], beta [m−1] and the basis [m, n].
    """
    _check_positive_int(iters, "iters")
    if not isinstance(v0, Tensor):
        raise InputError(f"v0: expected a tensor, got {type(v0).__name__}")
    shape = v0.shape
    q = v0.reshape(-1)
    n = q.numel()
    norm0 = float(q.norm())
    if not math.isfinite(norm0) or norm0 == 0.0:
        raise InputError("v0: must be a finite, non-zero vector")
    eps = torch.finfo(q.dtype).eps if q.is_floating_point() else 1e-12
    tol = 100 * eps if tol is None else tol
    m = min(iters, n)
    Q = torch.zeros(m, n, dtype=q.dtype, device=q.device)
    Q[0] = q / norm0
    alphas, betas = [], []
    scale = 0.0
    for j in range(m):
        w = _apply(matvec, Q[j].reshape(shape)).reshape(-1)
        a = torch.dot(Q[j], w)
        alphas.append(a)
        w = w - a * Q[j] - (betas[-1] * Q[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # full reorthogonalisation
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = w.norm()
        scale = max(scale, abs(float(a)), float(b))
        if j == m - 1:
            break
        if float(b) <= tol * max(scale, 1e-300):
            Q = Q[: j + 1]
            break
        betas.append(b)
        Q[j + 1] = w / b
    alpha = torch.stack(alphas)
    beta = torch.stack(betas) if betas else alpha.new_zeros(0)
    return LanczosResult(alpha, beta, Q[: alpha.numel()], norm0)


# --------------------------------------------------------------------------------------------
# top eigenvalue
# --------------------------------------------------------------------------------------------
@dataclass
class EigenResult:
    """An extreme eigenvalue estimate.

    Attributes:
        value: the eigenvalue estimate.
        vector: its (unit) eigenvector estimate, shaped like the probes.
        iterations: matvecs spent.
        residual: ||A v − value·v|| of the returned pair (an a-posteriori error bound for
            symmetric A: some eigenvalue lies within ``residual`` of ``value``).
        converged: Lanczos: ``residual <= tol·|value|``; power: relative change of the Rayleigh
            quotient below ``tol`` before ``iters`` ran out.
        method: ``lanczos`` or ``power``.
    """

    value: float
    vector: Tensor
    iterations: int
    residual: float
    converged: bool
    method: str


def top_eigenvalue(matvec: MatVec, dim_or_like: int | Tensor, *, iters: int = 50,
                   method: str = "lanczos", tol: float = 1e-3,
                   generator: torch.Generator | int | None = None,
                   dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> EigenResult:
    """Largest eigenvalue of a symmetric operator from matvecs.

    Method: ``lanczos`` returns the largest (algebraic) Ritz value of an ``iters``-step Lanczos
    run with full reorthogonalisation (converges much faster than power iteration, like
    Chebyshev acceleration); ``power`` runs power iteration with a Rayleigh-quotient estimate and
    returns the eigenvalue of largest *magnitude* (with its sign), stopping when the relative
    change falls below ``tol``. Cost: ≤ ``iters`` (+1) matvecs. Papers: Lanczos (1950); PyHessian
    (Yao et al., 2020) uses the power method for Hessian sharpness.

    Args:
        matvec: ``v -> A v``.
        dim_or_like: dimension n or a tensor whose shape/dtype/device the iterates copy.
        iters: maximum matvecs.
        method: ``lanczos`` or ``power``.
        tol: relative tolerance for ``converged`` (and the power-iteration stopping rule).
        generator: torch.Generator or seed of the random start vector.

    Returns:
        :class:`EigenResult`.
    """
    _check_positive_int(iters, "iters")
    like = _like(dim_or_like, dtype, device)
    gen = _generator(generator, like.device)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype, device=like.device)
    v = v / v.norm()
    if method == "lanczos":
        res = lanczos(matvec, v, iters)
        theta, vecs = torch.linalg.eigh(res.tridiagonal())
        lam = float(theta[-1])
        vec = (res.basis.T @ vecs[:, -1]).reshape(like.shape)
        vec = vec / vec.norm()
        av = _apply(matvec, vec)
        r = float((av - lam * vec).norm())
        return EigenResult(lam, vec, res.alpha.numel() + 1, r, r <= tol * max(abs(lam), 1e-30),
                           "lanczos")
    if method == "power":
        lam_prev, lam, av, k, done = None, 0.0, v, 0, False
        for k in range(1, iters + 1):  # noqa: B007 (k is reported)
            av = _apply(matvec, v)
            lam = float((v * av).sum())
            nrm = av.norm()
            if float(nrm) == 0.0:
                done = True
                break
            if lam_prev is not None and abs(lam - lam_prev) <= tol * max(abs(lam), 1e-30):
                done = True
                break
            lam_prev = lam
            v = av / nrm
        r = float((av - lam * v).norm())
        return EigenResult(lam, v, k, r, done, "power")
    raise InputError(f"method: expected 'lanczos' or 'power', got {method!r}")


# --------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature
# --------------------------------------------------------------------------------------------
@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature (SLQ) estimate of the spectral measure (1/n) Σ_i δ(λ − λ_i).

    Attributes:
        nodes: Ritz values per probe, shape [probes, m] (rows padded with NaN/zero weight when a
            probe broke down early).
        weights: quadrature weights per probe, shape [probes, m]; each row sums to 1.
        dim: the operator dimension n.
    """

    nodes: Tensor
    weights: Tensor
    dim: int

    def moment(self, k: int) -> float:
        """Estimate of tr(A^k)/n: the mean over probes of Σ_j τ_j² θ_j^k (exact for each probe's
        quadratic form v^T A^k v / ||v||² when k ≤ 2m − 1)."""
        nodes = torch.nan_to_num(self.nodes, nan=0.0)
        return float((self.weights * nodes ** k).sum(1).mean())

    def density(self, grid: Tensor, sigma: float | None = None) -> Tensor:
        """Gaussian-broadened density on ``grid``: (1/P) Σ_p Σ_j τ_pj² N(grid; θ_pj, σ²).

        Args:
            grid: 1-D evaluation points.
            sigma: broadening width (default: 1% of the spectral range).
        """
        nodes = torch.nan_to_num(self.nodes, nan=0.0)
        if sigma is None:
            lo, hi = float(nodes.min()), float(nodes.max())
            sigma = max(0.01 * (hi - lo), 1e-12)
        g = grid.to(nodes.dtype).reshape(-1, 1, 1)
        k = torch.exp(-0.5 * ((g - nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (k * self.weights).sum(-1).mean(-1)


def spectral_density_slq(matvec: MatVec, dim_or_like: int | Tensor, *, iters: int = 30,
                         probes: int = 10, generator: torch.Generator | int | None = None,
                         distribution: str = "rademacher", dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> SpectralDensity:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Method: for each probe v (normalised), m Lanczos steps give T_m; its eigenvalues θ_j and the
    squared first components τ_j² of its eigenvectors are the m-point Gauss quadrature of the
    spectral measure of v, so v^T f(A) v/||v||² ≈ Σ_j τ_j² f(θ_j), exact for polynomials of
    degree ≤ 2m − 1. Averaging over probes estimates (1/n) tr f(A). Cost: probes × iters matvecs.
    Papers: Golub & Meurant (1994); Ubaru, Chen & Saad (2017); Ghorbani, Krishnan & Xiao (2019).

    Args:
        matvec: ``v -> A v``.
        dim_or_like: dimension n or a tensor fixing shape/dtype/device.
        iters: Lanczos steps per probe m.
        probes: number of probes P.
        generator: torch.Generator or seed.
        distribution: probe distribution (``rademacher`` or ``gaussian``).

    Returns:
        :class:`SpectralDensity` (nodes, weights: each row sums to 1).
    """
    _check_positive_int(iters, "iters")
    _check_positive_int(probes, "probes")
    like = _like(dim_or_like, dtype, device)
    gen = _generator(generator, like.device)
    m = min(iters, like.numel())
    nodes = torch.full((probes, m), float("nan"), dtype=like.dtype, device=like.device)
    weights = torch.zeros(probes, m, dtype=like.dtype, device=like.device)
    for p in range(probes):
        v = probe_vector(like, gen, distribution)
        theta, tau2 = lanczos(matvec, v, m).ritz()
        nodes[p, : theta.numel()] = theta
        weights[p, : theta.numel()] = tau2 / tau2.sum()
    return SpectralDensity(nodes, weights, like.numel())
