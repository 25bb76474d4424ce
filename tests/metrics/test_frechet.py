"""Fréchet distance between Gaussians: closed forms, feature clouds, bad input."""

import numpy as np
import pytest
import torch

from monge.errors import InputError
from monge.metrics import feature_frechet_distance, frechet_distance


def test_frechet_distance_diagonal_closed_form():
    # W2^2 between N(m1, diag(s1^2)) and N(m2, diag(s2^2)) = |m1 - m2|^2 + |s1 - s2|^2.
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.2, 2.0, size=6), rng.uniform(0.2, 2.0, size=6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    got = frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(torch.from_numpy(m1), torch.from_numpy(np.diag(s1**2)),
                            torch.from_numpy(m1), torch.from_numpy(np.diag(s1**2))) < 1e-10


def test_frechet_distance_full_covariances_match_eigen_formula():
    # tr (C1 C2)^{1/2} = sum sqrt(eig(C1^{1/2} C2 C1^{1/2})), computed with symmetric eigh.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    w, v = np.linalg.eigh(c1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ c2 @ root1), 0, None)).sum()
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_bad_input():
    with pytest.raises(InputError, match="expected shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(InputError, match="^cov1: .*NaN"):
        frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


def test_feature_frechet_distance_of_gaussian_clouds_matches_closed_form():
    # Two large Gaussian clouds: the fitted-Gaussian distance tends to |m1 - m2|^2 + |s1 - s2|^2.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(200_000, 3, generator=g, dtype=torch.float64) + 1.0
    assert feature_frechet_distance(x, y) == pytest.approx(3 * 1.0 + 3 * 1.0, rel=1e-2)
    with pytest.raises(InputError, match="^features_y: expected features"):
        feature_frechet_distance(x, y[:1])
