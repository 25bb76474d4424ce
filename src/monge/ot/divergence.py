"""Debiased Sinkhorn divergence between weighted point clouds, with envelope-theorem gradients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from monge.errors import InputError
from monge.ot._result import OTResult
from monge.ot.cost import sq_euclidean_cost
from monge.ot.online import (
    check_masses,
    online_sinkhorn,
    prepare_points,
    prepare_weights,
    softmin,
    symmetric_sinkhorn,
)
from monge.ot.sinkhorn import sinkhorn

Solver = Literal["auto", "dense", "online"]

#: ``"auto"`` uses the dense solver up to this many cost entries (all three problems, batch)
DENSE_MAX_ENTRIES = 2**22


@dataclass
class _Side:
    """One entropic problem of the divergence, solved: KL potentials and plan products."""

    F: torch.Tensor          # [B, n]   KL-convention potentials (P = a b exp((F+G-C)/eps))
    G: torch.Tensor          # [B, m]
    result: OTResult


def _solve(x, y, a, b, eps, solver: str, tol, max_iter, symmetric: bool = False) -> _Side:
    """Solve OT_eps(a, b) between ``x [B,n,d]`` and ``y [B,m,d]`` with cost ``|x - y|^2``
    (``symmetric``: ``y is x`` and ``b is a``, solved with the averaged symmetric update)."""
    if symmetric:
        kw = {} if max_iter is None else {"max_iter": max_iter}
        r = symmetric_sinkhorn(x, eps, a, tol=tol, **kw)
        F = torch.where(a > 0, r.f - eps * torch.log(a), torch.zeros_like(r.f))
        return _Side(F=F, G=F, result=r)
    if solver == "dense":
        C = torch.stack([sq_euclidean_cost(xi, yi) for xi, yi in zip(x, y, strict=True)])
        kw = {} if max_iter is None else {"max_iter": max_iter}
        r = sinkhorn(a, b, C, eps, tol=tol, **kw)
        f, g = r.f.reshape(a.shape), r.g.reshape(b.shape)
    else:
        kw = {} if max_iter is None else {"max_iter": max_iter}
        r = online_sinkhorn(x, y, eps, a, b, tol=tol, **kw)
        f, g = r.f.reshape(a.shape), r.g.reshape(b.shape)
    # monge potentials carry the marginals: f = F + eps log a. Zero-mass points get F from the
    # c-transform (its value where the weight gradient is taken)
    F = torch.where(a > 0, f - eps * torch.log(a), torch.zeros_like(f))
    G = torch.where(b > 0, g - eps * torch.log(b), torch.zeros_like(g))
    if bool((a == 0).any()):
        F = torch.where(a > 0, F, -softmin(x - y.mean(1, keepdim=True),
                                           y - y.mean(1, keepdim=True),
                                           torch.where(b > 0, g, torch.full_like(g, -torch.inf)),
                                           eps, 4096))
    if bool((b == 0).any()):
        G = torch.where(b > 0, G, -softmin(y - x.mean(1, keepdim=True),
                                           x - x.mean(1, keepdim=True),
                                           torch.where(a > 0, f, torch.full_like(f, -torch.inf)),
                                           eps, 4096))
    return _Side(F=F, G=G, result=r)


def _plan_products(side: _Side, x: torch.Tensor, y: torch.Tensor):
    """``(P [y, 1], P^T [x, 1])`` for the solved plan (dense or lazy), as ``[B, n, d+1]``,
    ``[B, m, d+1]``."""
    P = side.result.plan
    one_x = torch.ones_like(x[..., :1])
    one_y = torch.ones_like(y[..., :1])
    Y1 = torch.cat([y, one_y], -1)
    X1 = torch.cat([x, one_x], -1)
    if isinstance(P, torch.Tensor):         # dense plan of a batched [B, n, m] solve
        return torch.bmm(P, Y1), torch.bmm(P.transpose(1, 2), X1)
    return P.matvec(Y1), P.rmatvec(X1)      # lazy plan of a batched solve


def _grad_first(x: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """``d/dx_i sum_j P_ij |x_i - y_j|^2 = 2 (x_i (P1)_i - (P y)_i)``."""
    return 2.0 * (x * py[..., -1:] - py[..., :-1])


class _DivergenceFn(torch.autograd.Function):
    """S_eps with a hand-written backward: gradients from the optimal potentials and plans
    (envelope theorem), never from autograd through the Sinkhorn iterations."""

    @staticmethod
    def forward(ctx, x, y, a, b, eps, solver, tol, max_iter, batched):  # noqa: D102
        with torch.no_grad():
            ab = _solve(x, y, a, b, eps, solver, tol, max_iter)
            aa = _solve(x, x, a, a, eps, solver, tol, max_iter, symmetric=True)
            bb = _solve(y, y, b, b, eps, solver, tol, max_iter, symmetric=True)
            value = ((a * (ab.F - 0.5 * (aa.F + aa.G))).sum(-1)
                     + (b * (ab.G - 0.5 * (bb.F + bb.G))).sum(-1))
        ctx.sides = (ab, aa, bb)
        ctx.batched = batched
        ctx.save_for_backward(x, y)
        ctx.results = {"ab": ab.result, "aa": aa.result, "bb": bb.result}
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, y = ctx.saved_tensors
        ab, aa, bb = ctx.sides
        go = grad_out.reshape(-1, 1)
        gx = gy = ga = gb = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            py, ptx = _plan_products(ab, x, y)
            pxx, ptxx = _plan_products(aa, x, x)
            pyy, ptyy = _plan_products(bb, y, y)
            if ctx.needs_input_grad[0]:
                gx = _grad_first(x, py) - 0.5 * (_grad_first(x, pxx) + _grad_first(x, ptxx))
                gx = gx * go.unsqueeze(-1)
            if ctx.needs_input_grad[1]:
                gy = _grad_first(y, ptx) - 0.5 * (_grad_first(y, pyy) + _grad_first(y, ptyy))
                gy = gy * go.unsqueeze(-1)
        if ctx.needs_input_grad[2]:
            ga = (ab.F - 0.5 * (aa.F + aa.G)) * go
        if ctx.needs_input_grad[3]:
            gb = (ab.G - 0.5 * (bb.F + bb.G)) * go
        return gx, gy, ga, gb, None, None, None, None, None


def sinkhorn_divergence(x, y, eps: float, a=None, b=None, *, solver: Solver = "auto",
                        tol: float | None = None, max_iter: int | None = None) -> torch.Tensor:
    """Debiased Sinkhorn divergence ``S_eps(alpha, beta)`` between weighted point clouds.

    Method: with ``OT_eps(a, b) = min_P <C, P> + eps KL(P | a x b)`` on the cost
    ``C_ij = |x_i - y_j|^2`` (monge's convention; Cuturi 2013, Genevay et al. 2018),
    ``S_eps = OT_eps(a, b) - 1/2 OT_eps(a, a) - 1/2 OT_eps(b, b)`` (Feydy et al., AISTATS 2019),
    evaluated in the dual form ``<a, F_ab - F_aa> + <b, G_ab - G_bb>`` from the optimal KL
    potentials ``F, G`` (``P = a_i b_j exp((F_i + G_j - C_ij)/eps)``; monge's ``f = F + eps log
    a``). S_eps >= 0, S_eps(a, a) = 0, and it interpolates between W2^2 (eps -> 0) and an MMD
    (eps -> inf). The three problems are solved by the dense log-stabilised
    :func:`monge.ot.sinkhorn` or by :func:`monge.ot.online.online_sinkhorn` (no n x m matrix);
    the two symmetric ones by :func:`monge.ot.online.symmetric_sinkhorn` (averaged updates).
    Gradients use the envelope theorem, not autograd through the iterations:
    ``dS/da = F_ab - (F_aa + G_aa)/2``, ``dS/dx_i = 2 sum_j P^ab_ij (x_i - y_j) -
    sum_j (P^aa_ij + P^aa_ji)(x_i - x_j)`` (and symmetrically for ``b``, ``y``); exact at the
    optimum, so they are as accurate as the solves (``tol``). Cost: three Sinkhorn solves;
    the backward pass is six plan-vector products.

    Mapping to GeomLoss: ``geomloss.SamplesLoss("sinkhorn", p=2, blur=s)`` uses the halved
    cost ``|x - y|^2 / 2`` and ``eps_G = s^2``. Since ``OT_{eps}(C/2) = OT_{2 eps}(C)/2``:
    monge ``eps = 2 s^2`` and ``S_monge = 2 x SamplesLoss`` (checked in the tests to 1e-6);
    GeomLoss's newer ``geomloss.ot.solve_sample(cost="sqeuclidean", reg=eps)`` uses monge's
    cost and ``reg = eps`` directly.

    Args:
        x: source points ``[n, d]`` or a batch ``[B, n, d]``.
        y: target points ``[m, d]`` or ``[B, m, d]``.
        eps: entropic regularisation in units of ``|x - y|^2`` (absolute).
        a, b: weights ``[n]``, ``[m]`` (or ``[B, ...]``; ``None``: uniform), equal total mass.
            Gradients flow to them when they require grad (defined up to a constant on the
            simplex).
        solver: ``"dense"``, ``"online"`` or ``"auto"`` (online; dense for problems of at most
            ``DENSE_MAX_ENTRIES`` cost entries on an accelerator).
        tol: marginal-error tolerance of each solve (solver default when ``None``).
        max_iter: iteration cap of each solve.

    Returns:
        Scalar tensor (``[B]`` for a batch), differentiable in ``x``, ``y``, ``a``, ``b``.

    Example:
        >>> x = torch.rand(50, 2, dtype=torch.float64, requires_grad=True)
        >>> y = torch.rand(40, 2, dtype=torch.float64) + 1.0
        >>> s = sinkhorn_divergence(x, y, eps=0.1)
        >>> s.backward()
        >>> bool(s > 0), x.grad.shape
        (True, torch.Size([50, 2]))
    """
    if solver not in ("auto", "dense", "online"):
        raise InputError(f"solver: expected 'auto', 'dense' or 'online', got {solver!r}")
    if not (isinstance(eps, int | float) and eps > 0 and eps < float("inf")):
        raise InputError(f"eps: must be a positive finite number, got {eps!r}")
    xx, yy, batched = prepare_points(x, y)
    B, n, _ = xx.shape
    m = yy.shape[1]
    aw = prepare_weights(a, "a", B, n, xx, batched)
    bw = prepare_weights(b, "b", B, m, xx, batched)
    check_masses(aw, bw)
    if solver == "auto":
        # the online solver (eps-scaling, over-relaxation) converges in far fewer sweeps; the
        # dense one only pays for tiny problems on an accelerator
        on_accel = xx.device.type != "cpu"
        small = B * (n * m + n * n + m * m) <= DENSE_MAX_ENTRIES
        solver = "dense" if (on_accel and small) else "online"
    # keep the autograd link to the caller's tensors (prepare_* may have reshaped/cast them)
    value = _DivergenceFn.apply(xx, yy, aw, bw, float(eps), solver, tol, max_iter, batched)
    return value if batched else value[0]


class SinkhornDivergenceLoss(nn.Module):
    """``S_eps(x, y)`` as a loss module (see :func:`sinkhorn_divergence`).

    Args:
        eps: entropic regularisation in units of ``|x - y|^2``.
        solver: ``"auto"``, ``"dense"`` or ``"online"``.
        tol, max_iter: passed to each Sinkhorn solve.

    Example:
        >>> loss = SinkhornDivergenceLoss(eps=0.1)
        >>> x = torch.zeros(10, 2, requires_grad=True)
        >>> loss(x, torch.ones(12, 2)).backward()
    """

    def __init__(self, eps: float, solver: Solver = "auto", tol: float | None = None,
                 max_iter: int | None = None):
        super().__init__()
        self.eps, self.solver, self.tol, self.max_iter = eps, solver, tol, max_iter

    def forward(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None = None,
                b: torch.Tensor | None = None) -> torch.Tensor:
        """Divergence between the clouds ``x`` (weights ``a``) and ``y`` (weights ``b``)."""
        return sinkhorn_divergence(x, y, self.eps, a, b, solver=self.solver, tol=self.tol,
                                   max_iter=self.max_iter)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, solver={self.solver!r}"


__all__ = ["sinkhorn_divergence", "SinkhornDivergenceLoss", "DENSE_MAX_ENTRIES"]
