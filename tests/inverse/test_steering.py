"""Classifier steering: both rules move a 50/50 mixture to the target class, step size 0 is
plain Euler, DPS spends one VJP per steered step and FlowChef none."""

import pytest
import torch

from monge.errors import InputError
from monge.inverse.steering import classifier_steer
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.solvers import Euler, integrate

PATH = LinearPath()
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
GMM = GaussianMixture(means=MEANS, stds=torch.tensor([0.5, 0.5], dtype=torch.float64))
MODEL = ModelWrapper(GMM.field(PATH), PATH, "velocity")


def _logits(x):        # the exact class posterior of the clean mixture (equal weights)
    return -((x[:, None, :] - MEANS.to(x)) ** 2).sum(-1) / (2 * 0.25)


@pytest.mark.parametrize("method", ["flowchef", "dps"])
def test_steering_moves_the_mixture_to_the_class(method):
    x0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = integrate(MODEL, x0, Euler(), steps=40).x
    share = lambda x: float((_logits(x).argmax(1) == 1).double().mean())  # noqa: E731
    assert 0.35 < share(plain) < 0.65
    res = classifier_steer(MODEL, _logits, 1, x0, method=method, steps=40, step_size=0.02)
    assert share(res.x) > 0.95, share(res.x)
    assert res.nfe == 40 and res.gradient_calls == (36 if method == "dps" else 0)
    # the steered samples are still samples of the mixture's component, not pushed past it
    assert abs(float(res.x[:, 0].mean()) - 2.0) < 0.5
    off = classifier_steer(MODEL, _logits, 1, x0, method=method, steps=40, step_size=0.0)
    torch.testing.assert_close(off.x, plain, atol=1e-12, rtol=0)


def test_bad_input():
    x0 = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(InputError, match="method"):
        classifier_steer(MODEL, _logits, 1, x0, method="magic")
    with pytest.raises(InputError, match="NaN"):
        classifier_steer(MODEL, _logits, 1, x0 * float("nan"))
