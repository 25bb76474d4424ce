"""Log-stabilised Sinkhorn against POT's sinkhorn_log."""

import warnings

import numpy as np
import ot
import pytest
import torch
from _ot_problems import random_problem
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monge.errors import ConvergenceWarning
from monge.ot import sinkhorn, solve


def pot_cost(a, b, C, eps):
    P = ot.bregman.sinkhorn_log(a, b, C, eps, numItermax=200_000, stopThr=1e-14, warn=False)
    return float((P * C).sum())


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.integers(1, 300),
       st.sampled_from([0.5, 0.1, 0.05]), st.sampled_from(["absorb", "logsumexp"]))
@example(seed=1, n=300, m=277, eps=0.05, kernel="absorb")
def test_sinkhorn_float64_matches_pot(seed, n, m, eps, kernel):
    a, b, C = random_problem(seed, n, m)
    r = sinkhorn(a, b, C, eps, tol=1e-9, kernel=kernel)
    assert r.converged and float(r.marginal_error) <= 1e-9
    ref = pot_cost(a, b, C, eps)
    assert abs(float(r.cost) - ref) <= 1e-6 * abs(ref) + 1e-12
    # plan is the Gibbs form of the returned potentials
    P = np.exp((r.f.numpy()[:, None] + r.g.numpy()[None, :] - C) / eps)
    assert np.allclose(P, r.plan.numpy(), rtol=1e-10, atol=1e-300)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(2, 200), st.integers(2, 200))
def test_sinkhorn_float32_meets_its_tolerance(seed, n, m):
    a, b, C = random_problem(seed, n, m)
    r = sinkhorn(torch.tensor(a, dtype=torch.float32), b, torch.tensor(C, dtype=torch.float32),
                 0.1, tol=1e-5)
    assert r.plan.dtype == torch.float32
    assert r.converged and float(r.marginal_error) <= 1e-5
    ref = pot_cost(a, b, C, 0.1)
    assert abs(float(r.cost) - ref) <= 1e-4 * ref


def test_small_eps_no_overflow_with_annealing():
    a, b, C = random_problem(5, 60, 50)
    eps = 1e-4 * C.max()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither overflow nor a convergence warning
        r = sinkhorn(a, b, C, eps, tol=1e-8, annealing=True)
    assert r.converged and torch.isfinite(r.plan).all() and torch.isfinite(r.f).all()
    # at eps = 1e-4 max C the entropic cost is within eps * log(nm) of the exact cost
    assert abs(float(r.cost) - ot.emd2(a, b, C)) <= eps * np.log(60 * 50)


def test_batched_equals_individual_and_relative_eps():
    probs = [random_problem(s, 30, 20) for s in range(3)]
    A = torch.tensor(np.stack([p[0] for p in probs]))
    B = torch.tensor(np.stack([p[1] for p in probs]))
    C = torch.tensor(np.stack([p[2] for p in probs]))
    rb = sinkhorn(A, B, C, 0.05, eps_scale="max_cost")
    assert rb.plan.shape == (3, 30, 20) and rb.eps_relative == 0.05
    scale = float(C.abs().max())
    assert rb.cost_scale == scale
    for i, (a, b, c) in enumerate(probs):
        ri = sinkhorn(a, b, c, 0.05 * scale)
        assert abs(float(rb.cost[i]) - float(ri.cost)) <= 1e-8
        assert float(rb.marginal_error[i]) <= 1e-8


def test_warm_start_needs_fewer_iterations():
    a, b, C = random_problem(7, 80, 90)
    cold = sinkhorn(a, b, C, 0.01)
    warm = sinkhorn(a, b, C, 0.01, init=(cold.f, cold.g))
    assert cold.converged and warm.converged
    assert warm.iterations < cold.iterations // 5


def test_zero_mass_entries_give_zero_rows():
    a, b, C = random_problem(8, 10, 12)
    a[3] = 0.0
    a /= a.sum()
    r = sinkhorn(a, b, C, 0.1)
    assert r.converged and float(r.plan[3].abs().sum()) == 0.0
    ref = pot_cost(a, b, C, 0.1)
    assert abs(float(r.cost) - ref) <= 1e-6 * ref


def test_non_converged_solve_is_flagged():
    a, b, C = random_problem(9, 50, 50)
    with pytest.warns(ConvergenceWarning):
        r = sinkhorn(a, b, C, 1e-3, max_iter=5)
    assert not r.converged and float(r.marginal_error) > r.tol
    assert r.history and r.iterations == 5


def test_eps_below_dtype_precision_warns_and_flags():
    a, b, C = random_problem(10, 20, 20)
    C32 = torch.tensor(C, dtype=torch.float32) * 1e3
    with pytest.warns(RuntimeWarning, match="eps"):
        r = solve(a, b, C32, method="sinkhorn", eps=1e-7, max_iter=50)
    assert "eps_below_dtype_precision" in r.flags
