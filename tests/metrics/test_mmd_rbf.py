"""Unbiased RBF MMD: reference kernel sums, median heuristic, null and alternative behaviour."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from sklearn.metrics.pairwise import rbf_kernel

from monge.errors import InputError
from monge.metrics import median_bandwidth, mmd_rbf


def _gauss(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _reference(x: np.ndarray, y: np.ndarray, h: float) -> float:
    g = 1 / (2 * h * h)
    kxx, kyy, kxy = rbf_kernel(x, x, gamma=g), rbf_kernel(y, y, gamma=g), rbf_kernel(x, y, gamma=g)
    n, m = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return within_x + within_y - 2 * kxy.mean()


def test_matches_sklearn_kernel_sums():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(55, 3)) + 0.4
    got = mmd_rbf(torch.from_numpy(x), torch.from_numpy(y), bandwidth=0.8)
    assert got == pytest.approx(_reference(x, y, 0.8), rel=1e-10)


def test_median_heuristic_is_pooled_median_distance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) * 3
    h = np.median(pdist(np.concatenate([x, y])))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert median_bandwidth(xt, yt) == pytest.approx(h, rel=1e-12)
    assert mmd_rbf(xt, yt) == pytest.approx(_reference(x, y, h), rel=1e-10)


def test_same_law_near_zero_different_law_positive():
    x, y = _gauss(500, 2, 0), _gauss(500, 2, 1)
    assert abs(mmd_rbf(x, y)) < 0.005
    assert mmd_rbf(x, y + torch.tensor([1.0, 0.0], dtype=torch.float64)) > 0.05
    assert mmd_rbf(x, 2.0 * y) > 0.05  # same mean, different scale


def test_unbiased_over_repetitions():
    # The biased (V) estimator would average ~2(1 - E k)/n ~ 0.05 here.
    values = [mmd_rbf(_gauss(20, 2, 2 * k), _gauss(20, 2, 2 * k + 1), bandwidth=1.0)
              for k in range(300)]
    assert abs(np.mean(values)) < 0.005


def test_bad_input():
    x = _gauss(10, 2, 0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="bandwidth"):
            mmd_rbf(x, x, bandwidth=bad)
    with pytest.raises(InputError, match="bandwidth is 0"):
        mmd_rbf(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(InputError, match="^y: need at least 2"):
        mmd_rbf(x, x[:1])
