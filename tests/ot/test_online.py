"""Online (lazy) Sinkhorn against dense monge Sinkhorn and POT, without an n x m matrix."""

import warnings

import numpy as np
import ot
import pytest
import torch

from monge.errors import ConvergenceWarning, InputError
from monge.ot import sinkhorn, sq_euclidean_cost
from monge.ot.online import LazyPlan, online_sinkhorn, softmin


def clouds(seed, n=120, m=90, d=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=dtype)
    y = 0.5 * torch.randn(m, d, generator=g, dtype=dtype) + 1.0
    a = torch.rand(n, generator=g, dtype=dtype) + 0.2
    b = torch.rand(m, generator=g, dtype=dtype) + 0.2
    return x, y, a / a.sum(), b / b.sum()


def centred(t):
    return t - t.mean(-1, keepdim=True)


@pytest.mark.parametrize("eps,relax", [(0.05, True), (0.01, True), (0.01, False)])
def test_online_matches_dense_sinkhorn_and_pot(eps, relax):
    x, y, a, b = clouds(0)
    r = online_sinkhorn(x, y, eps, a, b, eps_scale="max_cost", tol=1e-10, relax=relax,
                        block_bytes=4096)          # many small blocks
    C = sq_euclidean_cost(x, y)
    d = sinkhorn(a, b, C, eps, eps_scale="max_cost", tol=1e-10)
    assert r.converged and float(r.marginal_error) <= 1e-10
    assert r.eps == pytest.approx(d.eps, rel=1e-12) and r.cost_scale == pytest.approx(
        float(C.max()), rel=1e-12)
    # potentials agree up to the constant (f + c, g - c)
    assert float((centred(r.f) - centred(d.f)).abs().max()) < 1e-7
    assert float(((r.f[0] - d.f[0]) + (r.g - d.g)).abs().max()) < 1e-7
    P = r.plan.dense()
    assert torch.allclose(P, d.plan, atol=1e-11, rtol=1e-7)
    assert float(r.cost) == pytest.approx(float(d.cost), rel=1e-9)
    assert float(r.objective) == pytest.approx(float(d.objective), rel=1e-8, abs=1e-9)
    Ppot = ot.bregman.sinkhorn_log(a.numpy(), b.numpy(), C.numpy(), d.eps, numItermax=100_000,
                                   stopThr=1e-13)
    assert np.allclose(P.numpy(), Ppot, atol=1e-10)


def test_online_matches_pot_solve_sample_lazy():
    x, y, _, _ = clouds(1, 80, 70)
    eps = 0.2
    r = online_sinkhorn(x, y, eps, tol=1e-10)
    res = ot.solve_sample(x.numpy(), y.numpy(), reg=eps, lazy=True, max_iter=20_000,
                          tol=1e-12)
    # POT's lazy value is the entropic cost with KL to a x b; compare the linear part
    P = r.plan.dense().numpy()
    C = ot.dist(x.numpy(), y.numpy())
    assert float(r.cost) == pytest.approx(float((P * C).sum()), rel=1e-10)
    lazy = res.lazy_plan[:]
    assert np.allclose(P, lazy, atol=1e-8)


def test_lazy_plan_rows_cols_and_products():
    x, y, a, b = clouds(2, 50, 40, d=3)
    r = online_sinkhorn(x, y, 0.1, a, b, tol=1e-11, block_bytes=1000)
    plan: LazyPlan = r.plan
    P = plan.dense()
    assert plan.shape == (50, 40)
    assert torch.allclose(plan.rows([3, 7]), P[[3, 7]], rtol=1e-12, atol=0)
    assert torch.allclose(plan.cols(torch.tensor([0, 39])), P[:, [0, 39]], rtol=1e-12, atol=0)
    v = torch.randn(40, 2, dtype=torch.float64)
    u = torch.randn(50, dtype=torch.float64)
    assert torch.allclose(plan @ v, P @ v, rtol=1e-12, atol=1e-15)
    assert torch.allclose(plan.rmatvec(u), P.T @ u, rtol=1e-12, atol=1e-15)
    r1, c1 = plan.marginals()
    assert torch.allclose(r1, a, atol=1e-10) and torch.allclose(c1, b, atol=1e-10)
    T = plan.barycentric_map()
    assert torch.allclose(T, (P @ y) / P.sum(1, keepdim=True), rtol=1e-10)
    assert r.dense_plan().shape == (50, 40)
    with pytest.raises(InputError, match="max_entries"):
        plan.dense(max_entries=10)


def test_softmin_equals_dense_logsumexp_with_and_without_shift():
    x, y, _, _ = clouds(3, 33, 21)
    g = torch.randn(21, dtype=torch.float64)
    C = sq_euclidean_cost(x, y)
    ref = 0.3 * torch.logsumexp((g - C) / 0.3, dim=1)
    out = softmin(x[None], y[None], g[None], 0.3, rows=5)[0]
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    shifted = softmin(x[None], y[None], g[None], 0.3, rows=5, shift=torch.zeros(1, 33,
                      dtype=torch.float64))[0]
    assert torch.allclose(shifted, ref, rtol=1e-12, atol=1e-12)


def test_batched_equals_one_at_a_time_and_float32():
    xs, ys, as_, bs = zip(*(clouds(s, 60, 50) for s in range(3)), strict=True)
    X, Y, A, Bw = (torch.stack(t) for t in (xs, ys, as_, bs))
    r = online_sinkhorn(X, Y, 0.05, A, Bw, tol=1e-10)
    assert r.f.shape == (3, 60) and r.plan.shape == (3, 60, 50) and r.cost.shape == (3,)
    for i in range(3):
        ri = online_sinkhorn(xs[i], ys[i], 0.05, as_[i], bs[i], tol=1e-10)
        assert float(r.cost[i]) == pytest.approx(float(ri.cost), rel=1e-8)
    r32 = online_sinkhorn(X.float(), Y.float(), 0.05, A.float(), Bw.float(), tol=1e-4)
    assert r32.converged and r32.f.dtype == torch.float32
    assert torch.allclose(r32.cost.double(), r.cost, rtol=1e-4)


def test_zero_mass_points_and_warm_start():
    x, y, a, b = clouds(4, 30, 20)
    a = a.clone()
    a[5] = 0.0
    a = a / a.sum()
    r = online_sinkhorn(x, y, 0.1, a, b, tol=1e-10)
    assert r.converged and torch.isneginf(r.f[5])
    assert float(r.plan.rows([5]).abs().max()) == 0.0
    d = sinkhorn(a, b, sq_euclidean_cost(x, y), 0.1, tol=1e-10)
    assert float(r.cost) == pytest.approx(float(d.cost), rel=1e-9)
    x2, y2, a2, b2 = clouds(5, 30, 20)
    r1 = online_sinkhorn(x2, y2, 0.1, a2, b2, tol=1e-10)
    r2 = online_sinkhorn(x2, y2, 0.1, a2, b2, tol=1e-10, init=r1)
    assert r2.iterations <= 2


def test_bad_input_raises_one_line_errors():
    x, y, a, b = clouds(6, 10, 8)
    with pytest.raises(InputError, match="point dimensions differ"):
        online_sinkhorn(x, torch.rand(8, 3, dtype=torch.float64), 0.1)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(InputError, match="x: contains 1 NaN"):
        online_sinkhorn(bad, y, 0.1)
    with pytest.raises(InputError, match="total masses differ"):
        online_sinkhorn(x, y, 0.1, a, 2 * b)
    with pytest.raises(InputError, match="eps"):
        online_sinkhorn(x, y, -1.0)
    with pytest.raises(InputError, match="b: expected shape"):
        online_sinkhorn(x, y, 0.1, a, b[:-1])


def test_eps_below_float32_resolution_warns_and_flags():
    x, y, _, _ = clouds(7, 20, 20, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(RuntimeWarning, match="resolution"):
            r = online_sinkhorn(x, y, 1e-9, max_iter=3, annealing=False)
    assert "eps_below_dtype_precision" in r.flags


def test_unconverged_is_flagged():
    x, y, _, _ = clouds(8, 40, 40)
    with pytest.warns(ConvergenceWarning):
        r = online_sinkhorn(x, y, 1e-3, max_iter=2, tol=1e-12)
    assert not r.converged


@pytest.mark.parametrize("eps", [0.05, 0.005])
def test_multiscale_start_reaches_the_same_plan(eps):
    """Coarse-to-fine start (issue 14): same fixed point as the plain solve and as POT, both
    marginals within tol, and no fine annealing sweeps above the cluster scale."""
    from monge.ot.online import kmeans

    g = torch.Generator().manual_seed(3)
    x = torch.rand(400, 2, generator=g, dtype=torch.float64)
    y = 0.5 + 0.3 * torch.randn(300, 2, generator=g, dtype=torch.float64)
    a = torch.rand(400, generator=g, dtype=torch.float64) + 0.5
    a = a / a.sum()
    ref = online_sinkhorn(x, y, eps, a, eps_scale="max_cost", tol=1e-10)
    ms = online_sinkhorn(x, y, eps, a, eps_scale="max_cost", tol=1e-10, multiscale=40)
    assert ms.converged and float(ms.marginal_error) <= 1e-10
    assert ms.info["multiscale_clusters"] == (40, 40)
    assert float(ms.cost) == pytest.approx(float(ref.cost), rel=1e-8)
    assert torch.allclose(ms.plan.dense(), ref.plan.dense(), atol=1e-11)
    C = sq_euclidean_cost(x, y).numpy()
    P = ot.bregman.sinkhorn_log(a.numpy(), np.full(300, 1 / 300), C, eps * C.max(),
                                numItermax=100_000, stopThr=1e-13, warn=False)
    assert float(ms.cost) == pytest.approx(float((P * C).sum()), rel=1e-7)
    # the clustering is a weighted partition: cluster masses are the weights' sums
    c, mass, spread = kmeans(x[None], a[None], 40)
    assert c.shape == (1, 40, 2) and float(mass.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(spread[0]) < float(((x - x.mean(0)) ** 2).sum(1).mean()) / 10
    with pytest.raises(InputError, match="multiscale"):
        online_sinkhorn(x, y, eps, multiscale=0)
