"""Analytic Gaussian-mixture reference: closed-form marginal velocity, score and posterior mean.

If the data x1 ~ Σ_k w_k N(μ_k, diag(s_k²)) and the source x0 ~ N(0, I) are independent, then
under any affine path x_t = α·x1 + σ·x0 the marginal p_t is the mixture
Σ_k w_k N(α μ_k, C_k) with C_k = α² diag(s_k²) + σ² I, and

- E[x1 | x_t = x] = Σ_k r_k(x) (μ_k + α s_k² / C_k · (x − α μ_k))   (r_k: responsibilities),
- ∇log p_t(x)    = −Σ_k r_k(x) (x − α μ_k) / C_k,
- the marginal velocity u_t(x) = α̇ E[x1|x] + σ̇ E[x0|x] (the flow-matching minimiser).

Used by the tests (solver orders, sampler marginals) and benchmarks as an exact field. All maths in
float64; outputs are cast back to the input's dtype. See "The Principles of Diffusion Models"
(Lai et al. 2025), section 3 of ``principles.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from monge.core.tensors import as_time
from monge.errors import InputError
from monge.paths.affine import AffinePath


@dataclass
class GaussianMixture:
    """A Gaussian mixture with diagonal covariances.

    Attributes:
        means: [K, D] component means.
        stds: [K, D] (or [K] for isotropic) component standard deviations.
        weights: [K] mixture weights (normalised on construction).
    """

    means: Tensor
    stds: Tensor
    weights: Tensor | None = None

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise InputError(
                f"GaussianMixture: means must be [K, D], got {tuple(self.means.shape)}")
        k, d = self.means.shape
        stds = torch.as_tensor(self.stds, dtype=torch.float64)
        if stds.ndim == 1:
            stds = stds[:, None].expand(k, d)
        self.stds = stds.clone()
        if (self.stds <= 0).any():
            raise InputError("GaussianMixture: stds must be positive")
        w = torch.ones(k, dtype=torch.float64) if self.weights is None else torch.as_tensor(
            self.weights, dtype=torch.float64)
        if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
            raise InputError("GaussianMixture: weights must be [K], non-negative, not all zero")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64, return_labels: bool = False):
        """Draw n samples (and their component labels if asked)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[k] + self.stds[k] * z).to(dtype)
        return (x, k) if return_labels else x

    def _marginal(self, x: Tensor, t: Tensor | float, path: AffinePath):
        """Responsibilities and per-component quantities of p_t at x (float64)."""
        x64 = x.to(torch.float64).reshape(x.shape[0], -1)
        t64 = as_time(t).to(x64.device)
        if t64.ndim == 0:
            t64 = t64.expand(x64.shape[0])
        a = path.alpha(t64)[:, None, None]
        s = path.sigma(t64)[:, None, None]
        mu, var = self.means.to(x64.device)[None], (self.stds.to(x64.device) ** 2)[None]
        cov = a**2 * var + s**2                                    # [B, K, D]
        diff = x64[:, None, :] - a * mu                            # [B, K, D]
        logp = (-0.5 * (diff**2 / cov + torch.log(2 * torch.pi * cov)).sum(-1)
                + torch.log(self.weights.to(x64.device))[None])    # [B, K]
        r = torch.softmax(logp, dim=1)[..., None]                  # [B, K, 1]
        return x64, t64, a, var, cov, diff, r, logp

    def log_prob(self, x: Tensor, t: Tensor | float, path: AffinePath) -> Tensor:
        """log p_t(x) of the path's marginal at time t."""
        *_, logp = self._marginal(x, t, path)
        return torch.logsumexp(logp, dim=1).to(x.dtype)

    def score(self, x: Tensor, t: Tensor | float, path: AffinePath) -> Tensor:
        """∇_x log p_t(x)."""
        _, _, _, _, cov, diff, r, _ = self._marginal(x, t, path)
        return (-(r * diff / cov).sum(1)).reshape(x.shape).to(x.dtype)

    def posterior_mean(self, x: Tensor, t: Tensor | float, path: AffinePath) -> Tensor:
        """E[x1 | x_t = x] (the ideal clean-data prediction)."""
        _, _, a, var, cov, diff, r, _ = self._marginal(x, t, path)
        mean_k = self.means.to(x.device)[None] + a * var / cov * diff
        return (r * mean_k).sum(1).reshape(x.shape).to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor | float, path: AffinePath) -> Tensor:
        """Marginal velocity u_t(x) = α̇ E[x1|x] + σ̇ E[x0|x].

        E[x0 | x, k] = σ (x − α μ_k)/C_k is used directly (not (x − α E[x1|x])/σ), so the field
        stays finite at the data end σ = 0.
        """
        x64, t64, a, var, cov, diff, r, _ = self._marginal(x, t, path)
        s = path.sigma(t64)[:, None, None]
        x1 = (r * (self.means.to(x64.device)[None] + a * var / cov * diff)).sum(1)
        x0 = (r * s * diff / cov).sum(1)
        da = path.d_alpha(t64)[:, None]
        ds = path.d_sigma(t64)[:, None]
        return (da * x1 + ds * x0).reshape(x.shape).to(x.dtype)

    def field(self, path: AffinePath):
        """The velocity as a monge field ``f(x, t) -> u`` for solvers."""
        def f(x: Tensor, t: Tensor, **_: object) -> Tensor:
            return self.velocity(x, t, path)
        return f

    def marginal_sample(self, n: int, t: float, path: AffinePath,
                        generator: torch.Generator | None = None) -> Tensor:
        """Exact samples of p_t (float64)."""
        x1 = self.sample(n, generator)
        x0 = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        tt = torch.full((n,), float(t), dtype=torch.float64)
        return path.sample_xt(x0, x1, tt)
