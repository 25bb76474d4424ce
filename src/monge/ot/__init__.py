"""Discrete optimal transport: exact, log-stabilised Sinkhorn, Sinkhorn–Newton–Sparse and
sparsity-constrained OT, all with POT-style arguments ``(a, b, C)`` and one result type.

Example:
    >>> import torch
    >>> from monge.ot import solve, sq_euclidean_cost
    >>> x, y = torch.rand(64, 2, dtype=torch.float64), torch.rand(48, 2, dtype=torch.float64)
    >>> result = solve(None, None, sq_euclidean_cost(x, y), method="sinkhorn", eps=0.05)
    >>> result.converged
    True
"""

from monge.ot._result import OTResult
from monge.ot.auto import choose_method, solve_points
from monge.ot.cost import sq_euclidean_cost
from monge.ot.divergence import SinkhornDivergenceLoss, sinkhorn_divergence
from monge.ot.exact import assignment, exact
from monge.ot.online import LazyPlan, online_sinkhorn, symmetric_sinkhorn
from monge.ot.sinkhorn import sinkhorn
from monge.ot.sns import sinkhorn_newton_sparse
from monge.ot.solve import METHODS, solve
from monge.ot.sparse import sparsity_constrained

__all__ = ["OTResult", "solve", "METHODS", "exact", "assignment", "sinkhorn",
           "sinkhorn_newton_sparse", "sparsity_constrained", "sq_euclidean_cost",
           "online_sinkhorn", "symmetric_sinkhorn", "LazyPlan", "sinkhorn_divergence",
           "SinkhornDivergenceLoss", "choose_method", "solve_points"]
