"""Straightness and kinetic energy: straight lines, a circular arc (closed form), grid handling."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.metrics import kinetic_energy, straightness, transport_cost


def _line(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x0 + t.reshape(-1, *([1] * x0.ndim)) * (x1 - x0)


def _arc(radii: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Quarter circles z_t = r (cos(pi t / 2), sin(pi t / 2)), states [T+1, B, 2]."""
    angle = (math.pi / 2) * t[:, None]
    return radii[None, :, None] * torch.stack([angle.cos(), angle.sin()], -1)


def test_straight_line_has_zero_straightness_and_cost_as_energy():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 3, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(16, 3, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    z = _line(x0, x1, t)
    assert straightness(z, t) < 1e-24
    cost = float((x1 - x0).pow(2).sum((1, 2)).mean())
    assert kinetic_energy(z, t) == pytest.approx(cost, rel=1e-12)
    assert transport_cost(x0, x1) == pytest.approx(cost, rel=1e-12)


def test_straight_line_on_non_uniform_and_reversed_grids():
    g = torch.Generator().manual_seed(1)
    x0, x1 = (torch.randn(8, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.cat([torch.zeros(1), torch.rand(30, generator=g).sort().values,
                   torch.ones(1)]).to(torch.float64)
    z = _line(x0, x1, t)
    assert straightness(z, t) < 1e-20
    assert kinetic_energy(z, t) == pytest.approx(transport_cost(x0, x1), rel=1e-10)
    # Integrating backwards (t from 1 to 0) measures the same path.
    assert kinetic_energy(z.flip(0), t.flip(0)) == pytest.approx(transport_cost(x0, x1), rel=1e-10)
    assert straightness(z.flip(0), t.flip(0)) < 1e-20


def test_circular_arc_closed_form():
    # Zdot = r pi/2 (-sin, cos), Z1 - Z0 = r (-1, 1):
    # S = r^2 (2 + pi^2/4 - pi * int (sin + cos)) = r^2 (pi^2/4 - 2), KE = r^2 pi^2 / 4.
    radii = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    z = _arc(radii, t)
    mean_r2 = float(radii.pow(2).mean())
    assert straightness(z, t) == pytest.approx(mean_r2 * (math.pi**2 / 4 - 2), rel=1e-5)
    assert kinetic_energy(z, t) == pytest.approx(mean_r2 * math.pi**2 / 4, rel=1e-5)
    # Kinetic energy exceeds the straight-line cost of the same endpoints by exactly S.
    assert kinetic_energy(z, t) == pytest.approx(
        transport_cost(z[0], z[-1]) + straightness(z, t), rel=1e-10)


def test_euler_trajectory_is_measured_exactly():
    # Euler states of dz/dt = A z: the finite-difference velocity is exactly A z_k.
    a = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    z = [torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)]
    for k in range(8):
        z.append(z[-1] + (t[k + 1] - t[k]) * z[-1] @ a.T)
    states = torch.stack(z)
    expected = sum(float((t[k + 1] - t[k]) * (states[k] @ a.T).pow(2).sum(-1).mean())
                   for k in range(8))
    assert kinetic_energy(states, t) == pytest.approx(expected, rel=1e-12)


def test_bad_input():
    t = torch.linspace(0, 1, 5)
    z = torch.zeros(5, 3, 2)
    with pytest.raises(InputError, match="^times: must be strictly"):
        straightness(z, torch.tensor([0.0, 0.5, 0.4, 0.8, 1.0]))
    with pytest.raises(InputError, match=r"^times: expected shape \[5\]"):
        kinetic_energy(z, t[:4])
    with pytest.raises(InputError, match="^states: need at least 2"):
        straightness(z[:1], t[:1])
    with pytest.raises(InputError, match="^states: .*NaN"):
        kinetic_energy(torch.full((5, 3, 2), float("nan")), t)
    with pytest.raises(InputError, match="^x0 and x1"):
        transport_cost(torch.zeros(3, 2), torch.zeros(4, 2))
