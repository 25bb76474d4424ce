"""Sinkhorn divergence: value against GeomLoss/POT, envelope gradients against finite diffs."""

import numpy as np
import ot
import pytest
import torch

from monge.errors import InputError
from monge.ot.divergence import SinkhornDivergenceLoss, sinkhorn_divergence


def clouds(seed, n=40, m=30, d=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = 0.5 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.5
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


def pot_ot_kl(x, y, a, b, eps):
    """OT_eps(a, b) = <C, P> + eps KL(P | a b^T) with POT's log-domain Sinkhorn."""
    C = ot.dist(x, y)
    P = ot.bregman.sinkhorn_log(a, b, C, eps, numItermax=100_000, stopThr=1e-13)
    kl = np.sum(P * (np.log(np.maximum(P, 1e-300)) - np.log(np.outer(a, b))))
    return float(np.sum(P * C) + eps * kl)


def numpy_self_ot(x, a, eps, iters=3000):
    """OT_eps(a, a) in the dual, by the averaged symmetric fixed point in plain numpy (float64);
    alternating Sinkhorn (POT) converges only sublinearly on self-transport."""
    C = ot.dist(x, x)
    F = np.zeros(len(a))
    for _ in range(iters):
        Z = np.log(a)[None, :] + (F[None, :] - C) / eps
        mx = Z.max(1)
        F = 0.5 * (F - eps * (mx + np.log(np.exp(Z - mx[:, None]).sum(1))))
    return float(2 * a @ F)


@pytest.mark.parametrize("solver", ["dense", "online"])
def test_value_matches_pot_primal(solver):
    x, y, a, b = clouds(0, 30, 25)
    eps = 0.2
    s = sinkhorn_divergence(x, y, eps, a, b, solver=solver, tol=1e-11)
    xn, yn, an, bn = (t.numpy() for t in (x, y, a, b))
    ref = (pot_ot_kl(xn, yn, an, bn, eps) - 0.5 * numpy_self_ot(xn, an, eps)
           - 0.5 * numpy_self_ot(yn, bn, eps))
    assert float(s) == pytest.approx(ref, rel=1e-8)


def test_value_matches_geomloss_at_blur():
    geomloss = pytest.importorskip("geomloss")
    x, y, a, b = clouds(1)
    blur = 0.3
    s = sinkhorn_divergence(x, y, 2 * blur ** 2, a, b, tol=1e-12)
    # diameter just above blur and scaling -> 1: thousands of iterations all at eps = blur^2,
    # so GeomLoss's eps-scaling schedule converges to the same fixed point
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, diameter=blur * (1 + 1e-9),
                                scaling=float(np.exp(-1e-9 / 3000)), backend="tensorized")
    ref = 2.0 * float(loss(a, x, b, y))
    assert float(s) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("solver", ["dense", "online"])
def test_gradient_matches_finite_differences(solver):
    x, y, a, b = clouds(2, 20, 15)
    eps = 0.1
    xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    ar = a.clone().requires_grad_(True)
    s = sinkhorn_divergence(xr, yr, eps, ar, b, solver=solver, tol=1e-12)
    s.backward()

    def S(xx=x, yy=y, aa=a):
        return float(sinkhorn_divergence(xx, yy, eps, aa, b, solver=solver, tol=1e-12))

    h = 1e-5
    for i, k in [(0, 0), (7, 1), (19, 0)]:
        e = torch.zeros_like(x)
        e[i, k] = h
        assert (S(xx=x + e) - S(xx=x - e)) / (2 * h) == pytest.approx(float(xr.grad[i, k]),
                                                                       rel=1e-5, abs=1e-8)
    e = torch.zeros_like(y)
    e[3, 1] = h
    assert (S(yy=y + e) - S(yy=y - e)) / (2 * h) == pytest.approx(float(yr.grad[3, 1]),
                                                                   rel=1e-5, abs=1e-8)
    d = torch.zeros_like(a)
    d[2], d[5] = 1.0, -1.0          # a direction on the simplex
    fd = (S(aa=a + h * d) - S(aa=a - h * d)) / (2 * h)
    assert fd == pytest.approx(float(ar.grad @ d), rel=1e-5, abs=1e-8)


def test_zero_on_identical_clouds_and_nonnegative():
    x, y, a, b = clouds(3)
    assert float(sinkhorn_divergence(x, x, 0.05, a, a)) == pytest.approx(0.0, abs=1e-12)
    for seed in range(3):
        x, y, a, b = clouds(10 + seed, 20, 20)
        for eps in (0.02, 0.2, 2.0):
            assert float(sinkhorn_divergence(x, y, eps, a, b, tol=1e-6)) >= 0.0
    # close to W2^2 for small eps
    x, y, _, _ = clouds(4, 20, 20)
    w2 = ot.emd2(np.full(20, 1 / 20), np.full(20, 1 / 20), ot.dist(x.numpy(), y.numpy()))
    assert float(sinkhorn_divergence(x, y, 5e-3, tol=1e-5)) == pytest.approx(w2, rel=0.05)


def test_batched_and_loss_module_and_float32():
    xs, ys = zip(*((clouds(s)[0], clouds(s)[1]) for s in range(3)), strict=True)
    X, Y = torch.stack(xs), torch.stack(ys)
    sb = sinkhorn_divergence(X, Y, 0.1)
    assert sb.shape == (3,)
    for i in range(3):
        assert float(sb[i]) == pytest.approx(float(sinkhorn_divergence(xs[i], ys[i], 0.1)),
                                             rel=1e-8)
    loss = SinkhornDivergenceLoss(eps=0.1, solver="online")
    x32 = xs[0].float().requires_grad_(True)
    v = loss(x32, ys[0].float())
    v.backward()
    assert v.dtype == torch.float32 and x32.grad.shape == x32.shape
    assert float(v.detach()) == pytest.approx(float(sb[0]), rel=1e-3)


def test_bad_input():
    x, y, a, b = clouds(5)
    with pytest.raises(InputError, match="point dimensions differ"):
        sinkhorn_divergence(x, torch.rand(5, 3, dtype=torch.float64), 0.1)
    with pytest.raises(InputError, match="total masses differ"):
        sinkhorn_divergence(x, y, 0.1, a, 3 * b)
    with pytest.raises(InputError, match="solver"):
        sinkhorn_divergence(x, y, 0.1, solver="magic")
    with pytest.raises(InputError, match="eps"):
        sinkhorn_divergence(x, y, 0.0)
