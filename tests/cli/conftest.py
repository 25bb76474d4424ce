"""Shared fixtures of the CLI tests, trained once per test session: small teacher runs
(8 gaussians; one class-conditional with label dropout; one on the VP path) and a
class-conditional latent flow on digits with its autoencoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_checks import LATENT
from typer.testing import CliRunner

from monge.cli.main import app

runner = CliRunner()

TEACHER = """source: gaussian
target: 8gaussians
data: {n_train: 2048, n_test: 512}
model: {hidden: 64, depth: 2, time_dim: 16}
train: {steps: 600, batch_size: 256, checkpoint_every: 600, log_every: 100}
eval: {n_samples: 64, solvers: [{solver: euler, nfe: [4]}], trajectories: 0,
       straightness_steps: 2, sweep_nfe: []}
compare: {couplings: []}
distill: {methods: []}
"""


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distill")
    (root / "t.yaml").write_text(TEACHER + f"out: {root / 'teacher'}\n")
    res = runner.invoke(app, ["run", str(root / "t.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    (root / "vp.yaml").write_text(TEACHER.replace("compare:", "path: {name: vp}\ncompare:")
                                  .replace("steps: 600", "steps: 5")
                                  + f"out: {root / 'vp'}\n")
    assert runner.invoke(app, ["run", str(root / "vp.yaml"), "--quiet"]).exit_code == 0
    (root / "cond.yaml").write_text(
        TEACHER.replace("time_dim: 16}", "time_dim: 16, conditional: true}")
        .replace("log_every: 100}", "log_every: 100, cond_dropout: 0.1}")
        + f"out: {root / 'cond'}\n")
    res = runner.invoke(app, ["run", str(root / "cond.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root




@pytest.fixture(scope="session")
def latent_run(tmp_path_factory) -> Path:
    """A latent digits run (autoencoder 1×8×8 → 4×4×4); tests must not modify it."""
    root = tmp_path_factory.mktemp("latent")
    (root / "l.yaml").write_text(LATENT + f"out: {root / 'run'}\n")
    res = runner.invoke(app, ["run", str(root / "l.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "run"
