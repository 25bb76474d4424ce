"""method="auto": the choice follows eps, size and memory, and is recorded in the result."""

import numpy as np
import pytest
import torch

from monge.errors import InputError
from monge.ot import choose_method, solve, solve_points, sq_euclidean_cost
from monge.ot.auto import EXACT_BELOW, SNS_BELOW


def cloud(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64), torch.randn(
        n, 2, generator=g, dtype=torch.float64)


def test_choose_method_rules():
    assert choose_method(500, 500, 0.05).method == "sinkhorn"
    assert choose_method(500, 500, 0.5 * SNS_BELOW).method == "sns"
    assert choose_method(500, 500, 0.5 * EXACT_BELOW).method == "exact"
    assert choose_method(500, 500, 0.5 * EXACT_BELOW, device="meta").method == "sns"
    big = choose_method(100_000, 100_000, 0.05, points=True)
    assert big.method == "online" and "GiB" in big.reason
    assert choose_method(100_000, 100_000, 0.05, points=False).method == "sinkhorn"


@pytest.mark.parametrize("eps,expected", [(0.05, "sinkhorn"), (5e-4, "sns"), (1e-6, "exact")])
def test_solve_auto_records_choice_and_matches_fixed_method(eps, expected):
    x, y = cloud(120)
    C = sq_euclidean_cost(x, y)
    r = solve(None, None, C, method="auto", eps=eps, eps_scale="max_cost")
    assert r.info["auto"]["method"] == expected and f"auto:{expected}" in r.flags
    ref = solve(None, None, C, method=expected, eps=eps, eps_scale="max_cost")
    assert float(r.cost) == pytest.approx(float(ref.cost), rel=1e-10)
    assert r.converged


def test_solve_points_online_above_memory_limit_matches_dense():
    x, y = cloud(150, 1)
    r = solve_points(x, y, eps=0.05, eps_scale="max_cost", tol=1e-10, dense_max_bytes=1024)
    assert r.method == "online_sinkhorn" and r.info["auto"]["method"] == "online"
    d = solve(None, None, sq_euclidean_cost(x, y), method="sinkhorn", eps=0.05,
              eps_scale="max_cost", tol=1e-10)
    assert float(r.cost) == pytest.approx(float(d.cost), rel=1e-9)
    assert np.allclose(r.dense_plan().numpy(), d.plan.numpy(), atol=1e-12)
    r2 = solve_points(x, y, eps=0.05, eps_scale="max_cost")
    assert r2.method == "sinkhorn"


def test_auto_rejects_method_specific_options():
    x, y = cloud(10)
    with pytest.raises(InputError, match="method='auto'"):
        solve(None, None, sq_euclidean_cost(x, y), method="auto", eps=0.1, kernel="absorb")
