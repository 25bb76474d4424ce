"""Random OT problems for the tests (numpy float64, generated from a seed)."""

from __future__ import annotations

import numpy as np


def random_problem(seed: int, n: int, m: int, uniform: bool = False):
    """Non-uniform marginals with entries bounded away from 0 and a U[0, 1] cost."""
    rng = np.random.default_rng(seed)
    C = rng.random((n, m))
    if uniform:
        return np.full(n, 1.0 / n), np.full(m, 1.0 / m), C
    a = rng.random(n) + 0.2
    b = rng.random(m) + 0.2
    return a / a.sum(), b / b.sum(), C
