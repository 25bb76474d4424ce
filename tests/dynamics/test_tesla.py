"""Trajectory matching: constant-memory exact gradient vs full unroll, memory, experts."""

import pytest
import torch

from monge.dynamics.tesla import (
    DistillConfig,
    MLPSpec,
    distill,
    evaluate_synthetic,
    train_experts,
    trajectory_matching_grad,
)
from monge.errors import InputError

torch.set_num_threads(1)


def _problem(n_steps=8, seed=0):
    spec = MLPSpec((64, 32, 10))
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(20, 64, generator=g, dtype=torch.float64)
    Y = torch.randn(20, 10, generator=g, dtype=torch.float64)
    th0 = spec.init(g)
    th1 = th0 + 0.05 * torch.randn(th0.shape, generator=g, dtype=torch.float64)
    batches = [torch.randperm(20, generator=g)[:10] for _ in range(n_steps)]
    return spec, X, Y, th0, th1, batches, torch.tensor(0.1, dtype=torch.float64)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_constant_memory_gradient_equals_unrolled_gradient_float64():
    spec, X, Y, th0, th1, batches, lr = _problem()
    u = trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode="unroll",
                                 labels_learned=True)
    e = trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode="exact",
                                 labels_learned=True)
    assert e.loss == pytest.approx(u.loss, rel=1e-12)
    assert _rel(e.grad_x, u.grad_x) < 1e-5
    assert _rel(e.grad_labels, u.grad_labels) < 1e-5
    assert float(e.grad_lr) == pytest.approx(float(u.grad_lr), rel=1e-5)
    # the paper's first-order variant drops the Hessian terms: close, but not equal
    t = trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode="tesla")
    assert 1e-4 < _rel(t.grad_x, u.grad_x) < 0.5
    cos = torch.nn.functional.cosine_similarity(t.grad_x.reshape(-1), u.grad_x.reshape(-1), 0)
    assert float(cos) > 0.9


def test_unrolled_gradient_matches_finite_difference():
    spec, X, Y, th0, th1, batches, lr = _problem(n_steps=3)
    e = trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode="exact")
    d = torch.randn(X.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-6
    lp = trajectory_matching_grad(spec, X + h * d, Y, lr, th0, th1, batches).loss
    lm = trajectory_matching_grad(spec, X - h * d, Y, lr, th0, th1, batches).loss
    assert (lp - lm) / (2 * h) == pytest.approx(float((e.grad_x * d).sum()), rel=1e-5)


def test_graph_memory_flat_for_constant_memory_modes_and_linear_for_unroll():
    mem = {}
    for n in (4, 16):
        spec, X, Y, th0, th1, batches, lr = _problem(n_steps=n)
        mem[n] = {m: trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode=m)
                  for m in ("unroll", "exact", "tesla")}
    assert mem[16]["exact"].graph_bytes == mem[4]["exact"].graph_bytes
    assert mem[16]["tesla"].graph_bytes == mem[4]["tesla"].graph_bytes
    assert mem[16]["unroll"].graph_bytes > 3.5 * mem[4]["unroll"].graph_bytes
    assert mem[16]["exact"].snapshot_bytes == 4 * mem[4]["exact"].snapshot_bytes


def test_experts_from_trainer_and_a_short_distillation():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 64, generator=g, dtype=torch.float64) * 2
    y = torch.arange(3).repeat(40)
    x = (centres[y] + 0.5 * torch.randn(120, 64, generator=g, dtype=torch.float64)).float()
    spec = MLPSpec((64, 16, 3))
    experts = train_experts(x, y, spec, n_experts=1, epochs=4, batch_size=32, lr=1e-2, seed=0)
    assert experts[0].shape == (5, spec.n_params)
    assert float((experts[0][-1] - experts[0][0]).norm()) > 0
    cfg = DistillConfig(ipc=1, syn_steps=5, expert_epochs=2, max_start_epoch=1, iterations=15,
                        lr_x=1.0, init_lr=0.05)
    res = distill(x, y, experts, 3, spec, cfg)
    assert res.x.shape == (3, 64) and res.labels.shape == (3, 3)
    assert torch.allclose(res.labels.sum(1), torch.ones(3, dtype=torch.float64))
    assert sum(res.losses[-5:]) < sum(res.losses[:5])
    acc, _ = evaluate_synthetic(spec, res.x, res.labels, res.lr, x.double(), y, steps=50,
                                seeds=(0,))
    assert acc > 0.8


def test_bad_learning_rates():
    spec, X, Y, th0, th1, batches, _ = _problem(n_steps=2)
    with pytest.raises(InputError, match="lr"):
        trajectory_matching_grad(spec, X, Y, torch.tensor(0.0), th0, th1, batches)
    with pytest.raises(InputError, match="lr_x"):
        DistillConfig(lr_x=-1.0)
