"""Jacobian–vector products through one interface: forward mode or finite differences.

``jvp(fn, primals, tangents)`` returns (fn(primals), J·tangents). ``method="auto"`` uses
``torch.func.jvp`` (exact forward-mode AD; cost about 2–3 forward passes) and falls back to a
central finite difference (fn(p + h·v) − fn(p − h·v))/(2h) — two extra forward passes, error
O(h²) — for models whose layers do not support forward mode. The MeanFlow identity and MDT-dist's
continuous velocity matching are written on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from monge.errors import InputError


def _fd(fn: Callable[..., Tensor], primals: Sequence[Tensor], tangents: Sequence[Tensor],
        h: float | None) -> tuple[Tensor, Tensor]:
    out = fn(*primals)
    eps = h if h is not None else (1e-3 if out.dtype == torch.float32 else 1e-6)
    up = fn(*(p + eps * v for p, v in zip(primals, tangents, strict=True)))
    dn = fn(*(p - eps * v for p, v in zip(primals, tangents, strict=True)))
    return out, (up - dn) / (2 * eps)


def jvp(fn: Callable[..., Tensor], primals: Sequence[Tensor], tangents: Sequence[Tensor], *,
        method: str = "auto", h: float | None = None) -> tuple[Tensor, Tensor]:
    """(fn(*primals), directional derivative of fn along ``tangents``).

    Args:
        fn: a function of tensors returning one tensor.
        primals, tangents: matching sequences of tensors.
        method: ``forward`` (torch.func.jvp), ``fd`` (central difference) or ``auto``.
        h: finite-difference step (default 1e-3 in float32, 1e-6 in float64).
    """
    if len(primals) != len(tangents):
        raise InputError("jvp: give one tangent per primal")
    for p, v in zip(primals, tangents, strict=True):
        if p.shape != v.shape:
            raise InputError(f"jvp: tangent shape {tuple(v.shape)} differs from primal shape "
                             f"{tuple(p.shape)}")
    if method not in ("auto", "forward", "fd"):
        raise InputError(f"jvp: method must be auto, forward or fd, got {method!r}")
    if method == "fd":
        return _fd(fn, primals, tangents, h)
    try:
        return torch.func.jvp(fn, tuple(primals), tuple(tangents))
    except (RuntimeError, NotImplementedError):
        if method == "forward":
            raise
        return _fd(fn, primals, tangents, h)
