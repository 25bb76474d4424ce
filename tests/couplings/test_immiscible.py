"""Immiscible couplings: assignment optimal (POT, unsquared cost), KNN nearest-of-k, noise bias."""

import numpy as np
import ot
import pytest
import torch

from monge.couplings import (
    ImmiscibleAssignmentCoupling,
    ImmiscibleKNNCoupling,
    ImmiscibleScalingCoupling,
    IndependentCoupling,
    collect_coupled_noise,
    make_coupling,
    noise_marginal_bias,
)
from monge.errors import ConfigError, InputError

torch.set_num_threads(2)


def _batch(n=48, shape=(2,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *shape, generator=g, dtype=torch.float64),
            2 * torch.rand(n, *shape, generator=g, dtype=torch.float64) - 1)


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4)])
def test_assignment_is_optimal_for_unsquared_distance(shape):
    x0, x1 = _batch(shape=shape)
    p = ImmiscibleAssignmentCoupling()(x0, x1)
    n = x0.shape[0]
    # same noise vectors, only permuted; targets untouched
    assert torch.equal(torch.sort(p.x0.flatten(1), 0)[0], torch.sort(x0.flatten(1), 0)[0])
    assert torch.equal(p.x1, x1)
    got = float((p.x0 - p.x1).flatten(1).norm(dim=1).mean())
    M = ot.dist(x0.flatten(1).numpy(), x1.flatten(1).numpy(), metric="euclidean")
    u = np.full(n, 1 / n)
    assert got == pytest.approx(ot.emd2(u, u, M), rel=1e-9)


def test_quantized_assignment_is_near_optimal():
    x0, x1 = _batch(n=64, shape=(64,), seed=3)
    p = ImmiscibleAssignmentCoupling(quantize=True)(x0, x1)
    M = ot.dist(x0.numpy(), x1.numpy(), metric="euclidean")
    u = np.full(64, 1 / 64)
    opt = ot.emd2(u, u, M)
    got = float((p.x0 - p.x1).norm(dim=1).mean())
    assert opt <= got + 1e-12 and got <= opt * (1 + 2e-3)  # fp16 rounding of 0.1*D ~ 5e-4 rel


def test_knn_picks_nearest_of_k_candidates():
    x0, x1 = _batch(n=32, shape=(3,))
    bank = torch.randn(32 * 7, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    c = ImmiscibleKNNCoupling(k=8, prior=lambda shape, like, g: bank.reshape(shape))
    p = c(x0, x1)
    cand = torch.cat([x0.unsqueeze(1), bank.reshape(32, 7, 3)], 1)
    dist = (cand - x1.unsqueeze(1)).norm(dim=-1)
    best = dist.argmin(1)
    torch.testing.assert_close(p.x0, cand[torch.arange(32), best])
    assert torch.equal(c.last_choice, best)
    assert bool((p.x0 - x1).norm(dim=1).le((x0 - x1).norm(dim=1) + 1e-12).all())


def test_knn_k1_is_independent_and_generator_reproducible():
    x0, x1 = _batch()
    assert torch.equal(ImmiscibleKNNCoupling(k=1)(x0, x1).x0, x0)
    a = ImmiscibleKNNCoupling(k=4)(x0, x1, generator=torch.Generator().manual_seed(1))
    b = ImmiscibleKNNCoupling(k=4)(x0, x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x0, b.x0)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_knn_noise_bias_closed_form_in_2d(k):
    # datum at the origin: the kept noise has ||e||^2 = min of k chi2_2 = Exp(mean 2/k)
    targets = [torch.zeros(512, 2, dtype=torch.float64) for _ in range(20)]
    noise, _ = collect_coupled_noise(ImmiscibleKNNCoupling(k=k), targets, seed=0)
    bias = noise_marginal_bias(noise)
    assert bias.sq_norm_ratio == pytest.approx(1.0 / k, rel=0.05)
    assert bias.sq_norm_z < -10 and bias.ks_pvalue < 1e-6


def test_bias_diagnostic_on_gaussian_and_assignment_noise():
    g = torch.Generator().manual_seed(0)
    gauss = noise_marginal_bias(torch.randn(4000, 16, generator=g, dtype=torch.float64))
    assert abs(gauss.sq_norm_z) < 4 and gauss.ks_pvalue > 1e-3
    assert gauss.mean_norm == pytest.approx(np.sqrt(16 / 4000), rel=0.5)
    data = [torch.full((128, 16), 0.8, dtype=torch.float64) * torch.sign(
        torch.randn(128, 1, generator=g, dtype=torch.float64)) for _ in range(20)]
    la_noise, la_x1 = collect_coupled_noise(ImmiscibleAssignmentCoupling(), data, seed=1)
    ind_noise, ind_x1 = collect_coupled_noise(IndependentCoupling(), data, seed=1)
    la, ind = noise_marginal_bias(la_noise, la_x1), noise_marginal_bias(ind_noise, ind_x1)
    # the assignment only permutes Gaussian noise: marginal unbiased, pairing pulled to the datum
    assert torch.equal(torch.sort(la_noise, 0)[0], torch.sort(ind_noise, 0)[0])
    assert abs(la.sq_norm_z) < 4 and la.ks_pvalue > 1e-3
    assert abs(ind.target_alignment) < 0.1 and la.target_alignment > 0.5


def test_image_scaling_variant_round_trips():
    x0, x1 = _batch(shape=(1, 4, 4))
    c = make_coupling("immiscible-scale", scale=2.0)
    p = c(x0, x1)
    assert torch.equal(p.x0, x0)
    torch.testing.assert_close(p.x1, 2.0 * x1)
    torch.testing.assert_close(c.unscale(p.x1), x1)


def test_bad_options_and_input():
    with pytest.raises(ConfigError, match="k"):
        ImmiscibleKNNCoupling(k=0)
    with pytest.raises(InputError, match="scale"):
        ImmiscibleScalingCoupling(scale=-1.0)
    with pytest.raises(InputError, match="cost"):
        ImmiscibleAssignmentCoupling(distance="cosine")
    x0, x1 = _batch()
    x0[0, 0] = float("nan")
    with pytest.raises(InputError, match="x0"):
        ImmiscibleKNNCoupling()(x0, x1)
    with pytest.raises(InputError, match="noise"):
        noise_marginal_bias(torch.zeros(1, 3))
