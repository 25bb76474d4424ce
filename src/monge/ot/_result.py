"""The one result type returned by every solver in :mod:`monge.ot`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class OTResult:
    """Solution of a discrete optimal-transport problem.

    Every solver in :mod:`monge.ot` returns this type. Batched problems (a leading batch
    dimension ``B``) give batched tensors; scalars then have shape ``[B]``.

    Attributes:
        plan: transport plan ``P`` of shape ``[..., n, m]``; dense for ``exact``, ``sinkhorn``
            and ``sns``, a sparse COO tensor for ``sparsity_constrained`` (<= k non-zeros per
            column), a :class:`monge.ot.online.LazyPlan` (potentials + blocked evaluation) for
            ``online_sinkhorn``.
        f: source potential, shape ``[..., n]`` (entropic OT: ``P_ij = exp((f_i+g_j-C_ij)/eps)``;
            ``-inf`` on zero-mass points).
        g: target potential, shape ``[..., m]``.
        cost: transport cost ``<C, P>``.
        objective: the regularised objective the method minimises (equal to ``cost`` for exact OT;
            ``<C,P> + eps * sum P log P`` for entropic OT; ``<C,P> + gamma/2 ||P||^2`` for
            sparsity-constrained OT).
        iterations: total number of iterations (Sinkhorn sweeps, Newton steps, L-BFGS steps).
        marginal_error: ``||P 1 - a||_1 + ||P^T 1 - b||_1``.
        converged: whether ``marginal_error <= tol`` (or the method's own criterion) was met
            (batched: by every problem; the entropic solvers then also give
            ``info["converged_per_problem"]``, a bool tensor ``[B]``).
        history: marginal error at each check, oldest first (batched: the batch maximum).
        method: name of the method that produced the result.
        eps: the regularisation actually used, in cost units (``None`` for exact OT).
        eps_relative: the value given when ``eps`` was relative to the cost scale, else ``None``.
        cost_scale: ``max |C|`` that turned a relative eps into an absolute one (else ``None``).
        tol: the marginal-error tolerance the solve was asked to meet.
        info: method-specific statistics (e.g. warm-up length and Hessian non-zeros for SNS;
            ``info["auto"] = {"method", "reason"}`` when ``method="auto"`` chose the solver).
        flags: warnings raised during the solve (e.g. ``"eps_below_dtype_precision"``).
    """

    plan: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    cost: torch.Tensor
    objective: torch.Tensor
    iterations: int
    marginal_error: torch.Tensor
    converged: bool
    history: list[float] = field(default_factory=list)
    method: str = ""
    eps: float | None = None
    eps_relative: float | None = None
    cost_scale: float | None = None
    tol: float | None = None
    info: dict[str, object] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def dense_plan(self) -> torch.Tensor:
        """The plan as a dense tensor (a no-op for dense plans; evaluates a lazy plan)."""
        if not isinstance(self.plan, torch.Tensor):
            return self.plan.dense()          # monge.ot.online.LazyPlan
        return self.plan.to_dense() if self.plan.is_sparse else self.plan
