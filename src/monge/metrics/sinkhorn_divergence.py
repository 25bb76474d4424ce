"""Debiased Sinkhorn divergence between two samples (a metric and a differentiable loss)."""

from __future__ import annotations

import torch

from monge.core.checks import as_tensor
from monge.errors import InputError
from monge.ot.divergence import Solver
from monge.ot.divergence import sinkhorn_divergence as _divergence


def _flatten(t, name: str) -> torch.Tensor:
    t = as_tensor(t, name)
    if t.ndim == 0:
        raise InputError(f"{name}: expected samples of shape [n, ...], got a scalar")
    return t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(-1, 1)


def sinkhorn_divergence(x, y, eps: float, a=None, b=None, *, solver: Solver = "auto",
                        tol: float | None = None) -> torch.Tensor:
    """Debiased Sinkhorn divergence ``S_eps`` between samples ``x [n, ...]`` and ``y [m, ...]``.

    Method: samples are flattened to ``[n, D]``; the value is
    ``OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2`` on the cost ``|x - y|^2`` in its dual
    form, from :func:`monge.ot.divergence.sinkhorn_divergence` (Feydy et al., AISTATS 2019;
    Genevay et al. 2018), dense or online Sinkhorn by size. ``S_eps >= 0`` with equality iff
    the two weighted samples coincide; it tends to ``W2^2`` as eps -> 0. Unlike the other
    metrics it returns a tensor, differentiable in ``x``, ``y``, ``a``, ``b`` (envelope-theorem
    gradients), so it doubles as a training loss; ``float(...)`` gives the number. GeomLoss:
    ``SamplesLoss("sinkhorn", p=2, blur=s)`` equals half this value at ``eps = 2 s^2``.

    Args:
        x: samples ``[n, ...]``.
        y: samples ``[m, ...]`` with the same per-sample size.
        eps: entropic regularisation in units of ``|x - y|^2``.
        a, b: sample weights (``None``: uniform), equal total mass.
        solver: ``"auto"``, ``"dense"`` or ``"online"``.
        tol: marginal-error tolerance of each Sinkhorn solve.

    Returns:
        0-d tensor.

    Example:
        >>> x = torch.rand(40, 2, dtype=torch.float64)
        >>> float(sinkhorn_divergence(x, x, eps=0.1)) == 0.0
        True
    """
    xs, ys = _flatten(x, "x"), _flatten(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise InputError(f"x and y: sample dimensions differ ({xs.shape[1]} vs {ys.shape[1]} "
                         "after flattening)")
    return _divergence(xs, ys, eps, a, b, solver=solver, tol=tol)


__all__ = ["sinkhorn_divergence"]
