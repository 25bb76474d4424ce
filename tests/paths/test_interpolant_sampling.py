"""Interpolant ODE/SDE samplers with the exact Gaussian fields: the ODE and the forward/backward
SDEs reproduce the closed-form marginals; the drift is b ± ε·s; bad input is rejected."""

import pytest
import torch

from monge.errors import InputError
from monge.paths.interpolant import GaussianInterpolant, make_interpolant
from monge.paths.interpolant_sampling import (
    GammaSquaredEpsilon,
    make_epsilon,
    sample_interpolant,
    score_from_denoiser,
    sde_diffusion,
    sde_drift,
)
from monge.solvers import Euler, EulerMaruyama, integrate

S0 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
S1 = torch.tensor([[0.25, -0.1], [-0.1, 0.6]], dtype=torch.float64)
M0, M1 = [0.0, 1.0], [2.0, -1.0]
N = 12_000


def _gaussian(name="linear", gamma="sqrt"):
    return GaussianInterpolant(make_interpolant(name, gamma=gamma), M0, S0, M1, S1)


def _assert_moments(x, mean, cov, n):
    # Monte-Carlo standard errors: mean ~ sqrt(diag/n), covariance entries ~ sqrt(2/n)·scale
    tol_mean = 5 * (torch.diagonal(cov).max() / n) ** 0.5
    tol_cov = 5 * (2.0 / n) ** 0.5 * float(torch.diagonal(cov).max()) + 0.01
    assert float((x.mean(0) - mean).abs().max()) < tol_mean, (x.mean(0), mean)
    assert float((torch.cov(x.T) - cov).abs().max()) < tol_cov, (torch.cov(x.T), cov)


@pytest.mark.parametrize("eps", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_exact_fields_reproduce_marginals(eps, direction):
    gi = _gaussian()
    gen = torch.Generator().manual_seed(0)
    start, (mean, cov) = ((gi.sample(N, 0, generator=gen, dtype=torch.float64),
                           (gi.mean1, gi.cov1)) if direction == "forward" else
                          (gi.sample(N, 1, generator=gen, dtype=torch.float64),
                           (gi.mean0, gi.cov0)))
    res = sample_interpolant(gi.velocity, start, score=gi.score, eps=eps, steps=100,
                             direction=direction, generator=1)
    _assert_moments(res.x, mean, cov, N)
    assert res.nfe == (200 if eps == 0 else 100)


@pytest.mark.parametrize("name,gamma,eps", [("trigonometric", "quadratic", 0.8),
                                            ("encoder-decoder", "sin2", 0.5)])
def test_intermediate_marginal(name, gamma, eps):
    """Stopping at t = 0.6 gives ρ_0.6 = N(μ, V) for other interpolants too."""
    gi = _gaussian(name, gamma)
    x = gi.sample(N, 0, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = sample_interpolant(gi.velocity, x, score=gi.score, eps=eps, steps=120, t1=0.6,
                             generator=3)
    m = gi.marginal(0.6)
    _assert_moments(res.x, m.mean, m.cov, N)


def test_wrong_sign_breaks_the_marginal():
    """Control: the backward drift b − ε·s run forward does not keep ρ_t (so the tests above
    discriminate the sign)."""
    gi = _gaussian()
    x = gi.sample(N, 0, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    wrong = sde_drift(gi.velocity, gi.score, 1.0, "backward")
    res = integrate(wrong, x, EulerMaruyama(sde_diffusion(1.0), generator=5), steps=100)
    assert float((torch.cov(res.x.T) - gi.cov1).abs().max()) > 1.0


def test_sde_drift_and_diffusion_values():
    gi = _gaussian()
    x = torch.randn(16, 2, dtype=torch.float64)
    t = torch.full((16,), 0.3, dtype=torch.float64)
    eps = GammaSquaredEpsilon(0.5, gi.si)
    e = float(eps(torch.tensor(0.3, dtype=torch.float64)))
    torch.testing.assert_close(sde_drift(gi.velocity, gi.score, eps)(x, t),
                               gi.velocity(x, t) + e * gi.score(x, t))
    torch.testing.assert_close(sde_drift(gi.velocity, gi.score, eps, "backward")(x, t),
                               gi.velocity(x, t) - e * gi.score(x, t))
    assert sde_diffusion(0.5)(0.3) == pytest.approx(1.0)
    # γ² schedule: ε(t) = ε₀·(2t(1−t))/(1/2) for γ = √(2t(1−t)); 0 at the ends, ε₀ at t = ½
    ts = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(eps(ts), 0.5 * 4 * ts * (1 - ts))
    assert make_epsilon("constant", 0.2) == 0.2


def test_score_from_denoiser_matches_score():
    gi = _gaussian("trigonometric", "sqrt")
    x = torch.randn(16, 2, dtype=torch.float64)
    t = torch.rand(16, dtype=torch.float64) * 0.9 + 0.05
    torch.testing.assert_close(score_from_denoiser(gi.denoiser, gi.si)(x, t), gi.score(x, t))


def test_ode_solver_choice_and_trajectory():
    gi = _gaussian()
    x = gi.sample(256, 0, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sample_interpolant(gi.velocity, x, steps=10, solver=Euler(), return_trajectory=True)
    assert res.nfe == 10 and res.trajectory.shape == (11, 256, 2)


def test_bad_input():
    gi = _gaussian()
    x = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(InputError, match="score"):
        sample_interpolant(gi.velocity, x, eps=0.5)
    with pytest.raises(InputError, match="eps"):
        sample_interpolant(gi.velocity, x, score=gi.score, eps=-1.0)
    with pytest.raises(InputError, match="direction"):
        sample_interpolant(gi.velocity, x, direction="sideways")
    with pytest.raises(InputError, match="t0, t1"):
        sample_interpolant(gi.velocity, x, direction="backward", t0=0.0, t1=1.0)
    with pytest.raises(InputError, match="eps schedule"):
        make_epsilon("cosine", 0.1)
    with pytest.raises(InputError, match="gamma"):
        GammaSquaredEpsilon(0.5, make_interpolant(gamma="zero"))
