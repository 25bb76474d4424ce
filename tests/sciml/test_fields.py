"""Coordinate networks and CQ-NIR quantisation."""

import math

import pytest
import torch

from monge.errors import ConfigError, InputError
from monge.sciml.fields import (
    CoordinateMLP,
    QuantizedField,
    Siren,
    count_parameters,
    positional_encoding,
    quantize_coords,
)


def test_quantize_snaps_to_cell_centres():
    x = torch.rand(1000, 2, generator=torch.Generator().manual_seed(0)) * 5 - 2.5
    q = quantize_coords(x, -2.5, 2.5, 101)
    cell = 5.0 / 100
    assert (q - x).abs().max() <= cell * 0.5 + 1e-5
    # idempotent: snapped points stay put, and all values lie on the centre lattice
    assert torch.allclose(quantize_coords(q, -2.5, 2.5, 101), q)
    k = (q + 2.5) / cell - 0.5
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert not q.requires_grad


def test_quantized_field_sees_only_snapped_points():
    net = CoordinateMLP(2, 1, 16, 2, generator=0)
    qf = QuantizedField(net, -1.0, 1.0, 9)
    a = torch.tensor([[0.01, 0.02]])
    b = torch.tensor([[0.03, 0.05]])           # same cell
    assert torch.equal(qf(a), qf(b))


def test_quantize_bad_input():
    with pytest.raises(InputError, match="resolution"):
        quantize_coords(torch.zeros(2, 2), 0, 1, 1)
    with pytest.raises(InputError, match="hi > lo"):
        quantize_coords(torch.zeros(2, 2), 1, 0, 10)


def test_siren_initialisation_and_shapes():
    net = Siren(2, 3, width=32, depth=3, generator=0)
    first = net.net[0].linear.weight
    assert first.abs().max() <= 1 / 2
    later = net.net[1].linear.weight
    assert later.abs().max() <= math.sqrt(6 / 32) / 30 + 1e-7
    assert net(torch.zeros(5, 2)).shape == (5, 3)
    assert count_parameters(net) == (2 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 3 + 3)
    # seeded initialisation is reproducible and leaves the global RNG alone
    state = torch.random.get_rng_state()
    a, b = Siren(1, 1, 8, 2, generator=5), Siren(1, 1, 8, 2, generator=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_positional_encoding_and_errors():
    x = torch.rand(4, 2)
    assert positional_encoding(x, 3).shape == (4, 2 * 7)
    with pytest.raises(InputError, match="coordinates"):
        Siren(2)(torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="activation"):
        CoordinateMLP(2, activation="sine")
