"""Stochastic interpolants x_t = I(t, x0, x1) + γ(t)·z between two arbitrary distributions.

Albergo, Boffi & Vanden-Eijnden (2023), "Stochastic Interpolants: A Unifying Framework for Flows
and Diffusions" (arXiv 2303.08797). x0 ~ ρ0 (source, t = 0), x1 ~ ρ1 (data, t = 1), paired by any
coupling, and z ~ N(0, I) independent of both. monge's time direction is the paper's.

Every interpolant here is affine in the endpoints, I(t, x0, x1) = a(t)·x0 + b(t)·x1 with
a(0) = b(1) = 1 and a(1) = b(0) = 0:

| ``interpolant`` | a(t) | b(t) |
|---|---|---|
| ``linear`` | 1 − t | t |
| ``trigonometric`` | cos(πt/2) | sin(πt/2) |
| ``encoder-decoder`` | cos²(πt)·1[t < ½] | cos²(πt)·1[t > ½] |

and the latent scale γ (γ(0) = γ(1) = 0, γ > 0 inside):

| ``gamma`` | γ(t) |
|---|---|
| ``sqrt`` | √(c·t(1 − t)) (the paper's √(2t(1−t)) for c = 2) |
| ``quadratic`` | c·t(1 − t) (smooth at the ends) |
| ``sin2`` | c·sin²(πt) (pairs with ``encoder-decoder``) |
| ``zero`` | 0 (a deterministic interpolant; ``linear`` + ``zero`` is :class:`LinearPath`) |

The fields the paper learns, with their conditional (regression) targets:

- velocity b(t, x) = E[∂_t I + γ̇·z | x_t = x]           (target ``velocity``),
- interpolant velocity v(t, x) = E[∂_t I | x_t = x]      (target ``interpolant_velocity``),
- denoiser η_z(t, x) = E[z | x_t = x]                    (target ``denoiser``),
- score s(t, x) = ∇log ρ_t(x) = −η_z(t, x)/γ(t)          (target ``score``: −z/γ),

and b = v + γ̇·η_z. Schedules are evaluated in float64 and cast to the data's dtype.
:class:`GaussianInterpolant` gives b, s, η and the marginal ρ_t in closed form when both ends
are Gaussian (the reference for tests and benchmarks).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from monge.core.checks import as_tensor, check_finite, check_ndim, check_same_batch
from monge.core.tensors import as_time, broadcast_to_batch
from monge.errors import InputError
from monge.paths.affine import AffinePath
from monge.paths.base import ProbabilityPath

InterpolantTarget = Literal["velocity", "interpolant_velocity", "denoiser", "score"]
INTERPOLANT_TARGETS: tuple[str, ...] = ("velocity", "interpolant_velocity", "denoiser", "score")


# --- I(t, x0, x1) = a(t)·x0 + b(t)·x1 ------------------------------------------------------------
class Interpolant(ABC):
    """The deterministic part I(t, x0, x1) = a(t)·x0 + b(t)·x1 (float64 schedule)."""

    name: str = "interpolant"

    @abstractmethod
    def a(self, t: Tensor) -> Tensor:
        """Coefficient of the source x0."""

    @abstractmethod
    def b(self, t: Tensor) -> Tensor:
        """Coefficient of the target x1."""

    @abstractmethod
    def d_a(self, t: Tensor) -> Tensor:
        """ȧ(t)."""

    @abstractmethod
    def d_b(self, t: Tensor) -> Tensor:
        """ḃ(t)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearInterpolant(Interpolant):
    """I = (1 − t)·x0 + t·x1, ∂_t I = x1 − x0."""

    name = "linear"

    def a(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def b(self, t: Tensor) -> Tensor:
        return t

    def d_a(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def d_b(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


class TrigonometricInterpolant(Interpolant):
    """I = cos(πt/2)·x0 + sin(πt/2)·x1 (a² + b² = 1: variance preserving for whitened ends)."""

    name = "trigonometric"

    def a(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def b(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def d_a(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_b(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)


class EncoderDecoderInterpolant(Interpolant):
    """I = cos²(πt)·(1[t < ½]·x0 + 1[t > ½]·x1): encode x0 to pure noise at t = ½, decode to x1.

    With γ = sin²(πt) (``gamma="sin2"``) x_{1/2} = z exactly (the paper's encoder–decoder
    interpolant, Albergo et al. 2023, §3). a and b are C¹ (both vanish with their derivative
    at t = ½).
    """

    name = "encoder-decoder"

    def a(self, t: Tensor) -> Tensor:
        return torch.where(t < 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def b(self, t: Tensor) -> Tensor:
        return torch.where(t > 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def d_a(self, t: Tensor) -> Tensor:
        return torch.where(t < 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))

    def d_b(self, t: Tensor) -> Tensor:
        return torch.where(t > 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))


# --- γ(t) ----------------------------------------------------------------------------------------
class Gamma(ABC):
    """Scale of the latent noise γ(t), with γ(0) = γ(1) = 0 (float64 schedule)."""

    name: str = "gamma"

    def __init__(self, scale: float = 1.0):
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise InputError(f"gamma scale: must be a positive finite number, got {scale!r}")
        self.scale = float(scale)

    @abstractmethod
    def gamma(self, t: Tensor) -> Tensor:
        """γ(t)."""

    @abstractmethod
    def d_gamma(self, t: Tensor) -> Tensor:
        """γ̇(t) (may be infinite at t ∈ {0, 1}, e.g. for ``sqrt``)."""

    def gamma_d_gamma(self, t: Tensor) -> Tensor:
        """γ(t)·γ̇(t) = ½ d(γ²)/dt, finite on [0, 1] for every γ here."""
        return self.gamma(t) * self.d_gamma(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


class SqrtGamma(Gamma):
    """γ = √(c·t(1 − t)), γ̇ = c(1 − 2t)/(2γ) (singular at the ends), γγ̇ = c(1 − 2t)/2."""

    name = "sqrt"

    def __init__(self, scale: float = 2.0):
        super().__init__(scale)

    def gamma(self, t: Tensor) -> Tensor:
        return torch.sqrt((self.scale * t * (1.0 - t)).clamp_min(0.0))

    def d_gamma(self, t: Tensor) -> Tensor:
        return self.scale * (1.0 - 2.0 * t) / (2.0 * self.gamma(t))

    def gamma_d_gamma(self, t: Tensor) -> Tensor:
        return 0.5 * self.scale * (1.0 - 2.0 * t)


class QuadraticGamma(Gamma):
    """γ = c·t(1 − t), γ̇ = c(1 − 2t)."""

    name = "quadratic"

    def gamma(self, t: Tensor) -> Tensor:
        return self.scale * t * (1.0 - t)

    def d_gamma(self, t: Tensor) -> Tensor:
        return self.scale * (1.0 - 2.0 * t)


class SinSquaredGamma(Gamma):
    """γ = c·sin²(πt), γ̇ = c·π·sin(2πt)."""

    name = "sin2"

    def gamma(self, t: Tensor) -> Tensor:
        return self.scale * torch.sin(math.pi * t) ** 2

    def d_gamma(self, t: Tensor) -> Tensor:
        return self.scale * math.pi * torch.sin(2.0 * math.pi * t)


class ZeroGamma(Gamma):
    """γ ≡ 0: a deterministic interpolant (no latent noise; the score target is undefined)."""

    name = "zero"

    def gamma(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_gamma(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def __repr__(self) -> str:
        return "ZeroGamma()"


INTERPOLANTS: dict[str, type[Interpolant]] = {
    "linear": LinearInterpolant,
    "trigonometric": TrigonometricInterpolant,
    "encoder-decoder": EncoderDecoderInterpolant,
}
GAMMAS: dict[str, type[Gamma]] = {
    "sqrt": SqrtGamma,
    "quadratic": QuadraticGamma,
    "sin2": SinSquaredGamma,
    "zero": ZeroGamma,
}


def _pick(value, table: dict, what: str):
    if isinstance(value, str):
        if value not in table:
            raise InputError(f"{what}: unknown name {value!r}; expected one of {sorted(table)}")
        return table[value]()
    base = Interpolant if what == "interpolant" else Gamma
    if not isinstance(value, base):
        raise InputError(f"{what}: expected a name or a {base.__name__}, got "
                         f"{type(value).__name__}")
    return value


# --- the stochastic interpolant ------------------------------------------------------------------
class StochasticInterpolant(ProbabilityPath):
    """x_t = I(t, x0, x1) + γ(t)·z with its conditional targets (Albergo et al. 2023, §2–3).

    Method: a(t), b(t), γ(t) and their derivatives are evaluated in float64 and broadcast
    against the data; drawing x_t costs O(B·D). With ``gamma="zero"`` the interpolant is the
    affine path α = b(t), σ = a(t) (:meth:`as_affine_path`); ``linear`` + ``zero`` is
    :class:`~monge.paths.LinearPath` (rectified flow).

    Args:
        interpolant: ``linear``, ``trigonometric``, ``encoder-decoder`` or an
            :class:`Interpolant`.
        gamma: ``sqrt``, ``quadratic``, ``sin2``, ``zero`` or a :class:`Gamma`.
        gamma_scale: c in the γ table (default: 2 for ``sqrt``, 1 otherwise); ignored when
            ``gamma`` is an object.

    Example:
        >>> si = StochasticInterpolant("linear", "sqrt")  # γ = √(2t(1−t))
        >>> x0, x1, z = torch.randn(3, 8, 2).unbind(0)
        >>> t = torch.rand(8)
        >>> si.sample_xt(x0, x1, t, z).shape
        torch.Size([8, 2])
    """

    name = "interpolant"
    loss_family = "interpolant"
    predictions = ("velocity", "denoiser", "score")
    fixed_prediction = "velocity"

    def __init__(self, interpolant: str | Interpolant = "linear",
                 gamma: str | Gamma = "sqrt", gamma_scale: float | None = None):
        self.interpolant: Interpolant = _pick(interpolant, INTERPOLANTS, "interpolant")
        if isinstance(gamma, str) and gamma_scale is not None and gamma != "zero":
            if gamma not in GAMMAS:
                raise InputError(f"gamma: unknown name {gamma!r}; expected one of "
                                 f"{sorted(GAMMAS)}")
            self.gamma_fn: Gamma = GAMMAS[gamma](gamma_scale)
        else:
            self.gamma_fn = _pick(gamma, GAMMAS, "gamma")

    @property
    def is_deterministic(self) -> bool:
        """True when γ ≡ 0 (no latent z)."""
        return isinstance(self.gamma_fn, ZeroGamma)

    # --- schedule ------------------------------------------------------------------------------
    def coefficients(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, ...]:
        """(a, b, γ, ȧ, ḃ, γ̇) at t, cast to x's dtype/device and broadcast against x."""
        t64 = as_time(t, x)
        i, g = self.interpolant, self.gamma_fn
        coefs = (i.a, i.b, g.gamma, i.d_a, i.d_b, g.d_gamma)
        return tuple(broadcast_to_batch(f(t64), x) for f in coefs)

    def gamma(self, t: Tensor | float) -> Tensor:
        """γ(t) in float64."""
        return self.gamma_fn.gamma(as_time(t))

    def d_gamma(self, t: Tensor | float) -> Tensor:
        """γ̇(t) in float64."""
        return self.gamma_fn.d_gamma(as_time(t))

    # --- sampling ------------------------------------------------------------------------------
    def mean_part(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """I(t, x0, x1) = a(t)·x0 + b(t)·x1 for per-sample times t [B]."""
        a, b, *_ = self.coefficients(t, x1)
        return a * x0 + b * x1

    def sample_xt(self, x0: Tensor, x1: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        """x_t = I(t, x0, x1) + γ(t)·z (z ignored, may be None, when γ ≡ 0)."""
        check_same_batch(x0, x1, "x0", "x1")
        a, b, g, *_ = self.coefficients(t, x1)
        xt = a * x0 + b * x1
        if z is not None and not self.is_deterministic:
            xt = xt + g * z
        return xt

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor, *,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw z ~ N(0, I) and return (x_t, z)."""
        z = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        return self.sample_xt(x0, x1, t, z), z

    # --- conditional targets ---------------------------------------------------------------
    def interpolant_velocity_target(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """∂_t I(t, x0, x1) = ȧ(t)·x0 + ḃ(t)·x1."""
        _, _, _, da, db, _ = self.coefficients(t, x1)
        return da * x0 + db * x1

    def velocity_target(self, x0: Tensor, x1: Tensor, t: Tensor,
                        z: Tensor | None = None) -> Tensor:
        """∂_t I + γ̇(t)·z = d/dt x_t at fixed (x0, x1, z)."""
        target = self.interpolant_velocity_target(x0, x1, t)
        if z is not None and not self.is_deterministic:
            target = target + self.coefficients(t, x1)[5] * z
        return target

    def target(self, kind: InterpolantTarget, x0: Tensor, x1: Tensor, t: Tensor,
               z: Tensor | None) -> Tensor:
        """Regression target of ``kind`` for the draw (x0, x1, z) at times t [B]."""
        if kind not in INTERPOLANT_TARGETS:
            raise InputError(f"target: unknown {kind!r}; expected one of {INTERPOLANT_TARGETS}")
        if kind == "velocity":
            return self.velocity_target(x0, x1, t, z)
        if kind == "interpolant_velocity":
            return self.interpolant_velocity_target(x0, x1, t)
        if self.is_deterministic or z is None:
            raise InputError(f"target: {kind!r} needs latent noise z and γ > 0 (gamma is "
                             f"{self.gamma_fn!r})")
        if kind == "denoiser":
            return z
        g = self.coefficients(t, z)[2]
        return -z / g

    # --- conversions between fields at fixed (x, t) ---------------------------------------------
    def denoiser_to_score(self, eta: Tensor, t: Tensor) -> Tensor:
        """s = −η_z/γ(t) (divides by γ: keep t away from the ends)."""
        return -eta / broadcast_to_batch(self.gamma(t).to(eta.device), eta)

    def score_to_denoiser(self, score: Tensor, t: Tensor) -> Tensor:
        """η_z = −γ(t)·s."""
        return -broadcast_to_batch(self.gamma(t).to(score.device), score) * score

    def velocity_from_parts(self, v: Tensor, eta: Tensor, t: Tensor) -> Tensor:
        """b = v + γ̇(t)·η_z (the paper's recommended split)."""
        return v + broadcast_to_batch(self.d_gamma(t).to(v.device), v) * eta

    def convert(self, pred: Tensor, src: str, dst: str, x: Tensor, t: Tensor) -> Tensor:
        """Exact conversions at fixed (x, t): denoiser η_z ↔ score s = −η_z/γ(t). The velocity b
        is a separate field (b = v + γ̇·η_z needs a second network, :meth:`velocity_from_parts`)."""
        if src == dst:
            return pred
        if {src, dst} == {"denoiser", "score"}:
            return (self.denoiser_to_score(pred, t) if src == "denoiser"
                    else self.score_to_denoiser(pred, t))
        return super().convert(pred, src, dst, x, t)

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(b(t)/a(t)) of the deterministic interpolant (γ ≡ 0 only)."""
        return self.as_affine_path().log_snr(t)

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        return self.as_affine_path().t_from_log_snr(lam)

    def marginal_schedule(self) -> AffinePath:
        """The affine path with α = b(t) and σ = √(a² + γ²).

        For a standard Gaussian source, a·x0 + γ·z is N(0, σ²I), so x_t = α·x1 + σ·ε has this
        path's marginals, and the probability-flow velocity E[ȧx0 + ḃx1 + γ̇z | x_t] equals the
        affine path's (E[x0 | x_t] and E[z | x_t] are a/σ and γ/σ times E[ε | x_t], and
        σ̇ = (aȧ + γγ̇)/σ). With another source the conversions below are still exact algebra on
        the velocity, so solvers stay consistent; only the meaning of ε changes.
        """
        if self.is_deterministic:
            return _InterpolantPath(self.interpolant)
        return _NoisyInterpolantPath(self.interpolant, self.gamma_fn)

    def as_affine_path(self) -> AffinePath:
        """The equivalent :class:`AffinePath` (α = b(t), σ = a(t)); needs γ ≡ 0."""
        if not self.is_deterministic:
            raise InputError(f"as_affine_path: gamma must be 'zero', got {self.gamma_fn!r}")
        return _InterpolantPath(self.interpolant)

    def __repr__(self) -> str:
        return f"StochasticInterpolant({self.interpolant!r}, {self.gamma_fn!r})"


class _InterpolantPath(AffinePath):
    """A deterministic interpolant seen as an affine path x_t = b(t)·x1 + a(t)·x0."""

    def __init__(self, interpolant: Interpolant):
        self.interpolant = interpolant
        self.name = interpolant.name

    def alpha(self, t: Tensor) -> Tensor:
        return self.interpolant.b(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.interpolant.a(t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.interpolant.d_b(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return self.interpolant.d_a(t)

    def __repr__(self) -> str:
        return f"InterpolantPath({self.interpolant!r})"


class _NoisyInterpolantPath(_InterpolantPath):
    """The Gaussian-marginal view of x_t = a·x0 + b·x1 + γ·z: α = b, σ = √(a² + γ²)."""

    def __init__(self, interpolant: Interpolant, gamma: Gamma):
        super().__init__(interpolant)
        self.gamma_fn = gamma

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.interpolant.a(t) ** 2 + self.gamma_fn.gamma(t) ** 2)

    def d_sigma(self, t: Tensor) -> Tensor:
        i = self.interpolant
        return (i.a(t) * i.d_a(t) + self.gamma_fn.gamma_d_gamma(t)) / self.sigma(t)

    def __repr__(self) -> str:
        return f"InterpolantMarginalPath({self.interpolant!r}, {self.gamma_fn!r})"


def make_interpolant(name: str = "linear", *, gamma: str = "sqrt",
                     gamma_scale: float | None = None) -> StochasticInterpolant:
    """Build a :class:`StochasticInterpolant` from names (for configs and the CLI).

    Args:
        name: ``linear``, ``trigonometric`` or ``encoder-decoder``.
        gamma: ``sqrt``, ``quadratic``, ``sin2`` or ``zero``.
        gamma_scale: scale c of γ (default 2 for ``sqrt``, 1 otherwise).
    """
    return StochasticInterpolant(name, gamma, gamma_scale)


# --- closed form for Gaussian ends ---------------------------------------------------------------
def _as_cov(value, d: int | None, name: str) -> Tensor:
    c = as_tensor(value, name, dtype=torch.float64)
    check_finite(c, name)
    if c.ndim == 0:
        if d is None:
            raise InputError(f"{name}: a scalar variance needs the dimension from the mean")
        c = c * torch.eye(d, dtype=torch.float64)
    elif c.ndim == 1:
        c = torch.diag(c)
    check_ndim(c, name, 2)
    if c.shape[0] != c.shape[1] or (d is not None and c.shape[0] != d):
        raise InputError(f"{name}: expected a [{d}, {d}] covariance, got {tuple(c.shape)}")
    if not torch.allclose(c, c.T, atol=1e-12):
        raise InputError(f"{name}: covariance must be symmetric")
    if bool((torch.linalg.eigvalsh(c) <= 0).any()):
        raise InputError(f"{name}: covariance must be positive definite")
    return c


@dataclass
class GaussianMarginal:
    """ρ_t = N(mean, cov) of a :class:`GaussianInterpolant` at one time."""

    mean: Tensor
    cov: Tensor


class GaussianInterpolant:
    """Exact fields of a stochastic interpolant between independent Gaussians.

    With x0 ~ N(m0, S0), x1 ~ N(m1, S1), z ~ N(0, I) independent, x_t and the target
    Y = ȧ x0 + ḃ x1 + γ̇ z are jointly Gaussian, so (Albergo et al. 2023, Gaussian example)

        ρ_t = N(μ_t, V_t),   μ_t = a m0 + b m1,   V_t = a² S0 + b² S1 + γ² I,
        b(t, x) = ȧ m0 + ḃ m1 + C_t V_t⁻¹ (x − μ_t),   C_t = a ȧ S0 + b ḃ S1 + γγ̇ I,
        s(t, x) = −V_t⁻¹ (x − μ_t),   η_z(t, x) = −γ s(t, x),

    (conditional expectations of jointly Gaussian variables). With isotropic S0 = s0² I,
    S1 = s1² I and the linear I this is the formula of the spec. γγ̇ is used in its finite
    form, so the fields are finite on all of [0, 1]. Cost O(D³) per time for the solve.

    Args:
        interpolant: the :class:`StochasticInterpolant` (any I, any γ).
        mean0, cov0: source mean [D] and covariance ([D, D], [D] diagonal or a scalar).
        mean1, cov1: target mean and covariance.
    """

    def __init__(self, interpolant: StochasticInterpolant, mean0, cov0, mean1, cov1):
        self.si = interpolant
        self.mean0 = check_finite(as_tensor(mean0, "mean0", dtype=torch.float64), "mean0")
        self.mean1 = check_finite(as_tensor(mean1, "mean1", dtype=torch.float64), "mean1")
        check_ndim(self.mean0, "mean0", 1)
        check_ndim(self.mean1, "mean1", 1)
        if self.mean0.shape != self.mean1.shape:
            raise InputError(f"mean0 and mean1: dimensions differ ({self.mean0.shape[0]} vs "
                             f"{self.mean1.shape[0]})")
        d = self.mean0.shape[0]
        self.cov0 = _as_cov(cov0, d, "cov0")
        self.cov1 = _as_cov(cov1, d, "cov1")

    @property
    def dim(self) -> int:
        return self.mean0.shape[0]

    def _terms(self, t: Tensor | float):
        t64 = as_time(t).reshape(-1)
        i, g = self.si.interpolant, self.si.gamma_fn
        a, b, da, db = (f(t64)[:, None, None] for f in (i.a, i.b, i.d_a, i.d_b))
        gg, ggd = g.gamma(t64)[:, None, None], g.gamma_d_gamma(t64)[:, None, None]
        eye = torch.eye(self.dim, dtype=torch.float64)
        mean = a[..., 0] * self.mean0 + b[..., 0] * self.mean1              # [T, D]
        d_mean = da[..., 0] * self.mean0 + db[..., 0] * self.mean1
        cov = a**2 * self.cov0 + b**2 * self.cov1 + gg**2 * eye            # [T, D, D]
        cross = a * da * self.cov0 + b * db * self.cov1 + ggd * eye
        return mean, d_mean, cov, cross

    def marginal(self, t: float) -> GaussianMarginal:
        """ρ_t = N(μ_t, V_t) at a scalar time t."""
        mean, _, cov, _ = self._terms(t)
        return GaussianMarginal(mean[0], cov[0])

    def _per_sample(self, x: Tensor, t: Tensor | float):
        """x in float64 and the moments at t; one shared time (the solvers' case) is computed
        once and broadcast, per-sample times give [B, D, D] matrices."""
        x64 = x.to(torch.float64)
        t64 = as_time(t).to("cpu").reshape(-1)
        if t64.numel() > 1 and bool((t64 == t64[0]).all()):
            t64 = t64[:1]
        mean, d_mean, cov, cross = self._terms(t64)
        dev = x64.device
        return x64, mean.to(dev), d_mean.to(dev), cov.to(dev), cross.to(dev)

    @staticmethod
    def _solve(cov: Tensor, rhs: Tensor) -> Tensor:
        """V⁻¹·rhs for rhs [B, D], with V [1, D, D] (shared) or [B, D, D]."""
        if cov.shape[0] == 1:
            return torch.linalg.solve(cov[0], rhs.T).T
        return torch.linalg.solve(cov, rhs[..., None])[..., 0]

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """s(t, x) = −V_t⁻¹ (x − μ_t) for x [B, D] and t [B] (or a scalar)."""
        x64, mean, _, cov, _ = self._per_sample(x, t)
        return (-self._solve(cov, x64 - mean)).to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor | float) -> Tensor:
        """b(t, x) = μ̇_t + C_t V_t⁻¹ (x − μ_t) for x [B, D] and t [B] (or a scalar)."""
        x64, mean, d_mean, cov, cross = self._per_sample(x, t)
        w = self._solve(cov, x64 - mean)                                   # [B, D]
        return (d_mean + (cross @ w[..., None])[..., 0]).to(x.dtype)

    def denoiser(self, x: Tensor, t: Tensor | float) -> Tensor:
        """η_z(t, x) = −γ(t)·s(t, x)."""
        t64 = as_time(t).to(x.device)
        g = self.si.gamma_fn.gamma(t64)
        g = g[:, None] if g.ndim == 1 else g
        return (-g * self.score(x, t).to(torch.float64)).to(x.dtype)

    def log_density(self, x: Tensor, t: Tensor | float) -> Tensor:
        """log ρ_t(x) for x [B, D] (differentiable in x)."""
        x64, mean, _, cov, _ = self._per_sample(x, t)
        diff = x64 - mean
        maha = (diff * self._solve(cov, diff)).sum(-1)
        return -0.5 * (maha + torch.logdet(cov) + self.dim * math.log(2 * math.pi))

    def sample(self, n: int, which: Literal[0, 1], *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """Draw n samples of the source (``which=0``) or the target (``which=1``)."""
        mean, cov = (self.mean0, self.cov0) if which == 0 else (self.mean1, self.cov1)
        chol = torch.linalg.cholesky(cov)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (mean + z @ chol.T).to(dtype)
