"""Input handling and chunked pairwise sums shared by the sample-based metrics (private)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import InputError

# Budget for one block of a pairwise-distance matrix (bytes); keeps 5000 x 5000 and beyond
# well inside memory while the blocks stay large enough to be fast.
_BLOCK_BYTES = 32 * 2**20


def as_samples(x: object, name: str, *, min_rows: int = 1) -> torch.Tensor:
    """Return ``x`` as a finite floating tensor of shape ``[n, D]`` (rows are samples).

    A 1-D input is read as ``n`` scalar samples (``[n, 1]``); higher-rank input ``[n, ...]`` is
    flattened per sample. Device and floating dtype are kept.

    Raises:
        InputError: ``x`` is not array-like, is 0-D, has fewer than ``min_rows`` rows, has no
            features, or holds NaN/Inf.
    """
    t = as_tensor(x, name)
    if t.ndim == 0:
        raise InputError(f"{name}: expected samples of shape [n, ...], got a scalar")
    t = t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(-1, 1)
    if t.shape[0] < min_rows:
        raise InputError(f"{name}: need at least {min_rows} samples, got {t.shape[0]}")
    if t.shape[1] == 0:
        raise InputError(f"{name}: samples have no features (shape {tuple(t.shape)})")
    return check_finite(t, name)


def as_sample_pair(x: object, y: object, name_x: str = "x", name_y: str = "y", *,
                   min_rows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten two samples to ``[n, D]`` and ``[m, D]`` in float64 on ``x``'s device.

    Raises:
        InputError: as :func:`as_samples`, or the two samples have different dimensions.
    """
    xs = as_samples(x, name_x, min_rows=min_rows)
    ys = as_samples(y, name_y, min_rows=min_rows)
    if xs.shape[1] != ys.shape[1]:
        raise InputError(f"{name_x} and {name_y}: sample dimensions differ "
                         f"({xs.shape[1]} vs {ys.shape[1]} after flattening)")
    return xs.to(torch.float64), ys.to(device=xs.device, dtype=torch.float64)


def pairwise_sum(x: torch.Tensor, y: torch.Tensor,
                 transform: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Return ``sum_ij transform(||x_i - y_j||)`` without holding the full ``[n, m]`` matrix.

    Distances are computed block by block with the exact difference formula (no
    ``|x|^2 + |y|^2 - 2 x.y`` cancellation, so ``||x_i - x_i|| = 0`` exactly). Cost is
    ``O(n m D)`` time and ``O(block)`` memory.
    """
    rows = max(1, _BLOCK_BYTES // (8 * max(1, y.shape[0])))
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], rows):
        d = torch.cdist(x[start:start + rows], y, compute_mode="donot_use_mm_for_euclid_dist")
        total += transform(d).sum()
    return float(total)
