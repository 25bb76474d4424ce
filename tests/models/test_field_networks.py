"""MLP and UNet: shapes, dtypes, conditioning actually wired, null class, determinism."""

import pytest
import torch

from monge.errors import ConfigError, InputError
from monge.models import MLP, UNet, build_model, count_parameters

CASES = [
    ("mlp", (2,), {"hidden": 32}),
    ("mlp", (1, 8, 8), {"hidden": 32}),
    ("unet", (1, 8, 8), {"base_channels": 16}),
    ("unet", (3, 16, 16), {"base_channels": 16, "channel_mults": (1, 2, 2)}),
]


def make(kind, shape, kwargs, num_classes=None, seed=0):
    torch.manual_seed(seed)
    return build_model(kind, shape, num_classes=num_classes, **kwargs)


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_shapes_dtypes_devices(kind, shape, kwargs):
    net = make(kind, shape, kwargs)
    x = torch.randn(5, *shape)
    out = net(x, torch.rand(5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.is_contiguous() and torch.isfinite(out).all()
    double = net.double()
    out64 = double(x.double(), torch.rand(5, dtype=torch.float64))
    assert out64.dtype == torch.float64 and out64.shape == x.shape


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_time_is_wired_and_broadcast(kind, shape, kwargs):
    net = make(kind, shape, kwargs)
    x = torch.randn(4, *shape)
    early, late = net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 0.9))
    assert (early - late).abs().max() > 1e-4
    assert torch.allclose(net(x, 0.1), early, atol=1e-6)
    assert torch.allclose(net(x, torch.full((4, 1), 0.1)), early, atol=1e-6)


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_samples_are_processed_independently(kind, shape, kwargs):
    net = make(kind, shape, kwargs)
    x, t = torch.randn(6, *shape), torch.rand(6)
    full = net(x, t)
    assert torch.allclose(full[2:3], net(x[2:3], t[2:3]), atol=1e-5)


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_class_conditioning_and_null_class(kind, shape, kwargs):
    net = make(kind, shape, kwargs, num_classes=3)
    assert net.null_class == 3
    x, t = torch.randn(4, *shape), torch.rand(4)
    a = net(x, t, torch.tensor([0, 0, 0, 0]))
    b = net(x, t, torch.tensor([1, 1, 1, 1]))
    assert (a - b).abs().max() > 1e-4
    null = net(x, t, None)
    assert torch.allclose(null, net(x, t, torch.full((4,), 3)), atol=1e-6)
    assert (null - a).abs().max() > 1e-4
    net.zero_grad()
    net(x, t, torch.tensor([0, 1, 2, 3])).square().mean().backward()
    rows = net.class_embedding.weight.grad.abs().sum(1)
    assert (rows > 0).all()
    with pytest.raises(InputError, match="y:"):
        net(x, t, torch.tensor([0, 1, 2, 4]))
    unconditional = make(kind, shape, kwargs)
    with pytest.raises(InputError, match="unconditional"):
        unconditional(x, t, torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_seeded_construction_is_deterministic(kind, shape, kwargs):
    x, t = torch.randn(3, *shape), torch.rand(3)
    first, second = make(kind, shape, kwargs, seed=7), make(kind, shape, kwargs, seed=7)
    assert torch.equal(first(x, t), second(x, t))
    assert not torch.equal(first(x, t), make(kind, shape, kwargs, seed=8)(x, t))


def test_every_parameter_gets_a_gradient():
    for net, x in ((MLP(4, hidden=16, num_classes=2), torch.randn(3, 4)),
                   (UNet(1, base_channels=8, num_classes=2), torch.randn(3, 1, 8, 8))):
        net(x, torch.rand(3), torch.tensor([0, 1, 2])).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_input_errors():
    mlp = MLP(2, hidden=8)
    with pytest.raises(InputError, match="2 values per sample"):
        mlp(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(InputError, match="t:"):
        mlp(torch.randn(4, 2), torch.rand(3))
    unet = UNet(1, base_channels=8, channel_mults=(1, 2, 2))
    with pytest.raises(InputError, match="divisible by 4"):
        unet(torch.randn(2, 1, 6, 6), torch.rand(2))
    with pytest.raises(InputError, match=r"\[B, 1, H, W\]"):
        unet(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ConfigError, match="groups"):
        UNet(1, base_channels=12, groups=8)
    with pytest.raises(ConfigError, match="activation"):
        MLP(2, activation="swish2")


def test_factory_errors_and_parameter_count():
    with pytest.raises(ConfigError, match="unknown 'transformer'"):
        build_model("transformer", (2,))
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        build_model("unet", (2,))
    with pytest.raises(ConfigError, match="divisible"):
        build_model("unet", (1, 6, 6), channel_mults=(1, 2, 2))
    with pytest.raises(ConfigError, match="unknown option"):
        build_model("mlp", (2,), widht=3)
    net = MLP(2, hidden=4, depth=1, time_dim=2)
    # time MLP 2*2+2 + 2*2+2; input layer (2+2)*4+4; output 4*2+2
    assert count_parameters(net) == 12 + 20 + 10
    net.net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 42 - 16
    assert count_parameters(net, trainable_only=False) == 42


@pytest.mark.parametrize(("kind", "shape", "kwargs"), CASES)
def test_safetensors_round_trip(tmp_path, kind, shape, kwargs):
    from safetensors.torch import load_file, save_file

    net = make(kind, shape, kwargs, num_classes=2)
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    copy = make(kind, shape, kwargs, num_classes=2, seed=99)
    copy.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x, t, y = torch.randn(3, *shape), torch.rand(3), torch.tensor([0, 1, 2])
    assert torch.equal(net(x, t, y), copy(x, t, y))
