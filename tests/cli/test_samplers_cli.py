"""The samplers, grids, guidance and likelihood through the command line: `monge sample --grid
--guidance`, `monge eval --grid`, `monge likelihood`, the report's every-solver table, and one
clear error line for each bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_checks import one_error as _one_error
from typer.testing import CliRunner

from monge.cli.main import app

runner = CliRunner()

COND = """source: gaussian
target: 8gaussians
data: {n_train: 1024, n_test: 256}
model: {hidden: 32, depth: 2, time_dim: 16, conditional: true}
train: {steps: 150, batch_size: 128, cond_dropout: 0.2, checkpoint_every: 150, log_every: 50}
eval: {n_samples: 64, solvers: [{solver: euler, nfe: [4]}], trajectories: 0,
       straightness_steps: 2, sweep_nfe: [2, 4], sweep_samples: 32}
compare: {couplings: []}
distill: {methods: []}
"""
UNCOND = COND.replace("conditional: true", "conditional: false").replace(
    "cond_dropout: 0.2, ", "")




def _train(root: Path, body: str, name: str) -> Path:
    (root / f"{name}.yaml").write_text(body + f"out: {root / name}\n")
    res = runner.invoke(app, ["run", str(root / f"{name}.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samplers")
    return {"cond": _train(root, COND, "cond"), "uncond": _train(root, UNCOND, "uncond")}


def test_report_has_the_every_solver_table(runs):
    metrics = json.loads((runs["cond"] / "metrics.json").read_text())
    sweep = metrics["solver_sweep"]
    solvers = {r["solver"] for r in sweep}
    assert {"ddim", "dpmpp-2m", "unipc", "ab2", "ghvb", "dpmpp-2m-sde"} <= solvers
    # budgets a solver cannot spend are absent, never silently taken at another size
    assert all(r["nfe"] in (2, 4) for r in sweep)
    assert not any(r["solver"] in ("ab3", "ab4", "dpmpp-3m", "rk4") and r["nfe"] == 2
                   for r in sweep)
    assert all(math.isfinite(r["w2"]) for r in sweep)
    report = (runs["cond"] / "report.md").read_text()
    assert "## Every solver at small NFE" in report and "| dpmpp-3m | — |" in report


@pytest.mark.parametrize("solver,grid", [("dpmpp-2m", "logsnr"), ("unipc", "karras"),
                                         ("ab3", "shift:3"), ("ddim", "uniform")])
def test_sample_with_every_grid(runs, tmp_path, solver, grid):
    out = tmp_path / "s.npy"
    res = runner.invoke(app, ["sample", str(runs["cond"]), "--solver", solver, "--nfe", "6",
                              "--grid", grid, "--n", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()


def test_guided_sampling_counts_two_network_calls_per_evaluation(runs, tmp_path):
    out = tmp_path / "g.npy"
    res = runner.invoke(app, ["sample", str(runs["cond"]), "--solver", "dpmpp-2m", "--nfe",
                              "8", "--label", "3", "--guidance", "2.5", "--n", "64", "--out",
                              str(out)])
    assert res.exit_code == 0, res.output
    assert "NFE 8, 16 network calls, guidance w=2.5" in res.output
    x = np.load(out)
    # class 3 of 8gaussians sits at angle 3π/4 on the circle of radius 4
    centre = 4 * np.array([math.cos(3 * math.pi / 4), math.sin(3 * math.pi / 4)])
    assert np.linalg.norm(x.mean(0) - centre) < 1.5


def test_classifier_guidance_from_the_command_line(runs, tmp_path):
    clf = tmp_path / "clf.safetensors"
    res = runner.invoke(app, ["train-classifier", str(runs["uncond"]), "--steps", "200",
                              "--out", str(clf)])
    assert res.exit_code == 0, res.output
    acc = float(res.output.split("/ ")[1].split()[0])
    assert acc > 0.8, res.output           # 8 well-separated classes, clean data
    out = tmp_path / "c.npy"
    res = runner.invoke(app, ["sample", str(runs["uncond"]), "--classifier", str(clf),
                              "--label", "3", "--guidance", "3", "--solver", "dpmpp-2m",
                              "--nfe", "10", "--n", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    x = np.load(out)
    centre = 4 * np.array([math.cos(3 * math.pi / 4), math.sin(3 * math.pi / 4)])
    near = np.linalg.norm(x - centre, axis=1) < 2.0
    assert near.mean() > 0.6, near.mean()   # unguided: about 1/8 of the samples
    _one_error(runner.invoke(app, ["sample", str(runs["uncond"]), "--classifier",
                                   str(tmp_path / "none.safetensors"), "--label", "1",
                                   "--guidance", "1"]), "not found")
    _one_error(runner.invoke(app, ["sample", str(runs["uncond"]), "--classifier", str(clf),
                                   "--label", "9", "--guidance", "1"]), "--label", "0..7")
    _one_error(runner.invoke(app, ["sample", str(runs["uncond"]), "--classifier",
                                   str(runs["uncond"] / "checkpoint.safetensors"), "--label",
                                   "1", "--guidance", "1"]), "not a monge noisy-classifier")


def test_eval_with_a_grid(runs, tmp_path):
    out = tmp_path / "e.json"
    res = runner.invoke(app, ["eval", str(runs["cond"]), "--solver", "dpmpp-3m", "--nfe", "6",
                              "--grid", "logsnr", "--n", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())["evaluations"][0]
    assert rec["grid"] == "logsnr" and rec["nfe"] == 6


def test_likelihood_exact_and_hutchinson(runs, tmp_path):
    out = tmp_path / "lp.npy"
    res = runner.invoke(app, ["likelihood", str(runs["uncond"]), "8gaussians", "--n", "40",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    lp = np.load(out)
    assert lp.shape == (40,) and np.isfinite(lp).all()
    assert f"{lp.mean():.4f} nats" in res.output and "bits/dim" in res.output
    res_h = runner.invoke(app, ["likelihood", str(runs["uncond"]), "8gaussians", "--n", "40",
                                "--divergence", "hutchinson", "--probes", "16"])
    assert res_h.exit_code == 0, res_h.output
    mean_h = float(res_h.output.split("log-likelihood: ")[1].split()[0])
    se = float(res_h.output.split("± ")[1].split()[0])
    assert abs(mean_h - lp.mean()) < 3 * se + 1e-3


@pytest.mark.parametrize("args,needles", [
    (["sample", "{cond}", "--solver", "banana"], ["unknown name 'banana'"]),
    (["sample", "{cond}", "--grid", "banana"], ["grid", "banana"]),
    (["sample", "{cond}", "--grid", "karras:x"], ["must be a number"]),
    (["sample", "{cond}", "--solver", "ab4", "--nfe", "3"], ["--nfe", "at least 4 NFE"]),
    (["sample", "{uncond}", "--label", "1", "--guidance", "2"], ["not class-conditional"]),
    (["sample", "{cond}", "--label", "8", "--guidance", "2"], ["--label", "0..7"]),
    (["sample", "{cond}", "--guidance", "2"], ["--guidance", "--label"]),
    (["eval", "{cond}", "--solver", "dpmpp-3m", "--nfe", "2"], ["at least 3 NFE"]),
    (["eval", "{cond}", "--grid", "logsnr"], ["--grid", "--solver"]),
    (["likelihood", "{uncond}", "8gaussians", "--divergence", "x"], ["--divergence"]),
    (["likelihood", "{uncond}", "8gaussians", "--solver", "ddim"], ["--solver", "ddim"]),
    (["likelihood", "{uncond}", "digits"], ["shape"]),
])
def test_bad_input(runs, args, needles):
    args = [a.format(**{k: str(v) for k, v in runs.items()}) for a in args]
    _one_error(runner.invoke(app, args), *needles)
