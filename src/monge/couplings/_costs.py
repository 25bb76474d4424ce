"""Pair costs shared by the couplings (flattening happens here, never at call sites)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from monge.errors import InputError
from monge.ot.cost import sq_euclidean_cost

CostKind = Literal["sqeuclidean", "euclidean"]
COST_KINDS: tuple[str, ...] = ("sqeuclidean", "euclidean")


def check_cost_kind(cost: str) -> str:
    """Raise :class:`InputError` unless ``cost`` is a known cost name."""
    if cost not in COST_KINDS:
        raise InputError(f"cost: expected one of {COST_KINDS}, got {cost!r}")
    return cost


def cost_matrix(x0: Tensor, x1: Tensor, cost: str = "sqeuclidean") -> Tensor:
    """``C_ij = c(x0_i, x1_j)`` for flattened rows: squared or plain Euclidean distance."""
    C = sq_euclidean_cost(x0.detach(), x1.detach())
    return C.sqrt() if cost == "euclidean" else C


def paired_cost(x0: Tensor, x1: Tensor, cost: str = "sqeuclidean") -> Tensor:
    """``c_i = c(x0_i, x1_i)`` for matched rows, shape ``[B]`` (O(B d), no B x B matrix)."""
    d2 = (x0.detach() - x1.detach()).flatten(1).pow(2).sum(1)
    return d2.sqrt() if cost == "euclidean" else d2


def check_rows_finite(x0: Tensor, x1: Tensor) -> None:
    """Raise :class:`InputError` naming ``x0``/``x1`` if either holds NaN or Inf."""
    for name, x in (("x0", x0), ("x1", x1)):
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{name}: contains {int(torch.isnan(x).sum())} NaN and "
                             f"{int(torch.isinf(x).sum())} Inf values")


def check_positive(value: float, name: str) -> float:
    """Raise :class:`InputError` unless ``value`` is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            value > 0 and value < float("inf")):
        raise InputError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def permute_to_targets(x0: Tensor, perm: Tensor) -> Tensor:
    """Reorder x0 so that row ``i`` of the result is the source matched to target ``i``
    (``perm[i]`` is the target column of source row ``i``)."""
    out = x0.new_empty(x0.shape)
    out[perm] = x0
    return out
