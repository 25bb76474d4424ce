"""Inversion and editing: plain ODE inversion converges with the step count, RF-Inversion's
γ = 1 lands on its fixed draw and η = 1 on the original exactly, OTIP with s = 0 is RF-Inversion
bit for bit and unclipped it is RF-Inversion with η_eff, the OT variant's targets are optimal."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.inverse.inversion import TransportPull, edit, invert, ot_targets
from monge.metrics import wasserstein2
from monge.paths import GaussianMixture, LinearPath, ModelWrapper

PATH = LinearPath()
GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), stds=torch.tensor([0.4, 0.5]))
FIELD = ModelWrapper(GMM.field(PATH), PATH, "velocity")


def _data(n=400, seed=0):
    return GMM.sample(n, generator=torch.Generator().manual_seed(seed))


def test_plain_inversion_reconstructs_with_first_order_convergence_and_gaussianises():
    x = _data()
    errs = {}
    for n in (8, 32):
        z = invert(FIELD, x, n).x
        back = edit(FIELD, z, steps=n).x
        errs[n] = float((back - x).norm(dim=1).mean())
    assert errs[32] < 0.4 * errs[8], errs                       # Euler: about 1/4 per 4x steps
    z = invert(FIELD, x, 64, solver="rk4").x
    ref = torch.randn(400, 2, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    floor = wasserstein2(torch.randn(400, 2, generator=torch.Generator().manual_seed(2),
                                     dtype=x.dtype), ref)
    assert wasserstein2(z, ref) < 1.5 * floor                    # the data map to N(0, I)
    assert wasserstein2(x, ref) > 3 * floor


def test_rf_inversion_gamma_one_reaches_the_draw_and_eta_one_the_original():
    x = _data(64)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    res = invert(FIELD, x, 10, gamma=1.0, noise=noise)
    torch.testing.assert_close(res.x, noise, atol=1e-12, rtol=0)
    assert res.nfe == 10
    z = invert(FIELD, x, 10, gamma=0.5, noise=noise).x
    back = edit(FIELD, z, x, 10, eta=1.0, start=0.0, stop=1.0).x
    torch.testing.assert_close(back, x, atol=1e-12, rtol=0)
    # a partial γ lands between plain inversion and the fixed draw
    plain = invert(FIELD, x, 10).x
    assert float((z - noise).norm()) < float((plain - noise).norm())


def test_transport_pull_with_zero_strength_is_rf_inversion_and_unclipped_is_eta_eff():
    x = _data(32)
    z = invert(FIELD, x, 12).x
    a = edit(FIELD, z, x, 12, eta=0.7, stop=0.5)
    b = edit(FIELD, z, x, 12, eta=0.7, stop=0.5, transport=TransportPull(strength=0.0))
    assert torch.equal(a.x, b.x)
    pull = TransportPull(strength=0.6, phase=0.5, clip=None, t_floor=0.0, rescale=False)
    got = edit(FIELD, z, x, 12, eta=0.7, stop=0.25, transport=pull).x
    xx, n = z.clone(), 12                  # the spec's closed form with η_eff
    for i in range(n):
        t, tn = i / n, (i + 1) / n
        v = FIELD(xx, torch.full((32,), t, dtype=xx.dtype))
        eta_t = 0.7 if i / n < 0.25 else 0.0
        eff = eta_t + (1 - eta_t) * pull.weight(i, n)
        xx = xx + (v + eff * ((x - xx) / (1 - t) - v)) * (tn - t)
    torch.testing.assert_close(got, xx, atol=1e-10, rtol=1e-10)
    assert pull.weight(0, n) == 0.0 and pull.weight(6, n) == 0.0     # warm-in, phase end
    assert math.isclose(pull.weight(1, 20), 0.6 * 0.5 * (1 + math.cos(math.pi * 0.1)) * 1.0)


def test_ot_targets_are_the_optimal_assignment():
    g = torch.Generator().manual_seed(4)
    src = torch.randn(50, 3, generator=g, dtype=torch.float64)
    perm = torch.randperm(50, generator=g)
    assert torch.equal(ot_targets(src, src[perm]), src)         # a permutation is undone
    cand = torch.randn(50, 3, generator=g, dtype=torch.float64)
    tgt = ot_targets(src, cand)
    cost = float(((src - tgt) ** 2).sum())
    assert sorted(tgt[:, 0].tolist()) == sorted(cand[:, 0].tolist())
    assert cost <= float(((src - cand) ** 2).sum())
    for _ in range(20):                                        # no swap of two rows helps
        i, j = torch.randint(0, 50, (2,), generator=g).tolist()
        sw = tgt.clone()
        sw[[i, j]] = sw[[j, i]]
        assert float(((src - sw) ** 2).sum()) >= cost - 1e-9


def test_bad_input():
    x = _data(8)
    with pytest.raises(InputError, match="gamma"):
        invert(FIELD, x, 4, gamma=1.5)
    with pytest.raises(InputError, match="NaN"):
        invert(FIELD, torch.full((4, 2), float("nan")), 4)
    with pytest.raises(InputError, match="original"):
        edit(FIELD, x, None, 4, eta=0.5)
    with pytest.raises(InputError, match="shape"):
        edit(FIELD, x, x[:4], 4, eta=0.5)
    with pytest.raises(InputError, match="candidates"):
        ot_targets(x, x[:4])
    with pytest.raises(InputError, match="phase"):
        TransportPull(phase=0.0)
