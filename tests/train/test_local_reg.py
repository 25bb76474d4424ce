"""Local regularisation (Pal, Edelman & Rackauckas 2023): R = EEst·dt of one dopri5 step is the
controller's own error norm, vanishes where dopri5 is exact, has the right gradient, and training
with it makes the learned field cheaper to integrate."""

import math

import pytest
import torch
from torch import nn

from monge.couplings import make_coupling
from monge.errors import InputError
from monge.metrics import wasserstein2
from monge.models import MLP
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.solvers import Dopri5, PIController, integrate
from monge.solvers.controllers import error_norm, scaled_error_norm
from monge.train import (
    FlowMatchingLoss,
    LocallyRegularizedLoss,
    Trainer,
    TrainerConfig,
    local_error,
    make_loss,
)

PATH = LinearPath()
TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests are many tiny ops: one thread is faster and shares the machine better."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _wavy(x, t):
    return torch.sin(3 * x) * torch.cos(2 * t)[:, None] + 0.5 * x


def test_reg_is_the_controllers_error_norm_times_the_first_adaptive_step():
    torch.manual_seed(0)
    x = torch.randn(32, 3, dtype=torch.float64)
    t = 0.25
    out = local_error(_wavy, x, t, rtol=TOL, atol=TOL)
    # the same step by hand: first stage, the controller's heuristic, one dopri5 step
    ctl = PIController(rtol=TOL, atol=TOL)
    k1 = _wavy(x, torch.full((32,), t, dtype=torch.float64))
    dt, _ = ctl.initial_step(_wavy, x, t, 1.0, k1, 5, {})
    step = Dopri5().step(_wavy, x, t, t + dt, k1, {})
    assert out.dt == dt and out.nfe == 8
    ref = error_norm(step.error, x, step.x, TOL, TOL)
    assert math.isclose(float(out.eest), ref, rel_tol=1e-12)
    assert math.isclose(float(out.reg), ref * dt, rel_tol=1e-12)
    # ... and the finite formula, written out
    w = TOL + TOL * torch.maximum(x.abs(), step.x.abs())
    assert math.isclose(float(out.eest), float(((step.error / w) ** 2).mean().sqrt()),
                        rel_tol=1e-12)
    # it is the first step integrate takes from (x, t) at these tolerances
    res = integrate(_wavy, x, Dopri5(), t0=t, t1=1.0, controller=ctl, return_trajectory=True)
    assert float(res.times[1]) == pytest.approx(t + dt, abs=1e-15)
    torch.testing.assert_close(res.trajectory[1], out.x_next, rtol=0, atol=0)
    # a differentiable twin of error_norm also on tuple states
    pair = (step.error, 2 * step.error)
    assert math.isclose(float(scaled_error_norm(pair, (x, x), (step.x, step.x), TOL, TOL)),
                        error_norm(pair, (x, x), (step.x, step.x), TOL, TOL), rel_tol=1e-12)


@pytest.mark.parametrize("name, field, exact", [
    ("constant", lambda x, t: torch.ones_like(x) * 2.0, True),
    ("linear in t", lambda x, t: (3 * t - 1)[:, None] * torch.ones_like(x), True),
    ("cubic in t", lambda x, t: (t ** 3)[:, None] * torch.ones_like(x), True),
    ("quartic in t", lambda x, t: (t ** 4)[:, None] * torch.ones_like(x), False),
    ("oscillatory", lambda x, t: 10 * torch.cos(40 * t)[:, None] * x, False),
])
def test_reg_vanishes_where_dopri5_is_exact_and_not_elsewhere(name, field, exact):
    """The 5(4) difference is zero for velocities polynomial in t of degree ≤ 3 (both weights
    integrate them exactly), not for degree 4 or an oscillation."""
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = local_error(field, x, 0.3, rtol=TOL, atol=TOL)
    assert out.dt > 0
    if exact:
        assert float(out.reg) < 1e-12, (name, float(out.reg))
    else:
        assert float(out.reg) > 1e-8, (name, float(out.reg))
    if name == "oscillatory":
        assert float(out.eest) > 1e-2


def test_gradient_of_reg_matches_finite_differences_on_a_tiny_model():
    """With the step fixed (dt is a constant for autograd) and rtol = 0 (weights independent of
    the state), R(θ) is smooth and its gradient must match a central difference."""
    torch.manual_seed(0)
    net = MLP(2, hidden=8, depth=1, time_dim=4).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    t, dt = 0.2, 0.3

    def reg() -> torch.Tensor:
        return local_error(net, x, t, rtol=0.0, atol=1e-3, dt=dt).reg

    params = list(net.parameters())
    grads = torch.autograd.grad(reg(), params)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1.0, -1.0):
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * eps * d)
            values.append(float(reg()))
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic) > 1e-3
    assert math.isclose(analytic, numeric, rel_tol=1e-5), (analytic, numeric)


class _LinearField(nn.Module):
    """v = a·x (+ records the conditioning it is called with)."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.seen: list[tuple[str, ...]] = []

    def forward(self, x, t, **cond):
        self.seen.append(tuple(sorted(cond)))
        return self.a * x


def test_ode_start_is_the_models_flow_and_counts_its_nfe():
    model = _LinearField(0.7)
    loss = LocallyRegularizedLoss(FlowMatchingLoss(PATH), 0.5, PATH, start="ode")
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x1 = torch.randn(64, 2, dtype=torch.float64)
    out = loss(model, x0, x1, None, g)
    base = FlowMatchingLoss(PATH)(model, x0, x1, None, torch.Generator().manual_seed(3))
    step = loss.last
    # exact ODE state x0·exp(a·t_r), then one regularised step from it
    ref = local_error(model, x0 * math.exp(0.7 * step.t), step.t, rtol=TOL, atol=TOL)
    assert step.reg == pytest.approx(float(ref.reg.detach()), rel=1e-3)
    assert float(out.loss.detach()) == pytest.approx(float(base.loss.detach()) + 0.5 * step.reg,
                                                   rel=1e-9)
    solve = integrate(model, x0, Dopri5(), t1=step.t, controller=PIController(TOL, TOL))
    assert step.nfe == solve.nfe + 8 and loss.extra_nfe == step.nfe
    out.loss.backward()
    assert model.a.grad is not None and math.isfinite(float(model.a.grad))
    loss(model, x0, x1, None, g)
    assert loss.extra_nfe == step.nfe + loss.last.nfe
    # a looser solve to t_r: cheaper, and still (nearly) on the flow
    loose = LocallyRegularizedLoss(FlowMatchingLoss(PATH), 0.5, PATH, start="ode",
                                   start_tol=1e-2)
    loose(model, x0, x1, None, torch.Generator().manual_seed(3))
    assert loose.last.t == step.t and loose.last.nfe < step.nfe
    assert loose.last.reg == pytest.approx(step.reg, rel=0.05)


def test_interpolant_start_labels_and_reg_batch_size():
    model = _LinearField(-0.3)
    fm = FlowMatchingLoss(PATH, num_classes=3)
    loss = LocallyRegularizedLoss(fm, 0.1, PATH, reg_batch_size=5)
    x0, x1 = torch.randn(12, 2, dtype=torch.float64), torch.randn(12, 2, dtype=torch.float64)
    y1 = torch.randint(3, (12,))
    g = torch.Generator().manual_seed(0)
    loss(model, x0, x1, y1, g)
    t_r = loss.last.t
    assert model.seen == [("y",)] * 9  # the base loss's call, then 8 on the regulariser
    xt = PATH.sample_xt(x0[:5], x1[:5], torch.full((5,), t_r, dtype=torch.float64))
    ref = float(local_error(model, xt, t_r).reg.detach())
    assert loss.last.reg == pytest.approx(ref, rel=1e-12)
    # unconditional base loss: labels never reach the model
    model.seen.clear()
    LocallyRegularizedLoss(FlowMatchingLoss(PATH), 0.1, PATH)(model, x0, x1, y1, g)
    assert set(model.seen) == {()}


def test_make_loss_wraps_only_for_positive_local_reg_and_keeps_the_coupling():
    assert isinstance(make_loss(PATH), FlowMatchingLoss)
    assert isinstance(make_loss(PATH, local_reg=0), FlowMatchingLoss)
    assert isinstance(make_loss(PATH, local_reg=None), FlowMatchingLoss)
    ot = make_coupling("ot")
    loss = make_loss(PATH, local_reg=0.1, local_reg_start="ode", coupling=ot)
    assert isinstance(loss, LocallyRegularizedLoss) and isinstance(loss.base, FlowMatchingLoss)
    assert loss.start == "ode" and loss.weight == 0.1 and loss.coupling is ot
    # the trainer swaps the coupling for prefetched pairs and restores it
    tgt = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]),
                          stds=torch.tensor([0.3, 0.3]))

    def batches(n, g):
        return torch.randn(n, 2, generator=g), tgt.sample(n, generator=g, dtype=torch.float32), None

    cfg = TrainerConfig(steps=2, batch_size=16, warmup_steps=0, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6)
    trainer = Trainer(MLP(2, hidden=8, depth=1, time_dim=4), loss, batches, cfg,
                      progress=False)
    assert trainer.prefetch
    trainer.fit()
    assert loss.coupling is ot and loss.base.coupling is ot and loss.extra_nfe > 16


@pytest.mark.parametrize("kwargs, match", [
    ({"weight": 0.0}, "local_reg"), ({"weight": -1.0}, "local_reg"),
    ({"weight": float("nan")}, "local_reg"), ({"weight": True}, "local_reg"),
    ({"start": "biased"}, "local_reg_start"), ({"rtol": -1.0}, "rtol"),
    ({"rtol": 0.0, "atol": 0.0}, "rtol, atol"), ({"reg_batch_size": 0}, "reg_batch_size"),
    ({"prediction": "banana"}, "prediction"), ({"start_tol": 0.0}, "start_tol"),
])
def test_bad_arguments_raise_input_error(kwargs, match):
    args = {"weight": 0.1, **kwargs}
    with pytest.raises(InputError, match=match):
        LocallyRegularizedLoss(FlowMatchingLoss(PATH), path=PATH, **args)


def test_bad_make_loss_and_local_error_arguments():
    with pytest.raises(InputError, match="local_reg:"):
        make_loss(PATH, local_reg=-0.5)
    with pytest.raises(InputError, match="local_reg_start"):
        make_loss(PATH, local_reg=0.1, local_reg_start="sideways")
    x = torch.randn(4, 2)
    with pytest.raises(InputError, match="t:"):
        local_error(_wavy, x, 1.0)
    with pytest.raises(InputError, match="dt:"):
        local_error(_wavy, x, 0.5, dt=0.6)


GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]),
                      stds=torch.tensor([0.2, 0.2]))


def _train(local_reg: float, steps: int = 200) -> ModelWrapper:
    def batches(n, g):
        return torch.randn(n, 2, generator=g), GMM.sample(n, generator=g,
                                                          dtype=torch.float32), None

    torch.manual_seed(0)
    cfg = TrainerConfig(steps=steps, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(MLP(2, hidden=32, depth=2, time_dim=8),
                      make_loss(PATH, local_reg=local_reg), batches, cfg, progress=False)
    trainer.fit()
    return ModelWrapper(trainer.sampling_model.eval(), PATH, "velocity")


def test_training_with_local_reg_makes_the_field_cheaper_to_integrate():
    """Same seed, data and steps: λ = 1 must lower the mean R at fixed times and the dopri5
    NFE at the regulariser's tolerances, without a worse fit (a zero field has R = 0)."""
    plain, reg = _train(0.0), _train(1.0)
    x0 = torch.randn(512, 2, generator=torch.Generator().manual_seed(9))
    x1 = GMM.sample(512, generator=torch.Generator().manual_seed(10), dtype=torch.float32)
    ref = GMM.sample(512, generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    results = {}
    for name, field in (("plain", plain), ("reg", reg)):
        with torch.no_grad():
            r = [float(local_error(field, PATH.sample_xt(x0, x1, torch.full((512,), t)), t).reg)
                 for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
            res = integrate(field, x0, Dopri5(), controller=PIController(TOL, TOL))
        results[name] = (sum(r) / len(r), res.nfe, wasserstein2(res.x, ref))
    (r_plain, nfe_plain, w_plain), (r_reg, nfe_reg, w_reg) = results["plain"], results["reg"]
    assert r_reg < 0.5 * r_plain, results
    assert nfe_reg < 0.8 * nfe_plain, results
    assert w_reg < 1.1 * w_plain + 0.05, results
