"""Exact 2-Wasserstein distance between empirical measures (POT network simplex, assignment).

Both samples are uniform empirical measures ``mu = 1/n sum_i delta_{x_i}``,
``nu = 1/m sum_j delta_{y_j}``; samples ``[n, ...]`` are flattened to ``[n, D]``. The ground cost
is the squared Euclidean distance in float64, and ``W2 = sqrt(min_P <P, C>)`` over couplings
``P`` with marginals ``1/n`` and ``1/m``.

References: G. Peyré, M. Cuturi, "Computational Optimal Transport", Found. Trends Mach. Learn.
11(5-6), 2019 (Sec. 3); N. Bonneel et al., "Displacement interpolation using Lagrangian mass
transport", ACM TOG 30(6), 2011 (the network simplex behind ``ot.emd2``); H. W. Kuhn, "The
Hungarian method for the assignment problem", 1955 (``n == m`` case).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from monge.errors import ConvergenceWarning, InputError
from monge.metrics._samples import as_sample_pair, subsample_pair
from monge.metrics.trajectory import transport_cost
from monge.ot.cost import sq_euclidean_cost
from monge.ot.exact import exact


@dataclass(frozen=True)
class W2Result:
    """Optimal assignment between two equal-size samples.

    Attributes:
        w2: the 2-Wasserstein distance ``sqrt(transport_cost)``.
        transport_cost: the optimal mean squared displacement
            ``W2^2 = mean_i ||x_i - y_{p(i)}||^2``.
        permutation: long tensor ``[n]`` on ``x``'s device; ``x[i]`` is matched to
            ``y[permutation[i]]``.
    """

    w2: float
    transport_cost: float
    permutation: torch.Tensor


def _squared_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Float64 squared Euclidean cost ``[n, m]`` on the CPU (the one pairwise cost of
    :mod:`monge.ot`, from exact differences so identical points cost exactly 0)."""
    return sq_euclidean_cost(x.detach().cpu().double(), y.detach().cpu().double(),
                             exact_differences=True)


def wasserstein2(x: object, y: object, *, max_points: int = 4000,
                 generator: int | torch.Generator | None = None) -> float:
    """Exact 2-Wasserstein distance between two uniform empirical measures.

    Method: the discrete OT problem with squared Euclidean cost, solved exactly by the network
    simplex (:func:`monge.ot.exact`, POT's ``ot.emd``) in float64; returns ``sqrt`` of the
    optimal cost. Cost roughly
    ``O(N^3)`` time and ``O(n m)`` memory (``N = max(n, m)``), which is why samples larger than
    ``max_points`` are subsampled uniformly without replacement (with a ``UserWarning``): the
    result is then the W2 between the subsamples, a (slightly upward-biased) estimate.
    See Peyré & Cuturi (2019), Computational Optimal Transport, Sec. 3.

    Args:
        x: samples ``[n, ...]`` of the first measure (1-D input is ``n`` scalars).
        y: samples ``[m, ...]`` of the second measure, same per-sample size as ``x``.
        max_points: largest sample size solved exactly; larger samples are subsampled.
        generator: seed or ``torch.Generator`` for the subsampling (``None``: seed 0, so the
            metric is reproducible).

    Returns:
        ``W2(mu_x, mu_y) >= 0`` in the units of the data.

    Raises:
        InputError: NaN/Inf, empty samples, mismatched dimensions or ``max_points < 1``.

    Example:
        >>> x = torch.zeros(5, 2)
        >>> round(wasserstein2(x, x + torch.tensor([3.0, 4.0])), 6)
        5.0
    """
    xs, ys = as_sample_pair(x, y)
    xs, ys = subsample_pair(xs, ys, max_points, "wasserstein2", generator)
    n, m = xs.shape[0], ys.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver's own warning is re-raised below, named
        result = exact(None, None, _squared_cost(xs, ys), max_iter=max(100_000, 50 * n * m),
                       use_assignment=False)
    if not result.converged:
        warnings.warn("wasserstein2: the exact OT solve did not finish (iteration cap); the "
                      "value is an upper bound", ConvergenceWarning, stacklevel=2)
    return float(np.sqrt(max(float(result.cost), 0.0)))


def w2_assignment(x: object, y: object) -> W2Result:
    """Exact W2 between two equal-size samples via the optimal assignment.

    Method: with ``n == m`` uniform atoms an optimal coupling is a permutation (Birkhoff), found
    with ``scipy.optimize.linear_sum_assignment`` on the float64 squared Euclidean cost
    (Kuhn 1955; Crouse's shortest augmenting path), ``O(n^3)``. The transport cost of the
    matched pairs is :func:`monge.metrics.transport_cost`, so "transport cost" and W2 share one
    definition. See Peyré & Cuturi (2019), Computational Optimal Transport, Prop. 2.1.

    Args:
        x: samples ``[n, ...]``.
        y: samples ``[n, ...]`` (same count and per-sample size).

    Returns:
        :class:`W2Result` with ``w2``, ``transport_cost = w2**2`` and the ``permutation``.

    Raises:
        InputError: NaN/Inf, empty samples, mismatched dimensions or ``n != m``.

    Example:
        >>> x = torch.tensor([[0.0], [1.0]])
        >>> w2_assignment(x, x.flip(0)).permutation.tolist()
        [1, 0]
    """
    xs, ys = as_sample_pair(x, y)
    if xs.shape[0] != ys.shape[0]:
        raise InputError(f"x and y: w2_assignment needs equal sample counts, got {xs.shape[0]} "
                         f"and {ys.shape[0]} (use wasserstein2)")
    _, cols = linear_sum_assignment(_squared_cost(xs, ys).numpy())
    permutation = torch.as_tensor(cols, dtype=torch.long, device=xs.device)
    cost = transport_cost(xs, ys[permutation])
    return W2Result(w2=float(np.sqrt(cost)), transport_cost=cost, permutation=permutation)


__all__ = ["W2Result", "wasserstein2", "w2_assignment"]
