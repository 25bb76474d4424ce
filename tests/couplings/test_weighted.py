"""W-CFM: weights follow exp(-c/eps), normalisations, eps -> inf is uniform, ESS, marginal tilt."""

import math

import pytest
import torch

from monge.couplings import WeightedCoupling, effective_sample_size, make_coupling
from monge.errors import ConfigError, InputError
from monge.models import MLP
from monge.paths import LinearPath
from monge.train import FlowMatchingLoss

torch.set_num_threads(2)


def _pairs(n=64, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64) + 1.5)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_raw_weights_match_formula(cost):
    x0, x1 = _pairs()
    c = WeightedCoupling(eps=2.0, normalize="none", cost=cost, relative=False)
    p = c(x0, x1)
    d = (x0 - x1).norm(dim=1)
    cst = d**2 if cost == "sqeuclidean" else d
    torch.testing.assert_close(p.weights, torch.exp(-cst / 2.0))
    assert torch.equal(p.x0, x0) and torch.equal(p.x1, x1)  # pairs are the independent ones


def test_normalisations_and_relative_eps():
    x0, x1 = _pairs(seed=1)
    c2 = ((x0 - x1) ** 2).sum(1)
    bm = WeightedCoupling(eps=0.5, normalize="batch_mean")
    w = bm(x0, x1).weights
    assert bm.last.eps == pytest.approx(0.5 * float(c2.median()))
    raw = torch.exp(-c2 / bm.last.eps)
    torch.testing.assert_close(w, raw / raw.mean())
    assert float(w.mean()) == pytest.approx(1.0)
    ws = WeightedCoupling(eps=0.5, normalize="self")(x0, x1).weights
    torch.testing.assert_close(ws, w / len(w))
    assert float(ws.sum()) == pytest.approx(1.0)


def test_eps_to_infinity_gives_uniform_weights_and_full_ess():
    x0, x1 = _pairs(seed=2)
    c = WeightedCoupling(eps=1e12)
    w = c(x0, x1).weights
    torch.testing.assert_close(w, torch.ones_like(w))
    assert c.last_ess == pytest.approx(64.0)
    small = WeightedCoupling(eps=0.01)
    small(x0, x1)
    assert small.last.ess_fraction < 0.1  # weight degeneracy at small eps


def test_effective_sample_size_formula():
    w = torch.tensor([1.0, 1.0, 2.0, 0.0])
    assert effective_sample_size(w) == pytest.approx(16.0 / 6.0)
    assert effective_sample_size(3.0 * w) == pytest.approx(16.0 / 6.0)


def test_tilted_source_marginal_matches_closed_form():
    # mu = N(0,1), nu = N(m, s^2), c = (x-y)^2: the tilted source marginal is Gaussian with
    # precision 1 + 2/(eps + 2 s^2) and mean (2 m/(eps + 2 s^2)) / precision.
    m, s, eps, n = 2.0, 1.0, 2.0, 400_000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x1 = m + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    w = WeightedCoupling(eps=eps, relative=False, normalize="self")(x0, x1).weights
    prec = 1 + 2 / (eps + 2 * s * s)
    mean = float((w * x0[:, 0]).sum())
    var = float((w * x0[:, 0] ** 2).sum()) - mean**2
    assert mean == pytest.approx(2 * m / (eps + 2 * s * s) / prec, abs=0.01)
    assert var == pytest.approx(1 / prec, abs=0.01)


def test_loss_with_huge_eps_equals_independent_loss():
    torch.manual_seed(0)
    model = MLP(2, hidden=16, depth=2, time_dim=8)
    x0, x1 = torch.randn(32, 2), torch.randn(32, 2) + 2
    g = torch.Generator().manual_seed(3)
    indep = FlowMatchingLoss(LinearPath())(model, x0, x1, generator=g)
    wl = FlowMatchingLoss(LinearPath(), coupling=make_coupling("wcfm", eps=1e12))
    out = wl(model, x0, x1, generator=torch.Generator().manual_seed(3))
    assert float(out.loss.detach()) == pytest.approx(float(indep.loss.detach()), rel=1e-6)


def test_bad_options_and_input():
    with pytest.raises(InputError, match="eps"):
        WeightedCoupling(eps=0.0)
    with pytest.raises(ConfigError, match="normalize"):
        WeightedCoupling(normalize="sum")
    with pytest.raises(InputError, match="cost"):
        WeightedCoupling(cost="l1")
    x0, x1 = _pairs()
    x1[0, 0] = math.inf
    with pytest.raises(InputError, match="x1"):
        WeightedCoupling()(x0, x1)
