"""One front door for every OT method in :mod:`monge.ot`."""

from __future__ import annotations

import inspect
from typing import Literal

from monge.errors import InputError
from monge.ot._problem import EpsScale
from monge.ot._result import OTResult
from monge.ot.exact import exact
from monge.ot.sinkhorn import sinkhorn
from monge.ot.sns import sinkhorn_newton_sparse
from monge.ot.sparse import sparsity_constrained

Method = Literal["sinkhorn", "exact", "sns", "sparse", "auto"]
METHODS: tuple[str, ...] = ("sinkhorn", "exact", "sns", "sparse", "auto")


def solve(a, b, C, method: Method = "sinkhorn", *, eps: float = 0.05,
          eps_scale: EpsScale = "absolute", tol: float | None = None,
          max_iter: int | None = None, **options) -> OTResult:
    """Solve a discrete OT problem with the chosen method; POT-style ``a, b, C`` arguments.

    Method: dispatches to :func:`exact` (network simplex / assignment), :func:`sinkhorn`
    (log-stabilised, entropic regularisation ``eps``), :func:`sinkhorn_newton_sparse`
    (Tang et al. 2024; entropic, for small eps) or :func:`sparsity_constrained` (Liu et al.
    2023; ``eps`` is the squared-L2 strength ``gamma`` and ``k`` must be given in ``options``).
    See ``docs/ot.md`` for how to choose.

    Args:
        a, b: marginals ``[n]``, ``[m]`` (or batched; ``None``: uniform).
        C: cost ``[n, m]`` or ``[B, n, m]``; torch (float32/float64, any device) or numpy.
        method: ``"sinkhorn"``, ``"exact"``, ``"sns"``, ``"sparse"`` or ``"auto"`` (picks one
            from eps, sizes and device and records it in ``result.info["auto"]``; see
            :func:`monge.ot.auto.choose_method`).
        eps: regularisation (ignored by ``"exact"``).
        eps_scale: ``"absolute"`` or ``"max_cost"`` (eps times ``max |C|``); entropic methods.
        tol: marginal-error tolerance (gradient tolerance for ``"sparse"``).
        max_iter: iteration cap (each method's own default when ``None``).
        **options: passed to the method's function.

    Returns:
        :class:`OTResult`.

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> float(solve(None, None, C, method="exact").cost)
        0.0
    """
    if method == "auto":
        if options:
            raise InputError(f"options: {', '.join(sorted(options))} cannot be combined with "
                             "method='auto' (they are method-specific)")
        from monge.ot.auto import solve_auto
        return solve_auto(a, b, C, eps=eps, eps_scale=eps_scale, tol=tol, max_iter=max_iter)
    extra = dict(options)
    if max_iter is not None:
        extra["max_iter"] = max_iter
    fn = _FUNCTIONS.get(method)
    if fn is None:
        raise InputError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    known = set(inspect.signature(fn).parameters)
    unknown = sorted(set(extra) - known)
    if unknown:
        raise InputError(f"options: {', '.join(unknown)} not understood by method {method!r}")
    if method == "exact":
        return exact(a, b, C, **extra)
    if method == "sinkhorn":
        return sinkhorn(a, b, C, eps, eps_scale=eps_scale, tol=tol, **extra)
    if method == "sns":
        return sinkhorn_newton_sparse(a, b, C, eps, eps_scale=eps_scale, tol=tol, **extra)
    if method == "sparse":
        if "k" not in extra:
            raise InputError("k: method='sparse' needs the number of non-zeros per column k")
        if eps_scale != "absolute":
            raise InputError("eps_scale: method='sparse' takes an absolute gamma (eps)")
        return sparsity_constrained(a, b, C, gamma=eps, tol=tol, **extra)
    raise AssertionError("unreachable")  # pragma: no cover


_FUNCTIONS = {"exact": exact, "sinkhorn": sinkhorn, "sns": sinkhorn_newton_sparse,
              "sparse": sparsity_constrained}

__all__ = ["solve", "METHODS"]
