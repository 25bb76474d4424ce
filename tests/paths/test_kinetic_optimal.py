"""Kinetic-optimal paths: CondOT when λ ≡ 1, consistent tabulated derivatives, the geodesic's
kinetic energy, and the data-separation estimator against a closed form."""

import math

import numpy as np
import pytest
import torch

from monge.errors import InputError
from monge.paths import LinearPath, VPPath
from monge.paths.kinetic_optimal import (
    KineticOptimalPath,
    data_separation,
    path_kinetic_energy,
)


def _curve():
    """A λ curve that is far from 1 (a 2-D mixture of two separated Gaussians), fixed seed."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 2, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.6])
    x[:300, 0] += 1.5
    x[300:, 0] -= 1.5
    return data_separation(x[:400], queries=x[400:], generator=1, n_queries=200)


@pytest.fixture(scope="module")
def ko_path():
    est = _curve()
    return KineticOptimalPath(est.snr, est.smoothed, h_floor=1e-4), est


def test_separation_one_gives_condot():
    path = KineticOptimalPath()
    lin = LinearPath()
    t = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name in ("alpha", "sigma", "d_alpha", "d_sigma"):
        torch.testing.assert_close(getattr(path, name)(t), getattr(lin, name)(t),
                                   rtol=0, atol=1e-9)
    assert path.Phi == pytest.approx(math.pi / 2, abs=1e-12)
    # a λ curve that is 1 everywhere on an explicit grid gives the same path
    snr = torch.logspace(-2, 2, 9, dtype=torch.float64)
    path2 = KineticOptimalPath(snr, torch.ones_like(snr))
    torch.testing.assert_close(path2.alpha(t), t, rtol=0, atol=1e-9)


def test_endpoints_and_monotone_schedule(ko_path):
    path, _ = ko_path
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    a, s = path.alpha(t), path.sigma(t)
    assert float(a[0]) == 0.0 and float(s[0]) == 1.0
    assert float(a[-1]) == 1.0 and float(s[-1]) == 0.0
    assert bool((a.diff() >= 0).all()) and bool((s.diff() <= 0).all())
    assert path.Phi < math.pi / 2 - 0.05  # the data are not separated: not CondOT


def test_velocity_target_is_time_derivative(ko_path):
    path, _ = ko_path
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    x1 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = 0.02 + 0.96 * torch.rand(64, generator=g, dtype=torch.float64)
    h = 1e-7
    fd = (path.sample_xt(x0, x1, t + h) - path.sample_xt(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(path.velocity_target(x0, x1, t), fd, rtol=1e-5, atol=1e-5)


def test_kinetic_energy_is_chord_length_and_below_condot(ko_path):
    path, est = ko_path
    ke_ko = path_kinetic_energy(path, est.snr, est.smoothed)
    assert ke_ko == pytest.approx(path.kinetic_energy_per_dim, rel=2e-3)
    ke_lin = path_kinetic_energy(LinearPath(), est.snr, est.smoothed)
    ke_vp = path_kinetic_energy(VPPath("cosine"), est.snr, est.smoothed)
    assert ke_ko < ke_lin - 0.05 and ke_ko < ke_vp
    # with λ ≡ 1 the formula reduces to ∫ α̇² + σ̇²: 2 for CondOT, π²/4 for the cosine path
    assert path_kinetic_energy(LinearPath()) == pytest.approx(2.0, rel=1e-9)
    assert path_kinetic_energy(VPPath("cosine")) == pytest.approx(math.pi**2 / 4, rel=1e-6)
    # the floored (regularised) path costs a little more than the geodesic, much less than CondOT
    reg = KineticOptimalPath(est.snr, est.smoothed, h_floor=0.1)
    ke_reg = path_kinetic_energy(reg, est.snr, est.smoothed)
    assert ke_ko <= ke_reg <= reg.kinetic_energy_per_dim + 1e-3 and ke_reg < ke_lin - 0.05


def test_data_separation_matches_two_point_closed_form():
    # support {+μ, −μ}, ||μ||² = d: E[x1|x] = μ tanh(s x·μ), so λ(s) = E tanh²(s²d + s√d g)
    d = 4
    mu = torch.ones(1, d, dtype=torch.float64)
    support = torch.cat([mu, -mu])
    snr = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    est = data_separation(support, snr, queries=support.repeat(2000, 1), n_queries=4000,
                          generator=0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    for s, lam in zip(snr.tolist(), est.separation.tolist(), strict=True):
        exact = float(np.sum(weights * np.tanh(s * s * d + s * math.sqrt(d) * nodes) ** 2))
        assert lam == pytest.approx(exact, abs=0.02)


def test_separation_tends_to_one_for_few_points_in_high_dimension():
    # n/√d small (4/16) vs large (400/16) at the same SNR
    g = torch.Generator().manual_seed(5)
    x = torch.randn(400, 256, generator=g, dtype=torch.float64)
    snr = torch.tensor([0.2], dtype=torch.float64)
    few = float(data_separation(x[:4], snr, generator=0).separation[0])
    many = float(data_separation(x, snr, n_queries=200, generator=0).separation[0])
    assert few > 0.95 and many < 0.6


def test_from_data_and_storage_round_trip():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 2, generator=g) * 2 + 1
    path = KineticOptimalPath.from_data(x, generator=0, n_queries=60)
    assert path.estimate.held_out and path.data_scale == pytest.approx(path.estimate.scale)
    back = KineticOptimalPath.from_tensors(path.to_tensors())
    t = torch.linspace(0, 1, 17, dtype=torch.float64)
    torch.testing.assert_close(back.alpha(t), path.alpha(t))


def test_bad_input():
    with pytest.raises(InputError, match="x1"):
        data_separation(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(InputError, match="separation"):
        KineticOptimalPath([0.0, 1.0], [0.5, 1.5])
    with pytest.raises(InputError, match="snr"):
        KineticOptimalPath([1.0, 0.5], [0.5, 0.6])
    with pytest.raises(InputError, match="both"):
        KineticOptimalPath([0.0, 1.0])
