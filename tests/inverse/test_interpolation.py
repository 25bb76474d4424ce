"""Slerp keeps norms and moves at constant angular speed; ISTD is 0 for an even interpolation
and positive for one that snaps."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.inverse.interpolation import istd, slerp


def test_slerp_ends_norms_and_constant_speed():
    a = torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 3.0, 0.0]], dtype=torch.float64)
    r = torch.linspace(0, 1, 7, dtype=torch.float64)
    path = slerp(a, b, r)[:, 0]
    torch.testing.assert_close(path[0], a[0])
    torch.testing.assert_close(path[-1], b[0])
    torch.testing.assert_close(path.norm(dim=1), torch.full((7,), 3.0, dtype=torch.float64))
    steps = (path[1:] - path[:-1]).norm(dim=1)
    torch.testing.assert_close(steps, torch.full((6,), 2 * 3 * math.sin(math.pi / 24),
                                                 dtype=torch.float64))


def test_istd_is_zero_for_an_even_map_and_positive_when_it_snaps():
    still = lambda x, t, **_: torch.zeros_like(x)  # noqa: E731  (the identity flow)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, 4, generator=g, dtype=torch.float64)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)   # equal norms
    even = istd(still, a, b, steps=4, points=9)
    assert even.istd < 1e-10 and even.mean_step > 0.1
    assert even.nfe == 4 + 4 + 4 and even.frames.shape == (9, 5, 4)
    snap = istd(still, a, b, steps=4, points=9, features=lambda x: torch.sign(x).flatten(1))
    assert snap.istd > 0.3
    with pytest.raises(InputError, match="points"):
        istd(still, a, b, points=2)
