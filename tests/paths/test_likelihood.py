"""Likelihood by the change of variables: closed forms, exact vs Hutchinson, ∇ₓ log p by finite
differences, and bad input."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.paths import GaussianMixture, LinearPath, ModelWrapper, VPPath, log_likelihood

MEAN = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
STD = 0.5
GAUSS = GaussianMixture(means=MEAN, stds=torch.tensor([STD], dtype=torch.float64))
X = torch.tensor([[0.8, -0.2], [1.6, -1.1], [0.1, 0.4]], dtype=torch.float64)


def _closed_form(x):
    return (-0.5 * ((x - MEAN) / STD).pow(2).sum(1) - 2 * math.log(STD)
            - math.log(2 * math.pi))


@pytest.mark.parametrize("path", [LinearPath(), VPPath("cosine")], ids=["linear", "vp-cosine"])
def test_gaussian_to_gaussian_closed_form(path):
    model = ModelWrapper(GAUSS.field(path), path, "velocity")
    res = log_likelihood(model, X, solver="dopri5", rtol=1e-9, atol=1e-9)
    assert res.converged
    torch.testing.assert_close(res.log_prob, _closed_form(X), atol=1e-3, rtol=0)
    torch.testing.assert_close(res.bits_per_dim, -res.log_prob / (2 * math.log(2)))


def test_hutchinson_agrees_with_exact_within_three_standard_errors():
    gmm = GaussianMixture(means=torch.tensor([[-1.5, 0.0], [1.5, 0.5]], dtype=torch.float64),
                          stds=torch.tensor([0.4, 0.7], dtype=torch.float64))
    model = ModelWrapper(gmm.field(LinearPath()), LinearPath(), "velocity")
    exact = log_likelihood(model, X, solver="rk4", steps=40)
    hutch = log_likelihood(model, X, divergence="hutchinson", probes=64, solver="rk4", steps=40,
                           generator=1)
    assert hutch.std_error is not None and bool((hutch.std_error > 0).all())
    assert bool(((hutch.log_prob - exact.log_prob).abs() < 3 * hutch.std_error).all())
    # and the exact divergence reproduces the mixture's own density
    torch.testing.assert_close(exact.log_prob, gmm.log_prob(X, 1.0, LinearPath()), atol=2e-3,
                               rtol=0)


def test_gradient_of_log_p_matches_finite_differences_and_the_score():
    path = LinearPath()
    model = ModelWrapper(GAUSS.field(path), path, "velocity")
    x = X.clone().requires_grad_(True)
    res = log_likelihood(model, x, solver="rk4", steps=20, differentiable=True)
    (grad,) = torch.autograd.grad(res.log_prob.sum(), x)
    h = 1e-5
    fd = torch.zeros_like(X)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            e = torch.zeros_like(X)
            e[i, j] = h
            up = log_likelihood(model, X + e, solver="rk4", steps=20).log_prob[i]
            dn = log_likelihood(model, X - e, solver="rk4", steps=20).log_prob[i]
            fd[i, j] = (up - dn) / (2 * h)
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, -(X - MEAN) / STD**2, atol=2e-3, rtol=0)


def test_bad_input():
    model = ModelWrapper(GAUSS.field(LinearPath()), LinearPath(), "velocity")
    with pytest.raises(InputError, match="divergence"):
        log_likelihood(model, X, divergence="banana")
    with pytest.raises(InputError, match="probes"):
        log_likelihood(model, X, divergence="hutchinson", probes=0)
    with pytest.raises(InputError, match="fixed-step"):
        log_likelihood(model, X, solver="heun")
    with pytest.raises(InputError, match="NaN|finite"):
        log_likelihood(model, torch.full((2, 2), float("nan")))
