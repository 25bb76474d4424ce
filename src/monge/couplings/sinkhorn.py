"""Entropic (Schrödinger-bridge) minibatch coupling: pairs sampled from a Sinkhorn plan.

Tong et al. (2024), "Improving and generalizing flow-based generative models with minibatch
optimal transport" (TMLR; SB-CFM uses the entropic plan with eps = 2σ²); Cuturi (2013),
"Sinkhorn distances". The plan is solved by monge's log-stabilised Sinkhorn
(:func:`monge.ot.sinkhorn.sinkhorn`) on the squared Euclidean cost between the flattened batches.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from monge.couplings._costs import check_cost_kind, check_positive, check_rows_finite, cost_matrix
from monge.couplings.base import Coupling, Pairing
from monge.errors import ConfigError, ConvergenceWarning
from monge.ot.sinkhorn import sinkhorn


@dataclass
class SinkhornDiagnostics:
    """What the last call solved.

    Attributes:
        eps: the regularisation used, in cost units.
        converged: whether Sinkhorn met its marginal tolerance.
        marginal_error: ``||P1 - a||_1 + ||P^T 1 - b||_1`` of the plan that was sampled.
        iterations: Sinkhorn sweeps.
        plan_cost: ``<C, P>`` of the plan (expected pair cost / B is ``plan_cost``).
        fallback: True if the plan was unusable (non-finite or an empty column) and the affected
            targets were paired uniformly at random instead (the independent coupling).
    """

    eps: float
    converged: bool
    marginal_error: float
    iterations: int
    plan_cost: float
    fallback: bool


class SinkhornCoupling(Coupling):
    """Sample each target's source partner from its column of the entropic OT plan.

    Method: with uniform marginals a = b = 1/B and cost ``C_ij = ||x0_i - x1_j||²`` (or the
    plain distance), solve ``min <C,P> + eps Σ P log P`` by log-domain Sinkhorn (O(B² · iters)),
    then for every target j draw ``i ~ P[:, j] / b_j`` independently. Targets (and their labels)
    keep their order; a source row may be used several times or not at all, as in sampling the
    plan (TorchCFM draws (i, j) i.i.d. from the flattened plan instead, which also duplicates
    targets). The empirical pair frequencies converge to ``B · P``. eps → 0 approaches the exact
    OT permutation, eps → ∞ the independent coupling.

    eps: give ``sigma`` to use SB-CFM's ``eps = 2 σ²`` on the unnormalised squared cost
    (Tong et al. 2024), or ``eps`` directly; with ``relative=True`` (default) ``eps`` is a
    fraction of the median entry of C, which keeps one setting meaningful across data scales
    (image-space squared costs are O(d), where a fixed eps underflows). A plan that misses the
    Sinkhorn tolerance raises :class:`~monge.errors.ConvergenceWarning` (never silent) and is
    still used; an unusable plan (non-finite, or a column without mass) warns and falls back to
    uniform pairing for the affected targets. :attr:`last` holds the diagnostics.

    Args:
        eps: regularisation (default 0.1 when ``sigma`` is not given).
        sigma: SB-CFM noise level; sets the absolute ``eps = 2 sigma**2`` (exclusive with eps).
        relative: eps is a fraction of ``median(C)`` (ignored when ``sigma`` is given).
        cost: ``"sqeuclidean"`` (default, SB-CFM) or ``"euclidean"``.
        max_iter: cap on Sinkhorn sweeps per batch.
        tol: tolerance on ``||P1 - a||_1 + ||P^T 1 - b||_1`` (total mass 1). The default 1e-5
            is far below the sampling noise of B pairs (~1/sqrt(B)); small eps converges slowly
            (rate ~ exp(-1/eps)), so tighter tolerances mostly cost time.
        annealing: eps-scaling from the cost scale down to eps (default; converges far faster
            at small eps).

    Example:
        >>> c = SinkhornCoupling(sigma=0.5)  # eps = 0.5 in squared-cost units
        >>> g = torch.Generator().manual_seed(0)
        >>> p = c(torch.randn(16, 2), torch.randn(16, 2), generator=g)
        >>> p.x0.shape
        torch.Size([16, 2])
    """

    name = "sinkhorn"

    def __init__(self, eps: float | None = None, *, sigma: float | None = None,
                 relative: bool = True, cost: str = "sqeuclidean", max_iter: int = 5000,
                 tol: float = 1e-5, annealing: bool = True):
        if eps is not None and sigma is not None:
            raise ConfigError("eps, sigma: give one of them (sigma sets eps = 2 sigma^2)")
        if sigma is not None:
            check_positive(sigma, "sigma")
            eps, relative = 2.0 * float(sigma) ** 2, False
        self.eps = check_positive(0.1 if eps is None else eps, "eps")
        self.sigma, self.relative = sigma, bool(relative)
        self.cost = check_cost_kind(cost)
        self.max_iter, self.tol = int(max_iter), check_positive(tol, "tol")
        self.annealing = bool(annealing)
        self.last: SinkhornDiagnostics | None = None

    def __repr__(self) -> str:
        return (f"SinkhornCoupling(eps={self.eps}, relative={self.relative}, "
                f"cost={self.cost!r})")

    def plan(self, x0: Tensor, x1: Tensor):
        """Solve the entropic OT problem between the flattened batches; returns the OTResult."""
        check_rows_finite(x0, x1)
        C = cost_matrix(x0, x1, self.cost)
        eps = self.eps
        if self.relative:
            med = float(C.median())
            eps = eps * (med if med > 0 else 1.0)
        return sinkhorn(None, None, C, eps=eps, tol=self.tol, max_iter=self.max_iter,
                        annealing=self.annealing)

    def sample_sources(self, P: Tensor, generator: torch.Generator | None) -> tuple[Tensor, bool]:
        """For each column j of the plan draw a source index ``i ~ P[:, j] / Σ_i P_ij``.

        Returns the indices ``[m]`` and whether a fallback fired: an unusable column
        (non-finite, or without mass) warns and is replaced by the uniform distribution.
        """
        bad = ~torch.isfinite(P).all(0) | ~(torch.nan_to_num(P).sum(0) > 0)
        fallback = bool(bad.any())
        if fallback:
            warnings.warn(f"sinkhorn coupling: {int(bad.sum())} of {P.shape[1]} plan columns are "
                          "unusable; those targets are paired uniformly at random",
                          ConvergenceWarning, stacklevel=3)
            P = torch.where(bad.unsqueeze(0), torch.ones_like(P), torch.nan_to_num(P))
        probs = (P / P.sum(0, keepdim=True)).T.to(torch.float64)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1), fallback

    def pair(self, x0, x1, *, y1, generator) -> Pairing:
        res = self.plan(x0, x1)
        idx, fallback = self.sample_sources(res.plan, generator)
        self.last = SinkhornDiagnostics(
            eps=float(res.eps), converged=res.converged, marginal_error=float(res.marginal_error),
            iterations=res.iterations, plan_cost=float(res.cost), fallback=fallback)
        return Pairing(x0[idx.to(x0.device)], x1, y1)
