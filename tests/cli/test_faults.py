"""Resource faults: a full disk in the middle of training is one error line and leaves the last
good checkpoint intact (the run resumes from it); metrics on 10^6 points stay bounded."""

from __future__ import annotations

import errno
import warnings

import pytest
import torch
from cli_checks import one_error
from typer.testing import CliRunner

import monge.train.checkpoint as ckpt
from monge.cli.main import app
from monge.metrics import energy_distance, mmd_rbf, wasserstein2
from monge.train import load_checkpoint

runner = CliRunner()

TINY = """source: gaussian
target: moons
data: {n_train: 256, n_test: 64}
model: {hidden: 16, depth: 1, time_dim: 8}
train: {steps: 10, batch_size: 32, checkpoint_every: 5, log_every: 5, warmup_steps: 1}
eval: {n_samples: 16, solvers: [{solver: euler, nfe: [2]}], trajectories: 0,
       straightness_steps: 2, sweep_nfe: []}
compare: {couplings: []}
distill: {methods: []}
"""


def test_full_disk_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY + f"out: {tmp_path / 'run'}\n")
    real, calls = ckpt.save_file, []

    def full_after_first(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) > 1:
            with open(filename, "wb") as fh:      # a partial write, then the disk is full
                fh.write(b"\0" * 16)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", full_after_first)
    one_error(runner.invoke(app, ["run", str(cfg), "--quiet"]), "No space left")
    _, state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 5                     # the step-5 checkpoint survived intact
    monkeypatch.setattr(ckpt, "save_file", real)
    res = runner.invoke(app, ["run", str(cfg), "--quiet", "--resume"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "run")[1]["step"] == 10
    assert not list((tmp_path / "run").glob("*.tmp*"))   # no temporaries left behind


@pytest.mark.parametrize("metric", [energy_distance, mmd_rbf, wasserstein2])
def test_metrics_on_a_million_points_subsample_with_a_warning(metric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1_000_000, 2, generator=g)
    y = torch.randn(1_000_000, 2, generator=g) + 0.5
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        value = metric(x, y)
    assert any("subsampling" in str(m.message) for m in w)
    assert value > 0 and torch.isfinite(torch.tensor(value))


def test_sampling_a_data_source_model_from_a_given_source_file(tmp_path):
    """A model trained from a data source samples from `--source FILE` with only the
    checkpoint (the training data need not be readable); a wrong shape is one error line."""
    import numpy as np

    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY.replace("source: gaussian", "source: 8gaussians")
                   + f"out: {tmp_path / 'run'}\n")
    assert runner.invoke(app, ["run", str(cfg), "--quiet"]).exit_code == 0
    rng = np.random.default_rng(0)
    np.save(tmp_path / "src.npy", rng.normal(size=(40, 2)).astype(np.float32))
    np.save(tmp_path / "bad.npy", rng.normal(size=(40, 3)).astype(np.float32))
    out = tmp_path / "s.npy"
    res = runner.invoke(app, ["sample", str(tmp_path / "run"), "--source",
                              str(tmp_path / "src.npy"), "--n", "16", "--solver", "euler",
                              "--nfe", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (16, 2)
    one_error(runner.invoke(app, ["sample", str(tmp_path / "run"), "--source",
                                  str(tmp_path / "bad.npy")]), "reshape")
