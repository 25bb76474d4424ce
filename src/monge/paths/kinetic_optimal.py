"""Kinetic-optimal Gaussian paths: the data-separation function λ(s) and the tabulated KO schedule.

Shaul, Chen, Nickel, Le & Lipman (ICML 2023), "On Kinetic Optimal Probability Paths for
Generative Models" (arXiv 2306.06626). Spec: ``papers/kinetic-optimal.md``.

Method (monge time: t = 0 noise, t = 1 data; x_t = α·x1 + σ·ε). With the data scaled so that
E||x1||² = d and SNR s = α/σ, the kinetic energy of the marginal flow-matching velocity is

    KE/d = ∫₀¹ α̇² + σ̇² − σ²·ṡ²·(1 − λ(s)) dt,   λ(s) = E||E[x1 | x_t]||² / E||x1||²,

so the data enter only through the *data-separation function* λ ∈ [0, 1] (1 − λ is the normalised
MMSE). In polar coordinates α = ρ sinθ, σ = ρ cosθ (s = tanθ) the metric is dρ² + ρ² h(θ)² dθ²
with h² = 1 − (1 − λ(tanθ))/cos²θ = 1 − g(θ). With φ(θ) = ∫₀^θ h the metric is flat in (ρ, φ),
so the kinetic-optimal (KO) path is the straight chord from (ρ, φ) = (1, 0) to (1, Φ),
Φ = φ(π/2):

    X = 1 − t + t·cosΦ,  Y = t·sinΦ,  ρ = √(X² + Y²),  φ(t) = atan2(Y, X),  θ(t) = φ⁻¹(φ(t)),

and KE/d of the KO path is the squared chord length 2 − 2cosΦ. When λ ≡ 1, h ≡ 1, Φ = π/2 and the
KO path is exactly CondOT (α = t, σ = 1 − t). Since h ≤ 1, Φ ≤ π/2 and the chord never passes
through ρ = 0.

Numerics: λ is estimated by Monte Carlo with the exact posterior over an empirical support set,
smoothed by an isotonic (non-decreasing) fit, and g is clamped to [0, 1] (h² ≥ 0). The schedule is
tabulated in θ (not in s, which is infinite at t = 1), then α(t), σ(t) are tabulated on a t-grid
and interpolated by monotone cubic Hermite (PCHIP, Fritsch & Carlson 1980); α̇, σ̇ are the exact
derivatives of that interpolant, so the velocity target is d/dt of x_t. All in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from sklearn.isotonic import IsotonicRegression
from torch import Tensor

from monge.core.checks import as_tensor, check_finite, make_generator
from monge.core.tensors import as_time
from monge.errors import InputError
from monge.paths.affine import AffinePath


@dataclass
class DataSeparation:
    """A Monte-Carlo estimate of the data-separation function λ(s).

    Attributes:
        snr: [K] signal-to-noise ratios s = α/σ (float64, increasing, s[0] may be 0).
        separation: [K] raw estimates of λ(s) (float64).
        smoothed: [K] isotonic (non-decreasing) fit of ``separation`` clipped to [0, 1].
        n_support: number of data points the posterior is taken over.
        dim: flattened data dimension d.
        scale: factor the data were multiplied by so that E||x1||² = d.
        held_out: whether the query points were disjoint from the support.
    """

    snr: Tensor
    separation: Tensor
    smoothed: Tensor
    n_support: int
    dim: int
    scale: float
    held_out: bool


def _flatten64(x: object, name: str) -> Tensor:
    t = as_tensor(x, name)
    if t.ndim < 2 or t.shape[0] < 1:
        raise InputError(f"{name}: expected samples [n, ...] with n >= 1, got shape "
                         f"{tuple(t.shape)}")
    check_finite(t, name)
    return t.reshape(t.shape[0], -1).to(torch.float64)


def _posterior_mean(x: Tensor, support: Tensor, sq_norms: Tensor, s: float) -> Tensor:
    """E[y | x = s·y + ε] under the uniform empirical measure on ``support`` (float64)."""
    # log p(x | y_i) = −||x − s y_i||²/2 + const = s x·y_i − s²||y_i||²/2 + const
    logits = s * (x @ support.T) - 0.5 * s * s * sq_norms[None, :]
    return torch.softmax(logits, dim=1) @ support


def data_separation(
    x1: object,
    snr: object | None = None,
    *,
    queries: object | None = None,
    n_queries: int = 1024,
    noise_draws: int = 1,
    normalize: bool = True,
    generator: torch.Generator | int | None = None,
    chunk: int = 512,
) -> DataSeparation:
    """Estimate λ(s) = E||E[x1 | s·x1 + ε]||² / E||x1||² for empirical data.

    Method: the posterior over the n support points is the softmax of −||x − s·y_i||²/2 (exact
    for the empirical measure); for each s on the grid, query points q (the support itself, or
    held-out points) are noised as x = s·q + ε and λ is the ratio of mean ||E[y|x]||² to mean
    ||q||². Cost O(|snr| · n_queries · noise_draws · n · d). With queries = support this is the
    λ of the empirical distribution, which tends to 1 when n/√d → 0 (Shaul et al. 2023); with
    held-out queries it is a smoothed estimate for the underlying distribution (memorisation does
    not force λ → 1).

    Args:
        x1: support data [n, ...] (flattened internally).
        snr: grid of SNR values s >= 0 (default: 0 and 49 log-spaced values in [1e-2, 1e2]).
        queries: points whose noised versions are denoised (default: a subset of ``x1``).
        n_queries: most query points used (subsampled with ``generator``).
        noise_draws: noise draws per query point and SNR.
        normalize: scale support and queries by √(d / mean ||x1||²) first (the spec's convention).
        generator: seed or generator for the subsampling and the noise.
        chunk: query rows processed at once (memory: chunk × n).

    Returns:
        :class:`DataSeparation` with the raw and the monotone-smoothed estimate.

    Example:
        >>> x = torch.randn(5, 64)
        >>> sep = data_separation(x, snr=[0.5, 2.0], generator=0)
        >>> bool(sep.smoothed[-1] > 0.9)
        True
    """
    support = _flatten64(x1, "x1")
    n, d = support.shape
    gen = make_generator(generator, support.device)
    if snr is None:
        snr_t = torch.cat([torch.zeros(1, dtype=torch.float64),
                           torch.logspace(-2, 2, 49, dtype=torch.float64)])
    else:
        snr_t = as_tensor(snr, "snr", dtype=torch.float64).reshape(-1)
        check_finite(snr_t, "snr")
        if snr_t.numel() < 1 or bool((snr_t < 0).any()) or bool((snr_t.diff() <= 0).any()):
            raise InputError("snr: expected a non-empty, strictly increasing grid of values >= 0")
    snr_t = snr_t.to(support.device)
    if noise_draws < 1 or n_queries < 1:
        raise InputError("data_separation: n_queries and noise_draws must be positive")
    scale = math.sqrt(d / float(support.pow(2).sum(1).mean())) if normalize else 1.0
    if not math.isfinite(scale):
        raise InputError("x1: all points are zero; the data cannot be normalised")
    support = support * scale
    held_out = queries is not None
    q = support if queries is None else _flatten64(queries, "queries").to(support.device) * scale
    if q.shape[1] != d:
        raise InputError(f"queries: dimension {q.shape[1]} differs from x1's {d}")
    if q.shape[0] > n_queries:
        idx = torch.randperm(q.shape[0], generator=gen, device=gen.device)[:n_queries]
        q = q[idx.to(q.device)]
    q = q.repeat(noise_draws, 1)
    sq_norms = support.pow(2).sum(1)
    denom = float(q.pow(2).sum(1).mean())
    lam = torch.empty_like(snr_t)
    for k, s in enumerate(snr_t.tolist()):
        total = 0.0
        for start in range(0, q.shape[0], chunk):
            qc = q[start:start + chunk]
            eps = torch.randn(qc.shape, generator=gen, dtype=torch.float64, device=gen.device)
            x = s * qc + eps.to(qc.device)
            total += float(_posterior_mean(x, support, sq_norms, s).pow(2).sum())
        lam[k] = total / q.shape[0] / denom
    smooth = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(
        snr_t.cpu().numpy(), lam.cpu().numpy())
    return DataSeparation(snr=snr_t, separation=lam,
                          smoothed=torch.as_tensor(smooth, dtype=torch.float64,
                                                   device=snr_t.device),
                          n_support=n, dim=d, scale=scale, held_out=held_out)


def _g_of_theta(theta: Tensor, snr: Tensor, separation: Tensor) -> Tensor:
    """g(θ) = (1 − λ(tanθ))/cos²θ clamped to [0, 1] (so h² = 1 − g ≥ 0), float64.

    g is interpolated linearly in log s between the estimates, held at its first value below the
    grid and at its last value above it (a Gaussian-like tail, 1 − λ ∝ 1/(1 + s²)).
    """
    theta = as_time(theta)
    s = torch.tan(theta.clamp(0.0, math.pi / 2 - 1e-12))
    g_nodes = ((1.0 - separation) * (1.0 + snr**2)).cpu()
    log_nodes = torch.log(snr.clamp_min(1e-300)).cpu()
    vals = np.interp(torch.log(s.clamp_min(1e-300)).cpu().numpy(), log_nodes.numpy(),
                     g_nodes.numpy())
    g = torch.as_tensor(vals, dtype=torch.float64, device=theta.device).reshape(theta.shape)
    g = torch.where(theta >= math.pi / 2, torch.full_like(g, float(g_nodes[-1])), g)
    return g.clamp(0.0, 1.0)


def _separation_curve(snr: object | None, separation: object | None) -> tuple[Tensor, Tensor]:
    """Validated (SNR grid, λ) as float64 CPU tensors, λ clamped to [0, 1]; λ ≡ 1 when omitted."""
    if snr is None:
        return (torch.tensor([0.0, 1.0], dtype=torch.float64),
                torch.ones(2, dtype=torch.float64))
    snr_t = as_tensor(snr, "snr", dtype=torch.float64).reshape(-1).cpu()
    lam = as_tensor(separation, "separation", dtype=torch.float64).reshape(-1).cpu()
    check_finite(snr_t, "snr")
    check_finite(lam, "separation")
    if snr_t.shape != lam.shape or snr_t.numel() < 2:
        raise InputError("snr and separation: expected two 1-D arrays of the same length >= 2")
    if bool((snr_t < 0).any()) or bool((snr_t.diff() <= 0).any()):
        raise InputError("snr: expected a strictly increasing grid of values >= 0")
    if bool((lam < -1e-6).any()) or bool((lam > 1 + 1e-6).any()):
        raise InputError("separation: λ(s) must lie in [0, 1]")
    return snr_t, lam.clamp(0.0, 1.0)


def _hermite(xk: Tensor, yk: Tensor, mk: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Cubic Hermite interpolant and its exact derivative at x (float64, clamped to the range)."""
    x = x.clamp(float(xk[0]), float(xk[-1]))
    i = torch.searchsorted(xk, x.contiguous(), right=True).clamp(1, xk.numel() - 1) - 1
    x0, h = xk[i], xk[i + 1] - xk[i]
    u = (x - x0) / h
    y0, y1, m0, m1 = yk[i], yk[i + 1], mk[i] * h, mk[i + 1] * h
    u2, u3 = u * u, u * u * u
    val = ((2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * y1
           + (u3 - u2) * m1)
    der = ((6 * u2 - 6 * u) * y0 + (3 * u2 - 4 * u + 1) * m0 + (-6 * u2 + 6 * u) * y1
           + (3 * u2 - 2 * u) * m1) / h
    return val, der


class KineticOptimalPath(AffinePath):
    """The kinetic-optimal Gaussian path for a given data-separation function (tabulated).

    Method: the geodesic construction of Shaul et al. (2023) described in the module docstring:
    h(θ) from λ, φ = ∫h by the trapezoid rule on a θ-grid, the chord in (ρ, φ), θ(t) by inverting
    φ, then PCHIP tables of α(t), σ(t) whose exact derivatives are α̇, σ̇. Construction costs
    O(n_theta + n_time); evaluation is a binary search plus a cubic, O(log n_time) per time.

    With ``snr``/``separation`` omitted, λ ≡ 1 and the path is CondOT (α = t, σ = 1 − t) up to
    interpolation error (< 1e-9). Train and sample with data scaled as when λ was estimated
    (see :attr:`DataSeparation.scale`); store the schedule with the model (:meth:`to_tensors`).

    Args:
        snr: [K] increasing SNR grid of the λ estimate (s[0] may be 0).
        separation: [K] λ(s) in [0, 1] (e.g. ``DataSeparation.smoothed``).
        n_theta: θ-grid size for φ(θ).
        n_time: t-grid size of the α, σ tables.
        h_floor: smallest h used. It keeps φ invertible and bounds the schedule's speed: where
            h ≈ 0 (e.g. at low SNR for data with isotropic covariance, where h = O(s²)) the
            exact geodesic crosses a whole θ-range at once (α̇ of order 10² near t = 0 on
            normalised 8-gaussians), which neither a table nor a trained network follows. The
            floored path is optimal for the metric with h replaced by max(h, h_floor); its true
            KE is at most :attr:`kinetic_energy_per_dim`. Use ~1e-4 for the exact geodesic.

    Example:
        >>> path = KineticOptimalPath()                        # λ ≡ 1: CondOT
        >>> float(path.alpha(torch.tensor(0.25, dtype=torch.float64)))  # doctest: +ELLIPSIS
        0.25...
    """

    name = "kinetic-optimal"

    def export_state(self) -> dict[str, Any]:
        """The separation curve and data scale (rebuilds the same path, no data needed)."""
        return {"snr": self.snr.tolist(), "separation": self.separation.tolist(),
                "data_scale": float(self.data_scale)}

    def prediction_advice(self, prediction: str) -> str | None:
        if prediction == "velocity":
            return ("path kinetic-optimal with a velocity-prediction network trained poorly here "
                    "(the conditional velocity's variance explodes where the path moves fast; "
                    "benchmarks/kinetic_optimal.py); consider train.prediction: x1")
        return None

    def __init__(self, snr: object | None = None, separation: object | None = None, *,
                 n_theta: int = 4097, n_time: int = 2049, h_floor: float = 0.1):
        if (snr is None) != (separation is None):
            raise InputError("KineticOptimalPath: give both snr and separation, or neither")
        if n_theta < 3 or n_time < 3:
            raise InputError("KineticOptimalPath: n_theta and n_time must be at least 3")
        if not 0.0 < h_floor < 1.0:
            raise InputError(f"h_floor: expected a value in (0, 1), got {h_floor}")
        self.snr, self.separation = _separation_curve(snr, separation)
        self.h_floor = h_floor
        self._build(n_theta, n_time)

    # --- construction ---------------------------------------------------------------------------
    def g_of_theta(self, theta: Tensor) -> Tensor:
        """g(θ) = (1 − λ(tanθ))/cos²θ ∈ [0, 1] of this path's λ curve (see :func:`_g_of_theta`)."""
        return _g_of_theta(theta, self.snr, self.separation)

    def _build(self, n_theta: int, n_time: int) -> None:
        theta = torch.linspace(0.0, math.pi / 2, n_theta, dtype=torch.float64)
        h = torch.sqrt(1.0 - self.g_of_theta(theta)).clamp_min(self.h_floor)
        phi = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum(0.5 * (h[1:] + h[:-1]) * theta.diff(), 0)])
        self.theta_grid, self.h_grid, self.phi_grid = theta, h, phi
        self.Phi = float(phi[-1])
        # nodes clustered at both ends (t = u²(3 − 2u)): where h → 0 (e.g. near the data end for
        # data with a density) θ(t) has a square-root singularity, which is smooth in u
        u = torch.linspace(0.0, 1.0, n_time, dtype=torch.float64)
        t = u * u * (3.0 - 2.0 * u)
        X = 1.0 - t + t * math.cos(self.Phi)
        Y = t * math.sin(self.Phi)
        rho = torch.sqrt(X * X + Y * Y)
        phi_t = torch.atan2(Y, X)
        theta_t = torch.as_tensor(np.interp(phi_t.numpy(), phi.numpy(), theta.numpy()),
                                  dtype=torch.float64)
        alpha, sigma = rho * torch.sin(theta_t), rho * torch.cos(theta_t)
        alpha[0], sigma[0], alpha[-1], sigma[-1] = 0.0, 1.0, 1.0, 0.0
        self.t_grid, self.alpha_grid, self.sigma_grid = t, alpha, sigma
        tn = t.numpy()
        self._m_alpha = torch.as_tensor(PchipInterpolator(tn, alpha.numpy()).derivative()(tn))
        self._m_sigma = torch.as_tensor(PchipInterpolator(tn, sigma.numpy()).derivative()(tn))
        self._cache: dict[torch.device, tuple[Tensor, ...]] = {}

    def _tables(self, device: torch.device) -> tuple[Tensor, ...]:
        if device not in self._cache:
            self._cache[device] = tuple(v.to(device) for v in (
                self.t_grid, self.alpha_grid, self._m_alpha, self.sigma_grid, self._m_sigma))
        return self._cache[device]

    def _eval(self, t: Tensor, which: str, derivative: bool) -> Tensor:
        t = as_time(t)
        tk, ak, mak, sk, msk = self._tables(t.device)
        yk, mk = (ak, mak) if which == "alpha" else (sk, msk)
        val, der = _hermite(tk, yk, mk, t.reshape(-1))
        return (der if derivative else val).reshape(t.shape)

    # --- schedule (float64) ---------------------------------------------------------------------
    def alpha(self, t: Tensor) -> Tensor:
        return self._eval(t, "alpha", False)

    def sigma(self, t: Tensor) -> Tensor:
        return self._eval(t, "sigma", False)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self._eval(t, "alpha", True)

    def d_sigma(self, t: Tensor) -> Tensor:
        return self._eval(t, "sigma", True)

    @property
    def kinetic_energy_per_dim(self) -> float:
        """KE/d of the path in its (floored) metric: the squared chord length 2 − 2cosΦ.

        Equals the true KE/d when h_floor is below min h, else an upper bound of it.
        """
        return 2.0 - 2.0 * math.cos(self.Phi)

    # --- construction from data and storage ---------------------------------------------------
    @classmethod
    def from_data(cls, x1: object, *, held_out: object | None = None,
                  held_out_fraction: float = 0.2, snr: object | None = None,
                  n_queries: int = 1024, noise_draws: int = 1,
                  generator: torch.Generator | int | None = 0,
                  **kwargs) -> KineticOptimalPath:
        """Estimate λ from data (held-out queries by default) and build the KO path.

        Args:
            x1: data [n, ...] (raw scale; λ is estimated after scaling to E||x1||² = d, and the
                factor is kept as :attr:`data_scale`: train on ``x1 * path.data_scale``).
            held_out: query points; by default ``held_out_fraction`` of ``x1`` is held out
                (0 uses the support itself, which over-estimates λ by memorisation).
            held_out_fraction: fraction of x1 held out when ``held_out`` is None.
            snr, n_queries, noise_draws: see :func:`data_separation`.
            generator: seed or generator for the split and the Monte Carlo.
            **kwargs: further constructor arguments (``n_theta``, ``n_time``, ``h_floor``).

        Returns:
            The path, with its estimate in :attr:`estimate`.
        """
        data = _flatten64(x1, "x1")
        gen = make_generator(generator, data.device)
        queries = held_out
        if held_out is None and held_out_fraction > 0:
            if not 0 < held_out_fraction < 1:
                raise InputError(f"held_out_fraction: expected a value in [0, 1), got "
                                 f"{held_out_fraction}")
            n_out = max(1, round(held_out_fraction * data.shape[0]))
            if n_out >= data.shape[0]:
                raise InputError("x1: too few points to hold some out")
            perm = torch.randperm(data.shape[0], generator=gen, device=gen.device).to(data.device)
            queries, data = data[perm[:n_out]], data[perm[n_out:]]
        est = data_separation(data, snr, queries=queries, n_queries=n_queries,
                              noise_draws=noise_draws, generator=gen)
        path = cls(est.snr, est.smoothed, **kwargs)
        path.estimate = est
        path.data_scale = est.scale
        return path

    def to_tensors(self) -> dict[str, Tensor]:
        """The schedule's defining tensors (for a safetensors file next to the model)."""
        return {"kinetic_optimal.snr": self.snr.clone(),
                "kinetic_optimal.separation": self.separation.clone()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], **kwargs) -> KineticOptimalPath:
        """Rebuild a path saved with :meth:`to_tensors`."""
        try:
            return cls(tensors["kinetic_optimal.snr"], tensors["kinetic_optimal.separation"],
                       **kwargs)
        except KeyError as exc:
            raise InputError(f"tensors: missing key {exc.args[0]!r} of a kinetic-optimal path")\
                from None

    def __repr__(self) -> str:
        return f"KineticOptimalPath(Phi={self.Phi:.4f}, KE/d={self.kinetic_energy_per_dim:.4f})"


def path_kinetic_energy(path: AffinePath, snr: object | None = None,
                        separation: object | None = None, *, n: int = 20000) -> float:
    """KE/d = ∫₀¹ α̇² + σ̇² − σ²ṡ²(1 − λ(s)) dt of any affine path for a given λ (float64).

    Method: the formula of Shaul et al. (2023) (module docstring) with the singular factor
    rewritten as σ²ṡ²(1 − λ) = (α̇σ − ασ̇)²·g(θ)/(α² + σ²), θ = atan2(α, σ), which stays finite at
    σ = 0; midpoint rule on n cells. λ ≡ 1 when ``snr``/``separation`` are omitted (then
    KE/d = ∫ α̇² + σ̇²). Data must be scaled so that E||x1||² = d.

    Args:
        path: the path (α, σ must go from (0, 1) to (1, 0) for the formula's normalisation).
        snr, separation: the λ curve (as for :class:`KineticOptimalPath`).
        n: quadrature cells.

    Returns:
        The kinetic energy per dimension of the marginal flow-matching velocity.
    """
    if (snr is None) != (separation is None):
        raise InputError("path_kinetic_energy: give both snr and separation, or neither")
    snr_t, lam = _separation_curve(snr, separation)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    a, s, da, ds = path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t)
    g = _g_of_theta(torch.atan2(a, s), snr_t, lam)
    integrand = da**2 + ds**2 - (da * s - a * ds) ** 2 * g / (a**2 + s**2)
    return float(integrand.mean())


__all__ = ["DataSeparation", "KineticOptimalPath", "data_separation", "path_kinetic_energy"]
