"""Stochastic interpolants: reductions to affine paths, targets as time derivatives, endpoint
identities, and the Gaussian closed form (conditional expectation, transport and Fokker–Planck)."""

import itertools
import math

import pytest
import torch

from monge.errors import InputError
from monge.paths import LinearPath, VPPath
from monge.paths.interpolant import (
    GAMMAS,
    INTERPOLANTS,
    GaussianInterpolant,
    SqrtGamma,
    StochasticInterpolant,
    make_interpolant,
)

COMBOS = list(itertools.product(INTERPOLANTS, [g for g in GAMMAS if g != "zero"]))
S0 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
S1 = torch.tensor([[0.25, -0.1], [-0.1, 0.6]], dtype=torch.float64)
M0, M1 = [0.0, 1.0], [2.0, -1.0]


def _draw(n=64, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3)]


def test_zero_gamma_linear_is_linear_path():
    si = StochasticInterpolant("linear", "zero")
    path = LinearPath()
    x0, x1, z = _draw()
    t = torch.rand(64, dtype=torch.float64)
    torch.testing.assert_close(si.sample_xt(x0, x1, t, z), path.sample_xt(x0, x1, t))
    torch.testing.assert_close(si.velocity_target(x0, x1, t, z), path.velocity_target(x0, x1, t))
    affine = si.as_affine_path()
    for f in ("alpha", "sigma", "d_alpha", "d_sigma"):
        torch.testing.assert_close(getattr(affine, f)(t), getattr(path, f)(t))
    eps = torch.randn_like(x0)
    torch.testing.assert_close(affine.epsilon_to_velocity(eps, x1, t),
                               path.epsilon_to_velocity(eps, x1, t))


def test_zero_gamma_trigonometric_is_cosine_vp_path():
    si = StochasticInterpolant("trigonometric", "zero")
    path = VPPath(schedule="cosine")
    x0, x1, _ = _draw()
    t = torch.rand(64, dtype=torch.float64)
    torch.testing.assert_close(si.sample_xt(x0, x1, t), path.sample_xt(x0, x1, t))
    torch.testing.assert_close(si.velocity_target(x0, x1, t), path.velocity_target(x0, x1, t))


def test_nonzero_gamma_is_not_an_affine_path():
    with pytest.raises(InputError, match="gamma"):
        make_interpolant("linear", gamma="sqrt").as_affine_path()


@pytest.mark.parametrize("name,gamma", COMBOS)
def test_endpoints(name, gamma):
    si = make_interpolant(name, gamma=gamma)
    x0, x1, z = _draw()
    for tv, ref in ((0.0, x0), (1.0, x1)):
        t = torch.full((64,), tv, dtype=torch.float64)
        torch.testing.assert_close(si.sample_xt(x0, x1, t, z), ref, atol=1e-12, rtol=0)
    # γ > 0 strictly inside
    assert bool((si.gamma(torch.linspace(0.01, 0.99, 50)) > 0).all())


@pytest.mark.parametrize("name,gamma", COMBOS)
def test_velocity_target_is_time_derivative(name, gamma):
    si = make_interpolant(name, gamma=gamma, gamma_scale=1.7)
    x0, x1, z = _draw()
    t = torch.linspace(0.03, 0.97, 64, dtype=torch.float64)
    h = 1e-6
    fd = (si.sample_xt(x0, x1, t + h, z) - si.sample_xt(x0, x1, t - h, z)) / (2 * h)
    torch.testing.assert_close(si.velocity_target(x0, x1, t, z), fd, atol=1e-6, rtol=1e-6)
    fd_i = (si.mean_part(x0, x1, t + h) - si.mean_part(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(si.target("interpolant_velocity", x0, x1, t, z), fd_i,
                               atol=1e-6, rtol=1e-6)
    # b = v + γ̇·η with η the denoiser target z
    torch.testing.assert_close(
        si.velocity_from_parts(si.target("interpolant_velocity", x0, x1, t, z),
                               si.target("denoiser", x0, x1, t, z), t),
        si.target("velocity", x0, x1, t, z))
    # score target −z/γ round-trips with the denoiser
    s = si.target("score", x0, x1, t, z)
    torch.testing.assert_close(si.score_to_denoiser(s, t), z)
    torch.testing.assert_close(si.denoiser_to_score(z, t), s)


def test_sqrt_gamma_finite_gamma_dot_product():
    g = SqrtGamma(2.0)
    t = torch.linspace(0.01, 0.99, 33, dtype=torch.float64)
    torch.testing.assert_close(g.gamma_d_gamma(t), g.gamma(t) * g.d_gamma(t))
    assert torch.isinf(g.d_gamma(torch.tensor([0.0], dtype=torch.float64))).all()
    assert float(g.gamma_d_gamma(torch.tensor(0.0, dtype=torch.float64))) == 1.0


def test_gaussian_matches_spec_isotropic_formula():
    si = make_interpolant("linear", gamma="sqrt")
    m0, m1, s0, s1 = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 1.0]), 1.3, 0.4
    gi = GaussianInterpolant(si, m0, s0**2, m1, s1**2)
    x = torch.randn(50, 2, dtype=torch.float64)
    t = torch.rand(50, dtype=torch.float64)[:, None]
    mu = (1 - t) * m0 + t * m1
    gam = torch.sqrt(2 * t * (1 - t))
    v = (1 - t) ** 2 * s0**2 + t**2 * s1**2 + gam**2
    b = (m1 - m0) + (t * s1**2 - (1 - t) * s0**2 + (1 - 2 * t)) / v * (x - mu)
    torch.testing.assert_close(gi.velocity(x, t[:, 0]), b.to(torch.float64))
    torch.testing.assert_close(gi.score(x, t[:, 0]), (-(x - mu) / v).to(torch.float64))
    torch.testing.assert_close(gi.denoiser(x, t[:, 0]), (gam * (x - mu) / v).to(torch.float64))


@pytest.mark.parametrize("name", ["linear", "trigonometric"])
def test_gaussian_velocity_is_conditional_expectation(name):
    """Least squares of the conditional target on (x_t, 1) recovers the closed-form affine b."""
    si = make_interpolant(name, gamma="sqrt")
    gi = GaussianInterpolant(si, M0, S0, M1, S1)
    gen = torch.Generator().manual_seed(3)
    n, tv = 200_000, 0.37
    x0 = gi.sample(n, 0, generator=gen, dtype=torch.float64)
    x1 = gi.sample(n, 1, generator=gen, dtype=torch.float64)
    t = torch.full((n,), tv, dtype=torch.float64)
    xt, z = si.sample(x0, x1, t, generator=gen)
    design = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    for kind, exact in (("velocity", gi.velocity), ("denoiser", gi.denoiser)):
        coef = torch.linalg.lstsq(design, si.target(kind, x0, x1, t, z)).solution
        probe = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.5, -2.0]],
                             dtype=torch.float64)
        fit = torch.cat([probe, torch.ones(4, 1, dtype=torch.float64)], 1) @ coef
        torch.testing.assert_close(fit, exact(probe, tv), atol=0.03, rtol=0)
    m = gi.marginal(tv)
    torch.testing.assert_close(xt.mean(0), m.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(xt.T), m.cov, atol=0.02, rtol=0)


def _grad_div(field, x, t):
    """(f, ∇·f) for a field of x [B, 2] by autograd."""
    x = x.clone().requires_grad_(True)
    f = field(x, t)
    div = sum(torch.autograd.grad(f[:, i].sum(), x, create_graph=True)[0][:, i]
              for i in range(x.shape[1]))
    return f, div


@pytest.mark.parametrize("name,gamma", [("linear", "sqrt"), ("trigonometric", "quadratic"),
                                        ("encoder-decoder", "sin2")])
@pytest.mark.parametrize("eps,sign", [(0.0, 1.0), (0.7, 1.0), (0.7, -1.0)])
def test_gaussian_fields_solve_fokker_planck(name, gamma, eps, sign):
    """∂_t log ρ = −∇·f − f·∇log ρ + sign·ε(Δ log ρ + |∇ log ρ|²) with f = b + sign·ε·s:
    the transport equation for ε = 0, the forward (sign +1) and backward (sign −1) FP."""
    si = make_interpolant(name, gamma=gamma)
    gi = GaussianInterpolant(si, M0, S0, M1, S1)
    x = torch.randn(40, 2, dtype=torch.float64) * 1.5
    for tv in (0.2, 0.45, 0.8):
        t = torch.full((40,), tv, dtype=torch.float64)
        h = 1e-5
        dt_logp = (gi.log_density(x, t + h) - gi.log_density(x, t - h)) / (2 * h)
        xg = x.clone().requires_grad_(True)
        grad_logp = torch.autograd.grad(gi.log_density(xg, t).sum(), xg)[0]
        torch.testing.assert_close(grad_logp, gi.score(x, t))
        s, lap_logp = _grad_div(gi.score, x, t)
        f, div_f = _grad_div(lambda y, tt: gi.velocity(y, tt) + sign * eps * gi.score(y, tt), x, t)
        rhs = -div_f - (f * s).sum(1) + sign * eps * (lap_logp + (s * s).sum(1))
        torch.testing.assert_close(dt_logp, rhs.detach(), atol=1e-5, rtol=1e-5)


def test_bad_input():
    with pytest.raises(InputError, match="interpolant"):
        make_interpolant("cubic")
    with pytest.raises(InputError, match="gamma"):
        make_interpolant("linear", gamma="cubic")
    with pytest.raises(InputError, match="gamma scale"):
        make_interpolant("linear", gamma="sqrt", gamma_scale=-1.0)
    si = make_interpolant("linear", gamma="zero")
    x0, x1, z = _draw()
    with pytest.raises(InputError, match="score"):
        si.target("score", x0, x1, torch.rand(64), z)
    with pytest.raises(InputError, match="target"):
        si.target("noise", x0, x1, torch.rand(64), z)
    with pytest.raises(InputError, match="x0 and x1"):
        si.sample_xt(x0, x1[:3], torch.rand(64))
    si = make_interpolant()
    with pytest.raises(InputError, match="cov0"):
        GaussianInterpolant(si, M0, torch.tensor([[1.0, 2.0], [2.0, 1.0]]), M1, S1)
    with pytest.raises(InputError, match="mean1"):
        GaussianInterpolant(si, M0, S0, [math.nan, 0.0], S1)
    with pytest.raises(InputError, match="mean0 and mean1"):
        GaussianInterpolant(si, M0, S0, [0.0, 1.0, 2.0], 1.0)
