"""Smooth Diffusion's step-wise variation penalty: the lengths are the closed-form ‖Jᵀy‖ of a
linear model, and training with it makes the lengths more uniform."""

import pytest
import torch
from torch import nn

from monge.errors import InputError
from monge.paths import GaussianMixture, LinearPath
from monge.train import Trainer, TrainerConfig
from monge.train.losses import FlowMatchingLoss
from monge.train.smooth_reg import SmoothnessRegularizedLoss

PATH = LinearPath()


class Linear(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = nn.Parameter(m)

    def forward(self, x, t, y=None):
        return x @ self.m.T


def test_lengths_match_the_closed_form_of_a_linear_model():
    m = torch.tensor([[0.5, 1.0], [-0.3, 0.2]], dtype=torch.float64)
    loss = SmoothnessRegularizedLoss(FlowMatchingLoss(PATH), 1.0, PATH)
    g = torch.Generator().manual_seed(0)
    eps, x1 = (torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.rand(6, generator=g, dtype=torch.float64) * 0.9 + 0.05
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    r = loss.lengths(Linear(m), eps, x1, t, y, {})
    # x̂1 = x_t + (1 − t)·M x_t, x_t = t·x1 + (1 − t)·ε  ⇒  ∂x̂1/∂ε = (1 − t)(I + (1 − t)M)
    exact = torch.stack([((1 - ti) * (torch.eye(2, dtype=torch.float64) + (1 - ti) * m)).T
                         @ yi for ti, yi in zip(t, y, strict=True)]).norm(dim=1)
    torch.testing.assert_close(r, exact)
    assert r.requires_grad                                   # in the graph: double backward


def _penalty(model, batches):
    """The penalty's value on fresh batches (its running mean reset each time)."""
    g = torch.Generator().manual_seed(5)
    probe = SmoothnessRegularizedLoss(FlowMatchingLoss(PATH), 1.0, PATH)
    vals = []
    for _ in range(10):
        x0, x1, _ = batches(512, g)
        probe.updates.zero_()
        probe(model, x0, x1, None, g)
        vals.append(probe.last_penalty)
    return sum(vals) / len(vals)


def test_training_with_the_penalty_lowers_it():
    from monge.models import MLP

    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]),
                          stds=torch.tensor([0.3, 0.3]))

    def batches(n, g):
        return torch.randn(n, 2, generator=g), gmm.sample(n, generator=g,
                                                          dtype=torch.float32), None
    got = {}
    for lam in (0.0, 10.0):
        torch.manual_seed(0)
        base = FlowMatchingLoss(PATH)
        loss = base if lam == 0 else SmoothnessRegularizedLoss(base, lam, PATH)
        cfg = TrainerConfig(steps=400, batch_size=256, lr=2e-3, warmup_steps=10,
                            ema_decay=0.0, checkpoint_every=10**6, log_every=10**6, seed=0)
        trainer = Trainer(MLP(2, hidden=64, depth=2, time_dim=16), loss, batches, cfg,
                          progress=False)
        trainer.fit()
        got[lam] = _penalty(trainer.sampling_model, batches)
    assert got[10.0] < 0.5 * got[0.0], got        # measured 0.019 vs 0.073


def test_running_mean_survives_a_resume(tmp_path):
    """The EMA target a is checkpointed with the trainer (Smooth Diffusion's release notes that
    it is not): a resumed run continues a instead of restarting it from the next batch."""
    from monge.models import MLP

    def batches(n, g):
        return torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) + 2.0, None

    def trainer(steps):
        torch.manual_seed(0)
        loss = SmoothnessRegularizedLoss(FlowMatchingLoss(PATH), 1.0, PATH)
        cfg = TrainerConfig(steps=steps, batch_size=32, lr=1e-3, warmup_steps=2,
                            checkpoint_every=5, log_every=10**6, seed=0)
        return Trainer(MLP(2, hidden=16, depth=2, time_dim=8), loss, batches, cfg,
                       out_dir=tmp_path, progress=False), loss

    tr, loss = trainer(10)
    tr.fit(stop_at=5)
    a, n = float(loss.running_length), int(loss.updates)
    assert n == 5 and a > 0
    tr2, loss2 = trainer(10)
    tr2.fit(resume=True, stop_at=5)                    # loads step 5, trains no further
    assert int(loss2.updates) == 5 and float(loss2.running_length) == a


def test_bad_input():
    with pytest.raises(InputError, match="smooth_reg"):
        SmoothnessRegularizedLoss(FlowMatchingLoss(PATH), 0.0, PATH)
