"""Few-step generation: the JVP interface, the MeanFlow identity at the exact average velocity,
MeanFlow and reflow/one-step students beating the teacher at 1 NFE, resumable pair generation."""

import math

import pytest
import torch
from torch import nn

from monge.distill import (
    FlowMap,
    MeanFlowLoss,
    OneStepLoss,
    TwoTimeMLP,
    flow_map_sample,
    generate_pairs,
    jvp,
)
from monge.errors import InputError
from monge.metrics import straightness, wasserstein2
from monge.models import MLP
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.solvers import Euler, integrate
from monge.train import Trainer, TrainerConfig
from monge.train.losses import FlowMatchingLoss

PATH = LinearPath()
GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64),
                      stds=torch.tensor([0.3, 0.3], dtype=torch.float64))
TEACHER = ModelWrapper(GMM.field(PATH), PATH, "velocity")


def test_jvp_forward_and_finite_differences_agree_with_the_analytic_derivative():
    f = lambda x, t: torch.sin(x) * t[:, None] ** 2  # noqa: E731
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    vx, vt = torch.randn_like(x), torch.randn_like(t)
    exact = torch.cos(x) * vx * t[:, None] ** 2 + torch.sin(x) * 2 * t[:, None] * vt[:, None]
    for method in ("forward", "fd", "auto"):
        out, d = jvp(f, (x, t), (vx, vt), method=method)
        torch.testing.assert_close(out, f(x, t))
        torch.testing.assert_close(d, exact, atol=1e-8, rtol=1e-6)

    class NoForward(torch.autograd.Function):  # no jvp rule: forward mode must fall back
        @staticmethod
        def forward(ctx, x):
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            return g

    _, d = jvp(lambda x: NoForward.apply(x), (x,), (vx,))
    torch.testing.assert_close(d, 3 * x ** 2 * vx, atol=1e-6, rtol=1e-6)
    with pytest.raises(InputError, match="tangent shape"):
        jvp(f, (x, t), (vx, vx))


def test_meanflow_identity_holds_at_the_exact_average_velocity():
    """1-D N(0,1) → N(m, s²) on the linear path: X(x, t→r) is affine in x; its average
    velocity is a fixed point of the MeanFlow target v + (r − t)·du/dt."""
    m, sd = 1.5, 0.4

    def scale(t):
        return torch.sqrt(t ** 2 * sd ** 2 + (1 - t) ** 2)

    def u_exact(x, t, r):
        xt = (x - t[:, None] * m) / scale(t)[:, None]
        xr = r[:, None] * m + scale(r)[:, None] * xt
        return (xr - x) / (r - t)[:, None]

    def v_exact(x, t):
        d = (t * sd ** 2 - (1 - t)) / scale(t) ** 2
        return m + d[:, None] * (x - t[:, None] * m)

    x = torch.randn(64, 1, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.5
    r = t + 0.1 + 0.4 * torch.rand(64, dtype=torch.float64)
    target = MeanFlowLoss(jvp_method="forward").target(u_exact, x, t, r, v_exact(x, t))
    torch.testing.assert_close(target, u_exact(x, t, r), atol=1e-10, rtol=1e-9)
    # and a wrong average velocity is not a fixed point
    wrong = lambda x, t, r: 1.1 * u_exact(x, t, r)  # noqa: E731
    bad = MeanFlowLoss().target(wrong, x, t, r, v_exact(x, t))
    assert float((bad - wrong(x, t, r)).abs().max()) > 1e-2


def _source(n, g):
    return torch.randn(n, 2, generator=g, dtype=torch.float32)


def _fit(model, loss, sampler, steps, lr=2e-3):
    cfg = TrainerConfig(steps=steps, batch_size=256, lr=lr, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(model, loss, sampler, cfg, progress=False)
    trainer.fit()
    return trainer.sampling_model.eval()


def _data_sampler(n, g):
    return _source(n, g), GMM.sample(n, generator=g, dtype=torch.float32), None


def test_meanflow_one_step_beats_one_euler_step_of_the_teacher():
    torch.manual_seed(0)
    net = _fit(TwoTimeMLP((2,), hidden=64, depth=3, time_dim=32),
               MeanFlowLoss(teacher=lambda x, t: TEACHER(x.double(), t.double()).float()),
               _data_sampler, steps=600)
    x0 = _source(2000, torch.Generator().manual_seed(5))
    ref = GMM.sample(2000, generator=torch.Generator().manual_seed(6), dtype=torch.float32)
    with torch.no_grad():
        fm = FlowMap(net)
        one = flow_map_sample(fm, x0, steps=1)
        two = flow_map_sample(fm, x0, steps=2)
        euler = integrate(TEACHER, x0.double(), Euler(), steps=1).x.float()
    assert one.nfe == 1 and two.nfe == 2 and fm.nfe == 3
    w_one, w_euler = wasserstein2(one.x, ref), wasserstein2(euler, ref)
    assert w_one < 0.5 * w_euler, (w_one, w_euler)


def test_reflow_straightens_and_one_step_distillation(tmp_path):
    pairs = generate_pairs(TEACHER, lambda n, g: _source(n, g).double(), 3000, chunk=1000,
                           folder=tmp_path / "pairs", rtol=1e-6, atol=1e-6)
    again = generate_pairs(TEACHER, lambda n, g: _source(n, g).double(), 3000, chunk=1000,
                           folder=tmp_path / "pairs")
    assert torch.equal(pairs.x1, again.x1) and pairs.teacher_nfe == again.teacher_nfe > 0
    (tmp_path / "pairs" / "pairs-00001.safetensors").unlink()   # an interrupted generation
    resumed = generate_pairs(TEACHER, lambda n, g: _source(n, g).double(), 3000, chunk=1000,
                             folder=tmp_path / "pairs", rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(resumed.x1, pairs.x1)
    # the ODE coupling transports at lower cost than the independent one (Theorem 3.5)
    indep = GMM.sample(3000, generator=torch.Generator().manual_seed(9))
    cost = lambda a, b: float(((a - b) ** 2).sum(1).mean())  # noqa: E731
    assert cost(pairs.x0, pairs.x1) < cost(pairs.x0, indep)

    x0f, x1f = pairs.x0.float(), pairs.x1.float()
    sampler = type(pairs)(x0f, x1f, None, pairs.teacher_nfe).sampler()
    torch.manual_seed(0)
    rf = _fit(MLP(2, hidden=128, depth=3, time_dim=32), FlowMatchingLoss(PATH), sampler, 700)
    student = ModelWrapper(rf, PATH, "velocity")
    z = _source(1500, torch.Generator().manual_seed(3))
    ref = GMM.sample(1500, generator=torch.Generator().manual_seed(4), dtype=torch.float32)
    with torch.no_grad():
        t_traj = integrate(TEACHER, z.double(), Euler(), steps=50, return_trajectory=True)
        s_traj = integrate(student, z, Euler(), steps=50, return_trajectory=True)
        w_teacher1 = wasserstein2(integrate(TEACHER, z.double(), Euler(), steps=1).x.float(),
                                  ref)
        w_rf1 = wasserstein2(integrate(student, z, Euler(), steps=1).x, ref)
    s_teacher = straightness(t_traj.trajectory.float(), t_traj.times)
    s_student = straightness(s_traj.trajectory, s_traj.times)
    assert s_student < 0.5 * s_teacher, (s_student, s_teacher)
    assert w_rf1 < 0.5 * w_teacher1, (w_rf1, w_teacher1)
    # one-step distillation from the reflowed weights: one Euler step of the student
    one = MLP(2, hidden=128, depth=3, time_dim=32)
    one.load_state_dict(rf.state_dict())
    one = _fit(one, OneStepLoss(), sampler, 600, lr=1e-3)
    with torch.no_grad():
        w_one = wasserstein2(integrate(ModelWrapper(one, PATH, "velocity"), z, Euler(),
                                       steps=1).x, ref)
    assert w_one < w_rf1 * 1.05 and w_one < 0.3 * w_teacher1, (w_one, w_rf1, w_teacher1)
    assert math.isfinite(w_one)


def test_bad_input():
    with pytest.raises(InputError, match="positive integer"):
        generate_pairs(TEACHER, _source, 0)
    with pytest.raises(InputError, match="flow_fraction"):
        MeanFlowLoss(flow_fraction=2.0)
    with pytest.raises(InputError, match="steps"):
        flow_map_sample(FlowMap(nn.Identity()), torch.zeros(2, 2), steps=0)


def test_consistency_distillation_one_and_two_steps():
    from monge.distill import ConsistencyDistillationLoss, consistency_sample

    loss = ConsistencyDistillationLoss(lambda x, t: TEACHER(x.double(), t.double()).float(),
                                       solver="heun", intervals=18, ema=0.9)
    torch.manual_seed(0)
    net = _fit(TwoTimeMLP((2,), hidden=64, depth=3, time_dim=32), loss, _data_sampler,
               steps=800)
    assert loss.teacher_nfe == 2 * 800        # Heun: 2 NFE per step (one batched call each)
    x0 = _source(2000, torch.Generator().manual_seed(5))
    ref = GMM.sample(2000, generator=torch.Generator().manual_seed(6), dtype=torch.float32)
    with torch.no_grad():
        fm = FlowMap(net)
        one = consistency_sample(fm, x0, steps=1)
        two = consistency_sample(fm, x0, steps=2, generator=torch.Generator().manual_seed(1))
        euler = integrate(TEACHER, x0.double(), Euler(), steps=1).x.float()
        # boundary condition: the map is the identity at t = 1
        ones = torch.ones(5)
        torch.testing.assert_close(fm(x0[:5], ones, ones), x0[:5])
    w_euler = wasserstein2(euler, ref)
    assert wasserstein2(one.x, ref) < 0.5 * w_euler
    assert wasserstein2(two.x, ref) < 0.5 * w_euler and two.nfe == 2
    with pytest.raises(InputError, match="one-step ODE"):
        ConsistencyDistillationLoss(TEACHER, solver="dopri5")
