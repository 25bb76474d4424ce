"""Exact OT and assignment against POT's network simplex and scipy."""

import numpy as np
import ot
import pytest
import torch
from _ot_problems import random_problem
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monge.ot import assignment, exact, sq_euclidean_cost


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.integers(1, 300))
@example(seed=1, n=300, m=277)
def test_exact_cost_equals_pot_emd2(seed, n, m):
    a, b, C = random_problem(seed, n, m)
    r = exact(a, b, C)
    assert abs(float(r.cost) - ot.emd2(a, b, C, numItermax=10_000_000)) <= 1e-9
    assert float(r.marginal_error) <= 1e-9
    # dual feasibility f_i + g_j <= C_ij and zero duality gap
    f, g = r.f.numpy(), r.g.numpy()
    assert (f[:, None] + g[None, :] - C).max() <= 1e-9
    assert abs(f @ a + g @ b - float(r.cost)) <= 1e-9


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(1, 200))
def test_assignment_path_matches_emd_and_has_valid_duals(seed, n):
    _, _, C = random_problem(seed, n, n, uniform=True)
    r = exact(None, None, torch.as_tensor(C))
    assert r.info["assignment_path"]
    assert abs(float(r.cost) - ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), C)) <= 1e-9
    P = r.plan.numpy()
    assert np.allclose(np.sort(P, 1)[:, -1], 1 / n) and ((P > 0).sum(1) == 1).all()
    f, g = r.f.numpy(), r.g.numpy()
    assert (f[:, None] + g[None, :] - C).max() <= 1e-9
    assert abs((f.sum() + g.sum()) / n - float(r.cost)) <= 1e-9


def test_exact_keeps_float32_dtype_and_batches():
    _, _, C1 = random_problem(1, 20, 30)
    _, _, C2 = random_problem(2, 20, 30)
    C = torch.as_tensor(np.stack([C1, C2]), dtype=torch.float32)
    r = exact(None, None, C)
    assert r.plan.dtype == torch.float32 and r.plan.shape == (2, 20, 30)
    ref = [ot.emd2(np.full(20, 1 / 20), np.full(30, 1 / 30), c) for c in (C1, C2)]
    assert np.allclose(r.cost.double().numpy(), ref, rtol=1e-5)


def test_assignment_returns_optimal_permutation():
    _, _, C = random_problem(3, 40, 40)
    perm = assignment(torch.as_tensor(C))
    assert perm.dtype == torch.int64 and sorted(perm.tolist()) == list(range(40))
    assert abs(C[np.arange(40), perm.numpy()].sum() / 40 - ot.emd2([], [], C)) <= 1e-12


def test_sq_euclidean_cost_matches_direct_and_flattens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 2, generator=g, dtype=torch.float64) + 1e3
    y = torch.randn(5, 3, 2, generator=g, dtype=torch.float64) + 1e3
    C = sq_euclidean_cost(x, y)
    direct = ((x.reshape(7, 1, 6) - y.reshape(1, 5, 6)) ** 2).sum(-1)
    assert C.shape == (7, 5)
    assert torch.allclose(C, direct, rtol=1e-9, atol=1e-9)
    assert float(sq_euclidean_cost(x, x).diagonal().abs().max()) <= 1e-9


@pytest.mark.parametrize("n,m", [(40, 40), (40, 55), (150, 150)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_costs_give_the_shifted_problem_s_plan(n, m, dtype):
    """Costs shifted by a constant (here: all negative) have the same optimal plan."""
    g = torch.Generator().manual_seed(n + m)
    C = -sq_euclidean_cost(torch.randn(n, 2, generator=g), torch.randn(m, 2, generator=g))
    C = C.to(dtype)
    r = exact(None, None, C)
    shifted = (C - C.min()).double().numpy()
    ref = ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), shifted) + float(C.min())
    assert r.converged and float(r.marginal_error) < 1e-5
    assert float(r.cost) == pytest.approx(ref, rel=1e-5, abs=1e-5)
