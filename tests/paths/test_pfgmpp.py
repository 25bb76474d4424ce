"""PFGM++: kernel-moment identity, radius law vs its closed form, D → ∞ Gaussian limit, prior,
exact-denoiser ODE transport of the prior onto the perturbed data, and the Heun sampler's NFE."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from monge.errors import InputError
from monge.paths.pfgmpp import (
    EDMPreconditioner,
    PFGMPPPath,
    kernel_second_moment,
    pfgmpp_sample,
    radius_log_density,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("D", [8.0, 64.0, 512.0])
def test_kernel_moment_identity(D):
    N, sigma = 64, 0.7
    path = PFGMPPPath(D=D)
    y = torch.randn(100_000, N, generator=_gen(1), dtype=torch.float64)
    x = path.perturb(y, sigma, generator=_gen(2))
    second = float((x - y).pow(2).sum(1).mean())
    assert second == pytest.approx(kernel_second_moment(sigma, N, D), rel=0.02)
    assert kernel_second_moment(sigma, N, D) == pytest.approx((sigma * math.sqrt(D)) ** 2 * N
                                                              / (D - 2))


def _radius_cdf(N, D, sigma):
    """CDF of R from the unnormalised kernel p(R) ∝ R^(N−1)/(R² + r²)^((N+D)/2) by quadrature."""
    r = sigma * math.sqrt(D)

    def dens(R):
        return math.exp((N - 1) * math.log(R) - 0.5 * (N + D) * math.log(R * R + r * r)
                        + 0.5 * (N + D) * math.log(r * r))
    total = integrate.quad(dens, 0, np.inf, limit=200)[0]
    return lambda R: np.array([integrate.quad(dens, 0, v, limit=200)[0] / total for v in
                               np.atleast_1d(R)])


@pytest.mark.parametrize("N,D", [(16, 8.0), (4, 3.0)])
def test_radius_matches_closed_form(N, D):
    sigma = 1.3
    path = PFGMPPPath(D=D)
    R = path.noise((3000, N), generator=_gen(3), dtype=torch.float64).norm(dim=1) * sigma
    cdf = _radius_cdf(N, D, sigma)
    assert stats.kstest(R.numpy(), cdf).pvalue > 1e-3
    # the analytic density integrates to one and matches the quadrature CDF's derivative
    logp = lambda v: float(radius_log_density(torch.tensor([v]), sigma, N, D)[0])  # noqa: E731
    assert integrate.quad(lambda v: math.exp(logp(v)), 0, np.inf, limit=200)[0] == \
        pytest.approx(1.0, rel=1e-6)
    v, h = 2.0 * sigma, 1e-4
    assert math.exp(logp(v)) == pytest.approx(float(cdf(v + h)[0] - cdf(v - h)[0]) / (2 * h),
                                              rel=1e-4)


def test_prior_radius_at_sigma_max():
    N, D = 16, 8.0
    path = PFGMPPPath(D=D, sigma_max=80.0)
    x = path.prior_sample((3000, N), generator=_gen(4), dtype=torch.float64)
    assert stats.kstest(x.norm(dim=1).numpy(), _radius_cdf(N, D, 80.0)).pvalue > 1e-3
    # directions are uniform: the mean direction vanishes
    u = x / x.norm(dim=1, keepdim=True)
    assert float(u.mean(0).norm()) < 4 / math.sqrt(3000)


@pytest.mark.parametrize("D", [1e6, math.inf])
def test_large_D_recovers_gaussian_kernel(D):
    N, sigma = 64, 2.0
    x = PFGMPPPath(D=D).perturb(torch.zeros(20_000, N, dtype=torch.float64), sigma,
                                generator=_gen(5))
    assert stats.kstest(x[:, 0].numpy(), stats.norm(scale=sigma).cdf).pvalue > 1e-3
    radius = x.norm(dim=1).numpy() / sigma
    assert stats.kstest(radius, stats.chi(N).cdf).pvalue > 1e-3
    # the finite-D kernel with small D is not Gaussian: its radius fails the same test
    heavy = PFGMPPPath(D=8.0).perturb(torch.zeros(20_000, N, dtype=torch.float64), sigma,
                                      generator=_gen(5))
    assert stats.kstest(heavy.norm(dim=1).numpy() / sigma, stats.chi(N).cdf).pvalue < 1e-6


def test_large_D_posterior_mean_is_gaussian_posterior():
    data = torch.randn(5, 8, generator=_gen(6), dtype=torch.float64)
    x = torch.randn(50, 8, generator=_gen(7), dtype=torch.float64) * 2
    a = PFGMPPPath(D=1e9).posterior_mean(x, data, 1.5)
    b = PFGMPPPath(D=math.inf).posterior_mean(x, data, 1.5)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


class _ExactDenoiser(torch.nn.Module):
    def __init__(self, path, data):
        super().__init__()
        self.path, self.data = path, data

    def forward(self, x, t, **cond):
        return self.path.posterior_mean(x, self.data, self.path.sigma(t.to(torch.float64)))


def test_ode_transports_prior_onto_perturbed_data():
    # two points ±2e1 in N = 4, D = 8; integrate the σ-ODE with the exact denoiser from the
    # PFGM++ prior at σ_max = 20 down to σ = 1 and compare with kernel draws at σ = 1
    N, D = 4, 8.0
    path = PFGMPPPath(D=D, sigma_min=1.0, sigma_max=20.0)
    data = torch.zeros(2, N, dtype=torch.float64)
    data[0, 0], data[1, 0] = 2.0, -2.0
    x = path.prior_sample((20_000, N), generator=_gen(8), dtype=torch.float64)
    res = pfgmpp_sample(_ExactDenoiser(path, data), path, x, num_steps=60, final_denoise=False)
    ref = path.perturb(data[torch.randint(2, (20_000,), generator=_gen(9))], 1.0,
                       generator=_gen(10))
    m_ode, m_ref = float(res.x.pow(2).sum(1).mean()), float(ref.pow(2).sum(1).mean())
    assert m_ode == pytest.approx(m_ref, rel=0.03)
    # a Gaussian-prior/EDM answer would be 4 + N·1 = 8, far from the kernel's 4 + N·D/(D − 2)
    assert m_ref == pytest.approx(4 + N * D / (D - 2), rel=0.03)
    assert float((res.x[:, 0] > 0).double().mean()) == pytest.approx(0.5, abs=0.02)
    assert float(res.x[:, 0].abs().mean()) == pytest.approx(float(ref[:, 0].abs().mean()),
                                                            rel=0.03)


def test_sampler_nfe_and_landing_on_data():
    path = PFGMPPPath(D=16.0)
    data = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, -1.0, -1.0]],
                        dtype=torch.float64)
    den = _ExactDenoiser(path, data)
    res = pfgmpp_sample(den, path, 600, shape=(3,), num_steps=18, generator=11)
    assert res.nfe == 35
    d = torch.cdist(res.x.double(), data)
    assert float(d.min(1).values.max()) < 1e-2
    counts = torch.bincount(d.argmin(1), minlength=3).double() / 600
    assert float((counts - 1 / 3).abs().max()) < 0.07


def test_preconditioner_with_zero_network_is_gaussian_posterior_mean():
    # for data N(0, σ_d² I) and the Gaussian kernel, E[y | x] = σ_d²/(σ² + σ_d²)·x = c_skip·x
    class Zero(torch.nn.Module):
        def forward(self, x, t, **cond):
            return torch.zeros_like(x)
    path = PFGMPPPath(D=math.inf)
    den = EDMPreconditioner(Zero(), path, sigma_data=0.5)
    g = _gen(12)
    y = 0.5 * torch.randn(50_000, 4, generator=g, dtype=torch.float64)
    sigma = torch.full((50_000,), 0.8, dtype=torch.float64)
    x = path.perturb(y, sigma, generator=g)
    gmm_mean = 0.25 / (0.64 + 0.25) * x
    torch.testing.assert_close(den.denoise(x, sigma), gmm_mean)
    # and it is the least-squares fit of y on x (regression slope)
    slope = float((x * y).sum() / (x * x).sum())
    assert slope == pytest.approx(0.25 / 0.89, rel=0.02)


def test_bad_input():
    with pytest.raises(InputError, match="D"):
        PFGMPPPath(D=2.0)
    with pytest.raises(InputError, match="shape"):
        pfgmpp_sample(torch.nn.Identity(), PFGMPPPath(), 4)
    with pytest.raises(InputError, match="num_steps"):
        PFGMPPPath().sigma_grid(1)
