"""Methods: every registered path builds its network wrapper, objective, model wrapper and
initial state from the path's own declarations."""

import math
import warnings

import pytest
import torch

from monge.data import load_dataset
from monge.experiments.config import parse_config
from monge.experiments.methods import build_method
from monge.paths import PATHS, ModelWrapper
from monge.paths.pfgmpp import EDMPreconditioner
from monge.train.interpolant_loss import InterpolantLoss
from monge.train.losses import FlowMatchingLoss
from monge.train.pfgmpp_loss import PFGMPPLoss

LOSS_OF = {"flow-matching": FlowMatchingLoss, "interpolant": InterpolantLoss,
           "pfgmpp": PFGMPPLoss}


@pytest.mark.parametrize("name", PATHS.names())
def test_every_path_builds_its_parts(name):
    cfg = parse_config({"source": "gaussian", "target": "moons", "path": {"name": name},
                        "train": {"prediction": "x1" if name == "kinetic-optimal"
                                  else "velocity"}})
    target = load_dataset("moons", n_train=512, n_test=64, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no path advice for these predictions
        method = build_method(cfg, target)
    net = torch.nn.Linear(3, 2)
    module = method.wrap_model(net)
    assert isinstance(module, EDMPreconditioner) == (name == "pfgmpp")
    loss = method.loss(cfg, coupling=None, num_classes=None)
    assert isinstance(loss, LOSS_OF[method.path.loss_family])
    model = method.velocity_field(module)
    assert isinstance(model, ModelWrapper) and model.path is method.path
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    x = method.initial_state(x0, seed=1)
    if name == "pfgmpp":  # a fresh heavy-tailed prior draw at σ_max, not a rescaled x0
        assert not torch.allclose(x / 80.0, x0)
        assert 20.0 < float(x.std()) < 200.0
    else:
        torch.testing.assert_close(x, method.path.initial_state(x0))
        assert math.isclose(float(x.std() / x0.std()),
                            getattr(method.path, "source_scale", 1.0), rel_tol=1e-6)
    assert method.data_scale > 0


def test_kinetic_optimal_with_velocity_prediction_warns():
    cfg = parse_config({"source": "gaussian", "path": {"name": "kinetic-optimal"}})
    target = load_dataset("moons", n_train=512, n_test=64, seed=0)
    with pytest.warns(UserWarning, match="train.prediction: x1"):
        build_method(cfg, target)


def test_train_local_reg_wraps_the_objective():
    from monge.couplings import IndependentCoupling
    from monge.train.local_reg import LocallyRegularizedLoss

    cfg = parse_config({"source": "gaussian", "target": "moons",
                        "train": {"local_reg": 0.5, "local_reg_start": "ode"}})
    method = build_method(cfg, load_dataset("moons", n_train=512, n_test=64, seed=0))
    loss = method.loss(cfg, IndependentCoupling(), None)
    assert isinstance(loss, LocallyRegularizedLoss) and loss.weight == 0.5 and loss.start == "ode"
    assert isinstance(method.loss(parse_config({}), IndependentCoupling(), None),
                      FlowMatchingLoss)
