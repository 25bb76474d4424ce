"""The exact Gaussian-mixture posterior: against prior × likelihood on a grid (density, evidence,
mean, covariance), the information-form formulas and scipy, its own samples, the noiseless and
uninformative limits, batching, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import kstest, multivariate_normal, norm

from monge.errors import InputError
from monge.inverse import (
    FullCovarianceMixture,
    Mask,
    box_mask,
    gmm_posterior,
    observe,
    random_projection,
)
from monge.paths import GaussianMixture, LinearPath

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _prior_2d() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[-1.5, 0.0], [1.0, 1.2], [0.5, -1.5]]),
                           torch.tensor([[0.5, 0.7], [0.8, 0.4], [0.6, 0.6]]),
                           torch.tensor([0.5, 0.3, 0.2]))


A_ROW = torch.tensor([[1.0, 0.6]], dtype=F64)
Y_ROW = torch.tensor([0.4], dtype=F64)
SIGMA_ROW = 0.5


def _log_joint(prior: GaussianMixture, a, y, sigma, x):
    """log p(x) + log N(y; A x, σ² I) for points x [N, d] (the unnormalised posterior)."""
    log_prior = prior.log_prob(x, 1.0, LinearPath())        # t = 1: the data distribution
    resid = y - x @ a.T
    m = a.shape[0]
    log_lik = (-0.5 * (resid**2).sum(-1) / sigma**2 - m * math.log(sigma)
               - 0.5 * m * math.log(2 * math.pi))
    return log_prior + log_lik


@pytest.fixture(scope="module")
def grid():
    h = 0.02
    axis = torch.arange(-6.0, 6.0 + h / 2, h, dtype=F64)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1), h


def test_log_prob_is_prior_times_likelihood_up_to_the_evidence(grid):
    prior = _prior_2d()
    post = gmm_posterior(prior, A_ROW, Y_ROW, SIGMA_ROW)
    pts = grid[0][::97]                                      # ~1,500 points over [-6, 6]²
    diff = post.log_prob(pts) - _log_joint(prior, A_ROW, Y_ROW, SIGMA_ROW, pts)
    # the difference is one constant, −log p(y)
    torch.testing.assert_close(diff, torch.full_like(diff, -float(post.log_evidence)),
                               rtol=0, atol=1e-10)


def test_mean_covariance_and_evidence_match_numerical_integration(grid):
    prior = _prior_2d()
    post = gmm_posterior(prior, A_ROW, Y_ROW, SIGMA_ROW)
    pts, h = grid
    density = _log_joint(prior, A_ROW, Y_ROW, SIGMA_ROW, pts).exp()
    evidence = density.sum() * h * h
    assert float(evidence.log()) == pytest.approx(float(post.log_evidence), abs=1e-8)
    w = density / density.sum()
    mean = (w[:, None] * pts).sum(0)
    centred = pts - mean
    cov = (w[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    torch.testing.assert_close(post.mean(), mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(post.covariance(), cov, rtol=0, atol=1e-8)
    # the posterior is not the prior: the observation moved the mass
    assert float((post.weights - prior.weights).abs().max()) > 0.05


def test_posterior_covariances_are_full():
    post = gmm_posterior(_prior_2d(), A_ROW, Y_ROW, SIGMA_ROW)
    assert float(post.covariances[:, 0, 1].abs().min()) > 1e-2


def _information_form(prior: GaussianMixture, a, y, sigma):
    """Σ′ = (Σ⁻¹ + AᵀA/σ²)⁻¹, μ′ = Σ′(Σ⁻¹μ + Aᵀy/σ²), weights from scipy's logpdf."""
    means, covs, logw = [], [], []
    for mu, s, pi in zip(prior.means, prior.stds, prior.weights, strict=True):
        prec = torch.diag(s**-2)
        cov = torch.linalg.inv(prec + a.T @ a / sigma**2)
        means.append(cov @ (prec @ mu + a.T @ y / sigma**2))
        covs.append(cov)
        marg = a @ torch.diag(s**2) @ a.T + sigma**2 * torch.eye(a.shape[0], dtype=F64)
        logw.append(math.log(pi) + multivariate_normal(
            (a @ mu).numpy(), marg.numpy()).logpdf(y.numpy()))
    logw = torch.tensor(logw, dtype=F64)
    return torch.stack(means), torch.stack(covs), logw - torch.logsumexp(logw, 0)


def test_single_gaussian_matches_gaussian_conditioning():
    prior = GaussianMixture(torch.tensor([[0.3, -1.0, 2.0]]), torch.tensor([[1.0, 0.5, 2.0]]))
    a = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 0.5]], dtype=F64)
    y = torch.tensor([1.0, 0.2], dtype=F64)
    post = gmm_posterior(prior, a, y, 0.3)
    # joint Gaussian of (x, y) conditioned on y (the Kalman update, written out)
    sig = torch.diag(prior.stds[0] ** 2)
    s_yy = a @ sig @ a.T + 0.09 * torch.eye(2, dtype=F64)
    s_xy = sig @ a.T
    mean = prior.means[0] + s_xy @ torch.linalg.solve(s_yy, y - a @ prior.means[0])
    cov = sig - s_xy @ torch.linalg.solve(s_yy, s_xy.T)
    torch.testing.assert_close(post.means[0], mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.covariances[0], cov, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.mean(), mean, rtol=0, atol=1e-12)
    want = multivariate_normal((a @ prior.means[0]).numpy(), s_yy.numpy()).logpdf(y.numpy())
    assert float(post.log_evidence) == pytest.approx(want, abs=1e-12)


def test_mixture_matches_the_information_form():
    prior = GaussianMixture(torch.randn(4, 5, generator=_gen(1), dtype=F64),
                            0.3 + torch.rand(4, 5, generator=_gen(2), dtype=F64),
                            torch.tensor([0.1, 0.2, 0.3, 0.4]))
    op = random_projection(3, 5, _gen(3))
    y = torch.randn(3, generator=_gen(4), dtype=F64)
    post = gmm_posterior(prior, op.A, y, 0.2)
    means, covs, logw = _information_form(prior, op.A, y, 0.2)
    torch.testing.assert_close(post.means, means, rtol=0, atol=1e-10)
    torch.testing.assert_close(post.covariances, covs, rtol=0, atol=1e-10)
    torch.testing.assert_close(post.log_weights, logw, rtol=0, atol=1e-10)
    # an operator gives the same posterior as its matrix
    by_op = gmm_posterior(prior, op, y, 0.2)
    torch.testing.assert_close(by_op.means, post.means, rtol=0, atol=1e-12)


def test_samples_match_mean_and_covariance():
    post = gmm_posterior(_prior_2d(), A_ROW, Y_ROW, SIGMA_ROW)
    n = 200_000
    x = post.sample(n, _gen(5))
    assert x.shape == (n, 2) and x.dtype == F64
    cov = post.covariance()
    se = (torch.diagonal(cov) / n).sqrt()
    assert bool(((x.mean(0) - post.mean()).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0, atol=0.02)
    # reproducible with the same generator
    assert torch.equal(post.sample(10, _gen(6)), post.sample(10, _gen(6)))
    # the whole law, not just two moments: a 1-D projection u·x is the mixture
    # Σ_k π_k′ N(u·μ_k′, uᵀΣ_k′u); Kolmogorov–Smirnov against its exact CDF
    u = torch.tensor([0.8, -0.6], dtype=F64)
    loc = (post.means @ u).numpy()
    scale = (u @ post.covariances @ u).sqrt().numpy()
    projected = (x[:20_000] @ u).numpy()

    def mixture_cdf(weights):
        return lambda v: sum(wk * norm.cdf(v, lk, sk)
                             for wk, lk, sk in zip(weights.numpy(), loc, scale, strict=True))

    assert kstest(projected, mixture_cdf(post.weights)).pvalue > 1e-3
    # ... which notices wrong weights (the prior's, say)
    assert kstest(projected, mixture_cdf(_prior_2d().weights)).pvalue < 1e-6


def test_large_sigma_returns_the_prior():
    prior = _prior_2d()
    post = gmm_posterior(prior, A_ROW, Y_ROW, 1e7)
    torch.testing.assert_close(post.weights, prior.weights, rtol=0, atol=1e-10)
    torch.testing.assert_close(post.means, prior.means, rtol=0, atol=1e-10)
    torch.testing.assert_close(post.covariances, torch.diag_embed(prior.stds**2), rtol=0,
                               atol=1e-10)


def test_batched_observations_equal_one_by_one():
    prior = _prior_2d()
    a = torch.tensor([[1.0, -0.5], [0.2, 1.0], [0.0, 1.0]], dtype=F64)
    ys = torch.randn(4, 3, generator=_gen(8), dtype=F64)
    post = gmm_posterior(prior, a, ys, 0.4)
    assert post.batch_shape == (4,) and post.mean().shape == (4, 2)
    x = post.sample(7, _gen(9))
    assert x.shape == (7, 4, 2) and post.log_prob(x).shape == (7, 4)
    for i in range(4):
        one = gmm_posterior(prior, a, ys[i], 0.4)
        assert one.batch_shape == ()
        for field in ("means", "covariances", "log_weights", "log_evidence"):
            torch.testing.assert_close(getattr(post, field)[i], getattr(one, field), rtol=0,
                                       atol=1e-13)
            torch.testing.assert_close(getattr(post[i], field), getattr(one, field), rtol=0,
                                       atol=1e-13)
        torch.testing.assert_close(post.log_prob(x)[:, i], one.log_prob(x[:, i]), rtol=0,
                                   atol=1e-12)


# ---------------------------------------------------------------------------------------------
# noiseless observations


def test_noiseless_full_row_rank_is_the_small_noise_limit():
    prior = GaussianMixture(torch.randn(3, 4, generator=_gen(10), dtype=F64),
                            0.5 + torch.rand(3, 4, generator=_gen(11), dtype=F64))
    a = random_projection(2, 4, _gen(12)).A
    y = torch.tensor([0.7, -0.3], dtype=F64)
    exact = gmm_posterior(prior, a, y, 0.0)
    near = gmm_posterior(prior, a, y, 1e-6)
    torch.testing.assert_close(exact.means, near.means, rtol=0, atol=1e-8)
    torch.testing.assert_close(exact.covariances, near.covariances, rtol=0, atol=1e-8)
    torch.testing.assert_close(exact.log_weights, near.log_weights, rtol=0, atol=1e-8)
    x = exact.sample(1000, _gen(13))
    torch.testing.assert_close(x @ a.T, y.expand(1000, 2), rtol=0, atol=1e-10)  # on A x = y
    assert torch.linalg.matrix_rank(exact.covariances[0]) == 2                   # d − m
    with pytest.raises(InputError, match="singular"):
        exact.log_prob(x)


def test_noiseless_mask_is_reduced_to_its_observed_rows():
    prior = GaussianMixture(torch.randn(2, 6, generator=_gen(14), dtype=F64),
                            0.5 + torch.rand(2, 6, generator=_gen(15), dtype=F64))
    op = box_mask((1, 2, 3), (0, 1, 2, 1))                   # hides entries 1 and 4
    x = prior.sample(1, _gen(16)).reshape(1, 1, 2, 3)
    y = observe(op, x, 0.0)[0]
    post = gmm_posterior(prior, op, y, 0.0)
    near = gmm_posterior(prior, op, y, 1e-6)
    torch.testing.assert_close(post.means, near.means, rtol=0, atol=1e-8)
    torch.testing.assert_close(post.log_weights, near.log_weights, rtol=0, atol=1e-8)
    draws = post.sample(500, _gen(17))
    seen = op.mask.reshape(-1).bool()
    torch.testing.assert_close(draws[:, seen], x.reshape(1, -1)[:, seen].expand(500, -1),
                               rtol=0, atol=1e-10)
    # a hidden entry that is not zero cannot come from a noiseless masked observation
    bad = y.clone()
    bad[0, 0, 1] = 0.5
    with pytest.raises(InputError, match="range of A"):
        gmm_posterior(prior, op, bad, 0.0)
    # with noise the same observation is fine (the hidden rows carry no information)
    noisy = gmm_posterior(prior, op, bad, 0.1)
    torch.testing.assert_close(noisy.means, gmm_posterior(prior, op, y, 0.1).means)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma_y": -0.1}, "sigma_y"),
    ({"sigma_y": float("nan")}, "sigma_y"),
    ({"y": torch.tensor([float("nan")], dtype=F64)}, "NaN"),
    ({"y": torch.tensor([0.1, 0.2], dtype=F64)}, r"\[1\] or \[B, 1\]"),
    ({"y": torch.zeros(2, 1, 1, dtype=F64)}, r"\[1\] or \[B, 1\]"),
    ({"y": [0.1]}, "tensor"),
    ({"A": torch.ones(1, 3, dtype=F64)}, "d = 3 columns but the prior has dimension 2"),
    ({"A": torch.ones(2, dtype=F64)}, r"\[m, d\]"),
    ({"A": torch.tensor([[float("inf"), 0.0]])}, "Inf"),
    ({"A": "A"}, "LinearOperator"),
    ({"prior": "gmm"}, "GaussianMixture"),
    ({"A": torch.zeros(1, 2, dtype=F64), "sigma_y": 0.0}, "A is zero"),
    ({"A": Mask(torch.ones(2)), "y": torch.zeros(3, dtype=F64)}, r"\[2\] or \[B, 2\]"),
])
def test_bad_input_is_one_clear_error(kwargs, match):
    args = {"prior": _prior_2d(), "A": A_ROW, "y": Y_ROW, "sigma_y": SIGMA_ROW, **kwargs}
    with pytest.raises(InputError, match=match) as err:
        gmm_posterior(**args)
    assert "\n" not in str(err.value)


def test_mixture_checks_its_shapes_and_arguments():
    with pytest.raises(InputError, match="covariances must have shape"):
        FullCovarianceMixture(torch.zeros(2, 3), torch.zeros(2, 3, 3, 1), torch.zeros(2))
    with pytest.raises(InputError, match="log_weights must have shape"):
        FullCovarianceMixture(torch.zeros(2, 3), torch.zeros(2, 3, 3), torch.zeros(3))
    post = gmm_posterior(_prior_2d(), A_ROW, Y_ROW, SIGMA_ROW)
    with pytest.raises(InputError, match=r"\[\.\.\., 2\]"):
        post.log_prob(torch.zeros(4, 3))
    with pytest.raises(InputError, match="n must be"):
        post.sample(0)
    with pytest.raises(InputError, match="cannot be indexed"):
        post[0]
