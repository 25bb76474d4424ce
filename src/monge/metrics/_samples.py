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


def subsample_pair(xs: torch.Tensor, ys: torch.Tensor, max_points: int, metric: str,
                   generator: int | torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform subsamples (without replacement) of at most ``max_points`` rows per side, with a
    ``UserWarning`` naming ``metric`` when anything is dropped. Bounds the time (and memory) of
    the O(n m) and O(N³) metrics; ``generator`` defaults to seed 0 so metrics stay reproducible.
    """
    import warnings

    from monge.core.checks import make_generator

    if isinstance(max_points, bool) or int(max_points) < 1:
        raise InputError(f"max_points: must be a positive integer, got {max_points}")
    n, m = xs.shape[0], ys.shape[0]
    if n <= max_points and m <= max_points:
        return xs, ys
    warnings.warn(f"{metric}: subsampling {n} x {m} points to at most {max_points} per side; "
                  "the value is the metric between the subsamples", UserWarning, stacklevel=3)
    gen = make_generator(0 if generator is None else generator, "cpu")
    pick = lambda t: t[torch.randperm(t.shape[0], generator=gen)[:max_points].to(t.device)]
    return (pick(xs) if n > max_points else xs), (pick(ys) if m > max_points else ys)
