"""Time and coefficient helpers shared by paths, solvers and losses (one place)."""

from __future__ import annotations

import torch
from torch import Tensor


def as_time(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    """Time as a float64 tensor (on ``like``'s device when given).

    Schedules are evaluated in float64 (``../shared/DESIGN.md``); the result is cast back to the
    data dtype only when it multiplies data (:func:`broadcast_to_batch`).
    """
    device = like.device if like is not None else None
    if isinstance(t, Tensor):
        return t.to(dtype=torch.float64, device=device or t.device)
    return torch.tensor(float(t), dtype=torch.float64, device=device)


def broadcast_to_batch(coef: Tensor, x: Tensor) -> Tensor:
    """Broadcast a per-sample coefficient of shape ``[B]`` (or a scalar) against ``x [B, ...]``,
    in ``x``'s dtype and device."""
    coef = coef.to(dtype=x.dtype, device=x.device)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape[0], *([1] * (x.ndim - 1)))


def batch_time(t: Tensor | float, x: Tensor) -> Tensor:
    """Time as a ``[B]`` tensor in ``x``'s dtype and device (a scalar is repeated)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t
