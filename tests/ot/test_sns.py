"""Sinkhorn–Newton–Sparse against POT's sinkhorn_log and against our Sinkhorn."""

import numpy as np
import ot
import pytest
import torch
from _ot_problems import random_problem
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monge.ot import sinkhorn, sinkhorn_newton_sparse, sq_euclidean_cost


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.integers(1, 300),
       st.sampled_from([0.1, 0.02]), st.sampled_from(["row_mass", "row_topk", "global"]))
@example(seed=1, n=300, m=277, eps=0.02, sparsify="row_mass")
def test_sns_float64_matches_pot(seed, n, m, eps, sparsify):
    a, b, C = random_problem(seed, n, m)
    r = sinkhorn_newton_sparse(a, b, C, eps, tol=1e-9, sparsify=sparsify, k=5)
    assert r.converged and float(r.marginal_error) <= 1e-9
    P = ot.bregman.sinkhorn_log(a, b, C, eps, numItermax=200_000, stopThr=1e-14, warn=False)
    ref = float((P * C).sum())
    assert abs(float(r.cost) - ref) <= 1e-6 * abs(ref) + 1e-12


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10_000), st.integers(2, 150), st.integers(2, 150))
def test_sns_float32_meets_its_tolerance(seed, n, m):
    a, b, C = random_problem(seed, n, m)
    r = sinkhorn_newton_sparse(torch.tensor(a, dtype=torch.float32), b,
                               torch.tensor(C, dtype=torch.float32), 0.05, tol=1e-5)
    assert r.plan.dtype == torch.float32 and r.converged
    assert float(r.marginal_error) <= 1e-5


def test_sns_small_eps_point_clouds_few_newton_steps():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g, dtype=torch.float64)
    y = 1.0 + 0.2 * torch.randn(300, 2, generator=g, dtype=torch.float64)
    C = sq_euclidean_cost(x, y)
    C = C / C.max()
    r = sinkhorn_newton_sparse(None, None, C, 5e-4, tol=1e-8)
    assert r.converged and float(r.marginal_error) <= 1e-8
    assert torch.isfinite(r.f).all() and torch.isfinite(r.g).all()
    assert r.info["newton_iterations"] <= 40
    # the same fixed point as (much slower) plain Sinkhorn from SNS's potentials
    s = sinkhorn(None, None, C, 5e-4, init=r, tol=1e-10)
    assert abs(float(s.cost) - float(r.cost)) <= 1e-6 * float(r.cost)
    # every Newton system kept fewer entries than the dense plan has
    assert max(r.info["nnz"]) < 300 * 300


def test_sns_batched_and_zero_mass():
    probs = [random_problem(s, 25, 15) for s in range(2)]
    C = torch.tensor(np.stack([p[2] for p in probs]))
    r = sinkhorn_newton_sparse(None, None, C, 0.02)
    for i in range(2):
        ref = sinkhorn(None, None, C[i], 0.02)
        assert abs(float(r.cost[i]) - float(ref.cost)) <= 1e-8
    a, b, C1 = probs[0]
    a = a.copy()
    a[0] = 0.0
    a /= a.sum()
    r0 = sinkhorn_newton_sparse(a, b, C1, 0.02)
    assert r0.converged and float(r0.plan[0].sum()) == 0.0


def test_sns_rejects_bad_options():
    from monge.errors import InputError
    a, b, C = random_problem(1, 5, 5)
    with pytest.raises(InputError, match="sparsify"):
        sinkhorn_newton_sparse(a, b, C, 0.1, sparsify="dense")
    with pytest.raises(InputError, match="k:"):
        sinkhorn_newton_sparse(a, b, C, 0.1, k=0)


def test_sns_converges_on_degenerate_digits_l1_cost():
    """Issue 14: the L1 pixel-grid cost (non-unique optima) stalled SNS at error ~7e-3: the dense
    Hessian is so ill-conditioned that CG hits its cap and only ~1e-7 steps ascend.
    Levenberg-Marquardt damping of the Newton model fixes it."""
    import warnings

    from sklearn.datasets import load_digits

    imgs = load_digits().images
    a, b = imgs[0].ravel() + 1e-3, imgs[1].ravel() + 1e-3
    a, b = a / a.sum(), b / b.sum()
    ii, jj = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    grid = np.stack([ii.ravel(), jj.ravel()], 1).astype(np.float64)
    C = np.abs(grid[:, None] - grid[None]).sum(-1)
    C = C / C.max()
    eps = 1.0 / 1200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sinkhorn_newton_sparse(a, b, C, eps, tol=1e-8, warmup_iter=700, max_iter=60)
    assert r.converged and float(r.marginal_error) <= 1e-8
    assert r.info["newton_iterations"] <= 60 and r.info["fallbacks"] <= 2
    # the Gibbs form of the returned potentials is a fixed point of one Sinkhorn sweep
    ref = sinkhorn(a, b, C, eps, tol=1e-12, init=r, max_iter=50)
    assert float(r.cost) == pytest.approx(float(ref.cost), rel=1e-7)


@pytest.mark.parametrize("sparsify", ["row_mass", "row_topk", "global"])
def test_sns_batch_agrees_with_each_problem_alone(sparsify):
    """Issue 14: a batch [B, n, m] is solved by batched tensor ops (block-diagonal sparse
    Hessian, batched CG and line search); every problem matches its own solve, and a problem
    that misses the tolerance is flagged on its own."""
    import warnings

    from monge.errors import ConvergenceWarning

    probs = [random_problem(s, 60, 50) for s in range(4)]
    a = torch.tensor(np.stack([p[0] for p in probs]))
    b = torch.tensor(np.stack([p[1] for p in probs]))
    C = torch.tensor(np.stack([p[2] for p in probs]))
    C[3] *= 40.0                          # eps / cost 40x smaller: needs more Newton steps
    kw = dict(tol=1e-9, max_iter=4, warmup_iter=20, warmup_annealing=None, sparsify=sparsify,
              k=5)
    with pytest.warns(ConvergenceWarning):
        r = sinkhorn_newton_sparse(a, b, C, 0.05, **kw)
    flags = r.info["converged_per_problem"]
    assert flags.shape == (4,) and not r.converged
    assert bool(flags[0]) and not bool(flags[3])
    for i in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            alone = sinkhorn_newton_sparse(a[i], b[i], C[i], 0.05, **kw)
        assert bool(flags[i]) == alone.converged
        assert bool(flags[i]) == (float(r.marginal_error[i]) <= 1e-9)
        if alone.converged:
            assert torch.allclose(r.plan[i], alone.plan, rtol=0, atol=1e-10)
            assert float(r.cost[i]) == pytest.approx(float(alone.cost), rel=1e-9)
            P = ot.bregman.sinkhorn_log(a[i].numpy(), b[i].numpy(), C[i].numpy(), 0.05,
                                        numItermax=100_000, stopThr=1e-14, warn=False)
            assert float(r.cost[i]) == pytest.approx(float((P * C[i].numpy()).sum()), rel=1e-7)
    # more Newton steps: every problem converges, each to its own marginals
    r2 = sinkhorn_newton_sparse(a, b, C, 0.05, tol=1e-9, sparsify=sparsify, k=5)
    assert r2.converged and bool(r2.info["converged_per_problem"].all())
    assert float((r2.plan.sum(2) - a).abs().sum(1).max()) <= 1e-9
    assert r2.info["newton_iterations"] == max(r2.info["newton_iterations_each"])
