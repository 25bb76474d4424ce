"""Sinkhorn–Newton–Sparse (SNS): Sinkhorn warm-up, then sparse Newton steps on the dual."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from monge.errors import InputError
from monge.ot._problem import (
    EpsScale,
    Problem,
    check_positive_float,
    check_positive_int,
    default_tol,
    prepare,
    resolve_eps,
)
from monge.ot._result import OTResult
from monge.ot.sinkhorn import (
    Kernel,
    _State,
    anneal,
    embed,
    entropic_plan,
    finish,
    run_sinkhorn,
    start_solve,
)

Sparsify = Literal["row_mass", "row_topk", "global"]


@dataclass
class _Offdiag:
    """Kept part ``S`` of the off-diagonal Hessian blocks ``P`` of a batch of ``B`` problems.

    Sparse: one block-diagonal CSR matrix ``S`` of shape ``[B n, B m]`` (problem ``b`` owns rows
    ``b n .. b n + n - 1`` and columns ``b m .. b m + m - 1``) and its transpose, so one sparse
    product serves the whole batch. Dense (``S`` of shape ``[B, n, m]``, ``St`` None): ``P``
    itself, once the kept count reaches half a row.
    """

    S: torch.Tensor
    St: torch.Tensor | None
    nnz: list[int]

    def matvec(self, y: torch.Tensor) -> torch.Tensor:
        """``S_b @ y_b`` for every problem: ``[B, m] -> [B, n]``."""
        if self.St is None:     # row vector times matrix: the fast batched form on CPU
            return torch.matmul(y.unsqueeze(-2), self.S.transpose(-1, -2)).squeeze(-2)
        return (self.S @ y.reshape(-1)).view(y.shape[0], -1)

    def rmatvec(self, x: torch.Tensor) -> torch.Tensor:
        """``S_b^T @ x_b`` for every problem: ``[B, n] -> [B, m]``."""
        if self.St is None:
            return torch.matmul(x.unsqueeze(-2), self.S).squeeze(-2)
        return (self.St @ x.reshape(-1)).view(x.shape[0], -1)


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]):
    """CSR matrix from COO triplets (any order) by one stable sort on the row-major key."""
    order = torch.argsort(rows * shape[1] + cols)
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols[order], vals[order], shape,
                                       check_invariants=False)


def _sparsify(P: torch.Tensor, mode: Sparsify, k: torch.Tensor, delta: float) -> _Offdiag:
    """Keep the largest entries of each ``P_b`` [n, m] (``P`` is ``[B, n, m]``, ``k`` the kept
    count per row of each problem, ``[B]``): per row (``row_topk``: ``k_b`` each; ``row_mass``:
    the fewest of the top ``k_b`` holding ``1 - delta`` of the row's mass) or globally
    (``global``: the ``k_b * n`` largest entries, the paper's single threshold). A problem whose
    ``k_b`` reaches half a row keeps all of ``P_b``. One ``topk`` at the largest ``k`` of the
    batch, then a mask per problem: no loop over problems, and each problem keeps exactly what
    it would keep alone."""
    B, n, m = P.shape
    full = 2 * k >= m
    if bool(full.all()):
        return _Offdiag(S=P.clone(), St=None, nnz=[n * m] * B)
    dev = P.device
    k_max = int(k[~full].max())
    kb = torch.where(full, 0, k).view(B, 1, 1)
    if mode == "global":
        vals, flat = torch.topk(P.reshape(B, -1), k_max * n, dim=1, sorted=True)
        keep = (torch.arange(k_max * n, device=dev).unsqueeze(0) < kb.view(B, 1) * n
                ).expand_as(vals)
        rows, cols = flat // m, flat % m
        batch = torch.arange(B, device=dev).unsqueeze(1).expand_as(rows)
    else:
        vals, cols = torch.topk(P, k_max, dim=2)                 # sorted, descending
        keep = (torch.arange(k_max, device=dev).view(1, 1, -1) < kb).expand_as(vals)
        if mode == "row_mass":
            need = (1.0 - delta) * P.sum(2, keepdim=True)
            keep = keep & ((torch.cumsum(vals, 2) - vals) < need)   # mass of the larger ones
        rows = torch.arange(n, device=dev).view(1, n, 1).expand_as(cols)
        batch = torch.arange(B, device=dev).view(B, 1, 1).expand_as(cols)
    nnz = torch.where(full, n * m, keep.reshape(B, -1).sum(1)).tolist()
    vals, rows, cols, batch = vals[keep], rows[keep], cols[keep], batch[keep]
    if bool(full.any()):           # problems kept whole: every entry of their P_b
        fb, fr, fc = torch.meshgrid(full.nonzero().squeeze(1), torch.arange(n, device=dev),
                                    torch.arange(m, device=dev), indexing="ij")
        vals = torch.cat([vals, P[fb, fr, fc].reshape(-1)])
        rows, cols = torch.cat([rows, fr.reshape(-1)]), torch.cat([cols, fc.reshape(-1)])
        batch = torch.cat([batch, fb.reshape(-1)])
    grow, gcol = batch * n + rows, batch * m + cols
    return _Offdiag(S=_csr(grow, gcol, vals, (B * n, B * m)),
                    St=_csr(gcol, grow, vals, (B * m, B * n)), nnz=nnz)


def _newton_direction(sp: _Offdiag, r: torch.Tensor, c: torch.Tensor, rhs_f: torch.Tensor,
                      rhs_g: torch.Tensor, rtol: float, max_iter: int, active: torch.Tensor):
    """Solve ``[[diag r_b, S_b], [S_b^T, diag c_b]] [x_b; y_b] = [rhs_f_b; rhs_g_b]`` for every
    problem ``b`` of the batch (``[B, n]``, ``[B, m]``), with ``y_b[m-1] = 0`` pinned.

    The Hessian's null direction ``(1, -1)`` is removed by pinning the last ``y``. ``x`` is
    eliminated (``x = (rhs_f - S y) / r``) and the Schur complement
    ``(diag c - S^T diag(1/r) S) y = rhs_g - S^T (rhs_f / r)``, symmetric positive definite once
    pinned when ``r >= S 1`` and ``c >= S^T 1``, is solved by Jacobi-preconditioned conjugate
    gradients (about half the iterations of CG on the full block system). Batched CG: every
    problem has its own step ``alpha_b`` and ``beta_b``, the products are one batched
    (block-diagonal) sparse product, and a problem stops (its ``alpha`` is 0 from then on) when
    its residual drops below ``rtol`` times its initial one or its curvature ``p^T A p`` is not
    positive; the loop ends when every problem has stopped. Returns ``x, y`` and the CG
    iterations of each problem (``[B]``).
    """
    inv_r = 1.0 / r
    mask = torch.ones_like(c)
    mask[:, -1] = 0.0
    inv_c = mask / c

    def schur(y: torch.Tensor) -> torch.Tensor:
        return (c * y - sp.rmatvec(inv_r * sp.matvec(y))) * mask

    rhs = (rhs_g - sp.rmatvec(inv_r * rhs_f)) * mask
    y = torch.zeros_like(rhs_g)
    res = rhs.clone()
    z = inv_c * res
    p = z.clone()
    rz = (res * z).sum(1)
    norm0 = torch.linalg.vector_norm(res, dim=1)
    running = active & (norm0 > 0.0)
    its = torch.zeros(r.shape[0], dtype=torch.int64, device=r.device)
    for _ in range(max_iter):
        if not bool(running.any()):
            break
        q = schur(p)
        pq = (p * q).sum(1)
        its += running
        running = running & (pq > 0.0)
        alpha = torch.where(running, rz / torch.where(running, pq, 1.0), 0.0).unsqueeze(1)
        y.add_(alpha * p)
        res.sub_(alpha * q)
        running = running & (torch.linalg.vector_norm(res, dim=1) > rtol * norm0)
        torch.mul(inv_c, res, out=z)
        rz_new = (res * z).sum(1)
        beta = torch.where(running, rz_new / torch.where(running, rz, 1.0), 0.0).unsqueeze(1)
        p.mul_(beta).add_(z)
        rz = rz_new
    x = inv_r * (rhs_f - sp.matvec(y))
    return x, y, its


class _Dual:
    """Evaluates the entropic dual ``F_b(f,g) = <a,f> + <b,g> - eps sum_ij exp((f+g-C)/eps)`` of
    every problem of a batch with its plan on a reusable buffer (one exp pass of O(B n m))."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, C: torch.Tensor, eps: float):
        self.a, self.b, self.eps = a, b, eps
        self.negC = C / (-eps)
        self.buf = torch.empty_like(C)

    def __call__(self, f: torch.Tensor, g: torch.Tensor, out: torch.Tensor | None = None):
        P = self.buf if out is None else out
        torch.add(self.negC, f.unsqueeze(2), alpha=1.0 / self.eps, out=P)
        P.add_(g.unsqueeze(1), alpha=1.0 / self.eps).exp_()
        r, c = P.sum(2), P.sum(1)
        value = (self.a * f).sum(1) + (self.b * g).sum(1) - self.eps * r.sum(1)
        err = (r - self.a).abs().sum(1) + (c - self.b).abs().sum(1)
        return value, r, c, err, P


def _newton_solve(p: Problem, st: _State, eps: float, tol: float, max_newton: int,
                  mode: Sparsify, k: int, delta: float, cg_tol: float, cg_max_iter: int,
                  deadline: float, stats: dict, diag_theta: float = 0.01,
                  damping: bool = True) -> None:
    """Sparse Newton ascent on the duals of a batch of problems, in place on ``st``.

    Every problem keeps its own state (damping ``mu_b``, kept count ``k_b``, line-search step);
    the plan, sparsification, CG and line search are batched tensor operations. A problem that
    has met ``tol`` is frozen (its step is 0) while the others continue.
    """
    a, b, C = p.a, p.b, p.C
    B, n, m = C.shape
    f, g = st.f.clone(), st.g.clone()
    dual = _Dual(a, b, C, eps)
    spare = torch.empty_like(C)
    F, r, c, err, P = dual(f, g)
    st.history.append(float(err.max()))
    newton = 0
    k_cur = torch.full((B,), k, dtype=torch.int64, device=C.device)
    mu = torch.zeros(B, dtype=C.dtype, device=C.device)
    steps_each = torch.zeros(B, dtype=torch.int64, device=C.device)
    stats.setdefault("damping", [])
    active = err > tol
    stats["warmup_error_each"] = err.tolist()
    while bool(active.any()) and newton < max_newton and time.perf_counter() < deadline:
        newton += 1
        steps_each += active
        sp = _sparsify(P, mode, k_cur, delta)
        grad_f, grad_g = a - r, b - c
        # Hessian of F is -(1/eps) [[diag r, P], [P^T, diag c]]; ascent direction solves
        # [[diag r, S], [S^T, diag c]] d = eps * grad
        # diagonal: row/column sums of the kept entries plus a fraction of the dropped mass;
        # theta = 1 is the spec's exact diagonal, theta -> 0 the Laplacian of the kept graph
        # (a far better Newton model when much mass is dropped), theta > 0 keeps it definite
        Sr, Sc = sp.matvec(torch.ones_like(c)), sp.rmatvec(torch.ones_like(r))
        # Levenberg-Marquardt damping mu * diag(r, c): mu -> inf is a (scaled) Sinkhorn step,
        # mu = 0 the Newton step; it also bounds the Schur complement's condition number
        mu_ = (1e-14 + mu).unsqueeze(1)
        rr = Sr + diag_theta * (r - Sr) + mu_ * r
        cc = Sc + diag_theta * (c - Sc) + mu_ * c
        df, dg, cg_it = _newton_direction(sp, rr, cc, eps * grad_f, eps * grad_g, cg_tol,
                                          cg_max_iter, active)
        slope = (grad_f * df).sum(1) + (grad_g * dg).sum(1)
        nnz = [v for v, on in zip(sp.nnz, active.tolist(), strict=True) if on]
        stats["nnz"].append(nnz[0] if B == 1 else nnz)
        cg_list = cg_it[active].tolist()
        stats["cg_iterations"].append(cg_list[0] if B == 1 else cg_list)
        del sp
        # batched Armijo backtracking: each pending problem halves its own step; an accepted
        # problem keeps its step, so the last evaluation holds every accepted problem's new point
        step = torch.where(active, 1.0, 0.0).to(C.dtype)
        pending = active.clone()
        accepted = ~active
        for _ in range(30):
            F_new, r_new, c_new, err_new, P_new = dual(f + step.unsqueeze(1) * df,
                                                       g + step.unsqueeze(1) * dg, out=spare)
            ok = torch.isfinite(F_new) & ((F_new >= F + 1e-4 * step * slope) | (err_new < err))
            accepted = accepted | (pending & ok)
            pending = pending & ~ok
            if not bool(pending.any()):
                break
            step = torch.where(pending, 0.5 * step, step)
        moved = active & accepted
        failed = active & ~accepted
        if damping:
            stats["damping"].append(float(mu[0]) if B == 1 else mu[active].tolist())
            # trust-region style update: a full step means the quadratic model is good
            # (relax the damping); a cut step or no ascent means it is not (damp harder)
            full = moved & (step == 1.0)
            relax = torch.where(mu <= 1e-6, torch.zeros_like(mu), mu / 10.0)
            harder = torch.clamp(10.0 * mu, min=1e-4)
            mu = torch.where(full, relax,
                             torch.where(active & ~(moved & (step >= 0.25)), harder, mu))
        # only linear progress: the sparse model of the Hessian is too coarse, keep twice as
        # many entries per row from now on
        coarse = moved & (err_new > 0.5 * err)
        k_cur = torch.where(coarse, torch.clamp(2 * k_cur, max=m), k_cur)
        f = f + torch.where(moved, step, 0.0).unsqueeze(1) * df
        g = g + torch.where(moved, step, 0.0).unsqueeze(1) * dg
        spare, dual.buf = dual.buf, spare
        stats["steps"].append(float(step[0]) if B == 1 else step[moved].tolist())
        F, r, c, err, P = F_new, r_new, c_new, err_new, P_new
        if bool(failed.any()):
            # no ascent along the sparse direction: fall back to one Sinkhorn sweep for those
            idx = failed.nonzero().squeeze(1)
            stats["fallbacks"] += int(idx.numel())
            sub = Problem(a=a[idx], b=b[idx], C=C[idx], batched=True)
            inner = _State(f=f[idx], g=g[idx])
            run_sinkhorn(inner, sub, eps, 0.0, 1, 1, "logsumexp")
            f, g = f.index_copy(0, idx, inner.f), g.index_copy(0, idx, inner.g)
            F, r, c, err, P = dual(f, g)
        active = active & (err > tol)
        st.history.append(float(err.max()))
    st.f, st.g = f, g
    st.error = float(err.max())
    stats["newton_iterations"] += newton
    stats["newton_iterations_each"] = steps_each.tolist()


def sinkhorn_newton_sparse(
        a, b, C, eps: float = 0.05, *, eps_scale: EpsScale = "absolute",
        tol: float | None = None, max_iter: int = 200, warmup_iter: int = 20,
        warmup_annealing: float | None = 0.25, switch_tol: float | None = None,
        sparsify: Sparsify = "row_mass", k: int | None = None,
        mass_delta: float = 1e-3, cg_tol: float = 1e-10, cg_max_iter: int | None = None,
        init: OTResult | tuple[torch.Tensor, torch.Tensor] | None = None,
        kernel: Kernel = "auto", max_time: float | None = None,
        damping: bool = True) -> OTResult:
    """Entropic OT by Sinkhorn–Newton–Sparse (Tang et al., ICLR 2024, arXiv:2401.12253).

    Method: stage 1 runs log-stabilised Sinkhorn sweeps (eps-annealed, then ``warmup_iter`` at
    the target eps, stopping early once the marginal error is below ``switch_tol``). Stage 2
    maximises the concave dual ``F(f, g) = <a,f> + <b,g> - eps sum exp((f_i+g_j-C_ij)/eps)`` by
    Newton steps on the Hessian ``-(1/eps)[[diag(P1), P], [P^T, diag(P^T 1)]]`` with only the
    largest entries of ``P`` kept off the diagonal (``sparsify``) and, on the diagonal, the
    kept row/column sums plus 1% of the dropped mass (so the model stays definite but close to
    the Laplacian of the kept entries, which converges far faster than the exact diagonal). The
    Newton system is solved by Jacobi-preconditioned conjugate gradients on the Schur complement
    in ``g``, with the last ``g`` pinned (the Hessian's null
    direction is ``(1, -1)``), then an Armijo backtracking line search picks the step (one
    Sinkhorn sweep is the fallback when no step ascends). Far from the optimum the Newton model
    is damped (Levenberg–Marquardt, see ``damping``), which interpolates between a scaled
    Sinkhorn step and the Newton step. Cost per Newton step: O(nm) for the
    plan, the selection and each line-search trial, plus O(nnz) per CG iteration; near the
    optimum convergence is super-linear, so tens of Newton steps replace thousands of Sinkhorn
    sweeps at small eps. It stops when ``||P1-a||_1 + ||P^T 1-b||_1 <= tol``.

    Batches ``[B, n, m]`` are solved together by batched tensor operations, with no Python loop
    over problems (one kernel launch per operation for the whole batch, which is what a GPU
    needs) [D]: the warm-up is batched Sinkhorn; the kept Hessian entries of all problems form
    one block-diagonal sparse (CSR) matrix of shape ``[B n, B m]``, so each CG product is a
    single sparse matrix-vector product; CG keeps a step ``alpha_b``, ``beta_b`` and a stopping
    test per problem (a finished problem's step is 0); the line search halves each problem's
    own step; damping ``mu_b`` and kept count ``k_b`` are per problem, and a problem that meets
    ``tol`` is frozen while the others continue. We chose batched CG on the sparsified Hessian
    over a batched dense solve because the sparse system has O(n k) entries against O(n^2) for
    a dense factorisation (O(n^3) time), and the CG iteration counts of problems of one batch
    are similar. Each problem follows the same iterates as alone (same kept entries, same
    steps), except that the batched warm-up runs until the slowest problem's switch test.
    ``info["converged_per_problem"]`` flags each problem; ``converged`` is their conjunction.

    Args:
        a, b: marginals ``[n]``, ``[m]`` (or batched ``[B, ...]``; ``None``: uniform).
        C: cost ``[n, m]`` or ``[B, n, m]`` (a batch is solved together, see Method).
        eps: entropic regularisation; ``eps_scale`` as in :func:`monge.ot.sinkhorn`.
        tol: target marginal error (default 1e-8 in float64, ~1e-5 in float32).
        max_iter: cap on Newton steps.
        warmup_iter: Sinkhorn sweeps of stage 1 at the target eps (the paper uses 20; 700 for
            L1 costs).
        warmup_annealing: before those sweeps, run eps-scaled Sinkhorn from the cost range down
            to eps with this ratio between stages (each stage to marginal error 1e-2). Our
            addition [D]: from a 20-sweep start at eps <= 1e-3 the Newton steps are heavily
            damped; from the annealed start they are full steps. ``None`` gives the paper's
            plain warm-up.
        switch_tol: leave the warm-up early once the marginal error is below this.
        sparsify: ``"row_mass"`` (default: per row, the fewest of the top ``k`` entries
            holding ``1 - mass_delta`` of the row mass), ``"row_topk"`` (top ``k`` per row) or
            ``"global"`` (the paper's single threshold keeping the ``k * n`` largest entries).
        k: kept entries per row (default ``min(m, 50)``); the paper's ``lambda = 2/n`` is
            ``k = 2`` with ``sparsify="global"``, which is far too sparse for point clouds.
        mass_delta: row-mass fraction allowed to be dropped by ``"row_mass"``.
        cg_tol, cg_max_iter: CG relative residual and iteration cap (default ``max(100, n)``).
        init: warm start (earlier result or ``(f, g)``).
        kernel: Sinkhorn kernel for the warm-up (see :func:`monge.ot.sinkhorn`).
        max_time: optional wall-clock cap in seconds.
        damping: Levenberg–Marquardt damping of the Newton system, ``mu * diag(P1, P^T 1)``
            added to the Hessian model, with ``mu`` raised tenfold after a cut line-search step
            and lowered after a full step [D]. Without it, degenerate costs (L1 on a pixel
            grid, non-unique optima) stall: the dense Hessian is so ill-conditioned that CG
            stops at its cap and the direction admits only ~1e-7 steps.

    Returns:
        :class:`OTResult`; ``iterations`` counts warm-up sweeps plus Newton steps, and ``info``
        holds ``warmup_iterations``, ``newton_iterations`` (batched steps; per problem in
        ``newton_iterations_each``), ``nnz`` and ``cg_iterations`` per Newton step (lists over
        the active problems when batched), line-search ``steps``, ``fallbacks``, which
        ``switch_rule`` ended each problem's warm-up and, when batched,
        ``converged_per_problem``.

    Example:
        >>> C = torch.rand(50, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> r = sinkhorn_newton_sparse(None, None, C, eps=1e-2)
        >>> r.converged
        True
    """
    p_full = prepare(a, b, C)
    eps_abs, scale = resolve_eps(eps, eps_scale, p_full.C)
    tol = default_tol(p_full.dtype) if tol is None else check_positive_float(tol, "tol")
    check_positive_int(max_iter, "max_iter", 0)
    check_positive_int(warmup_iter, "warmup_iter", 0)
    if sparsify not in ("row_mass", "row_topk", "global"):
        raise InputError(f"sparsify: expected 'row_mass', 'row_topk' or 'global', got {sparsify!r}")
    n, m = p_full.C.shape[1:]
    k = min(m, 50) if k is None else check_positive_int(k, "k")
    cg_max_iter = max(100, n) if cg_max_iter is None else check_positive_int(cg_max_iter,
                                                                              "cg_max_iter")
    check_positive_float(mass_delta, "mass_delta")
    switch = tol if switch_tol is None else check_positive_float(switch_tol, "switch_tol")
    flags, p, ra, rb, st0, deadline = start_solve(p_full, eps_abs, init, max_time)
    stats: dict = {"warmup_iterations": 0, "newton_iterations": 0, "nnz": [],
                   "cg_iterations": [], "steps": [], "fallbacks": 0, "switch_rule": []}
    st = _State(f=st0.f, g=st0.g)
    check = max(1, min(10, warmup_iter))
    if warmup_annealing is not None:
        anneal(st, p, eps_abs, float((p.C.amax((-2, -1)) - p.C.amin((-2, -1))).max()),
               warmup_annealing, check, kernel, deadline, 100_000)
    run_sinkhorn(st, p, eps_abs, max(switch, tol), st.iterations + warmup_iter, check, kernel,
                 deadline)
    stats["warmup_iterations"] = st.iterations
    history = st.history
    st.history = []
    _newton_solve(p, st, eps_abs, tol, max_iter, sparsify, k, mass_delta, cg_tol, cg_max_iter,
                  deadline, stats, damping=damping)
    stats["switch_rule"] = ["switch_tol" if e <= max(switch, tol) else "warmup_iter"
                            for e in stats["warmup_error_each"]]
    history.extend(st.history)
    f, g = st.f, st.g
    P = entropic_plan(f, g, p.C, eps_abs)
    P, f, g = embed(P, f, g, ra, rb, n, m)
    iterations = stats["warmup_iterations"] + stats["newton_iterations"]
    return finish(p_full, P, f, g, eps_abs, iterations, history, tol, "sns", eps, scale, stats,
                  flags)


__all__ = ["sinkhorn_newton_sparse"]
