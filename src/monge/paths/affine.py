"""Affine probability paths x_t = α(t)·x1 + σ(t)·x0 and exact conversions between predictions.

monge's time runs from t = 0 (source / noise x0) to t = 1 (target / data x1). Diffusion-style
schedules written with s = 1 at noise are converted here, once: α(t) = a(1 − t), σ(t) = b(1 − t),
and every time derivative changes sign (see ``DESIGN.md``).

The schedule maths (α, σ, α̇, σ̇) is done in float64 and only then cast to the dtype of the data,
because λ = log(α/σ) and ratios such as σ̇/σ lose precision in float32 near the ends.

Conversions between parameterisations at a fixed (x_t, t) are exact algebra on
x = α·x1 + σ·x0 and u = α̇·x1 + σ̇·x0 (Lipman et al. 2023; the notation of "The Principles of
Diffusion Models", Lai et al. 2025):

- x1 = (x − σ·ε)/α,              ε = (x − α·x1)/σ,
- u  = (σ̇/σ)·x + (α̇ − α·σ̇/σ)·x1 = (α̇/α)·x + (σ̇ − α̇·σ/α)·ε,
- score ∇log p_t(x) = −ε/σ      (for a standard Gaussian source x0 = ε).

They are named ``<from>_to_<to>`` and round-trip to machine precision in float64.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Literal

import torch
from torch import Tensor

from monge.core.tensors import as_time, broadcast_to_batch
from monge.errors import InputError
from monge.paths.base import ProbabilityPath

Prediction = Literal["velocity", "x1", "epsilon", "score"]
PREDICTIONS: tuple[str, ...] = ("velocity", "x1", "epsilon", "score")


class AffinePath(ProbabilityPath):
    """A Gaussian/affine probability path x_t = α(t)·x1 + σ(t)·x0, t ∈ [0, 1].

    Subclasses define ``alpha``, ``sigma`` and their derivatives on float64 time tensors.
    x0 is the source sample (standard normal noise ε for diffusion-type paths), x1 the data.
    λ(t) = log(α/σ) increases strictly from noise to data on every path here; its inverse is a
    closed form where one exists and float64 bisection otherwise.
    """

    name: str = "affine"
    predictions = PREDICTIONS
    needs_gaussian_source = True

    # --- schedule (float64) -------------------------------------------------------------------
    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor: ...

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(α(t)/σ(t)), increasing from noise to data."""
        t = as_time(t)
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """The time t with λ(t) = lam (float64). Generic method: 64 bisection steps on [0, 1]
        (λ is increasing), accurate to 2⁻⁶⁴; subclasses with a closed form override it."""
        lam = as_time(lam)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            below = self.log_snr(mid) < lam
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def marginal_schedule(self) -> AffinePath:
        """The path itself: its (α, σ) is the schedule solvers use."""
        return self

    def initial_state(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """σ(0)·x0: the source samples on the t = 0 marginal's scale (σ_max for VE/EDM)."""
        scale = self.source_scale
        return scale * x0 if scale != 1.0 else x0

    @property
    def source_scale(self) -> float:
        """Standard deviation of the source at t = 0 (σ(0)); σ_max for VE/EDM paths."""
        return float(self.sigma(torch.zeros((), dtype=torch.float64)))

    def coefficients(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(α, σ, α̇, σ̇) at t, cast to x's dtype/device and broadcast against x."""
        t64 = as_time(t, x)
        return tuple(broadcast_to_batch(f(t64), x) for f in (self.alpha, self.sigma, self.d_alpha,
                                                 self.d_sigma))  # type: ignore[return-value]

    # --- sampling the path ---------------------------------------------------------------------
    def sample_xt(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """x_t = α(t)·x1 + σ(t)·x0 for per-sample times t [B]."""
        a, s, _, _ = self.coefficients(t, x1)
        return a * x1 + s * x0

    def velocity_target(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """Conditional velocity u_t = α̇(t)·x1 + σ̇(t)·x0 = d/dt x_t."""
        _, _, da, ds = self.coefficients(t, x1)
        return da * x1 + ds * x0

    def target(self, kind: Prediction, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """The regression target of the given parameterisation for the pair (x0, x1)."""
        if kind == "velocity":
            return self.velocity_target(x0, x1, t)
        if kind == "x1":
            return x1
        if kind == "epsilon":
            return x0
        if kind == "score":
            _, s, _, _ = self.coefficients(t, x1)
            return -x0 / s
        raise InputError(f"target: unknown prediction {kind!r}; expected one of {PREDICTIONS}")

    def prior_sample(self, shape: tuple[int, ...] | torch.Size, *, generator: torch.Generator |
                     None = None, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> Tensor:
        """Standard normal ε scaled to the t = 0 marginal's noise level: σ(0)·ε."""
        eps = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return self.source_scale * eps

    # --- conversions ---------------------------------------------------------------------------
    def x1_to_epsilon(self, x1: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, _, _ = self.coefficients(t, x)
        return (x - a * x1) / s

    def epsilon_to_x1(self, eps: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, _, _ = self.coefficients(t, x)
        return (x - s * eps) / a

    def x1_to_velocity(self, x1: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, da, ds = self.coefficients(t, x)
        return (ds / s) * x + (da - a * ds / s) * x1

    def velocity_to_x1(self, u: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, da, ds = self.coefficients(t, x)
        return (s * u - ds * x) / (da * s - a * ds)

    def epsilon_to_velocity(self, eps: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, da, ds = self.coefficients(t, x)
        return (da / a) * x + (ds - da * s / a) * eps

    def velocity_to_epsilon(self, u: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, da, ds = self.coefficients(t, x)
        return (a * u - da * x) / (a * ds - da * s)

    def epsilon_to_score(self, eps: Tensor, x: Tensor, t: Tensor) -> Tensor:
        _, s, _, _ = self.coefficients(t, x)
        return -eps / s

    def score_to_epsilon(self, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
        _, s, _, _ = self.coefficients(t, x)
        return -s * score

    def score_to_velocity(self, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return self.epsilon_to_velocity(self.score_to_epsilon(score, x, t), x, t)

    def velocity_to_score(self, u: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return self.epsilon_to_score(self.velocity_to_epsilon(u, x, t), x, t)

    def x1_to_score(self, x1: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return self.epsilon_to_score(self.x1_to_epsilon(x1, x, t), x, t)

    def score_to_x1(self, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return self.epsilon_to_x1(self.score_to_epsilon(score, x, t), x, t)

    def convert(self, pred: Tensor, src: Prediction, dst: Prediction, x: Tensor,
                t: Tensor) -> Tensor:
        """Convert a prediction ``pred`` of kind ``src`` at (x, t) into kind ``dst``."""
        for k in (src, dst):
            if k not in PREDICTIONS:
                raise InputError(f"convert: unknown prediction {k!r}; expected one of "
                                 f"{PREDICTIONS}")
        if src == dst:
            return pred
        return getattr(self, f"{src}_to_{dst}")(pred, x, t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(AffinePath):
    """Linear (rectified-flow / CondOT) path: α = t, σ = 1 − t.

    Liu, Gong & Liu (2023), "Flow Straight and Fast"; Lipman et al. (2023), "Flow Matching".
    """

    name = "linear"
    needs_gaussian_source = False

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """λ = log(t/(1 − t)), so t = sigmoid(λ)."""
        return torch.sigmoid(as_time(lam))

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def sigma(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


class VPPath(AffinePath):
    """Variance-preserving path, α² + σ² = 1 (Ho et al. 2020; Song et al. 2021).

    ``schedule="linear"``: linear β(s) = β_min + s(β_max − β_min) in diffusion time s = 1 − t, so
    a(s) = exp(−½∫₀ˢβ) and α(t) = a(1 − t), σ = √(1 − α²). ``schedule="cosine"``: α = sin(πt/2),
    σ = cos(πt/2) (the cosine schedule of Nichol & Dhariwal 2021 without offset).
    """

    name = "vp"

    def __init__(self, schedule: Literal["linear", "cosine"] = "linear", beta_min: float = 0.1,
                 beta_max: float = 20.0):
        if schedule not in ("linear", "cosine"):
            raise InputError(f"VPPath: schedule must be 'linear' or 'cosine', got {schedule!r}")
        if not 0 <= beta_min < beta_max:
            raise InputError("VPPath: need 0 <= beta_min < beta_max")
        self.schedule, self.beta_min, self.beta_max = schedule, beta_min, beta_max

    def _int_beta(self, s: Tensor) -> Tensor:
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def alpha(self, t: Tensor) -> Tensor:
        if self.schedule == "cosine":
            return torch.sin(0.5 * math.pi * t)
        return torch.exp(-0.5 * self._int_beta(1.0 - t))

    def sigma(self, t: Tensor) -> Tensor:
        if self.schedule == "cosine":
            return torch.cos(0.5 * math.pi * t)
        # 1 − α² = −expm1(−∫β) is accurate near the data end where α → 1.
        return torch.sqrt(-torch.expm1(-self._int_beta(1.0 - t)))

    def d_alpha(self, t: Tensor) -> Tensor:
        if self.schedule == "cosine":
            return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)
        s = 1.0 - t
        beta = self.beta_min + (self.beta_max - self.beta_min) * s
        return 0.5 * beta * self.alpha(t)  # d/dt = −d/ds

    def d_sigma(self, t: Tensor) -> Tensor:
        if self.schedule == "cosine":
            return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """Cosine: λ = log tan(πt/2), t = (2/π)·atan(e^λ); linear β: bisection."""
        if self.schedule == "cosine":
            return (2.0 / math.pi) * torch.atan(torch.exp(as_time(lam)))
        return super().t_from_log_snr(lam)

    def __repr__(self) -> str:
        return f"VPPath(schedule={self.schedule!r})"


class VEPath(AffinePath):
    """Variance-exploding path: α = 1, σ(t) = σ_min·(σ_max/σ_min)^(1 − t) (Song et al. 2021).

    The source at t = 0 is N(0, σ_max²·I) (see ``prior_sample``).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0):
        if not 0 < sigma_min < sigma_max:
            raise InputError("VEPath: need 0 < sigma_min < sigma_max")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp((1.0 - t) * self._log_ratio)

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return -self._log_ratio * self.sigma(t)

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """λ = −log σ(t), so t = 1 − log(e^(−λ)/σ_min)/log(σ_max/σ_min)."""
        return 1.0 - (-as_time(lam) - math.log(self.sigma_min)) / self._log_ratio

    def __repr__(self) -> str:
        return f"VEPath(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class EDMPath(AffinePath):
    """EDM-style path (Karras et al. 2022): α = 1 and σ on the ρ-schedule,

    σ(t) = (σ_max^{1/ρ} + t·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, so that a uniform t-grid is the EDM
    sampling grid. The source at t = 0 is N(0, σ_max²·I).
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        if not 0 < sigma_min < sigma_max or rho <= 0:
            raise InputError("EDMPath: need 0 < sigma_min < sigma_max and rho > 0")
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        self._hi = sigma_max ** (1.0 / rho)
        self._lo = sigma_min ** (1.0 / rho)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return (self._hi + t * (self._lo - self._hi)) ** self.rho

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return self.rho * (self._hi + t * (self._lo - self._hi)) ** (self.rho - 1) * (
            self._lo - self._hi)

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """σ = e^(−λ), so t = (σ^(1/ρ) − σ_max^(1/ρ))/(σ_min^(1/ρ) − σ_max^(1/ρ))."""
        sigma = torch.exp(-as_time(lam))
        return (sigma ** (1.0 / self.rho) - self._hi) / (self._lo - self._hi)

    def __repr__(self) -> str:
        return f"EDMPath(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"
