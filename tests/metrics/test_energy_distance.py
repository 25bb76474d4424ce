"""Energy distance: closed form for a Gaussian shift, scipy's V-statistic, unbiasedness, chunks."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.spatial.distance import cdist, pdist

import monge.metrics._samples as samples
from monge.errors import InputError
from monge.metrics import energy_distance


def _gauss(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _mean_abs_normal(mu: float, sigma: float) -> float:
    """E|N(mu, sigma^2)| (folded normal mean)."""
    return (sigma * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sigma**2))
            + mu * (1 - 2 * scipy.stats.norm.cdf(-mu / sigma)))


def test_gaussian_shift_matches_closed_form():
    # X ~ N(0,1), Y ~ N(d,1): D^2 = 2E|N(d,2)| - 2E|N(0,2)|.
    d = 1.0
    expected = 2 * _mean_abs_normal(d, math.sqrt(2)) - 2 * _mean_abs_normal(0.0, math.sqrt(2))
    x, y = _gauss(2000, 1, 0), _gauss(2000, 1, 1) + d
    assert energy_distance(x, y) == pytest.approx(expected, rel=0.1)


def test_same_law_is_near_zero_and_2d_shift_matches_rice_mean():
    # In 2-D, ||X - Y|| with X - Y ~ N(m, 2I) is Rice(|m| / sqrt2, scale sqrt2) distributed, so
    # D^2 = 2 (E Rice(|m|/sqrt2, sqrt2) - E Rice(0, sqrt2)).
    x, y = _gauss(2000, 2, 2), _gauss(2000, 2, 3)
    same = energy_distance(x, y)
    shifted = energy_distance(x, y + torch.tensor([1.0, 0.0], dtype=torch.float64))
    s = math.sqrt(2)
    expected = 2 * (scipy.stats.rice(1 / s, scale=s).mean() - scipy.stats.rice(0, scale=s).mean())
    assert abs(same) < 0.01
    assert shifted == pytest.approx(expected, rel=0.15)  # MC std ~ 6 % at n = 2000
    assert shifted > 20 * abs(same)


def test_unbiased_over_repetitions():
    # The U-statistic averages to 0 under the null; the V-statistic would average to
    # (E|X-X'|)(1/n + 1/m) ~ 0.18 here.
    values = [energy_distance(_gauss(20, 2, 2 * k), _gauss(20, 2, 2 * k + 1)) for k in range(300)]
    assert abs(np.mean(values)) < 0.02


def test_relation_to_scipy_v_statistic():
    # scipy returns sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|) with all-pairs (V) within terms:
    # scipy^2 = ours + U_xx / n + U_yy / m.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=300), rng.exponential(size=200)
    ours = energy_distance(torch.from_numpy(x), torch.from_numpy(y))
    u_xx, u_yy = pdist(x[:, None]).mean(), pdist(y[:, None]).mean()
    assert scipy.stats.energy_distance(x, y) ** 2 == pytest.approx(
        ours + u_xx / 300 + u_yy / 200, rel=1e-10)


def test_multivariate_matches_direct_formula():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(70, 4)) * 1.5
    direct = (2 * cdist(x, y).mean() - pdist(x).mean() - pdist(y).mean())
    assert energy_distance(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        direct, rel=1e-12)


def test_chunked_sum_equals_single_block(monkeypatch):
    x, y = _gauss(300, 3, 4), _gauss(257, 3, 5) + 0.2
    whole = energy_distance(x, y)
    monkeypatch.setattr(samples, "_BLOCK_BYTES", 8 * 257 * 7)  # 7-row blocks
    assert energy_distance(x, y) == pytest.approx(whole, rel=1e-12)


def test_bad_input():
    with pytest.raises(InputError, match="^x: need at least 2 samples"):
        energy_distance(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(InputError, match="^y: .*Inf"):
        energy_distance(torch.zeros(3, 2), torch.tensor([[0.0, math.inf]] * 3))


def test_large_samples_are_subsampled_with_a_warning():
    """Time stays bounded: 30,000 rows per side are cut to max_points (seeded, reproducible)."""
    import warnings as _w

    from monge.metrics import energy_distance as ed

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30_000, 2, generator=g), torch.randn(30_000, 2, generator=g) + 3.0
    with pytest.warns(UserWarning, match="energy_distance: subsampling 30000 x 30000"):
        a = ed(x, y, max_points=500)
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        assert ed(x, y, max_points=500) == a
    # the subsample estimates the same D² as an independent 3,000-row estimate (about 5.4)
    ref = ed(torch.randn(3000, 2, generator=g), torch.randn(3000, 2, generator=g) + 3.0)
    assert abs(a - ref) < 0.1 * ref
