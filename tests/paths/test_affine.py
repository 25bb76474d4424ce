"""Paths: endpoint identities, target = d/dt x_t, and exact round-trip conversions."""

import itertools

import pytest
import torch

from monge.errors import InputError
from monge.paths import (
    PREDICTIONS,
    EDMPath,
    GaussianMixture,
    KineticOptimalPath,
    LinearPath,
    PFGMPPPath,
    VEPath,
    VPPath,
    make_interpolant,
    make_path,
)

_SNR = torch.logspace(-3, 3, 64, dtype=torch.float64)
# Every affine path kind: the classic schedules, a kinetic-optimal path with a non-trivial
# separation curve λ(s) = 1/(1 + s), PFGM++ (its x_t = x1 + σ(t)·x0 is affine in (x0, x1)), and
# a deterministic stochastic interpolant seen as an affine path.
PATHS = [LinearPath(), VPPath("linear"), VPPath("cosine"), VEPath(), EDMPath(),
         KineticOptimalPath(_SNR, 1.0 / (1.0 + _SNR)), PFGMPPPath(D=128),
         make_interpolant("trigonometric", gamma="zero").as_affine_path()]


def _batch(n=64, d=3, seed=0, lo=0.05, hi=0.95):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    x1 = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 1
    t = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return x0, x1, t


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_velocity_target_is_time_derivative(path):
    x0, x1, t = _batch()
    h = 1e-6
    fd = (path.sample_xt(x0, x1, t + h) - path.sample_xt(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(path.velocity_target(x0, x1, t), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("src,dst", list(itertools.permutations(PREDICTIONS, 2)))
def test_conversions_round_trip(path, src, dst):
    x0, x1, t = _batch()
    xt = path.sample_xt(x0, x1, t)
    truth = {k: path.target(k, x0, x1, t) for k in PREDICTIONS}
    # conversion of the true target lands on the true target of the other kind
    torch.testing.assert_close(path.convert(truth[src], src, dst, xt, t), truth[dst],
                               rtol=1e-10, atol=1e-10)
    back = path.convert(path.convert(truth[src], src, dst, xt, t), dst, src, xt, t)
    torch.testing.assert_close(back, truth[src], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_log_snr_inverse_round_trips_in_float64(path):
    t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    lam = path.log_snr(t)
    assert bool((lam.diff() > 0).all())  # λ increases from noise to data
    torch.testing.assert_close(path.t_from_log_snr(lam), t, rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_coefficient_derivatives_match_finite_differences(path):
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    for f, df in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        torch.testing.assert_close(df(t), fd, rtol=1e-5, atol=1e-6)


def test_linear_endpoints():
    x0, x1, _ = _batch()
    p = LinearPath()
    torch.testing.assert_close(p.sample_xt(x0, x1, torch.zeros(64, dtype=torch.float64)), x0)
    torch.testing.assert_close(p.sample_xt(x0, x1, torch.ones(64, dtype=torch.float64)), x1)


def test_vp_is_variance_preserving_and_monotone():
    t = torch.linspace(0.001, 0.999, 200, dtype=torch.float64)
    for p in (VPPath("linear"), VPPath("cosine")):
        torch.testing.assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t))
        assert bool((p.log_snr(t).diff() > 0).all())


def test_edm_grid_and_source_scale():
    p = EDMPath(sigma_min=0.002, sigma_max=80.0)
    assert abs(p.source_scale - 80.0) < 1e-9
    assert abs(float(p.sigma(torch.tensor(1.0, dtype=torch.float64))) - 0.002) < 1e-12


def test_loss_weighting_identity():
    """‖ε̂ − ε‖² = (α/σ)²‖x̂1 − x1‖² (SNR weighting), per sample."""
    p = VPPath("cosine")
    x0, x1, t = _batch()
    xt = p.sample_xt(x0, x1, t)
    x1_hat = x1 + 0.1 * torch.randn_like(x1)
    eps_hat = p.x1_to_epsilon(x1_hat, xt, t)
    snr = (p.alpha(t) / p.sigma(t)) ** 2
    torch.testing.assert_close(((eps_hat - x0) ** 2).sum(1), snr * ((x1_hat - x1) ** 2).sum(1))


def test_unknown_path_and_prediction():
    with pytest.raises(InputError, match="unknown name"):
        make_path("banana")
    with pytest.raises(InputError, match="unknown prediction"):
        LinearPath().convert(torch.zeros(1, 1), "velocity", "nope", torch.zeros(1, 1),
                             torch.zeros(1))


@pytest.mark.parametrize("path", [LinearPath(), VPPath("cosine"), VEPath(0.05, 5.0)], ids=repr)
def test_gmm_score_and_velocity_closed_form(path):
    """Analytic GMM: score = autograd of log p_t, velocity matches the score through the path."""
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 1.0]]),
                          stds=torch.tensor([0.5, 0.3]), weights=torch.tensor([0.3, 0.7]))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64) * 2
    t = torch.full((32,), 0.6, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm.log_prob(xr, t, path).sum(), xr)
    torch.testing.assert_close(gmm.score(x, t, path), grad)
    torch.testing.assert_close(path.score_to_velocity(gmm.score(x, t, path), x, t),
                               gmm.velocity(x, t, path))


def test_gmm_velocity_solves_continuity_equation():
    """∂_t p + ∇·(p u) = 0 checked by finite differences for the analytic field."""
    path = LinearPath()
    gmm = GaussianMixture(means=torch.tensor([[-1.5, 0.5], [1.0, -1.0]]), stds=torch.tensor(
        [0.4, 0.6]))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 2, generator=g, dtype=torch.float64)
    t, h = 0.4, 1e-5
    tt = lambda s: torch.full((16,), s, dtype=torch.float64)
    dlogp_dt = (gmm.log_prob(x, tt(t + h), path) - gmm.log_prob(x, tt(t - h), path)) / (2 * h)
    xr = x.clone().requires_grad_(True)
    u = gmm.velocity(xr, tt(t), path)
    div = sum(torch.autograd.grad(u[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(2))
    score = gmm.score(x, tt(t), path)
    # ∂_t log p = −∇·u − u·∇log p
    torch.testing.assert_close(dlogp_dt, -div - (u.detach() * score).sum(1), rtol=1e-5, atol=1e-6)
