"""HomoODE / neural ODE / DEQ blocks: shapes, shared initial point, implicit gradients."""

import pytest
import torch

from monge.dynamics.homoode import (
    DEQBlock,
    HomoODEBlock,
    ImplicitClassifier,
    count_parameters,
    make_block,
    train_classifier,
)
from monge.errors import InputError

torch.set_num_threads(1)


def test_homoode_block_shape_shared_start_and_injection():
    torch.manual_seed(0)
    blk = HomoODEBlock(6, hidden=5, width=7, solver="rk4", steps=4).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    z = blk(x)
    assert z.shape == (3, 5) and blk.last_nfe == 16
    # without injection every input follows the same path from the shared z0
    with torch.no_grad():
        blk.inject.weight.zero_()
    z = blk(x)
    assert torch.allclose(z, z[:1].expand_as(z))
    # and the path starts at z0: a zero field leaves z(1) = z0
    with torch.no_grad():
        blk.field.l2.weight.zero_()
        blk.field.l2.bias.zero_()
        blk.inject.bias.zero_()
    assert torch.allclose(blk(x), blk.z0.expand(3, -1))


def test_homoode_init_regression_moves_z0_only_through_its_own_loss():
    torch.manual_seed(0)
    blk = HomoODEBlock(4, hidden=3, width=5, solver="euler", steps=5).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    z = blk(x)
    z.sum().backward()
    assert blk.z0.grad is None  # the task loss does not reach z0
    before = float(blk.init_regression_loss(z))
    opt = torch.optim.SGD([blk.z0], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        blk.init_regression_loss(z).backward()
        opt.step()
    assert float(blk.init_regression_loss(z)) < before


def test_deq_solves_fixed_point_and_implicit_gradient_matches_finite_differences():
    torch.manual_seed(1)
    blk = DEQBlock(4, hidden=3, width=5, tol=1e-13, max_iter=500).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    w = torch.randn(6, 3, dtype=torch.float64)
    z = blk(x)
    assert blk.last_residual < 1e-12
    assert torch.allclose(z, blk.f(z, blk.inject(x)), atol=1e-10)
    loss = (z * w).sum()
    loss.backward()
    p = blk.inject.weight
    d = torch.randn(p.shape, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        p += h * d
        lp = float((blk(x) * w).sum())
        p -= 2 * h * d
        lm = float((blk(x) * w).sum())
        p += h * d
    assert (lp - lm) / (2 * h) == pytest.approx(float((p.grad * d).sum()), rel=1e-6)
    # gradient with respect to x too
    xg = x.clone().requires_grad_(True)
    (blk(xg) * w).sum().backward()
    dx = torch.randn(x.shape, dtype=torch.float64)
    with torch.no_grad():
        fp = float((blk(x + h * dx) * w).sum())
        fm = float((blk(x - h * dx) * w).sum())
    assert (fp - fm) / (2 * h) == pytest.approx(float((xg.grad * dx).sum()), rel=1e-6)


def test_equal_parameter_counts_and_short_training_learns():
    counts = {k: count_parameters(make_block(k, 64, 32, 64)) for k in
              ("homoode", "homoode-fixed", "node", "deq")}
    assert max(counts.values()) - min(counts.values()) <= 32  # z0 is the only difference
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 10, generator=g) * 3
    y = torch.arange(3).repeat(30)
    x = centres[y] + 0.3 * torch.randn(90, 10, generator=g)
    torch.manual_seed(0)
    model = ImplicitClassifier(make_block("homoode", 10, 8, 16), 8, 3)
    rep = train_classifier(model, x, y, x, y, epochs=3, batch_size=30, lr=1e-2, seed=0)
    assert rep.test_accuracy > 0.9 and rep.nfe > 0 and rep.params == count_parameters(model)


def test_bad_arguments():
    with pytest.raises(InputError, match="model"):
        make_block("resnet", 4)
    with pytest.raises(InputError, match="solver"):
        HomoODEBlock(4, solver="leapfrog")
    model = ImplicitClassifier(make_block("deq", 4, 3, 3), 3, 2)
    x = torch.randn(4, 4)
    with pytest.raises(InputError, match="learning rate"):
        train_classifier(model, x, torch.zeros(4, dtype=torch.long), x,
                         torch.zeros(4, dtype=torch.long), lr=0.0)
