"""Flow-map students beyond MeanFlow: shortcut models (self-consistency is exact on the true
flow map; a short training beats one teacher Euler step), the endpoint student that starts as
the teacher's Euler jump, and LCM (guided teacher with per-sample w, w fed to the student)."""

import copy

import pytest
import torch

from monge.distill import (
    ConsistencyDistillationLoss,
    EndpointNetwork,
    FlowMap,
    ShortcutLoss,
    TwoTimeMLP,
    consistency_sample,
    flow_map_sample,
)
from monge.errors import InputError
from monge.guidance import ClassifierFreeGuidance
from monge.metrics import wasserstein2
from monge.models import MLP
from monge.paths import GaussianMixture, LinearPath, ModelWrapper
from monge.solvers import Euler, integrate
from monge.train import Trainer, TrainerConfig

PATH = LinearPath()
M, SD = 1.5, 0.4                       # 1-D N(0, 1) → N(M, SD²)


def _scale(t):
    return torch.sqrt(t ** 2 * SD ** 2 + (1 - t) ** 2)


def _u_exact(x, t, s, **_):
    z = (x - t[:, None] * M) / _scale(t)[:, None]
    xs = s[:, None] * M + _scale(s)[:, None] * z
    d = (s - t)[:, None]
    safe = torch.where(d.abs() > 0, d, torch.ones_like(d))
    v = M + ((t * SD ** 2 - (1 - t)) / _scale(t) ** 2)[:, None] * (x - t[:, None] * M)
    return torch.where(d.abs() > 0, (xs - x) / safe, v)


def _v_exact(x, t, **_):
    return _u_exact(x, t, t)


def test_shortcut_self_consistency_is_exact_on_the_true_flow_map():
    """Two jumps of d compose to one jump of 2d for the exact flow map, so the exact average
    velocity is a fixed point of the shortcut objective; a perturbed one is not."""
    loss = ShortcutLoss(teacher=_v_exact, max_steps=16, consistency_fraction=0.5)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(512, 1, dtype=torch.float64, generator=g)
    x1 = M + SD * torch.randn(512, 1, dtype=torch.float64, generator=g)
    out = loss(_u_exact, x0, x1, None, g)
    assert float(out.loss) < 1e-20
    wrong = lambda x, t, s: _u_exact(x, t, s) * (1 + (s - t)[:, None])  # noqa: E731
    assert float(loss(wrong, x0, x1, None, torch.Generator().manual_seed(0)).loss) > 1e-3
    assert loss.teacher_nfe == 2


def test_shortcut_student_beats_one_teacher_euler_step():
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), stds=torch.tensor(
        [0.3, 0.3]))
    teacher = ModelWrapper(gmm.field(PATH), PATH, "velocity")

    def batches(n, g):
        return (torch.randn(n, 2, generator=g), gmm.sample(n, generator=g, dtype=torch.float32),
                None)
    torch.manual_seed(0)
    net = TwoTimeMLP((2,), hidden=64, depth=3, time_dim=32)
    cfg = TrainerConfig(steps=800, batch_size=256, lr=2e-3, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(net, ShortcutLoss(teacher=lambda x, t: teacher(x.double(), t.double())
                                        .float(), max_steps=64), batches, cfg, progress=False)
    trainer.fit()
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    ref = gmm.sample(2000, generator=torch.Generator().manual_seed(6), dtype=torch.float32)
    with torch.no_grad():
        fm = FlowMap(trainer.sampling_model.eval())
        w1 = wasserstein2(flow_map_sample(fm, z, 1).x, ref)
        w4 = wasserstein2(flow_map_sample(fm, z, 4).x, ref)
        euler = wasserstein2(integrate(teacher, z.double(), Euler(), steps=1).x.float(), ref)
    assert w1 < 0.5 * euler and w4 < 0.5 * euler, (w1, w4, euler)


def _conditional_gmm():
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    stds = torch.tensor([0.3, 0.3], dtype=torch.float64)
    mix = GaussianMixture(means=means, stds=stds).field(PATH)
    comps = [GaussianMixture(means=means[k:k + 1], stds=stds[k:k + 1]).field(PATH)
             for k in range(2)]

    def net(x, t, y=None):
        xd, td = x.double(), t.double()
        out = mix(xd, td)
        if y is not None:
            for k in range(2):
                out = torch.where((y == k)[:, None], comps[k](xd, td), out)
        return out.to(x.dtype)
    net.null_class = 2
    return net, means, stds


def test_guided_teacher_with_per_sample_weights_equals_each_weight_alone():
    net, _, _ = _conditional_gmm()
    cfg = ClassifierFreeGuidance(ModelWrapper(net, PATH, "velocity"), weight=1.0)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    w = torch.tensor([1.0, 2.0, 3.0, 0.0, 1.5, 4.0], dtype=torch.float64)
    batched = cfg(x, t, y=y, w=w)
    for i in range(6):
        one = ClassifierFreeGuidance(ModelWrapper(net, PATH, "velocity"), weight=float(w[i]))
        torch.testing.assert_close(batched[i:i + 1], one(x[i:i + 1], t[i:i + 1], y=y[i:i + 1]))
    with pytest.raises(InputError, match="shape"):
        cfg(x, t, y=y, w=w[:3])


def test_endpoint_student_starts_as_the_teachers_euler_jump_and_lcm_learns_the_classes():
    net, means, stds = _conditional_gmm()
    teacher = ClassifierFreeGuidance(ModelWrapper(net, PATH, "velocity"), weight=1.0)
    torch.manual_seed(0)
    base = MLP(2, hidden=128, depth=3, time_dim=32, num_classes=2)
    student = EndpointNetwork(MLP(2, hidden=128, depth=3, time_dim=32, num_classes=2,
                                  guidance_embedding=True))
    student.network.load_state_dict(base.state_dict(), strict=False)
    x = torch.randn(8, 2)
    t = torch.rand(8)
    y = torch.randint(0, 2, (8,))
    jump = FlowMap(student)(x, t, torch.ones(8), y=y, w=torch.full((8,), 3.0))
    torch.testing.assert_close(jump, x + (1 - t)[:, None] * base(x, t, y=y))

    def batches(n, g):
        lab = torch.randint(0, 2, (n,), generator=g)
        x1 = means.float()[lab] + stds.float()[lab, None] * torch.randn(n, 2, generator=g)
        return torch.randn(n, 2, generator=g), x1, lab
    loss = ConsistencyDistillationLoss(teacher, solver="euler", intervals=20, ema=None,
                                       guidance=(1.0, 3.0))
    cfg = TrainerConfig(steps=800, batch_size=256, lr=2e-3, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(copy.deepcopy(student), loss, batches, cfg, progress=False)
    trainer.fit()
    assert loss.teacher_nfe == 2 * 800              # guided Euler: one batched 2B call
    fm = FlowMap(trainer.sampling_model.eval())
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(3))
    for k in range(2):
        lab = torch.full((1000,), k)
        ref = means.float()[k] + stds.float()[k] * torch.randn(
            1000, 2, generator=torch.Generator().manual_seed(4 + k))
        with torch.no_grad():
            one = consistency_sample(fm, z, 1, cond={"y": lab, "w": torch.ones(1000)}).x
            euler = integrate(ModelWrapper(net, PATH, "velocity"), z.double(), Euler(), steps=1,
                              cond={"y": lab}).x.float()
        assert wasserstein2(one, ref) < 0.5 * wasserstein2(euler, ref)


def test_bad_student_options():
    with pytest.raises(InputError, match="power of two"):
        ShortcutLoss(max_steps=12)
    with pytest.raises(InputError, match="consistency_fraction"):
        ShortcutLoss(consistency_fraction=1.0)
    with pytest.raises(InputError, match="guidance"):
        ConsistencyDistillationLoss(_v_exact, solver="euler", guidance=(3.0, 1.0))
    with pytest.raises(InputError, match="plain field"):
        ConsistencyDistillationLoss(_v_exact, solver="ddim")


def test_consistency_training_without_a_teacher_beats_one_euler_step():
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), stds=torch.tensor(
        [0.3, 0.3]))
    teacher = ModelWrapper(gmm.field(PATH), PATH, "velocity")

    def batches(n, g):
        return (torch.randn(n, 2, generator=g), gmm.sample(n, generator=g, dtype=torch.float32),
                None)
    loss = ConsistencyDistillationLoss(None, intervals=12, ema=0.9)
    torch.manual_seed(0)
    cfg = TrainerConfig(steps=600, batch_size=256, lr=2e-3, warmup_steps=10, ema_decay=0.0,
                        checkpoint_every=10**6, log_every=10**6, seed=0)
    trainer = Trainer(TwoTimeMLP((2,), hidden=64, depth=3, time_dim=32), loss, batches, cfg,
                      progress=False)
    trainer.fit()
    assert loss.teacher_nfe == 0
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    ref = gmm.sample(2000, generator=torch.Generator().manual_seed(6), dtype=torch.float32)
    with torch.no_grad():
        fm = FlowMap(trainer.sampling_model.eval())
        w1 = wasserstein2(consistency_sample(fm, z, 1).x, ref)
        euler = wasserstein2(integrate(teacher, z.double(), Euler(), steps=1).x.float(), ref)
    assert w1 < 0.6 * euler, (w1, euler)


def test_meanflow_passes_labels_and_the_guidance_embedding_resolves_w():
    from monge.distill import MeanFlowLoss
    from monge.models.embeddings import GuidanceEmbedding

    seen = {}

    def teacher(x, t, y=None):
        seen["teacher"] = y
        return torch.zeros_like(x)
    net = TwoTimeMLP((2,), hidden=16, depth=1, time_dim=8, num_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    loss = MeanFlowLoss(teacher=teacher)(net, torch.randn(4, 2), torch.randn(4, 2), y, None)
    assert torch.equal(seen["teacher"], y) and loss.loss.requires_grad
    emb = GuidanceEmbedding(32)
    a, b = (emb.sinusoid(torch.full((1,), w) / 10.0) for w in (1.0, 3.0))
    assert float((a - b).norm() / a.norm()) > 0.5        # w = 1 and w = 3 look different
