"""PFGM++ loss: closed-form value for a known denoiser (every D), and a Trainer run."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.models import MLP
from monge.paths.pfgmpp import EDMPreconditioner, PFGMPPPath
from monge.train import Trainer, TrainerConfig
from monge.train.pfgmpp_loss import PFGMPPLoss


class _Zero(torch.nn.Module):
    def forward(self, x, t, **cond):
        return torch.zeros_like(x)


@pytest.mark.parametrize("D", [8.0, 64.0, math.inf])
def test_loss_matches_closed_form_for_skip_only_denoiser(D):
    # data N(0, σ_d² I), D_θ = c_skip·x: per-dim error (c_skip − 1)² σ_d² + c_skip² σ² E x0², with
    # E x0² = D/(D − 2) per dimension; under EDM's λ(σ) this is exactly 1 for D = ∞
    sd = 0.5
    path = PFGMPPPath(D=D)
    loss = PFGMPPLoss(path, sigma_data=sd)
    g = torch.Generator().manual_seed(0)
    x1 = sd * torch.randn(40_000, 16, generator=g, dtype=torch.float64)
    out = loss(EDMPreconditioner(_Zero(), path, sigma_data=sd), None, x1, generator=g)
    sigma = path.sigma(out.t.to(torch.float64))
    c_skip = sd**2 / (sigma**2 + sd**2)
    var0 = 1.0 if math.isinf(D) else D / (D - 2)
    expected = loss.weight(sigma) * ((c_skip - 1) ** 2 * sd**2 + c_skip**2 * sigma**2 * var0)
    assert float(out.loss) == pytest.approx(float(expected.mean()), rel=0.02)
    if math.isinf(D):
        assert float(out.loss) == pytest.approx(1.0, rel=0.02)
    # the noise levels follow ln σ ~ N(−1.2, 1.2²)
    log_sigma = torch.log(sigma)
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.03)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.03)


def test_trainer_runs_the_loss_unchanged(tmp_path):
    torch.manual_seed(0)
    path = PFGMPPPath(D=32.0)
    model = EDMPreconditioner(MLP(2, hidden=32, depth=2), path)
    data = torch.tensor([[0.5, 0.5], [-0.5, -0.5]])

    def sample_batch(n, generator):
        idx = torch.randint(2, (n,), generator=generator)
        return torch.randn(n, 2, generator=generator), data[idx], None

    cfg = TrainerConfig(steps=60, batch_size=64, lr=3e-3, warmup_steps=5, log_every=10,
                        checkpoint_every=1000, ema_decay=0.0)
    result = Trainer(model, PFGMPPLoss(path), sample_batch, cfg, out_dir=tmp_path,
                     progress=False).fit()
    first = result.losses[0][1]
    assert math.isfinite(result.final_loss) and result.final_loss < first


def test_bad_input():
    with pytest.raises(InputError, match="cond_dropout"):
        PFGMPPLoss(cond_dropout=0.2)
    path = PFGMPPPath(D=8.0)
    with pytest.raises(InputError, match="x1"):
        PFGMPPLoss(path)(EDMPreconditioner(_Zero(), path), None,
                         torch.tensor([[float("nan"), 0.0]]))
