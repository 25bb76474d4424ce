"""Cost matrices (the one place in monge where a pairwise cost is computed)."""

from __future__ import annotations

import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import InputError


def sq_euclidean_cost(x: torch.Tensor, y: torch.Tensor, *,
                      exact_differences: bool = False) -> torch.Tensor:
    """Squared Euclidean cost ``C_ij = ||x_i - y_j||^2`` between two batches.

    Method: both batches are flattened to ``[n, D]`` and ``[m, D]``, centred on a common mean
    (which removes most of the cancellation in ``|x|^2 + |y|^2 - 2 x.y``), and the expansion is
    evaluated with one matrix product, O(n m D); tiny negative round-off is clamped to zero.

    Args:
        x: source points, shape ``[n, ...]`` (tensor or array).
        y: target points, shape ``[m, ...]`` with the same trailing size as ``x``.
        exact_differences: evaluate ``||x_i - y_j||`` from the differences instead (no matrix
            product; identical points cost exactly 0, as an exact W2 needs). O(n m D) too, but
            several times slower than the matrix-product form.

    Returns:
        Cost matrix of shape ``[n, m]`` in the dtype/device of ``x`` (``y`` is moved there).

    Example:
        >>> C = sq_euclidean_cost(torch.zeros(2, 3), torch.ones(4, 3))
        >>> C.shape, float(C[0, 0])
        (torch.Size([2, 4]), 3.0)
    """
    x = as_tensor(x, "x")
    y = as_tensor(y, "y").to(dtype=x.dtype, device=x.device)
    if x.ndim == 0 or y.ndim == 0:
        raise InputError("x and y: expected batches of shape [n, ...], got a scalar")
    xf = x.reshape(x.shape[0], -1)
    yf = y.reshape(y.shape[0], -1)
    if xf.shape[1] != yf.shape[1]:
        raise InputError(
            f"x and y: feature sizes differ ({tuple(x.shape[1:])} vs {tuple(y.shape[1:])})")
    check_finite(xf, "x")
    check_finite(yf, "y")
    if xf.shape[0] == 0 or yf.shape[0] == 0:
        return xf.new_zeros(xf.shape[0], yf.shape[0])
    if exact_differences:
        return torch.cdist(xf, yf, compute_mode="donot_use_mm_for_euclid_dist").pow_(2)
    center = 0.5 * (xf.mean(0) + yf.mean(0))
    xc, yc = xf - center, yf - center
    C = (xc * xc).sum(1, keepdim=True) + (yc * yc).sum(1).unsqueeze(0)
    C.addmm_(xc, yc.T, alpha=-2.0)
    return C.clamp_min_(0.0)


__all__ = ["sq_euclidean_cost"]
