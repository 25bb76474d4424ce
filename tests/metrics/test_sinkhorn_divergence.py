"""monge.metrics.sinkhorn_divergence: flattening, closed-form checks, differentiability."""

import pytest
import torch

from monge.errors import InputError
from monge.metrics import sinkhorn_divergence


def test_translation_of_a_cloud_gives_squared_shift():
    # for a pure translation y = x + t, S_eps = |t|^2 at every eps (debiasing removes the blur)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    for eps in (0.3, 1.0):
        assert float(sinkhorn_divergence(x, x + t, eps, tol=1e-11)) == pytest.approx(
            float(t @ t), rel=1e-7)


def test_images_are_flattened_and_gradient_flows():
    x = torch.rand(12, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(10, 4, dtype=torch.float64)
    s = sinkhorn_divergence(x, y, 0.1)
    s.backward()
    assert s.ndim == 0 and float(s.detach()) > 0 and x.grad.shape == x.shape
    with pytest.raises(InputError, match="sample dimensions differ"):
        sinkhorn_divergence(x, torch.rand(10, 3), 0.1)
