"""The exact posterior of a Gaussian-mixture prior under a linear Gaussian observation.

With prior p(x) = Σ_k π_k N(x; μ_k, Σ_k) (Σ_k = diag(s_k²), :class:`monge.paths.GaussianMixture`)
and observation y = A x + σ_y·n, n ~ N(0, I_m), Bayes' rule gives the mixture

    p(x | y) = Σ_k π_k′ N(x; μ_k′, Σ_k′),
    Σ_k′ = (Σ_k⁻¹ + AᵀA/σ_y²)⁻¹,      μ_k′ = Σ_k′ (Σ_k⁻¹ μ_k + Aᵀ y/σ_y²),
    π_k′ ∝ π_k N(y; A μ_k, S_k),       S_k = A Σ_k Aᵀ + σ_y² I_m,

with full covariances Σ_k′. It is computed in the equivalent Kalman form, which needs no
inverse of Σ_k and stays valid at σ_y = 0: the gain G_k = Σ_k Aᵀ S_k⁻¹ (a Cholesky solve),
μ_k′ = μ_k + G_k (y − A μ_k), and Σ_k′ = (I − G_k A) Σ_k (I − G_k A)ᵀ + σ_y² G_k G_kᵀ (Joseph
form: symmetric positive semi-definite by construction). The weights are computed in log space;
the normaliser is the evidence log p(y).

σ_y = 0 (noiseless observation): S_k = A Σ_k Aᵀ is positive definite when A has full row rank,
and the posterior is a degenerate mixture on the affine subspace {x : A x = y} (it can be sampled,
its mean and covariance are exact, but it has no density in R^d). A rank-deficient A (a
:class:`~monge.inverse.operators.Mask` matrix, whose hidden rows are zero) is reduced to its
row space first through the SVD A = U diag(s) Vᵀ: y ↦ U_rᵀ y, A ↦ diag(s_r) V_rᵀ; the discarded
components U_⊥ᵀ y must then be 0 (an observation outside the range of A is impossible without
noise), else :class:`~monge.errors.InputError`.

This is the reference every posterior sampler (DPS, ΠGDM, FlowChef, FLAIR) is tested against.
All maths in float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from monge.core.checks import check_finite
from monge.errors import InputError
from monge.inverse.operators import LinearOperator, check_sigma_y
from monge.paths.gmm import GaussianMixture

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class FullCovarianceMixture:
    """A (batch of) Gaussian mixture(s) with full covariances, in float64.

    Shapes follow ``torch.distributions``: a batch shape (one mixture per observation; ``()``
    for a single one), then the event dimension d.

    Attributes:
        means: ``[*batch, K, d]`` component means.
        covariances: ``[*batch, K, d, d]`` component covariances (symmetric positive
            semi-definite; singular ones can be sampled but have no density).
        log_weights: ``[*batch, K]`` log mixture weights (normalised on construction).
        roots: optional ``[*batch, K, d, r]`` factors R_k with R_k R_kᵀ = Σ_k, used for sampling
            when given (a singular Σ_k then keeps its samples exactly on its support); by
            default a Cholesky factor is used.
    """

    means: Tensor
    covariances: Tensor
    log_weights: Tensor
    roots: Tensor | None = None

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.covariances = torch.as_tensor(self.covariances, dtype=torch.float64)
        self.log_weights = torch.as_tensor(self.log_weights, dtype=torch.float64)
        if self.means.ndim < 2:
            raise InputError(f"FullCovarianceMixture: means must be [*batch, K, d], got "
                             f"{tuple(self.means.shape)}")
        *batch, k, d = self.means.shape
        if tuple(self.covariances.shape) != (*batch, k, d, d):
            raise InputError(f"FullCovarianceMixture: covariances must have shape "
                             f"{(*batch, k, d, d)}, got {tuple(self.covariances.shape)}")
        if tuple(self.log_weights.shape) != (*batch, k):
            raise InputError(f"FullCovarianceMixture: log_weights must have shape "
                             f"{(*batch, k)}, got {tuple(self.log_weights.shape)}")
        if self.roots is not None:
            self.roots = torch.as_tensor(self.roots, dtype=torch.float64)
            if self.roots.ndim != self.covariances.ndim or tuple(self.roots.shape[:-1]) != (
                    *batch, k, d):
                raise InputError(f"FullCovarianceMixture: roots must have shape "
                                 f"{(*batch, k, d)} + (r,), got {tuple(self.roots.shape)}")
        self.log_weights = self.log_weights - torch.logsumexp(self.log_weights, -1, keepdim=True)
        self._cholesky: Tensor | None = None
        self._factored = False

    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-2]

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def weights(self) -> Tensor:
        """``[*batch, K]`` mixture weights."""
        return self.log_weights.exp()

    def __getitem__(self, index) -> FullCovarianceMixture:
        """The mixture(s) at ``index`` of the batch (every field indexed alike)."""
        if not self.batch_shape:
            raise InputError(f"{type(self).__name__}: an unbatched mixture cannot be indexed")
        values = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index])
                  for f in dataclasses.fields(self)}
        return type(self)(**values)

    def mean(self) -> Tensor:
        """``[*batch, d]`` the mixture mean Σ_k π_k μ_k."""
        return (self.weights[..., None] * self.means).sum(-2)

    def covariance(self) -> Tensor:
        """``[*batch, d, d]`` the mixture covariance Σ_k π_k (Σ_k + μ_k μ_kᵀ) − m mᵀ."""
        w = self.weights[..., None, None]
        centred = self.means - self.mean()[..., None, :]
        outer = centred[..., :, None] * centred[..., None, :]
        return (w * (self.covariances + outer)).sum(-3)

    def _chol(self) -> Tensor | None:
        """The Cholesky factors of the covariances, or None if one is singular (to rounding)."""
        if not self._factored:
            self._factored = True
            chol, info = torch.linalg.cholesky_ex(self.covariances)
            if bool((info == 0).all()):
                # a rank-deficient Σ often factors with pivots at rounding level: not a density
                pivot = torch.diagonal(chol, dim1=-2, dim2=-1) ** 2
                scale = torch.diagonal(self.covariances, dim1=-2, dim2=-1).amax(-1)
                floor = 100 * self.dim * torch.finfo(torch.float64).eps * scale
                if bool((pivot.amin(-1) > floor).all()):
                    self._cholesky = chol
        return self._cholesky

    def _sampling_roots(self) -> Tensor:
        if self.roots is not None:
            return self.roots
        chol = self._chol()
        if chol is not None:
            return chol
        vals, vecs = torch.linalg.eigh(self.covariances)  # singular: eigen square root
        return vecs * vals.clamp_min(0).sqrt()[..., None, :]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, *batch, d]`` independent draws (component by the weights, then Gaussian)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"{type(self).__name__}.sample: n must be an int >= 1, got {n!r}")
        scale = self._sampling_roots()
        batch, k, d, r = tuple(self.batch_shape), self.n_components, self.dim, scale.shape[-1]
        flat_w = self.weights.reshape(-1, k)
        labels = torch.multinomial(flat_w, n, replacement=True, generator=generator)
        labels = labels.T.reshape(n, *batch)                             # [n, *batch]
        z = torch.randn(n, *batch, r, generator=generator, dtype=torch.float64,
                        device=self.means.device)
        mu = torch.take_along_dim(self.means.expand(n, *batch, k, d),
                                  labels[..., None, None], dim=-2)[..., 0, :]
        root = torch.take_along_dim(scale.expand(n, *batch, k, d, r),
                                    labels[..., None, None, None], dim=-3)[..., 0, :, :]
        return mu + (root @ z[..., None])[..., 0]

    def log_prob(self, x: Tensor) -> Tensor:
        """log density at ``x [..., d]``, broadcast against the batch shape (e.g. samples
        ``[n, *batch, d]`` → ``[n, *batch]``). Raises for a singular (σ_y = 0) mixture."""
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"{type(self).__name__}.log_prob: x must have shape [..., "
                             f"{self.dim}], got {got}")
        chol = self._chol()
        if chol is None:
            raise InputError(f"{type(self).__name__}.log_prob: a component covariance is "
                             "singular (a sigma_y = 0 posterior lives on {x : A x = y}); it has "
                             "no density in R^d")
        x64 = x.to(dtype=torch.float64, device=self.means.device)
        diff = x64[..., None, :] - self.means                           # [..., K, d]
        white = torch.linalg.solve_triangular(chol, diff[..., None], upper=False)[..., 0]
        log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        comp = -0.5 * (white**2).sum(-1) - log_det - 0.5 * self.dim * _LOG_2PI
        return torch.logsumexp(comp + self.log_weights, dim=-1)


@dataclass
class GaussianMixturePosterior(FullCovarianceMixture):
    """The exact posterior p(x | y) (:func:`gmm_posterior`) with its evidence.

    Attributes:
        log_evidence: ``[*batch]`` log p(y) = log Σ_k π_k N(y; A μ_k, A Σ_k Aᵀ + σ_y² I). At
            σ_y = 0 with a rank-deficient A it is the density of the row-space coordinates
            U_rᵀ y.
    """

    log_evidence: Tensor = None  # type: ignore[assignment]


def _row_space(a: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Reduce a noiseless observation to A's row space (see the module docstring)."""
    u, s, _ = torch.linalg.svd(a, full_matrices=True)
    tol = max(a.shape) * torch.finfo(a.dtype).eps * float(s.max())
    r = int((s > tol).sum())
    if r == 0:
        raise InputError("gmm_posterior: A is zero; nothing is observed")
    if r == a.shape[0]:
        return a, y
    outside = y @ u[:, r:]
    scale = 1.0 + float(y.abs().max())
    if float(outside.abs().max()) > 1e-8 * scale:
        raise InputError(f"gmm_posterior: with sigma_y = 0, y must lie in the range of A (rank "
                         f"{r} < {a.shape[0]} rows); its component outside it is "
                         f"{float(outside.abs().max()):.3g}")
    return u[:, :r].T @ a, y @ u[:, :r]


def gmm_posterior(prior: GaussianMixture, A: Tensor | LinearOperator, y: Tensor,
                  sigma_y: float) -> GaussianMixturePosterior:
    """The exact posterior of a Gaussian-mixture prior given y = A x + σ_y·n.

    Args:
        prior: the prior mixture (means ``[K, d]``, diagonal stds ``[K, d]``, weights ``[K]``).
        A: the ``[m, d]`` observation matrix, or a :class:`LinearOperator` (materialised with
            :meth:`~LinearOperator.matrix`; x is then its flattened input).
        y: ``[m]`` (one observation) or ``[B, m]`` (a batch; one posterior each). With an
            operator, ``[*output_shape]`` or ``[B, *output_shape]``.
        sigma_y: observation noise std (≥ 0; 0 is supported, see the module docstring).

    Returns:
        A :class:`GaussianMixturePosterior` with batch shape ``()`` or ``(B,)`` over
        flattened x ∈ R^d.

    Example:
        >>> prior = GaussianMixture(torch.tensor([[-2., 0.], [2., 0.]]), torch.ones(2, 2))
        >>> post = gmm_posterior(prior, torch.tensor([[1., 0.]]), torch.tensor([2.]), 0.1)
        >>> post.weights.argmax().item()
        1
    """
    if not isinstance(prior, GaussianMixture):
        raise InputError(f"gmm_posterior: prior must be a monge.paths.GaussianMixture, got "
                         f"{type(prior).__name__}")
    sigma = check_sigma_y(sigma_y, "gmm_posterior")
    if not isinstance(y, Tensor):
        raise InputError(f"gmm_posterior: y must be a tensor, got {type(y).__name__}")
    if isinstance(A, LinearOperator):
        out = A.output_shape
        if tuple(y.shape) == out:
            y = y.reshape(-1)
        elif tuple(y.shape[1:]) == out and y.ndim == len(out) + 1:
            y = y.reshape(y.shape[0], -1)
        else:
            raise InputError(f"gmm_posterior: y must have shape {list(out)} or [B, "
                             f"{', '.join(map(str, out))}] for {type(A).__name__}, got "
                             f"{tuple(y.shape)}")
        a = A.matrix(device=y.device)
    elif isinstance(A, Tensor):
        if A.ndim != 2:
            raise InputError(f"gmm_posterior: A must be an [m, d] matrix, got shape "
                             f"{tuple(A.shape)}")
        a = check_finite(A.to(torch.float64), "gmm_posterior: A")
    else:
        raise InputError(f"gmm_posterior: A must be a tensor or LinearOperator, got "
                         f"{type(A).__name__}")
    m, d = a.shape
    if d != prior.dim:
        raise InputError(f"gmm_posterior: A has d = {d} columns but the prior has dimension "
                         f"{prior.dim}")
    if y.ndim not in (1, 2) or y.shape[-1] != m:
        raise InputError(f"gmm_posterior: y must have shape [{m}] or [B, {m}], got "
                         f"{tuple(y.shape)}")
    y64 = check_finite(y.to(dtype=torch.float64, device=a.device), "gmm_posterior: y")
    if sigma == 0:
        a, y64 = _row_space(a, y64)
        m = a.shape[0]

    mu = prior.means.to(a.device)                                       # [K, d]
    var = prior.stds.to(a.device) ** 2                                  # [K, d]
    a_sigma = a[None] * var[:, None, :]                                 # A Σ_k: [K, m, d]
    eye_m = torch.eye(m, dtype=torch.float64, device=a.device)
    innov_cov = a_sigma @ a.T + sigma**2 * eye_m                        # S_k: [K, m, m]
    chol, info = torch.linalg.cholesky_ex(innov_cov)
    if bool((info != 0).any()):
        raise InputError("gmm_posterior: A Σ_k Aᵀ + sigma_y² I is not positive definite "
                         "(A too ill-conditioned for sigma_y = 0?)")
    gain = torch.cholesky_solve(a_sigma, chol).transpose(-1, -2)        # G_k: [K, d, m]

    resid = y64[..., None, :] - mu @ a.T                                # [*batch, K, m]
    means = mu + (gain @ resid[..., None])[..., 0]                      # [*batch, K, d]
    reduce = torch.eye(d, dtype=torch.float64, device=a.device) - gain @ a
    cov = (reduce * var[:, None, :]) @ reduce.transpose(-1, -2) \
        + sigma**2 * gain @ gain.transpose(-1, -2)
    cov = 0.5 * (cov + cov.transpose(-1, -2))                           # [K, d, d]

    white = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
    log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_lik = -0.5 * (white**2).sum(-1) - log_det - 0.5 * m * _LOG_2PI  # [*batch, K]
    log_joint = torch.log(prior.weights.to(a.device)) + log_lik
    log_evidence = torch.logsumexp(log_joint, dim=-1)
    batch = tuple(y64.shape[:-1])
    # noiseless: Σ_k′ = R_k R_kᵀ with R_k = (I − G_k A) diag(s_k), and A R_k = 0 to rounding, so
    # samples stay on {A x = y} (a Cholesky or eigen root of the singular Σ_k′ would not)
    roots = None if sigma > 0 else (reduce * prior.stds.to(a.device)[:, None, :]).expand(
        *batch, *cov.shape)
    return GaussianMixturePosterior(
        means=means, covariances=cov.expand(*batch, *cov.shape),
        log_weights=log_joint - log_evidence[..., None], roots=roots, log_evidence=log_evidence)


__all__ = ["FullCovarianceMixture", "GaussianMixturePosterior", "gmm_posterior"]
