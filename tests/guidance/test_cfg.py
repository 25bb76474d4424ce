"""Classifier-free guidance: the weight convention, linearity across prediction spaces, honest
NFE, class purity rising with w on an exact class-conditional mixture, and bad input."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.guidance import ClassifierFreeGuidance
from monge.paths import GaussianMixture, LinearPath, ModelWrapper, VPPath
from monge.solvers import integrate, make_solver

K = 4
ANGLES = torch.arange(K, dtype=torch.float64) * 2 * math.pi / K
MEANS = 2.0 * torch.stack([ANGLES.cos(), ANGLES.sin()], 1)
FULL = GaussianMixture(means=MEANS, stds=torch.full((K,), 1.0, dtype=torch.float64))
PARTS = [GaussianMixture(means=MEANS[c:c + 1], stds=torch.tensor([1.0], dtype=torch.float64))
         for c in range(K)]


def _network(path):
    """Exact x1 prediction of class y (y = K is the null class: the whole mixture)."""
    def net(x, t, y=None):
        out = FULL.posterior_mean(x, t, path)
        for c in range(K):
            m = y == c
            if bool(m.any()):
                out[m] = PARTS[c].posterior_mean(x[m], t[m], path)
        return out
    net.null_class = K
    return net


def _model(path=None):
    path = path or VPPath("cosine")
    return ModelWrapper(_network(path), path, "x1", t_clamp=1e-3)


X = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
T = torch.full((16,), 0.4, dtype=torch.float64)
Y = torch.arange(16) % K


def test_weight_convention_and_linearity():
    base = _model()
    cond = base.predict("epsilon", X, T, y=Y)
    uncond = base.predict("epsilon", X, T, y=torch.full_like(Y, K))
    for w in (0.0, 1.0, 4.0):
        g = ClassifierFreeGuidance(base, w)
        # guided in the network's x1 space, read as ε: the same combination of ε's
        torch.testing.assert_close(g.predict("epsilon", X, T, y=Y), uncond + w * (cond - uncond))
    g = ClassifierFreeGuidance(base, 4.0)
    vc, vu = base(X, T, y=Y), base(X, T, y=torch.full_like(Y, K))
    torch.testing.assert_close(g(X, T, y=Y), vu + 4.0 * (vc - vu))


def test_nfe_counts_network_evaluations_and_interval():
    g = ClassifierFreeGuidance(_model(), 3.0, interval=(0.0, 0.5))
    res = integrate(g, X, make_solver("dpmpp-2m"), steps=10, cond={"y": Y}, t0=0.0, t1=1.0)
    inside = int((res.times[:-1] <= 0.5).sum())         # steps starting inside the interval
    assert res.nfe == 10 and g.nfe == 2 * inside + (10 - inside)
    assert ClassifierFreeGuidance(_model(), 1.0)(X, T, y=Y) is not None


def _purity(x, y):
    d = torch.cdist(x, MEANS)
    return float((d.argmin(1) == y).double().mean())


def test_class_purity_rises_with_the_weight():
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(2000) % K
    base = _model()
    purity = []
    for w in (0.0, 1.0, 2.0):
        res = integrate(ClassifierFreeGuidance(base, w), x0, make_solver("dpmpp-2m"), steps=20,
                        grid="logsnr", cond={"y": y})
        purity.append(_purity(res.x, y))
    # w = 0: unconditional (about 1/K of samples nearest their label's mean, up to overlap)
    assert purity[0] < 0.4 and purity[0] < purity[1] < purity[2]
    assert purity[2] > 0.97


def test_bad_input():
    uncond = ModelWrapper(lambda x, t: x, LinearPath(), "velocity")
    with pytest.raises(InputError, match="not class-conditional"):
        ClassifierFreeGuidance(uncond, 2.0)
    with pytest.raises(InputError, match="finite number"):
        ClassifierFreeGuidance(_model(), float("nan"))
    with pytest.raises(InputError, match="interval"):
        ClassifierFreeGuidance(_model(), 2.0, interval=(0.7, 0.2))
    with pytest.raises(InputError, match="needs class labels"):
        ClassifierFreeGuidance(_model(), 2.0)(X, T)
