"""PFGM++: the D-dimensional augmentation of diffusion, its EDM-aligned path and Heun sampler.

Xu, Liu, Tian, Tong, Tegmark & Jaakkola (ICML 2023), "PFGM++: Unlocking the Potential of
Physics-Inspired Generative Models" (arXiv 2302.04265). Spec: ``papers/pfgmpp.md``.

Method. Data y ∈ R^N are augmented with D extra dimensions whose norm r plays the role of the
noise level. The perturbation kernel is p_r(x | y) ∝ (||x − y||² + r²)^(−(N+D)/2). Its radius
R = ||x − y|| has the density p(R) ∝ R^(N−1)/(R² + r²)^((N+D)/2), i.e. R²/r² ~ BetaPrime(N/2, D/2):
draw B ~ Beta(N/2, D/2), R = r·√(B/(1 − B)) (computed here as the ratio of two Gamma draws,
G_N/G_D, in float64, which is the same law without the 1 − B cancellation), and x = y + R·u with
u uniform on S^(N−1). With the alignment r = σ·√D the kernel is a multivariate Student-t with D
degrees of freedom and scale σ, so:

- E||x − y||² = r²·N/(D − 2) = σ²·N·D/(D − 2) (finite only for D > 2; the kernel-moment identity);
- D → ∞ recovers the Gaussian kernel N(y, σ²I) of EDM/diffusion (D = ∞ is accepted);
- x = y + σ·x0 with x0 = R(σ=1)·u independent of σ, so PFGM++ is the EDM path
  x_t = x1 + σ(t)·x0 (monge time t = 0 at σ_max, t = 1 at σ_min) with a heavy-tailed source x0.

The PFGM++ ODE dx/dr = (x − E[y | x, r])/r is, in σ, the EDM ODE dx/dσ = (x − D_θ(x, σ))/σ, i.e.
in monge time dx/dt = σ̇/σ·(x − D_θ): the velocity of the EDM path for an x1-prediction. The
prior at σ_max uses the same kernel (not N(0, σ_max²I) for finite D). Score conversions of the
base class assume a Gaussian source; for finite D use the x1 (denoiser) and velocity
parameterisations, which are exact for any source.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from monge.core.checks import as_tensor, check_finite, make_generator
from monge.core.tensors import as_time, broadcast_to_batch
from monge.errors import InputError
from monge.paths.affine import EDMPath
from monge.paths.model import ModelWrapper
from monge.solvers import Heun, Solver, SolveResult, integrate


def _check_aug_dim(D: float) -> float:
    D = float(D)
    if not (D > 2.0):  # also rejects NaN
        raise InputError(f"D: the EDM-aligned PFGM++ kernel needs D > 2 (or inf), got {D}")
    return D


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy Generator seeded from the torch generator (so a torch seed makes runs exact)."""
    kw = {} if generator is None else {"generator": generator, "device": generator.device}
    seed = int(torch.randint(0, 2**62, (1,), **kw))
    return np.random.default_rng(seed)


def sample_radius_ratio(n: int, N: int, D: float,
                        generator: torch.Generator | None = None) -> Tensor:
    """Draw n values of R/σ for the kernel with r = σ√D (float64, on the CPU).

    R²/r² = B/(1 − B) with B ~ Beta(N/2, D/2), drawn as G_N/G_D with G_k ~ Gamma(k/2) in float64;
    R/σ = √(D·G_N/G_D). For D = ∞, R/σ = √(2 G_N) ~ χ_N (the Gaussian radius).

    Args:
        n: number of draws.
        N: flattened data dimension.
        D: augmentation dimension (> 2, or ``math.inf``).
        generator: torch generator whose stream seeds the draws.

    Returns:
        [n] float64 tensor of R/σ.
    """
    if N < 1:
        raise InputError(f"N: the data dimension must be positive, got {N}")
    D = _check_aug_dim(D)
    rng = _numpy_rng(generator)
    g_n = rng.standard_gamma(N / 2.0, size=n)
    if math.isinf(D):
        return torch.from_numpy(np.sqrt(2.0 * g_n))
    g_d = rng.standard_gamma(D / 2.0, size=n)
    return torch.from_numpy(np.sqrt(D * g_n / g_d))


def radius_log_density(R: object, sigma: float, N: int, D: float) -> Tensor:
    """log p(R) of the kernel's radius at noise level σ (r = σ√D), float64.

    p(R) = 2 R^(N−1) r^D / (B(N/2, D/2) (R² + r²)^((N+D)/2)); for D = ∞ the χ_N density of σ·χ_N.
    """
    R = as_tensor(R, "R", dtype=torch.float64)
    D = _check_aug_dim(D)
    if math.isinf(D):
        return ((N - 1) * torch.log(R) - R**2 / (2 * sigma**2) - (N / 2 - 1) * math.log(2)
                - math.lgamma(N / 2) - N * math.log(sigma))
    r = sigma * math.sqrt(D)
    log_beta = math.lgamma(N / 2) + math.lgamma(D / 2) - math.lgamma((N + D) / 2)
    return (math.log(2.0) + (N - 1) * torch.log(R) + D * math.log(r) - log_beta
            - 0.5 * (N + D) * torch.log(R**2 + r**2))


def kernel_second_moment(sigma: float, N: int, D: float) -> float:
    """E||x − y||² = r²N/(D − 2) = σ²·N·D/(D − 2) (σ²N for D = ∞)."""
    D = _check_aug_dim(D)
    return sigma**2 * N if math.isinf(D) else sigma**2 * N * D / (D - 2.0)


class PFGMPPPath(EDMPath):
    """The PFGM++ path x_t = x1 + σ(t)·x0 on EDM's ρ-schedule, with the D-dimensional kernel.

    Method: see the module docstring. σ(t) = (σ_max^(1/ρ) + t(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, so a
    uniform t-grid is EDM's sampling grid; x0 is the unit-scale PFGM++ noise (:meth:`noise`). The
    same σ schedule serves every D (the point of the r = σ√D alignment), and D = ∞ is EDM.

    Args:
        D: augmentation dimension (> 2, or ``math.inf``).
        sigma_min, sigma_max, rho: EDM schedule (Karras et al. 2022 defaults).

    Example:
        >>> path = PFGMPPPath(D=128)
        >>> x = path.prior_sample((4, 64), generator=torch.Generator().manual_seed(0))
        >>> x.shape
        torch.Size([4, 64])
    """

    name = "pfgmpp"
    loss_family = "pfgmpp"
    fixed_prediction = "x1"

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """EDM preconditioning around the bare network (what :class:`PFGMPPLoss` trains)."""
        return EDMPreconditioner(network, self)

    def t_clamp(self, prediction: str) -> float:
        return 0.0  # σ(t) ≥ σ_min > 0 on the whole grid: no singular end

    def initial_state(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A fresh draw of the heavy-tailed prior at σ_max (x0 gives only shape, dtype, device)."""
        return self.prior_sample(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)

    def __init__(self, D: float = 128.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0):
        super().__init__(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        self.D = _check_aug_dim(D)

    def noise(self, shape: tuple[int, ...] | torch.Size, *,
              generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> Tensor:
        """Unit-scale PFGM++ noise x0 = (R/σ)·u of shape [B, ...] (N = prod of the rest).

        For D = ∞ this is a standard normal draw.
        """
        shape = tuple(shape)
        if len(shape) < 2:
            raise InputError(f"shape: expected [B, ...] with a data dimension, got {shape}")
        z = torch.randn(shape, generator=generator, dtype=torch.float64, device=device)
        if math.isinf(self.D):
            return z.to(dtype)
        n, N = shape[0], math.prod(shape[1:])
        ratio = sample_radius_ratio(n, N, self.D, generator).to(device)
        u = z / z.flatten(1).norm(dim=1).clamp_min(1e-300).reshape(n, *([1] * (len(shape) - 1)))
        return (broadcast_to_batch(ratio, u) * u).to(dtype)

    def perturb(self, x1: Tensor, sigma: Tensor | float, *,
                generator: torch.Generator | None = None) -> Tensor:
        """x = x1 + σ·x0: a draw from the kernel around x1 at noise level σ (per-sample [B])."""
        x0 = self.noise(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        return x1 + broadcast_to_batch(as_time(sigma, x1), x1) * x0

    def prior_sample(self, shape: tuple[int, ...] | torch.Size, *,
                     generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> Tensor:
        """The prior at σ_max: σ_max·x0 with the PFGM++ noise (heavy-tailed for finite D)."""
        return self.sigma_max * self.noise(shape, generator=generator, dtype=dtype,
                                           device=device)

    def sigma_to_t(self, sigma: Tensor | float) -> Tensor:
        """Inverse of σ(t) (float64); σ outside [σ_min, σ_max] maps outside [0, 1]."""
        sigma = as_time(sigma)
        return (sigma ** (1.0 / self.rho) - self._hi) / (self._lo - self._hi)

    def sigma_grid(self, num_steps: int) -> Tensor:
        """EDM's σ-levels σ_0 = σ_max > ... > σ_{n−1} = σ_min (float64, ``num_steps`` values)."""
        if not isinstance(num_steps, int) or num_steps < 2:
            raise InputError(f"num_steps: expected an integer >= 2, got {num_steps!r}")
        return self.sigma(torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64))

    def posterior_mean(self, x: Tensor, data: Tensor, sigma: Tensor | float) -> Tensor:
        """E[y | x] at noise level σ for the uniform empirical measure on ``data`` (exact).

        Weights ∝ (||x − y_i||² + σ²D)^(−(N+D)/2) (softmax of −||x − y_i||²/(2σ²) for D = ∞).
        Cost O(B·n·N). Used as the ideal denoiser in tests and benchmarks.
        """
        x64 = x.reshape(x.shape[0], -1).to(torch.float64)
        y64 = data.reshape(data.shape[0], -1).to(device=x.device, dtype=torch.float64)
        if y64.shape[1] != x64.shape[1]:
            raise InputError(f"data: dimension {y64.shape[1]} differs from x's {x64.shape[1]}")
        sig = as_time(sigma, x).reshape(-1, 1) if isinstance(sigma, Tensor) else torch.tensor(
            float(sigma), dtype=torch.float64, device=x.device)
        d2 = torch.cdist(x64, y64).pow(2)
        N = x64.shape[1]
        if math.isinf(self.D):
            logits = -d2 / (2 * sig**2)
        else:
            logits = -0.5 * (N + self.D) * torch.log(d2 + sig**2 * self.D)
        return (torch.softmax(logits, dim=1) @ y64).reshape(x.shape).to(x.dtype)

    def __repr__(self) -> str:
        return (f"PFGMPPPath(D={self.D}, sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}, rho={self.rho})")


class EDMPreconditioner(nn.Module):
    """EDM preconditioning as a model wrapper: an x1-prediction (denoiser) field in monge time.

    Method (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
    Models", Table 1): D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise) with
    c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²),
    c_noise = ln(σ)/4, σ = path.sigma(t). PFGM++ keeps it unchanged (Xu et al. 2023). Its forward
    has the field signature ``(x, t, **cond)`` with t in monge time: it is the *network* of a
    :class:`~monge.paths.model.ModelWrapper` with prediction ``x1`` (``path.wrap_network(net)``
    builds it), which turns it into the PFGM++/EDM ODE velocity.

    Args:
        model: network F(x, c_noise, **cond) (e.g. :class:`monge.models.UNet`; its "time" input
            receives c_noise).
        path: a path with α ≡ 1 and a noise level σ(t) (:class:`PFGMPPPath`, ``EDMPath``).
        sigma_data: σ_d, the data standard deviation (0.5 for data in [−1, 1]).
    """

    def __init__(self, model: nn.Module, path: EDMPath, sigma_data: float = 0.5):
        super().__init__()
        if sigma_data <= 0:
            raise InputError(f"sigma_data: must be positive, got {sigma_data}")
        self.model, self.path, self.sigma_data = model, path, float(sigma_data)

    def denoise(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """D(x, σ) for per-sample noise levels σ [B]."""
        sig = as_time(sigma, x)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sig**2 + sd2)
        c_out = sig * self.sigma_data / torch.sqrt(sig**2 + sd2)
        c_in = 1.0 / torch.sqrt(sig**2 + sd2)
        c_noise = (torch.log(sig) / 4.0).to(x.dtype)
        out = self.model(broadcast_to_batch(c_in, x) * x, c_noise, **cond)
        return broadcast_to_batch(c_skip, x) * x + broadcast_to_batch(c_out, x) * out

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        t64 = as_time(t, x)
        if t64.ndim == 0:
            t64 = t64.expand(x.shape[0])
        return self.denoise(x, self.path.sigma(t64), **cond)


@torch.no_grad()
def pfgmpp_sample(
    denoiser: nn.Module,
    path: PFGMPPPath,
    x: Tensor | int,
    *,
    num_steps: int = 18,
    shape: tuple[int, ...] | None = None,
    solver: Solver | None = None,
    generator: torch.Generator | int | None = None,
    cond: dict[str, Any] | None = None,
    final_denoise: bool = True,
    return_trajectory: bool = False,
) -> SolveResult:
    """Sample with the EDM/PFGM++ Heun sampler on monge's solver API.

    Method: the ODE dx/dt = σ̇/σ·(x − D(x, σ(t))) (a :class:`ModelWrapper` of an x1-prediction on the
    path) is integrated by ``solver`` (default :class:`monge.solvers.Heun`) on the uniform t-grid
    of ``num_steps`` points, which is EDM's ρ-grid from σ_max to σ_min (Karras et al. 2022,
    Alg. 1). EDM's last step, an Euler step from σ_min to σ = 0, equals x ← D(x, σ_min) and is
    taken when ``final_denoise`` (1 NFE). With Heun: NFE = 2·num_steps − 1 (35 for 18 levels).
    Starting points are drawn from the PFGM++ prior at σ_max when ``x`` is a count.

    Args:
        denoiser: x1-prediction field ``(x, t, **cond)`` in monge time (e.g.
            :class:`EDMPreconditioner`).
        path: the :class:`PFGMPPPath` it was trained on.
        x: initial states [B, ...] at σ_max, or a number of samples (then ``shape`` is needed).
        num_steps: σ-levels of the grid (>= 2).
        shape: per-sample shape when ``x`` is a count.
        solver: a fixed-step solver (default Heun).
        generator: seed or generator for the prior draw.
        cond: conditioning passed to the denoiser (e.g. ``{"y": labels}``).
        final_denoise: finish with x ← D(x, σ_min) (EDM's last Euler step to σ = 0).
        return_trajectory: keep the states on the grid (the final denoised state is appended).

    Returns:
        :class:`monge.solvers.SolveResult` (``nfe`` includes the final denoising call).
    """
    cond = cond or {}
    if isinstance(x, int):
        if shape is None:
            raise InputError("shape: needed when x is a number of samples")
        params = next(iter(denoiser.parameters()), None)
        device = params.device if params is not None else torch.device("cpu")
        dtype = params.dtype if params is not None else torch.float32
        gen = make_generator(generator, device)
        x = path.prior_sample((x, *shape), generator=gen, dtype=dtype, device=device)
    check_finite(x, "x")
    field = ModelWrapper(denoiser, path, "x1")
    grid = torch.linspace(0.0, 1.0, path.sigma_grid(num_steps).numel(), dtype=torch.float64)
    res = integrate(field, x, solver or Heun(), grid=grid, cond=cond,
                    return_trajectory=return_trajectory)
    if final_denoise:
        t_end = torch.ones(res.x.shape[0], dtype=res.x.dtype, device=res.x.device)
        res.x = denoiser(res.x, t_end, **cond)
        res.nfe += 1
        if res.trajectory is not None:
            res.trajectory = torch.cat([res.trajectory, res.x[None]])
    return res


__all__ = ["EDMPreconditioner", "PFGMPPPath", "kernel_second_moment", "pfgmpp_sample",
           "radius_log_density", "sample_radius_ratio"]
