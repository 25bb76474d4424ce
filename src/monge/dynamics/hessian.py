"""Loss curvature of a model: Hessian trace (exact, Hutchinson, Gauss–Newton), sharpness, density.

Every function takes ``model`` (an ``nn.Module``), ``loss_fn(model, batch) -> scalar tensor`` and
``batch`` (anything ``loss_fn`` understands); the Hessian is taken with respect to all parameters
that require grad, flattened in ``model.named_parameters()`` order. The stochastic parts run on the
one estimator engine :mod:`monge.core.estimators`.

- ``hessian_trace(method="exact")``: full Hessian by ``torch.func.hessian`` of the flat
  parameters (d² memory, small models).
- ``hessian_trace(method="hutchinson")``: Rademacher HVPs by double backward (``probes`` HVPs).
- ``hessian_trace(method="gauss-newton")``: exact tr(J^T H_L J) from output-space curvature
  (one VJP per output entry).
- ``top_hessian_eigenvalue``: Lanczos (or power) on HVPs (``iters`` HVPs).
- ``hessian_spectral_density``: stochastic Lanczos quadrature (``probes·iters`` HVPs).

Paper: L. Wu & W. J. Su, "The Implicit Regularization of Dynamical Stability in Stochastic
Gradient Descent", ICML 2023 (arXiv:2305.17490) — tr(H) is the quantity SGD's linear stability
bounds; Z. Yao et al., "PyHessian", 2020, for HVP-based trace/eigenvalue/density.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from monge.core.estimators import (
    EigenResult,
    SpectralDensity,
    hutchinson_trace,
    spectral_density_slq,
    top_eigenvalue,
)
from monge.errors import InputError

__all__ = ["HessianTrace", "gauss_newton_trace", "hessian_frobenius_sq", "hessian_matrix",
           "hessian_spectral_density", "hessian_trace", "hvp_operator", "top_hessian_eigenvalue"]

LossFn = Callable[[nn.Module, Any], Tensor]
TRACE_METHODS = ("exact", "hutchinson", "gauss-newton")


@dataclass
class HessianTrace:
    """A Hessian (or Gauss–Newton) trace.

    Attributes:
        value: the trace.
        std_error: standard error (0 for exact methods).
        method: ``exact``, ``hutchinson`` or ``gauss-newton``.
        probes: Hutchinson probes (0 for exact methods).
        n_params: number of parameters d.
        loss: loss value at the evaluation point.
    """

    value: float
    std_error: float
    method: str
    probes: int
    n_params: int
    loss: float

    def __float__(self) -> float:
        return self.value


# --------------------------------------------------------------------------------------------
# plumbing
# --------------------------------------------------------------------------------------------
def _params(model: nn.Module) -> tuple[list[str], list[Tensor]]:
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise InputError("model: has no parameters that require grad")
    return [n for n, _ in named], [p for _, p in named]


def _scalar(loss: Any) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise InputError(f"loss_fn: must return a scalar tensor, got shape {shape} "
                         "(reduce it, e.g. with .mean())")
    return loss.reshape(())


def _flat(ts: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _unflat(v: Tensor, like: list[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for p in like:
        out.append(v[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


class _LossModule(nn.Module):
    """``forward() = loss_fn(model, batch)``, so ``torch.func.functional_call`` can swap the
    parameters while ``loss_fn`` still receives the real module."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batch: Any):
        super().__init__()
        self.model = model
        self._loss_fn, self._batch = loss_fn, batch

    def forward(self) -> Tensor:
        return _scalar(self._loss_fn(self.model, self._batch))


def hvp_operator(model: nn.Module, loss_fn: LossFn, batch: Any
                 ) -> tuple[Callable[[Tensor], Tensor], Tensor, float]:
    """Hessian-vector products of the loss at the current parameters.

    Method: one gradient with ``create_graph=True`` is kept; each HVP is a second backward of
    ⟨∇L, v⟩ (Pearlmutter 1994), O(d) memory, about twice the cost of a gradient.

    Returns:
        ``(hvp, like, loss)``: ``hvp(v)`` for a flat v of length d, a zero flat parameter vector
        (dtype/device) and the loss value.
    """
    _, params = _params(model)
    loss = _scalar(loss_fn(model, batch))
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    flat_g = _flat(grads)

    def hvp(v: Tensor) -> Tensor:
        if not flat_g.requires_grad:  # loss linear in the parameters
            return torch.zeros_like(v)
        hv = torch.autograd.grad(flat_g, params, grad_outputs=v, retain_graph=True,
                                 allow_unused=True)
        return _flat([torch.zeros_like(p) if h is None else h
                      for p, h in zip(params, hv, strict=True)]).detach()

    like = torch.zeros_like(_flat([p.detach() for p in params]))
    return hvp, like, float(loss.detach())


# --------------------------------------------------------------------------------------------
# exact Hessian and Gauss–Newton
# --------------------------------------------------------------------------------------------
def hessian_matrix(model: nn.Module, loss_fn: LossFn, batch: Any) -> Tensor:
    """The full d×d Hessian of the loss in the flat parameters (small models only).

    Method: ``torch.func.hessian`` (forward-over-reverse) of ``θ ↦ loss_fn(model(θ), batch)``
    through ``torch.func.functional_call``. Cost: O(d) HVP-equivalents, O(d²) memory.
    """
    names, params = _params(model)
    wrapper = _LossModule(model, loss_fn, batch)
    theta = _flat([p.detach() for p in params])

    def f(flat: Tensor) -> Tensor:
        values = _unflat(flat, params)
        return torch.func.functional_call(
            wrapper, {f"model.{n}": v for n, v in zip(names, values, strict=True)}, ())

    _scalar(f(theta))
    return torch.func.hessian(f)(theta)


def gauss_newton_trace(model: nn.Module, loss_fn: LossFn, batch: Any,
                       chunk: int = 256) -> tuple[float, float]:
    """Exact trace of the Gauss–Newton matrix G = J^T H_L J.

    Method: ``model`` must be called exactly once inside ``loss_fn``; its output o (m entries) is
    recorded, H_L = ∂²L/∂o² is built by m batched backward passes through the loss alone,
    diagonalised H_L = U Λ U^T, and tr G = Σ_j λ_j ||J^T u_j||² with batched vector-Jacobian
    products. For the square loss L = (1/2n) Σ_i ||f(x_i) − y_i||², G equals the Hessian at an
    interpolating minimum and tr G = (1/n) Σ_i ||J_i||_F² (Wu & Su 2023, §2). Cost: m VJPs.

    Returns:
        ``(trace, loss)``.
    """
    _, params = _params(model)
    outs: list[Tensor] = []

    def hook(_mod, _inp, out):
        outs.append(out)

    handle = model.register_forward_hook(hook)
    try:
        loss = _scalar(loss_fn(model, batch))
    finally:
        handle.remove()
    if len(outs) != 1 or not isinstance(outs[0], Tensor):
        raise InputError(f"loss_fn: must call the model exactly once for method='gauss-newton' "
                         f"(it was called {len(outs)} times)")
    out = outs[0]
    m = out.numel()
    g_out = torch.autograd.grad(loss, out, create_graph=True)[0].reshape(-1)
    eye = torch.eye(m, dtype=out.dtype, device=out.device)
    if g_out.requires_grad:
        rows = []
        for s in range(0, m, chunk):
            rows.append(torch.autograd.grad(g_out, out, grad_outputs=eye[s:s + chunk],
                                            retain_graph=True, is_grads_batched=True)[0]
                        .reshape(-1, m))
        h_l = torch.cat(rows)
    else:
        h_l = torch.zeros(m, m, dtype=out.dtype, device=out.device)
    lam, u = torch.linalg.eigh(0.5 * (h_l + h_l.T))
    keep = lam.abs() > 1e-12 * max(float(lam.abs().max()), 1e-300)
    lam, u = lam[keep], u[:, keep]
    total = out.new_zeros(())
    for s in range(0, lam.numel(), chunk):
        w = u[:, s:s + chunk].T.reshape(-1, *out.shape)
        jt = torch.autograd.grad(out, params, grad_outputs=w, retain_graph=True,
                                 is_grads_batched=True, allow_unused=True)
        sq = sum(j.reshape(j.shape[0], -1).pow(2).sum(1) for j in jt if j is not None)
        total = total + (lam[s:s + chunk] * sq).sum()
    return float(total.detach()), float(loss.detach())


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def hessian_trace(model: nn.Module, loss_fn: LossFn, batch: Any, method: str = "exact", *,
                  probes: int = 100, generator: torch.Generator | int | None = 0
                  ) -> HessianTrace:
    """Trace of the loss Hessian with respect to the model parameters.

    Method: ``exact`` sums the diagonal of the full Hessian (``torch.func``, d ≲ 5000);
    ``hutchinson`` averages v^T H v over Rademacher probes (HVPs by double backward; standard
    error reported; ~100 probes for ~5% accuracy); ``gauss-newton`` is the exact trace of the
    Gauss–Newton part J^T H_L J (the Hessian at an interpolating square-loss minimum; see
    :func:`gauss_newton_trace`). Paper: Wu & Su, ICML 2023 (arXiv:2305.17490); Hutchinson (1990).

    Args:
        model: the network.
        loss_fn: ``loss_fn(model, batch)`` returning a scalar tensor.
        batch: data passed to ``loss_fn``.
        method: ``exact``, ``hutchinson`` or ``gauss-newton``.
        probes: Hutchinson probes.
        generator: torch.Generator or seed for the probes.

    Returns:
        :class:`HessianTrace`.
    """
    if method not in TRACE_METHODS:
        raise InputError(f"method: expected one of {TRACE_METHODS}, got {method!r}")
    _, params = _params(model)
    d = sum(p.numel() for p in params)
    if method == "exact":
        h = hessian_matrix(model, loss_fn, batch)
        loss = float(_scalar(loss_fn(model, batch)).detach())
        return HessianTrace(float(torch.diagonal(h).sum()), 0.0, method, 0, d, loss)
    if method == "gauss-newton":
        tr, loss = gauss_newton_trace(model, loss_fn, batch)
        return HessianTrace(tr, 0.0, method, 0, d, loss)
    hvp, like, loss = hvp_operator(model, loss_fn, batch)
    est = hutchinson_trace(hvp, like, probes=probes, generator=generator)
    se = float(est.std_error)
    return HessianTrace(float(est.estimate), se, method, probes, d, loss)


def top_hessian_eigenvalue(model: nn.Module, loss_fn: LossFn, batch: Any, *, iters: int = 30,
                           method: str = "lanczos", tol: float = 1e-3,
                           generator: torch.Generator | int | None = 0) -> EigenResult:
    """Largest Hessian eigenvalue ("sharpness") by Lanczos or power iteration on HVPs.

    Method: :func:`monge.core.estimators.top_eigenvalue` with double-backward HVPs. Lanczos gives
    the largest algebraic eigenvalue; power iteration the largest in magnitude. For GD, linear
    stability at a minimum requires λ_max ≤ 2/η (Wu & Su 2023). Cost: ``iters`` HVPs.

    Args:
        model, loss_fn, batch: as in :func:`hessian_trace`.
        iters: maximum HVPs.
        method: ``lanczos`` or ``power``.
        tol: relative tolerance for ``converged``.
        generator: torch.Generator or seed of the start vector.

    Returns:
        :class:`~monge.core.estimators.EigenResult`.
    """
    hvp, like, _ = hvp_operator(model, loss_fn, batch)
    return top_eigenvalue(hvp, like, iters=iters, method=method, tol=tol, generator=generator)


def hessian_spectral_density(model: nn.Module, loss_fn: LossFn, batch: Any, *, iters: int = 30,
                             probes: int = 5, generator: torch.Generator | int | None = 0
                             ) -> SpectralDensity:
    """Hessian eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    Cost: ``probes·iters`` HVPs. Returns :class:`~monge.core.estimators.SpectralDensity`.
    """
    hvp, like, _ = hvp_operator(model, loss_fn, batch)
    return spectral_density_slq(hvp, like, iters=iters, probes=probes, generator=generator)


def hessian_frobenius_sq(model: nn.Module, loss_fn: LossFn, batch: Any, *, probes: int = 50,
                         generator: torch.Generator | int | None = 0) -> HessianTrace:
    """||H||_F² = tr(H²) by Hutchinson on H² (two HVPs per probe)."""
    hvp, like, loss = hvp_operator(model, loss_fn, batch)
    est = hutchinson_trace(lambda v: hvp(hvp(v)), like, probes=probes, generator=generator)
    return HessianTrace(float(est.estimate), float(est.std_error), "hutchinson", probes,
                        like.numel(), loss)
