"""Trainer: bit-identical resume, atomic checkpoints, learning a closed-form field."""

import json
import math

import pytest
import torch

from monge.errors import DataError, InputError
from monge.models import MLP
from monge.paths import GaussianMixture, LinearPath
from monge.train import (
    FlowMatchingLoss,
    LogitNormalTime,
    Trainer,
    TrainerConfig,
    UniformTime,
    load_checkpoint,
)

GMM = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), stds=torch.tensor([0.3, 0.3]))


def _sampler(n, g):
    x1 = GMM.sample(n, g, dtype=torch.float32)
    return torch.randn(n, 2, generator=g), x1, None


def _trainer(out, steps, seed=0, every=10, hidden=32, batch=64):
    torch.manual_seed(seed)
    model = MLP(2, hidden=hidden, depth=2, time_dim=16)
    cfg = TrainerConfig(steps=steps, batch_size=batch, lr=3e-3, warmup_steps=5,
                        checkpoint_every=every, log_every=5, seed=seed)
    return Trainer(model, FlowMatchingLoss(LinearPath()), _sampler, cfg, out_dir=out,
                   metadata={"note": "test"}, progress=False)


def test_resume_is_bit_identical(tmp_path):
    full = _trainer(tmp_path / "full", 40)
    full.fit()
    # emulate a run stopped at step 20: train 20 steps under the 40-step schedule
    _trainer(tmp_path / "half", 40).fit(stop_at=20)
    resumed = _trainer(tmp_path / "half", 40)
    res = resumed.fit(resume=True)
    assert res.resumed_from == 20 and res.steps == 40
    for (k, a), (_, b) in zip(full.base_model.state_dict().items(),
                              resumed.base_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(full.ema.parameters(), resumed.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    rows = [json.loads(r) for r in (tmp_path / "half" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(5, 41, 5))


def test_checkpoint_contents_and_atomicity(tmp_path):
    tr = _trainer(tmp_path, 12, every=5)
    tr.fit()
    tensors, state = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert state["step"] == 12 and state["note"] == "test"
    assert any(k.startswith("ema.") for k in tensors) and "rng.train.0" in tensors
    # no temporary files left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_learns_gmm_velocity():
    """After training, the network is close to the closed-form marginal velocity."""
    tr = _trainer(None, 1500, hidden=128, batch=256)
    tr.fit()
    path = LinearPath()
    g = torch.Generator().manual_seed(5)
    errs, norms = [], []
    for t in (0.2, 0.5, 0.8):
        x = GMM.marginal_sample(2000, t, path, g).float()
        tt = torch.full((2000,), t)
        with torch.no_grad():
            pred = tr.sampling_model(x, tt)
        truth = GMM.velocity(x, tt, path)
        errs.append(float(((pred - truth) ** 2).sum(1).mean()))
        norms.append(float((truth**2).sum(1).mean()))
    assert all(e < 0.05 * n for e, n in zip(errs, norms, strict=True)), (errs, norms)


def test_time_samplers_and_lr_schedule():
    g = torch.Generator().manual_seed(0)
    u = UniformTime(0.1, 0.9).sample(10000, generator=g)
    assert 0.1 <= float(u.min()) and float(u.max()) <= 0.9
    assert abs(float(u.mean()) - 0.5) < 0.01
    ln = LogitNormalTime(0.0, 1.0).sample(20000, generator=g)
    assert abs(float(torch.logit(ln).std()) - 1.0) < 0.03
    cfg = TrainerConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.0)
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(55) == pytest.approx(0.5) and cfg.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(cfg.lr_at(10), 1.0)
    with pytest.raises(InputError):
        TrainerConfig(steps=0)


def test_ema_averages_float_weights_and_copies_integer_buffers():
    """A network with an integer buffer (a lookup table) trains with EMA: the float weights are
    averaged as min(d, (1 + n)/(10 + n)) prescribes, the integer buffer is copied."""
    from monge.train.trainer import ema_with_warmup

    update = ema_with_warmup(0.9)
    ema = [torch.zeros(3), torch.tensor([1, 2], dtype=torch.int64)]
    new = [torch.ones(3), torch.tensor([5, 7], dtype=torch.int64)]
    update(ema, new, torch.tensor(0))                      # d = min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema[0], torch.full((3,), 0.9))
    assert ema[1].tolist() == [5, 7]
