"""W2 between empirical measures: Gaussian shift, exact zeros, POT vs assignment, subsampling."""

import math

import numpy as np
import pytest
import torch

from monge.errors import InputError
from monge.metrics import W2Result, transport_cost, w2_assignment, wasserstein2


def _gauss(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gaussian_shift_gives_norm_of_mean():
    # W2(N(0, I), N(m, I)) = ||m||; the empirical value also obeys two exact sample bounds.
    shift = torch.tensor([1.2, -0.9], dtype=torch.float64)  # ||m|| = 1.5
    x, y = _gauss(1000, 2, 0), _gauss(1000, 2, 1) + shift
    w2 = wasserstein2(x, y)
    assert w2 == pytest.approx(1.5, abs=0.08)
    # Jensen: W2^2 >= ||mean(x) - mean(y)||^2; any coupling (identity pairing) bounds it above.
    assert w2**2 >= float((x.mean(0) - y.mean(0)).pow(2).sum()) - 1e-12
    assert w2**2 <= transport_cost(x, y) + 1e-12


def test_identical_and_permuted_sets_have_zero_distance():
    x = _gauss(300, 3, 2)
    assert wasserstein2(x, x) == 0.0
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    assert wasserstein2(x, x[perm]) < 1e-12
    # Unequal sizes: every point duplicated is the same measure.
    assert wasserstein2(x, torch.cat([x, x])) < 1e-7


def test_matches_assignment_for_equal_sizes():
    x, y = _gauss(150, 5, 3), 0.5 * _gauss(150, 5, 4) + 1.0
    res = w2_assignment(x, y)
    assert isinstance(res, W2Result)
    assert wasserstein2(x, y) == pytest.approx(res.w2, rel=1e-9)
    assert res.transport_cost == pytest.approx(res.w2**2, rel=1e-12)
    assert sorted(res.permutation.tolist()) == list(range(150))
    assert res.transport_cost == pytest.approx(transport_cost(x, y[res.permutation]), rel=1e-12)
    # The optimum beats the identity pairing.
    assert res.transport_cost < transport_cost(x, y)


def test_one_dimensional_sorted_matching():
    # In 1-D the optimal assignment matches order statistics.
    x, y = _gauss(400, 1, 5), 2.0 * _gauss(400, 1, 6) + 0.3
    expected = math.sqrt(float((x.sort(0).values - y.sort(0).values).pow(2).mean()))
    assert wasserstein2(x[:, 0], y[:, 0]) == pytest.approx(expected, rel=1e-9)
    assert w2_assignment(x, y).w2 == pytest.approx(expected, rel=1e-9)


def test_image_shaped_samples_are_flattened():
    x, y = _gauss(60, 8, 7), _gauss(60, 8, 8)
    assert wasserstein2(x.reshape(60, 2, 2, 2), y.reshape(60, 2, 2, 2)) == pytest.approx(
        wasserstein2(x, y), rel=1e-12)


def test_subsampling_warns_and_is_seeded():
    x, y = _gauss(120, 2, 9), _gauss(90, 2, 10) + 3.0
    with pytest.warns(UserWarning, match="subsampling"):
        a = wasserstein2(x, y, max_points=50, generator=1)
    with pytest.warns(UserWarning, match="subsampling"):
        b = wasserstein2(x, y, max_points=50, generator=torch.Generator().manual_seed(1))
    assert a == b
    full = wasserstein2(x, y)
    assert a == pytest.approx(full, rel=0.15)


def test_bad_input_names_the_argument():
    x = _gauss(10, 2, 0)
    with pytest.raises(InputError, match="^y: .*NaN"):
        wasserstein2(x, torch.full((10, 2), float("nan")))
    with pytest.raises(InputError, match="x and y: sample dimensions differ"):
        wasserstein2(x, _gauss(10, 3, 1))
    with pytest.raises(InputError, match="max_points"):
        wasserstein2(x, x, max_points=0)
    with pytest.raises(InputError, match="equal sample counts"):
        w2_assignment(x, _gauss(11, 2, 1))
    with pytest.raises(InputError, match="^x: "):
        wasserstein2(np.float64(1.0), x)
