"""Online (lazy) log-domain Sinkhorn for point clouds: the n x m cost is never formed."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator

import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import ConvergenceWarning, InputError
from monge.ot._problem import (
    EpsScale,
    check_eps_precision,
    check_masses,
    check_positive_float,
    check_positive_int,
    default_tol,
)
from monge.ot._result import OTResult

#: default bytes of one cost/plan block (rows x m entries); the solver's only O(n m)-sized buffer
DEFAULT_BLOCK_BYTES = 32 * 2**20


# --------------------------------------------------------------------------- inputs
def prepare_points(x, y, name_x: str = "x", name_y: str = "y"):
    """Validate two point clouds; returns ``(x, y, batched)`` as ``[B, n, d]``, ``[B, m, d]``.

    Accepts ``[n, d]`` / ``[m, d]`` (one problem) or ``[B, n, d]`` / ``[B, m, d]`` (a batch).
    The floating dtype and device of ``x`` win; integer input becomes the default float dtype.
    """
    x = as_tensor(x, name_x)
    y = as_tensor(y, name_y).to(dtype=x.dtype, device=x.device)
    for t, nm in ((x, name_x), (y, name_y)):
        if t.ndim not in (2, 3):
            raise InputError(f"{nm}: expected points of shape [n, d] or [B, n, d], "
                             f"got shape {tuple(t.shape)}")
    if x.ndim != y.ndim:
        raise InputError(f"{name_x} and {name_y}: one is batched and the other is not "
                         f"(shapes {tuple(x.shape)} and {tuple(y.shape)})")
    if x.shape[-1] != y.shape[-1]:
        raise InputError(f"{name_x} and {name_y}: point dimensions differ "
                         f"({x.shape[-1]} vs {y.shape[-1]})")
    batched = x.ndim == 3
    if not batched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{name_x} and {name_y}: batch sizes differ ({x.shape[0]} vs "
                         f"{y.shape[0]})")
    if x.shape[1] == 0 or y.shape[1] == 0:
        raise InputError(f"{name_x} and {name_y}: empty point cloud "
                         f"({x.shape[1]} and {y.shape[1]} points)")
    check_finite(x, name_x)
    check_finite(y, name_y)
    return x.contiguous(), y.contiguous(), batched


def prepare_weights(w, name: str, B: int, size: int, like: torch.Tensor,
                    batched: bool) -> torch.Tensor:
    """Validate a marginal (``None``: uniform); returns ``[B, size]``."""
    if w is None:
        return torch.full((B, size), 1.0 / size, dtype=like.dtype, device=like.device)
    w = as_tensor(w, name).to(dtype=like.dtype, device=like.device)
    if w.ndim == 1 and w.shape[0] == size:
        w = w.expand(B, size)
    elif not (w.ndim == 2 and batched and w.shape == (B, size)):
        raise InputError(f"{name}: expected shape {(size,)}"
                         f"{' or ' + str((B, size)) if batched else ''} to match the points, "
                         f"got {tuple(w.shape)}")
    check_finite(w, name)
    if bool((w < 0).any()):
        raise InputError(f"{name}: marginal has {int((w < 0).sum())} negative entries")
    return w.contiguous()


def default_block_rows(m: int, itemsize: int, B: int = 1,
                       block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block so that one ``[B, rows, m]`` block takes about ``block_bytes``."""
    return max(1, min(1 << 20, block_bytes // max(1, B * m * itemsize)))


# --------------------------------------------------------------------------- kernels
def _neg_big(dtype: torch.dtype) -> float:
    """A finite stand-in for ``-inf`` potentials (zero-mass points) that cannot overflow."""
    return -torch.finfo(dtype).max / 16.0


def _key_features(k: torch.Tensor, pot: torch.Tensor, eps: float) -> torch.Tensor:
    """``[k_j, (pot_j - |k_j|^2)/eps, 1]`` as ``[B, d + 2, m]`` (right factor of the block)."""
    z = (pot - (k * k).sum(-1)) / eps
    z = torch.where(torch.isfinite(z), z, torch.full_like(z, _neg_big(z.dtype)))
    return torch.cat([k, z.unsqueeze(-1), torch.ones_like(z).unsqueeze(-1)], -1).transpose(1, 2)


def _query_features(q: torch.Tensor, last: torch.Tensor, eps: float) -> torch.Tensor:
    """``[2 q_i/eps, 1, last_i]`` as ``[B, rows, d + 2]`` (left factor of the block)."""
    return torch.cat([q * (2.0 / eps), torch.ones_like(last).unsqueeze(-1), last.unsqueeze(-1)],
                     -1)


def softmin(q: torch.Tensor, k: torch.Tensor, pot_k: torch.Tensor, eps: float, rows: int,
            shift: torch.Tensor | None = None, weights: torch.Tensor | None = None):
    """``eps * LSE_j((pot_k_j - |q_i - k_j|^2)/eps)`` for every query ``i``, in row blocks.

    Method: ``(pot_j - |q_i - k_j|^2)/eps = (pot_j - |k_j|^2)/eps + 2 q_i.k_j/eps - |q_i|^2/eps``;
    the first two terms (minus an optional per-row ``shift``) come out of one batched matrix
    product of augmented features per block, followed by an in-place exp and a row sum (the
    same expansion as :func:`monge.ot.cost.sq_euclidean_cost`, on points the caller centred).
    Without ``shift`` the row maximum is subtracted (one more pass); with it the caller vouches
    that ``shift`` is close to the row's log-sum-exp, and rows that under/overflow are redone
    with the maximum. Cost O(n m d) flops and O(n m) exponentials; memory one block.

    With ``weights`` (``[B, nq]``) and ``shift`` it also returns the column sums
    ``sum_i weights_i exp(Z_ij - shift_i)`` (``None`` if a block needed the maximum): with the
    Sinkhorn shift these are the column marginals of the current plan, for one matvec per block.
    """
    B, nq, _ = q.shape
    K = _key_features(k, pot_k, eps)
    qn = (q * q).sum(-1)
    out = torch.empty(B, nq, dtype=q.dtype, device=q.device)
    cols = None
    if weights is not None and shift is not None:
        cols = q.new_zeros(B, 1, k.shape[1])
    for s in range(0, nq, rows):
        e = min(nq, s + rows)
        qb = q[:, s:e]
        if shift is not None:
            sh = shift[:, s:e]
            W = torch.bmm(_query_features(qb, -sh, eps), K).exp_()
            lse = W.sum(-1).log_() + sh
            if bool(torch.isfinite(lse).all()):
                out[:, s:e] = eps * lse - qn[:, s:e]
                if cols is not None:
                    cols.baddbmm_(weights[:, None, s:e], W)
                continue
            cols = None
        Z = torch.bmm(_query_features(qb, torch.zeros_like(qn[:, s:e]), eps), K)
        mx = Z.amax(-1, keepdim=True)
        lse = Z.sub_(mx).exp_().sum(-1).log_() + mx.squeeze(-1)
        out[:, s:e] = eps * lse - qn[:, s:e]
    if weights is not None:
        return out, (None if cols is None else cols[:, 0])
    return out


def plan_blocks(q: torch.Tensor, k: torch.Tensor, fq: torch.Tensor, gk: torch.Tensor,
                eps: float, rows: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, stop, log P[:, start:stop, :])`` with
    ``log P_ij = (fq_i + gk_j - |q_i - k_j|^2)/eps`` (one matrix product per block)."""
    K = _key_features(k, gk, eps)
    qn = (q * q).sum(-1)
    last = (fq - qn) / eps
    last = torch.where(torch.isfinite(last), last, torch.full_like(last, _neg_big(last.dtype)))
    nq = q.shape[1]
    for s in range(0, nq, rows):
        e = min(nq, s + rows)
        yield s, e, torch.bmm(_query_features(q[:, s:e], last[:, s:e], eps), K)


# --------------------------------------------------------------------------- lazy plan
class LazyPlan:
    """The entropic plan ``P_ij = exp((f_i + g_j - |x_i - y_j|^2)/eps)`` held as potentials.

    Nothing of size n x m is stored: rows, columns and products with vectors are evaluated in
    blocks of ``block_rows`` rows (O(n m d) per product, memory one block). Unbatched plans
    act like ``[n, m]`` matrices, batched ones like ``[B, n, m]``.
    """

    is_sparse = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
                 eps: float, batched: bool, block_rows: int | None = None,
                 center: torch.Tensor | None = None):
        self._x, self._y, self._f, self._g = x, y, f, g      # [B, n, d], [B, m, d], [B, n], [B, m]
        # the points may be stored translated by -center (|x - y|^2 does not change)
        self._center = torch.zeros_like(x[:, :1]) if center is None else center
        self.eps = eps
        self.batched = batched
        B, n, _ = x.shape
        m = y.shape[1]
        item = x.element_size()
        self.block_rows = block_rows or default_block_rows(m, item, B)
        self._block_cols = default_block_rows(n, item, B) if block_rows is None else block_rows

    @property
    def shape(self) -> tuple[int, ...]:
        B, n, m = self._x.shape[0], self._x.shape[1], self._y.shape[1]
        return (B, n, m) if self.batched else (n, m)

    @property
    def dtype(self) -> torch.dtype:
        return self._x.dtype

    @property
    def device(self) -> torch.device:
        return self._x.device

    def _u(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.batched else t[0]

    def _vec(self, v, size: int, name: str) -> tuple[torch.Tensor, bool]:
        v = as_tensor(v, name).to(dtype=self.dtype, device=self.device)
        B = self._x.shape[0]
        squeeze = False
        if not self.batched:
            v = v.unsqueeze(0)
        if v.ndim == 2:
            v, squeeze = v.unsqueeze(-1), True
        if v.ndim != 3 or v.shape[0] != B or v.shape[1] != size:
            raise InputError(f"{name}: expected leading size {size} to match the plan "
                             f"{self.shape}, got shape {tuple(v.shape)}")
        return v, squeeze

    def matvec(self, v) -> torch.Tensor:
        """``P @ v`` for ``v`` of shape ``[m]`` or ``[m, k]`` (batched: ``[B, m(, k)]``)."""
        v, squeeze = self._vec(v, self._y.shape[1], "v")
        out = v.new_zeros(v.shape[0], self._x.shape[1], v.shape[2])
        for s, e, Z in plan_blocks(self._x, self._y, self._f, self._g, self.eps,
                                   self.block_rows):
            out[:, s:e] = torch.bmm(Z.exp_(), v)
        return self._u(out.squeeze(-1) if squeeze else out)

    def rmatvec(self, u) -> torch.Tensor:
        """``P^T @ u`` for ``u`` of shape ``[n]`` or ``[n, k]`` (batched: ``[B, n(, k)]``)."""
        u, squeeze = self._vec(u, self._x.shape[1], "u")
        out = u.new_zeros(u.shape[0], self._y.shape[1], u.shape[2])
        for s, e, Z in plan_blocks(self._y, self._x, self._g, self._f, self.eps,
                                   self._block_cols):
            out[:, s:e] = torch.bmm(Z.exp_(), u)
        return self._u(out.squeeze(-1) if squeeze else out)

    __matmul__ = matvec

    def rows(self, index) -> torch.Tensor:
        """Plan rows ``P[index, :]``: ``[len(index), m]`` (batched ``[B, len, m]``)."""
        idx = torch.as_tensor(index, device=self.device).reshape(-1)
        Z = next(plan_blocks(self._x[:, idx], self._y, self._f[:, idx], self._g, self.eps,
                             max(1, idx.numel())))[2]
        return self._u(Z.exp_())

    def cols(self, index) -> torch.Tensor:
        """Plan columns ``P[:, index]``: ``[n, len(index)]`` (batched ``[B, n, len]``)."""
        idx = torch.as_tensor(index, device=self.device).reshape(-1)
        Z = next(plan_blocks(self._y[:, idx], self._x, self._g[:, idx], self._f, self.eps,
                             max(1, idx.numel())))[2]
        return self._u(Z.exp_().transpose(1, 2))

    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P 1, P^T 1)`` in one blocked pass."""
        r, c, _ = self._pass()
        return self._u(r), self._u(c)

    def _pass(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row sums, column sums and ``sum P log P`` in one pass over the blocks."""
        B, n, m = self._x.shape[0], self._x.shape[1], self._y.shape[1]
        r = self._x.new_zeros(B, n)
        c = self._x.new_zeros(B, m)
        ent = self._x.new_zeros(B)
        for s, e, Z in plan_blocks(self._x, self._y, self._f, self._g, self.eps,
                                   self.block_rows):
            P = Z.exp()
            r[:, s:e] = P.sum(-1)
            c += P.sum(-2)
            ent += (P * Z).sum((-2, -1))
        return r, c, ent

    def barycentric_map(self) -> torch.Tensor:
        """``(P y) / (P 1)``: where each source point is sent on average, ``[n, d]``."""
        y = self._y + self._center
        y = y if self.batched else y[0]
        ones = torch.ones(self._y.shape[:2], dtype=self.dtype, device=self.device)
        num = self.matvec(torch.cat([y, self._u(ones).unsqueeze(-1)], -1))
        return num[..., :-1] / num[..., -1:]

    def dense(self, max_entries: int = 2**28) -> torch.Tensor:
        """The dense plan (for small problems and tests); refuses above ``max_entries``."""
        B, n, m = self._x.shape[0], self._x.shape[1], self._y.shape[1]
        if B * n * m > max_entries:
            raise InputError(f"plan: {B}x{n}x{m} entries exceed max_entries={max_entries}; "
                             "use rows(), cols(), matvec() instead")
        out = self._x.new_empty(B, n, m)
        for s, e, Z in plan_blocks(self._x, self._y, self._f, self._g, self.eps,
                                   self.block_rows):
            out[:, s:e] = Z.exp_()
        return self._u(out)

    to_dense = dense

    def __repr__(self) -> str:
        return f"LazyPlan(shape={self.shape}, eps={self.eps:.4g}, dtype={self.dtype})"


# --------------------------------------------------------------------------- solver
def max_sq_distance(x: torch.Tensor, y: torch.Tensor, rows: int) -> torch.Tensor:
    """``max_ij |x_i - y_j|^2`` per problem, in blocks (``[B]``)."""
    B = x.shape[0]
    out = x.new_zeros(B)
    zero_f = x.new_zeros(x.shape[:2])
    zero_g = y.new_zeros(y.shape[:2])
    for _s, _e, Z in plan_blocks(x, y, zero_f, zero_g, 1.0, rows):
        out = torch.maximum(out, (-Z).amax((-2, -1)))
    return out


def kmeans(x: torch.Tensor, w: torch.Tensor, k: int, iters: int = 5, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted k-means (Lloyd) of a batch of clouds ``x [B, n, d]`` with weights ``w [B, n]``.

    Starts from ``k`` distinct points picked by a fixed-seed permutation (reproducible), then
    ``iters`` Lloyd steps (nearest centre by the expansion ``|c|^2 - 2 x.c`` in blocks, weighted
    means by ``index_add``); a cluster that empties keeps its centre and gets mass 0. Cost
    O(iters n k d). Returns centres ``[B, k, d]``, their masses ``[B, k]`` (sums of ``w``) and
    the mean squared distance of the points to their centre ``[B]``.
    """
    B, n, d = x.shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    pick = torch.randperm(n, generator=g)[:k].to(x.device)
    c = x[:, pick].clone()
    rows = default_block_rows(k, x.element_size(), B)
    for step in range(iters + 1):
        cn = (c * c).sum(-1)
        lab = torch.empty(B, n, dtype=torch.int64, device=x.device)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            dist = cn.unsqueeze(1) - 2.0 * torch.bmm(x[:, s:e], c.transpose(1, 2))
            lab[:, s:e] = dist.argmin(-1)
        flat = (lab + k * torch.arange(B, device=x.device).unsqueeze(1)).reshape(-1)
        mass = x.new_zeros(B * k).index_add_(0, flat, w.reshape(-1)).view(B, k)
        if step == iters:
            break
        tot = x.new_zeros(B * k, d).index_add_(0, flat, (w.unsqueeze(-1) * x).reshape(-1, d))
        c = torch.where(mass.unsqueeze(-1) > 0, tot.view(B, k, d)
                        / mass.clamp_min(1e-300).unsqueeze(-1), c)
    spread = (w * ((x - torch.gather(c, 1, lab.unsqueeze(-1).expand(B, n, d))) ** 2
                   ).sum(-1)).sum(-1) / w.sum(-1)
    return c, mass, spread


def _multiscale_start(xc, yc, a, b, eps: float, diam2: float, factor: float, clusters: int,
                      stage_iter: int):
    """Coarse-to-fine start (Schmitzer 2019; Feydy et al. 2019, GeomLoss's multiscale mode).

    Both clouds are clustered (weighted k-means, ``clusters`` centres each); eps-scaling runs on
    the small coarse problem (centres with the cluster masses) from ``diam2`` down to
    ``eps_c = max(eps, 2 (s_x + s_y))`` with ``s`` the clusters' mean squared radius (below that
    scale the coarse cost no longer resolves the fine one), ``3 stage_iter`` sweeps per stage
    plus 20 at ``eps_c``. The fine ``f`` is then the c-transform of the coarse ``g`` (the
    y-measure replaced by its clusters): ``f_i = eps_c log a_i - eps_c LSE_J((G_J - |x_i -
    Y_J|^2)/eps_c)``, an O(n K d) pass. Returns ``(f, eps_c, info)``.
    """
    kx, ky = min(clusters, xc.shape[1]), min(clusters, yc.shape[1])
    X, alpha, sx = kmeans(xc, a, kx)
    Y, beta, sy = kmeans(yc, b, ky)
    eps_c = max(eps, 2.0 * float((sx + sy).max()))
    la, lb = torch.log(alpha), torch.log(beta)
    F = torch.zeros_like(alpha)
    G = torch.zeros_like(beta)
    rx = default_block_rows(ky, xc.element_size(), xc.shape[0])
    ry = default_block_rows(kx, xc.element_size(), xc.shape[0])
    stages = []
    e = max(diam2, eps_c)
    while e > eps_c:
        stages.append(e)
        e *= factor
    sweeps = 0
    for e in stages:
        for _ in range(3 * stage_iter):
            F = e * la - softmin(X, Y, G, e, rx)
            G = e * lb - softmin(Y, X, F, e, ry)
            sweeps += 1
    for _ in range(20):
        F = eps_c * la - softmin(X, Y, G, eps_c, rx)
        G = eps_c * lb - softmin(Y, X, F, eps_c, ry)
        sweeps += 1
    f = eps_c * torch.log(a) - softmin(xc, Y, G, eps_c, default_block_rows(
        ky, xc.element_size(), xc.shape[0]))
    return f, eps_c, {"multiscale_clusters": (kx, ky), "multiscale_eps": eps_c,
                      "multiscale_coarse_sweeps": sweeps}


def online_sinkhorn(
        x, y, eps: float = 0.05, a=None, b=None, *, eps_scale: EpsScale = "absolute",
        tol: float | None = None, max_iter: int = 10_000, annealing: bool = True,
        annealing_factor: float = 0.5, stage_iter: int = 1, relax: bool = True,
        init: OTResult | tuple[torch.Tensor, torch.Tensor] | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES, max_time: float | None = None,
        callback: Callable[[int, float], None] | None = None,
        multiscale: int | None = None) -> OTResult:
    """Entropic OT between point clouds with cost ``|x - y|^2``, without an n x m matrix.

    Method: log-domain Sinkhorn (Cuturi 2013) on the potentials ``f, g`` of
    ``P_ij = exp((f_i + g_j - |x_i - y_j|^2)/eps)``:
    ``f_i = eps log a_i - eps LSE_j((g_j - C_ij)/eps)``, then the same for ``g``. Each
    half-sweep streams over row blocks; a block's ``(g_j - C_ij)/eps`` comes from one matrix
    product of augmented ``d + 2``-dimensional features, so memory is O((n + m) d) plus one
    block of ``block_bytes``. Near convergence the log-sum-exp is shifted by the previous
    potential instead of the row maximum (one pass fewer). eps-scaling (Feydy et al. 2019,
    AISTATS; Schmitzer 2019) warm-starts the target eps from ``stage_iter`` sweeps at each of
    ``eps_0, eps_0 * factor, ...`` with ``eps_0`` the squared diameter of the two clouds. The
    row marginal error of the current potentials falls out of every f-update for free (the
    column marginal is exact after the g-update), so convergence is checked every sweep.
    With ``relax``, once the plain sweeps' error ratio theta is measured, both updates are
    over-relaxed, ``f <- f + omega (f_sinkhorn - f)`` with ``omega = 2 / (1 + sqrt(1 - theta))``
    (capped at 1.9; over-relaxed Sinkhorn, Thibault et al., Algorithms 2021; Lehmann et al.
    2022), which turns the rate ``theta`` into about ``omega - 1``; the column marginal of
    the relaxed iterate is then read off the shifted row pass (one extra matvec per block), so
    the reported error stays exact, and omega is halved back if the error keeps rising.
    Cost: O(n m d) per sweep; linear convergence.

    Args:
        x: source points ``[n, d]`` or a batch ``[B, n, d]`` (float32/float64, any device).
        y: target points ``[m, d]`` or ``[B, m, d]``, same dimension ``d``.
        eps: entropic regularisation, in units of ``|x - y|^2`` (or relative, see
            ``eps_scale``).
        a, b: marginals ``[n]``, ``[m]`` (or ``[B, ...]``; ``None``: uniform), equal mass.
        eps_scale: ``"absolute"`` or ``"max_cost"`` (eps times ``max_ij |x_i - y_j|^2``,
            computed exactly in one blocked pass; matches the dense solvers).
        tol: target ``||P1 - a||_1 + ||P^T 1 - b||_1`` (default 1e-8 float64, ~1e-5 float32).
        max_iter: cap on the sweeps at the target eps (annealing sweeps are counted in
            ``info["annealing_iterations"]``).
        annealing: use eps-scaling; ``annealing_factor`` is the eps ratio between stages.
        stage_iter: sweeps per annealing stage.
        relax: over-relaxed sweeps at the target eps (Thibault et al. 2021; see Method).
        init: warm start, an earlier :class:`OTResult` or potentials ``(f, g)`` (annealing is
            then skipped).
        block_bytes: size of one block of the plan (memory/speed trade-off).
        max_time: optional wall-clock cap in seconds (then flagged if unconverged).
        callback: called as ``callback(sweep, marginal_error)`` after each check.
        multiscale: number of clusters ``K`` per cloud for a coarse-to-fine start (``None``:
            off). The coarse eps-scaling stages run on the K x K problem of k-means centres
            and only the stages below the cluster scale run on the points (see
            :func:`_multiscale_start`; Schmitzer 2019, Feydy et al. 2019). Ignored with
            ``init`` or ``annealing=False``. Whether it pays is measured in
            ``benchmarks/ot_scale.py --multiscale``.

    Returns:
        :class:`OTResult` with ``method="online_sinkhorn"``; ``plan`` is a :class:`LazyPlan`
        (``rows``, ``cols``, ``matvec``/``@``, ``rmatvec``, ``marginals``,
        ``barycentric_map``, ``dense`` for small problems), ``f, g`` the potentials,
        ``cost = <C, P>`` and ``objective = <C,P> + eps sum P log P``.

    Example:
        >>> x = torch.rand(200, 2, dtype=torch.float64)
        >>> y = torch.randn(150, 2, dtype=torch.float64)
        >>> r = online_sinkhorn(x, y, eps=0.1)
        >>> r.converged, tuple(r.plan.rows([0, 1]).shape)
        (True, (2, 150))
    """
    x, y, batched = prepare_points(x, y)
    B, n, d = x.shape
    m = y.shape[1]
    a = prepare_weights(a, "a", B, n, x, batched)
    b = check_masses(a, prepare_weights(b, "b", B, m, x, batched))
    tol = default_tol(x.dtype) if tol is None else check_positive_float(tol, "tol")
    check_positive_int(max_iter, "max_iter", 0)
    check_positive_int(stage_iter, "stage_iter")
    check_positive_int(block_bytes, "block_bytes")
    check_positive_float(annealing_factor, "annealing_factor")
    if annealing and not annealing_factor < 1:
        raise InputError(f"annealing_factor: must be in (0, 1), got {annealing_factor}")
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise InputError(f"eps: must be a positive finite number, got {eps!r}")
    start = time.perf_counter()
    deadline = math.inf if max_time is None else start + max_time
    # translation does not change |x - y|^2: centre once (less cancellation in the expansion)
    center = 0.5 * (x.mean(1, keepdim=True) + y.mean(1, keepdim=True))
    xc, yc = x - center, y - center
    rows_x = default_block_rows(m, x.element_size(), B, block_bytes)
    rows_y = default_block_rows(n, x.element_size(), B, block_bytes)
    radius = (xc.norm(dim=-1).amax(-1) + yc.norm(dim=-1).amax(-1))   # [B]
    diam2 = float((radius ** 2).max())
    scale = None
    if eps_scale == "max_cost":
        scale = float(max_sq_distance(xc, yc, rows_x).max())
        if scale == 0.0:
            raise InputError("eps: cannot be relative to the cost scale when all points coincide")
        eps_abs = float(eps) * scale
    elif eps_scale == "absolute":
        eps_abs = float(eps)
    else:
        raise InputError(f"eps_scale: expected 'absolute' or 'max_cost', got {eps_scale!r}")
    flags: list[str] = []
    check_eps_precision(eps_abs, torch.tensor([0.0, scale or diam2], dtype=x.dtype), flags)

    log_a = torch.log(a)
    log_b = torch.log(b)
    pos_a = a > 0
    if init is not None:
        f0, g0 = (init.f, init.g) if isinstance(init, OTResult) else init
        try:
            f = torch.as_tensor(f0, dtype=x.dtype, device=x.device).expand(B, n).clone()
            g = torch.as_tensor(g0, dtype=x.dtype, device=x.device).expand(B, m).clone()
        except RuntimeError:
            raise InputError(f"init: potentials do not match the problem ({n}, {m})") from None
        if not (bool(torch.isfinite(f[pos_a]).all()) and bool(torch.isfinite(g[b > 0]).all())):
            raise InputError("init: warm-start potentials contain NaN or Inf")
    else:
        f = torch.zeros(B, n, dtype=x.dtype, device=x.device)
        g = torch.zeros(B, m, dtype=x.dtype, device=x.device)

    anneal_iter = 0
    stages: list[float] = []
    ms_info: dict = {}
    if multiscale is not None:
        check_positive_int(multiscale, "multiscale")
    if annealing and init is None:
        e = max(diam2, eps_abs)
        if multiscale is not None:
            f, eps_c, ms_info = _multiscale_start(xc, yc, a, b, eps_abs, diam2,
                                                  annealing_factor, multiscale, stage_iter)
            e = eps_c * annealing_factor
        while e > eps_abs:
            stages.append(e)
            e *= annealing_factor
        if ms_info and stages:      # fine stages below the cluster scale start from (f, g)
            g = eps_c * log_b - softmin(yc, xc, f, eps_c, rows_y)
    for e in stages:
        for _ in range(stage_iter):
            f = e * log_a - softmin(xc, yc, g, e, rows_x)
            g = e * log_b - softmin(yc, xc, f, e, rows_y)
            anneal_iter += 1
        if time.perf_counter() > deadline:
            break

    history: list[float] = []
    it = 0
    err = math.inf
    if init is None and not stages and not ms_info:
        f = eps_abs * log_a - softmin(xc, yc, g, eps_abs, rows_x)
        g = eps_abs * log_b - softmin(yc, xc, f, eps_abs, rows_y)
        it = 1
    elif init is not None:
        g = eps_abs * log_b - softmin(yc, xc, f, eps_abs, rows_y)
        it = 1
    else:
        g = eps_abs * log_b - softmin(yc, xc, f, eps_abs, rows_y)   # last stage -> target eps
    omega = 1.0
    plain: list[float] = []        # errors of consecutive plain sweeps (rate estimate)
    rises = 0
    relaxed: list[float] = []
    while True:
        sh = None
        if err < 0.5:
            sh = (eps_abs * log_a - f + (xc * xc).sum(-1)) / eps_abs
            sh = torch.where(pos_a, sh, torch.zeros_like(sh))
        lse, col = softmin(xc, yc, g, eps_abs, rows_x, shift=sh, weights=a)
        f_new = eps_abs * log_a - lse
        # row marginal of (f, g) is a * exp((f - f_new)/eps); the column marginal is exact after
        # a plain g-update, and read off the shifted pass (col) after an over-relaxed one
        ratio = torch.where(pos_a, torch.expm1((f - f_new) / eps_abs), torch.zeros_like(f))
        errs = (a * ratio).abs().sum(-1)
        if omega != 1.0:
            if col is None:       # no exact column sums this pass: back to plain sweeps
                omega, plain = 1.0, []
            else:
                errs = errs + (col - b).abs().sum(-1)
        err_prev = err
        err = float(errs.max()) if bool(torch.isfinite(errs).all()) else math.inf
        history.append(err)
        if callback is not None:
            callback(it, err)
        if err <= tol or it >= max_iter or time.perf_counter() > deadline:
            break
        if relax and omega == 1.0 and err < 0.5:
            plain.append(err)
            if len(plain) >= 4:
                theta = min(0.99, max(plain[-1] / plain[-2], plain[-2] / plain[-3]))
                if theta > 0.3:
                    omega = min(1.9, 2.0 / (1.0 + math.sqrt(1.0 - theta)))
        elif omega != 1.0:
            rises = rises + 1 if err > err_prev else 0
            relaxed.append(err)
            if rises >= 3 or not math.isfinite(err):
                omega, plain, rises = 1.0 + 0.5 * (omega - 1.0), [], 0
                relaxed = []
            elif len(relaxed) > 5 and len(relaxed) % 5 == 1:
                # observed rate rho with omega -> Sinkhorn rate theta by Young's SOR relation
                # (rho + omega - 1)^2 = rho omega^2 theta; raise omega towards its optimum
                rho = (relaxed[-1] / relaxed[-6]) ** 0.2
                if 0.0 < rho < 1.0 and rho > omega - 1.0 + 0.05:
                    theta = min(0.9999, (rho + omega - 1.0) ** 2 / (rho * omega ** 2))
                    omega = max(omega, min(1.95, 2.0 / (1.0 + math.sqrt(1.0 - theta))))
        if omega == 1.0:
            f = f_new
        else:
            f = torch.where(pos_a, f + omega * (f_new - f), f_new)
        sh = None
        if err < 0.5:
            sh = (eps_abs * log_b - g + (yc * yc).sum(-1)) / eps_abs
            sh = torch.where(b > 0, sh, torch.zeros_like(sh))
        g_new = eps_abs * log_b - softmin(yc, xc, f, eps_abs, rows_y, shift=sh)
        g = g_new if omega == 1.0 else torch.where(b > 0, g + omega * (g_new - g), g_new)
        it += 1

    info = {"annealing_iterations": anneal_iter, "annealing_stages": len(stages),
            "block_rows": rows_x, "block_bytes": block_bytes, **ms_info}
    return _finish(xc, yc, a, b, f, g, eps_abs, batched, rows_x, center, tol, it, history,
                   "online_sinkhorn", float(eps), scale, info, flags, start)


def _finish(xc, yc, a, b, f, g, eps_abs: float, batched: bool, rows: int, center, tol: float,
            it: int, history: list[float], method: str, eps_given: float, scale, info: dict,
            flags: list[str], start: float) -> OTResult:
    """One exact blocked pass (marginals, entropy) and the :class:`OTResult` with a lazy plan."""
    pos_a, pos_b = a > 0, b > 0
    plan = LazyPlan(xc, yc, f, g, eps_abs, batched, rows, center=center)
    r, c, ent = plan._pass()
    merr = (r - a).abs().sum(-1) + (c - b).abs().sum(-1)
    objective = (torch.where(pos_a, r * f, torch.zeros_like(r)).sum(-1)
                 + torch.where(pos_b, c * g, torch.zeros_like(c)).sum(-1))
    cost = objective - eps_abs * ent
    converged = bool(merr.max() <= tol) and bool(torch.isfinite(merr).all())
    history.append(float(merr.max()))
    if not converged:
        warnings.warn(f"{method}: marginal error {float(merr.max()):.3g} > tol "
                      f"{tol:.3g} after {it} sweeps; result flagged converged=False",
                      ConvergenceWarning, stacklevel=3)
    f = torch.where(pos_a, f, torch.full_like(f, -math.inf))
    g = torch.where(pos_b, g, torch.full_like(g, -math.inf))
    plan._f, plan._g = f, g

    def u(t: torch.Tensor) -> torch.Tensor:
        return t if batched else t[0]

    info["seconds"] = time.perf_counter() - start
    return OTResult(plan=plan, f=u(f), g=u(g), cost=u(cost), objective=u(objective),  # type: ignore[arg-type]
                    iterations=it, marginal_error=u(merr), converged=converged,
                    history=history, method=method, eps=eps_abs,
                    eps_relative=eps_given if scale is not None else None, cost_scale=scale,
                    tol=tol, info=info, flags=flags)


def symmetric_sinkhorn(x, eps: float, a=None, *, tol: float | None = None,
                       max_iter: int = 10_000, annealing: bool = True,
                       annealing_factor: float = 0.5, block_bytes: int = DEFAULT_BLOCK_BYTES,
                       max_time: float | None = None) -> OTResult:
    """Entropic self-transport ``OT_eps(a, a)`` on ``|x - x'|^2`` with one symmetric potential.

    Method: the symmetric problem has ``f = g``; alternating Sinkhorn on it converges only
    sublinearly at small eps (its two half-steps undo each other), so the averaged fixed-point
    update ``f <- (f + eps log a - eps LSE_j((f_j - C_ij)/eps)) / 2`` is used instead (Feydy et
    al., AISTATS 2019), with the same blocked kernel and eps-scaling as
    :func:`online_sinkhorn` and the marginal error (twice the row error, by symmetry) checked
    every sweep. Cost O(n^2 d) per sweep, memory one block.

    Args:
        x: points ``[n, d]`` or ``[B, n, d]``.
        eps: regularisation in units of ``|x - x'|^2``.
        a: weights ``[n]`` (or ``[B, n]``; ``None``: uniform).
        tol, max_iter, annealing, annealing_factor, block_bytes, max_time: as in
            :func:`online_sinkhorn`.

    Returns:
        :class:`OTResult` (``method="symmetric_sinkhorn"``, ``f == g``, lazy plan).
    """
    x, _, batched = prepare_points(x, x)
    B, n, _ = x.shape
    a = prepare_weights(a, "a", B, n, x, batched)
    check_masses(a, a)
    tol = default_tol(x.dtype) if tol is None else check_positive_float(tol, "tol")
    check_positive_int(max_iter, "max_iter", 0)
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise InputError(f"eps: must be a positive finite number, got {eps!r}")
    start = time.perf_counter()
    deadline = math.inf if max_time is None else start + max_time
    center = x.mean(1, keepdim=True)
    xc = x - center
    rows = default_block_rows(n, x.element_size(), B, block_bytes)
    diam2 = float(((2 * xc.norm(dim=-1).amax(-1)) ** 2).max())
    flags: list[str] = []
    eps = float(eps)
    check_eps_precision(eps, torch.tensor([0.0, diam2], dtype=x.dtype), flags)
    log_a, pos = torch.log(a), a > 0
    f = torch.zeros(B, n, dtype=x.dtype, device=x.device)
    stages: list[float] = []
    e = max(diam2, eps)
    while annealing and e > eps:
        stages.append(e)
        e *= annealing_factor
    for e in stages:
        f = 0.5 * (f + e * log_a - softmin(xc, xc, f, e, rows))
    history: list[float] = []
    it = 0
    xn = (xc * xc).sum(-1)
    err = math.inf
    while True:
        sh = None
        if err < 0.5:
            sh = torch.where(pos, (eps * log_a - f + xn) / eps, torch.zeros_like(f))
        f_new = eps * log_a - softmin(xc, xc, f, eps, rows, shift=sh)
        ratio = torch.where(pos, torch.expm1((f - f_new) / eps), torch.zeros_like(f))
        errs = 2.0 * (a * ratio).abs().sum(-1)
        err = float(errs.max()) if bool(torch.isfinite(errs).all()) else math.inf
        history.append(err)
        if err <= tol or it >= max_iter or time.perf_counter() > deadline:
            break
        f = torch.where(pos, 0.5 * (f + f_new), f_new)
        it += 1
    info = {"annealing_iterations": len(stages), "annealing_stages": len(stages),
            "block_rows": rows, "block_bytes": block_bytes}
    return _finish(xc, xc, a, a, f, f.clone(), eps, batched, rows, center, tol, it, history,
                   "symmetric_sinkhorn", eps, None, info, flags, start)


__all__ = ["online_sinkhorn", "symmetric_sinkhorn", "LazyPlan", "softmin", "plan_blocks",
           "prepare_points", "prepare_weights", "check_masses", "max_sq_distance"]
