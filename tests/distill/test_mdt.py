"""MDT-dist (monge.distill.mdt): the VM target's fixed point at the exact average velocity
(continuous exactly, discrete to O(δ)), stop-gradient of the VM target, the VD gradient
2·r·∂u1/∂θ, a short distillation beating the teacher's one Euler step, and bad arguments."""

import pytest
import torch

from monge.distill import FlowMap, TwoTimeMLP, consistency_sample
from monge.distill.mdt import MDTLoss
from monge.errors import InputError
from monge.metrics import wasserstein2
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.solvers import Euler, integrate
from monge.train import Trainer, TrainerConfig

torch.set_num_threads(1)

PATH = LinearPath()
GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64),
                      stds=torch.tensor([0.3, 0.3], dtype=torch.float64))
TEACHER = ModelWrapper(GMM.field(PATH), PATH, "velocity")

# 1-D N(0, 1) → N(M, SD²) on the linear path: the teacher's ODE map is affine in x.
M, SD = 1.5, 0.4


def _scale(t):
    return torch.sqrt(t ** 2 * SD ** 2 + (1 - t) ** 2)


def v_exact(x, t):
    d = (t * SD ** 2 - (1 - t)) / _scale(t) ** 2
    return M + d[:, None] * (x - t[:, None] * M)


def u_exact(x, t, s):
    """The exact average velocity of the jump from t to the data end (s = 1)."""
    x1 = M + SD * (x - t[:, None] * M) / _scale(t)[:, None]
    return (x1 - x) / (1 - t)[:, None]


def _points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    x = t[:, None] * M + _scale(t)[:, None] * torch.randn(n, 1, generator=g,
                                                          dtype=torch.float64)
    return x, t


def test_vm_target_is_the_exact_average_velocity_at_its_fixed_point():
    x, t = _points()
    u = u_exact(x, t, torch.ones_like(t))
    v = v_exact(x, t)
    cont = MDTLoss(v_exact, vm="continuous", d_norm=None, jvp_method="forward")
    torch.testing.assert_close(cont.target(u_exact, x, t, v), u, atol=1e-10, rtol=1e-9)
    # a wrong average velocity is not a fixed point
    wrong = lambda x, t, s: 1.1 * u_exact(x, t, s)  # noqa: E731
    assert float((cont.target(wrong, x, t, v) - wrong(x, t, None)).abs().max()) > 1e-2
    # the normalised D biases the target (the paper's "VM is biased")
    normed = MDTLoss(v_exact, vm="continuous", d_norm=0.1, jvp_method="forward")
    assert float((normed.target(u_exact, x, t, v) - u).abs().max()) > 1e-2
    # discrete: first order in δ (halving δ halves the error)
    errs = []
    for delta in (0.02, 0.01, 0.005):
        disc = MDTLoss(v_exact, vm="discrete", d_norm=None, delta=delta)
        errs.append(float((disc.target(u_exact, x, t, v) - u).abs().max()))
    assert errs[1] < 0.05, errs
    for big, small in zip(errs[:-1], errs[1:], strict=True):
        assert 1.7 < big / small < 2.3, errs


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return TwoTimeMLP((2,), hidden=16, depth=2, time_dim=8).double()


def _explicit_target(net, x, t, v, kind, delta=0.01, c=0.1):
    """The VM target written out independently (reverse-mode JVP for the continuous D)."""
    one = torch.ones_like(t)
    if kind == "continuous":
        _, d = torch.autograd.functional.jvp(lambda xx, tt: net(xx, tt, one), (x, t),
                                             (v, one))
    else:
        d = (net(x + delta * v, t + delta, one) - net(x, t, one)) / delta
    d = d / (d.norm(dim=1, keepdim=True) + c)
    return (v + (1 - t)[:, None] * d).detach()


def _grads(net, loss):
    net.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_vm_gradient_flows_only_through_the_prediction(kind):
    net = _tiny_net()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(32, 2, generator=g, dtype=torch.float64)
    x1 = GMM.sample(32, generator=g)
    t = 0.95 * torch.rand(32, generator=g, dtype=torch.float64)
    loss = MDTLoss(TEACHER, vm=kind)
    got = _grads(net, loss.vm_loss(net, x0, x1, t).mean())
    xt = (1 - t)[:, None] * x0 + t[:, None] * x1
    tgt = _explicit_target(net, xt, t, TEACHER(xt, t), kind)
    want = _grads(net, ((net(xt, t, torch.ones_like(t)) - tgt) ** 2).mean())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-6)
    assert any(float(a.abs().max()) > 1e-6 for a in got)
    assert loss.teacher_nfe == 1


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_vd_value_and_gradient(kind):
    """L_VD = ‖r + u1 − sg(u1)‖²: value ‖r‖², gradient 2·r·∂u1/∂θ (r from the re-noised
    one-step samples, with no gradient)."""
    net = _tiny_net(1)
    g = torch.Generator().manual_seed(2)
    noise_fake = torch.randn(32, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = 0.95 * torch.rand(32, generator=g, dtype=torch.float64)
    loss = MDTLoss(TEACHER, vm=kind, vm_weight=0.0, vd_weight=1.0)
    per = loss.vd_loss(net, noise_fake, noise, t)
    got = _grads(net, per.mean())

    zero, one = torch.zeros_like(t), torch.ones_like(t)
    u1 = net(noise_fake, zero, one)
    xt = (1 - t)[:, None] * noise + t[:, None] * (noise_fake + u1.detach())
    r = (net(xt, t, one) - _explicit_target(net, xt, t, TEACHER(xt, t), kind)).detach()
    torch.testing.assert_close(per, (r ** 2).mean(1), atol=1e-10, rtol=1e-8)
    want = _grads(net, (2 * r * u1).mean(1).mean())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-6)
    assert loss.teacher_nfe == 1


def test_forward_combines_the_terms_and_counts_teacher_calls():
    net = _tiny_net(2)
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(16, 2, generator=g, dtype=torch.float64), GMM.sample(16, generator=g)
    seen = []

    def teacher(x, t, **cond):
        seen.append(sorted(cond))
        return TEACHER(x, t)

    def student(x, t, s, y=None):
        assert y is not None
        return net(x, t, s)

    loss = MDTLoss(teacher, vm="discrete", vd_weight=0.5, vm_weight=2.0)
    out = loss(student, x0, x1, torch.zeros(16, dtype=torch.long), torch.Generator())
    assert loss.teacher_nfe == 2 and seen == [["y"], ["y"]]
    torch.testing.assert_close(float(out.loss.detach()), 2.0 * loss.terms["vm"]
                               + 0.5 * loss.terms["vd"], rtol=1e-6, atol=1e-12)
    assert out.per_example.shape == (16,) and not out.per_example.requires_grad
    # discrete times stay at most 1 − δ, so the step τ + δ stays on [0, 1]
    t = loss.sample_time(10_000, torch.Generator().manual_seed(0), x1)
    assert float(t.min()) >= 0 and float(t.max()) <= 1 - loss.delta
    assert float(t.median()) < 0.5      # monge time: the paper's mean +1 near noise is −1 here


def _source(n, g):
    return torch.randn(n, 2, generator=g, dtype=torch.float32)


def test_short_distillation_beats_one_euler_step_of_the_teacher():
    teacher = lambda x, t: TEACHER(x.double(), t.double()).float()  # noqa: E731
    loss = MDTLoss(teacher, vm="discrete", vd_weight=1.0)
    torch.manual_seed(0)
    net = TwoTimeMLP((2,), hidden=64, depth=3, time_dim=16)
    cfg = TrainerConfig(steps=600, batch_size=256, lr=2e-3, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(net, loss, lambda n, g: (_source(n, g), GMM.sample(
        n, generator=g, dtype=torch.float32), None), cfg, progress=False)
    trainer.fit()
    assert loss.teacher_nfe == 2 * 600
    x0 = _source(2000, torch.Generator().manual_seed(5))
    ref = GMM.sample(2000, generator=torch.Generator().manual_seed(6), dtype=torch.float32)
    with torch.no_grad():
        fm = FlowMap(trainer.sampling_model.eval())
        one = consistency_sample(fm, x0, steps=1).x
        two = consistency_sample(fm, x0, steps=2, generator=torch.Generator().manual_seed(1)).x
        euler = integrate(TEACHER, x0.double(), Euler(), steps=1).x.float()
    w_euler = wasserstein2(euler, ref)
    w_one, w_two = wasserstein2(one, ref), wasserstein2(two, ref)
    assert w_one < 0.7 * w_euler and w_two < 0.7 * w_euler, (w_one, w_two, w_euler)


def test_bad_arguments():
    with pytest.raises(InputError, match="vm"):
        MDTLoss(TEACHER, vm="exact")
    with pytest.raises(InputError, match="no term"):
        MDTLoss(TEACHER, vm=None)
    with pytest.raises(InputError, match="no term"):
        MDTLoss(TEACHER, vm="discrete", vm_weight=0.0)
    with pytest.raises(InputError, match="vd_weight"):
        MDTLoss(TEACHER, vd_weight=-1.0)
    with pytest.raises(InputError, match="delta"):
        MDTLoss(TEACHER, delta=0.0)
    with pytest.raises(InputError, match="d_norm"):
        MDTLoss(TEACHER, d_norm=0.0)
    with pytest.raises(InputError, match="jvp_method"):
        MDTLoss(TEACHER, jvp_method="reverse")
    with pytest.raises(InputError, match="time_std"):
        MDTLoss(TEACHER, time_std=0.0)
    with pytest.raises(InputError, match="teacher"):
        MDTLoss(None)
    loss = MDTLoss(TEACHER, vd_weight=1.0, source=lambda n, g: torch.zeros(n, 3))
    with pytest.raises(InputError, match="source"):
        loss(_tiny_net(), torch.zeros(4, 2, dtype=torch.float64),
             torch.zeros(4, 2, dtype=torch.float64), None, None)
    with pytest.raises(InputError, match="shapes differ"):
        loss(_tiny_net(), torch.zeros(4, 2), torch.zeros(3, 2), None, None)
