"""EnergyMLP: the field is −∇_x E (checked by finite differences), its Jacobian is symmetric,
it works under torch.no_grad, trains with the flow-matching loss, and refuses bad input."""

import pytest
import torch

from monge.errors import ConfigError, InputError
from monge.models.energy import EnergyMLP
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.train import Trainer, TrainerConfig
from monge.train.losses import FlowMatchingLoss

torch.set_num_threads(1)
F64 = torch.float64


def test_field_is_minus_the_energy_gradient_with_a_symmetric_jacobian():
    torch.manual_seed(0)
    net = EnergyMLP(3, hidden=32, depth=2, time_dim=16).double()
    x, t = torch.randn(5, 3, dtype=F64), torch.rand(5, dtype=F64)
    v = net(x, t)
    assert v.shape == x.shape and v.dtype == F64 and v.requires_grad
    h = 1e-6
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = h
        fd = (net.energy(x + e, t) - net.energy(x - e, t)) / (2 * h)
        torch.testing.assert_close(-fd, v[:, i].detach(), atol=1e-8, rtol=1e-6)
    jac = torch.autograd.functional.jacobian(lambda z: net(z[None], t[:1])[0], x[0])
    torch.testing.assert_close(jac, jac.T, atol=1e-12, rtol=0)
    assert jac.abs().max() > 1e-4


def test_no_grad_sampling_matches_and_inference_mode_is_refused():
    torch.manual_seed(1)
    net = EnergyMLP(2, hidden=16, depth=1)
    x, t = torch.randn(4, 2), torch.rand(4)
    with_grad = net(x, t)
    with torch.no_grad():
        no_grad = net(x, t)
    assert not no_grad.requires_grad
    torch.testing.assert_close(no_grad, with_grad.detach())
    with torch.inference_mode(), pytest.raises(InputError, match="no_grad"):
        net(x, t)


def test_images_and_class_conditioning():
    torch.manual_seed(2)
    net = EnergyMLP(64, hidden=16, depth=1, num_classes=3)
    x, t = torch.randn(6, 1, 8, 8), torch.rand(6)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    out = net(x, t, y=y)
    assert out.shape == x.shape and net.null_class == 3
    assert not torch.allclose(net(x, t, y=torch.zeros(6, dtype=torch.long)), out)
    torch.testing.assert_close(net(x, t), net(x, t, y=torch.full((6,), 3)))
    assert net.config == {"dim": 64, "hidden": 16, "depth": 1, "time_dim": 64,
                          "num_classes": 3, "activation": "silu"}
    clone = EnergyMLP(**net.config)
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone(x, t, y=y), out)


def test_trains_with_the_flow_matching_loss():
    """A few hundred steps fit the analytic marginal velocity (itself a gradient field)."""
    path = LinearPath()
    gmm = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=F64),
                          torch.tensor([0.4, 0.4], dtype=F64))

    def batch(n, g):
        return (torch.randn(n, 2, generator=g),
                gmm.sample(n, generator=g, dtype=torch.float32), None)

    g = torch.Generator().manual_seed(1)
    t = 0.9 * torch.rand(2000, generator=g, dtype=F64)
    xt = path.sample_xt(torch.randn(2000, 2, generator=g, dtype=F64), gmm.sample(2000, g), t)
    exact = gmm.velocity(xt, t, path)

    def relative_error(net):
        with torch.no_grad():
            v = ModelWrapper(net, path, "velocity")(xt.float(), t.float()).double()
        return float((v - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean())

    torch.manual_seed(0)
    net = EnergyMLP(2, hidden=64, depth=2, time_dim=16)
    before = relative_error(net)
    cfg = TrainerConfig(steps=500, batch_size=256, lr=3e-3, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    Trainer(net, FlowMatchingLoss(path), batch, cfg, progress=False).fit()
    after = relative_error(net)
    assert after < 0.06 and after < 0.1 * before, (before, after)


def test_bad_config_and_input():
    for kwargs, match in (({"dim": 0}, "dim"), ({"dim": 2, "hidden": 1.5}, "hidden"),
                          ({"dim": 2, "num_classes": 0}, "num_classes"),
                          ({"dim": 2, "activation": "relu"}, "relu"),
                          ({"dim": 2, "activation": "swish"}, "activation")):
        with pytest.raises(ConfigError, match=match):
            EnergyMLP(**kwargs)
    net = EnergyMLP(2, hidden=8, depth=1)
    with pytest.raises(InputError, match="values per sample"):
        net(torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(InputError, match="shape"):
        net(torch.zeros(3), torch.zeros(3))
    with pytest.raises(InputError, match="unconditional"):
        net(torch.zeros(3, 2), torch.zeros(3), y=torch.zeros(3, dtype=torch.long))
