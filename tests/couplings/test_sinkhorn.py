"""SinkhornCoupling: plan agrees with POT, sampled pairs follow the plan, limits, warnings."""

import warnings

import numpy as np
import ot
import pytest
import torch

from monge.couplings import SinkhornCoupling, make_coupling
from monge.errors import ConfigError, ConvergenceWarning, InputError

torch.set_num_threads(2)


def _batch(n=6, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0)


def test_plan_matches_pot_sinkhorn():
    x0, x1 = _batch(8)
    c = SinkhornCoupling(eps=0.5, relative=False, tol=1e-11)
    res = c.plan(x0, x1)
    M = ot.dist(x0.numpy(), x1.numpy())
    u = np.full(8, 1 / 8)
    ref = ot.sinkhorn(u, u, M, reg=0.5, stopThr=1e-12, numItermax=100000)
    np.testing.assert_allclose(res.plan.numpy(), ref, atol=1e-8)


def test_sigma_sets_eps_two_sigma_squared():
    x0, x1 = _batch(8)
    c = SinkhornCoupling(sigma=0.5)
    c(x0, x1, generator=torch.Generator().manual_seed(0))
    assert c.last.eps == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="eps, sigma"):
        SinkhornCoupling(eps=1.0, sigma=1.0)


def test_relative_eps_is_fraction_of_median_cost():
    x0, x1 = _batch(8)
    c = SinkhornCoupling(eps=0.2, relative=True)
    c(x0, x1, generator=torch.Generator().manual_seed(0))
    med = float(torch.cdist(x0, x1).pow(2).median())
    assert c.last.eps == pytest.approx(0.2 * med, rel=1e-9)


def test_sampled_pair_frequencies_follow_plan_columns():
    n, draws = 6, 4000
    x0, x1 = _batch(n, seed=1)
    c = SinkhornCoupling(eps=1.0, relative=False)
    P = c.plan(x0, x1).plan
    g = torch.Generator().manual_seed(0)
    freq = torch.zeros(n, n, dtype=torch.float64)
    for _ in range(draws):
        src, fallback = c.sample_sources(P, g)
        freq[src, torch.arange(n)] += 1
    assert not fallback
    # P(source i | target j) = P_ij / b_j = n P_ij; binomial std <= 0.5/sqrt(4000) ~ 0.008
    np.testing.assert_allclose((freq / draws).numpy(), (n * P).numpy(), atol=0.035)


def test_pair_uses_the_plan_sampler_and_keeps_targets():
    x0, x1 = _batch(12, seed=5)
    c = SinkhornCoupling(eps=0.3)
    y = torch.arange(12)
    p = c(x0, x1, y1=y, generator=torch.Generator().manual_seed(7))
    idx, _ = c.sample_sources(c.plan(x0, x1).plan, torch.Generator().manual_seed(7))
    assert torch.equal(p.x0, x0[idx]) and torch.equal(p.x1, x1) and torch.equal(p.y1, y)
    assert c.last.converged and not c.last.fallback and c.last.marginal_error <= 1e-5


def test_unusable_plan_column_falls_back_with_warning():
    P = torch.full((4, 4), 1 / 16, dtype=torch.float64)
    P[:, 2] = float("nan")
    with pytest.warns(ConvergenceWarning, match="1 of 4 plan columns"):
        idx, fallback = SinkhornCoupling().sample_sources(P, torch.Generator().manual_seed(0))
    assert fallback and idx.shape == (4,)


def test_small_eps_recovers_exact_ot_permutation():
    x0, x1 = _batch(10, seed=2)
    c = SinkhornCoupling(eps=0.01, relative=True)
    p = c(x0, x1, generator=torch.Generator().manual_seed(0))
    assert c.last.converged
    exact = make_coupling("ot")(x0, x1)
    torch.testing.assert_close(p.x0, exact.x0)


def test_non_converged_plan_warns_and_is_flagged():
    x0, x1 = _batch(16, seed=3)
    c = SinkhornCoupling(eps=1e-3, relative=True, max_iter=2, annealing=False)
    with pytest.warns(ConvergenceWarning):
        c(x0, x1, generator=torch.Generator().manual_seed(0))
    assert c.last.converged is False and c.last.marginal_error > 0


def test_converged_plan_is_silent_and_bad_input_names_it():
    x0, x1 = _batch(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SinkhornCoupling()(x0, x1, generator=torch.Generator().manual_seed(0))
    x0[2, 1] = float("nan")
    with pytest.raises(InputError, match="x0"):
        SinkhornCoupling()(x0, x1)
    with pytest.raises(InputError, match="eps"):
        SinkhornCoupling(eps=-1.0)
