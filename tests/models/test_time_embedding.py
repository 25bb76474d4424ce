"""SinusoidalTimeEmbedding and the time/label input helpers."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.models import SinusoidalTimeEmbedding, as_batch_time, class_indices


def test_closed_form_values():
    emb = SinusoidalTimeEmbedding(6, max_period=100.0, scale=1000.0)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    out = emb(t)
    assert out.shape == (3, 6) and out.dtype == torch.float64
    frequencies = [100.0 ** (-k / 3) for k in range(3)]
    for i, ti in enumerate(t.tolist()):
        expected = [math.cos(1000 * ti * f) for f in frequencies]
        expected += [math.sin(1000 * ti * f) for f in frequencies]
        assert torch.allclose(out[i], torch.tensor(expected, dtype=torch.float64), atol=1e-9)


def test_odd_dim_shapes_and_resolution():
    emb = SinusoidalTimeEmbedding(7)
    out = emb(torch.rand(5))
    assert out.shape == (5, 7) and out.dtype == torch.float32
    assert torch.equal(out[:, -1], torch.zeros(5))
    assert emb(torch.rand(4, 1)).shape == (4, 7)
    # the 1000x scale resolves nearby times in [0, 1]
    a, b = SinusoidalTimeEmbedding(64)(torch.tensor([0.500, 0.501]))
    assert (a - b).norm() > 0.5
    with pytest.raises(InputError, match="dim"):
        SinusoidalTimeEmbedding(1)


def test_as_batch_time_broadcasts():
    device = torch.device("cpu")
    for t in (0.3, torch.tensor(0.3), torch.tensor([0.3]), torch.full((4, 1), 0.3)):
        out = as_batch_time(t, 4, device)
        assert out.shape == (4,) and torch.allclose(out, torch.full((4,), 0.3))
    with pytest.raises(InputError, match="t:"):
        as_batch_time(torch.rand(3), 4, device)
    with pytest.raises(InputError, match="NaN"):
        as_batch_time(torch.tensor([0.1, float("nan")]), 2, device)


def test_class_indices():
    device = torch.device("cpu")
    assert class_indices(None, 3, None, device) is None
    assert class_indices(None, 3, 10, device).tolist() == [10, 10, 10]
    assert class_indices(torch.tensor([0, 9, 10]), 3, 10, device).tolist() == [0, 9, 10]
    with pytest.raises(InputError, match="unconditional"):
        class_indices(torch.tensor([0, 1, 2]), 3, None, device)
    with pytest.raises(InputError, match="0..10"):
        class_indices(torch.tensor([0, 11, 2]), 3, 10, device)
    with pytest.raises(InputError, match="integer"):
        class_indices(torch.tensor([0.0, 1.0, 2.0]), 3, 10, device)
    with pytest.raises(InputError, match="shape"):
        class_indices(torch.tensor([0, 1]), 3, 10, device)
