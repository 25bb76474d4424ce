"""Statistics and reproducibility of the built-in 2-D toys."""

import math

import numpy as np
import ot
import pytest
import torch
from sklearn.datasets import make_moons

from monge.data import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    gaussian,
    moons,
    rings,
    spirals,
    swissroll,
)
from monge.errors import InputError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_names():
    assert set(TOY_DATASETS) == {"gaussian", "8gaussians", "moons", "checkerboard", "spirals",
                                 "rings", "swissroll"}


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_shape_range_and_reproducibility(name):
    sampler = TOY_DATASETS[name]
    x = sampler(4000, gen(3))
    assert x.shape == (4000, 2) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert x.abs().max() < 6.5
    assert torch.equal(x, sampler(4000, gen(3)))
    assert not torch.allclose(x, sampler(4000, gen(4)))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_toy_rejects_bad_n(bad):
    with pytest.raises(InputError, match="n:"):
        moons(bad, gen(0))


def test_gaussian_moments_and_shape():
    n = 40000
    x = gaussian(n, gen(0)).double()
    assert x.mean(0).abs().max() < 4 / math.sqrt(n)
    cov = torch.cov(x.T)
    assert (cov - torch.eye(2, dtype=cov.dtype)).abs().max() < 0.04
    img = gaussian(16, gen(0), shape=(1, 8, 8))
    assert img.shape == (16, 1, 8, 8)
    with pytest.raises(InputError, match="shape"):
        gaussian(4, gen(0), shape=(0, 2))


def test_eight_gaussians_clusters():
    n = 16000
    x = eight_gaussians(n, gen(1)).double()
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    centres = 4 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    nearest = torch.cdist(x, centres).argmin(1)
    counts = torch.bincount(nearest, minlength=8).double()
    assert (counts / n - 1 / 8).abs().max() < 0.015
    # E|c + 0.5 z| = 4 + 0.5**2 / (2 * 4) + O(1/r^3) for |c| = 4
    radius = x.norm(dim=1)
    assert abs(radius.mean().item() - 4.03) < 0.03
    residual = x - centres[nearest]
    assert abs(residual.std().item() - 0.5) < 0.02


def test_moons_matches_sklearn_in_wasserstein():
    ours = moons(1000, gen(0)).double().numpy()
    ref, _ = make_moons(1000, noise=0.05, random_state=0)
    ref = 3.0 * (ref - np.array([0.5, 0.25]))
    w2_sq = ot.emd2([], [], ot.dist(ours, ref))
    assert w2_sq < 0.15
    # the check can fail: a wider noise level is clearly further away
    wide, _ = make_moons(1000, noise=0.25, random_state=0)
    assert ot.emd2([], [], ot.dist(ours, 3.0 * (wide - np.array([0.5, 0.25])))) > 2 * w2_sq


def test_checkerboard_squares():
    n = 16000
    x = checkerboard(n, gen(2))
    assert x.min() >= -4 and x.max() <= 4
    cells = torch.floor((x + 4) / 2).long().clamp(0, 3)
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double()
    filled = counts[counts > 0]
    assert len(filled) == 8
    assert (filled / n - 1 / 8).abs().max() < 0.015


def test_rings_radii():
    n = 16000
    r = rings(n, gen(5)).norm(dim=1)
    ring = r.round().long()
    counts = torch.bincount(ring, minlength=5)[1:5].double()
    assert (counts / n - 0.25).abs().max() < 0.02
    assert abs((r - ring).std().item() - 0.08) < 0.01


def test_spirals_radius_distribution():
    x = spirals(20000, gen(6)).double()
    # radius 4 * sqrt(u): mean 8/3, and the two arms make the set symmetric under x -> -x
    assert abs(x.norm(dim=1).mean().item() - 8 / 3) < 0.05
    assert x.mean(0).abs().max() < 0.08


def test_swissroll_unit_scale():
    std = swissroll(20000, gen(7)).std(0)
    assert ((std > 0.8) & (std < 1.25)).all()
