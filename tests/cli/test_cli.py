"""The monge command: a small end-to-end run, sampling, evaluation, bad input, kill + resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from monge.cli.main import app
from monge.train import load_checkpoint

runner = CliRunner()


FULL_EVAL = """eval:
  n_samples: 300
  solvers: [{solver: euler, nfe: [1, 8]}, {solver: heun, nfe: [8]}, {solver: dopri5,
            rtol: 0.001, atol: 0.001}]
  trajectories: 16
  straightness_steps: 20
compare: {couplings: [ot], nfe: [1, 4]}
distill: {methods: [consistency], steps: 60}"""
LIGHT_EVAL = """eval: {n_samples: 64, solvers: [{solver: euler, nfe: [4]}], trajectories: 0,
       straightness_steps: 4}
compare: {couplings: []}
distill: {methods: []}"""


def _write_config(path: Path, out: Path, steps: int = 150, evaluation: str = FULL_EVAL) -> Path:
    path.write_text(f"""
source: 8gaussians
target: moons
out: {out}
data: {{n_train: 4000, n_test: 800}}
model: {{hidden: 64, depth: 2, time_dim: 16}}
train: {{steps: {steps}, batch_size: 128, lr: 0.003, checkpoint_every: 50, log_every: 10,
        warmup_steps: 10}}
{evaluation}
""")
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cfg = _write_config(root / "cfg.yaml", root / "out", steps=300)
    res = runner.invoke(app, ["run", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "out"


def test_run_writes_report_and_metrics(small_run):
    for name in ("metrics.json", "report.md", "samples.png", "trajectories.png", "loss.png",
                 "quality_vs_nfe.png", "checkpoint.safetensors", "log.jsonl"):
        assert (small_run / name).exists(), name
    m = json.loads((small_run / "metrics.json").read_text())
    assert m["reference_w2"] > 0
    recs = {(e["solver"], e["nfe"]): e for e in m["evaluations"] if e["model"] == "teacher"}
    assert set(k[0] for k in recs) == {"euler", "heun", "dopri5"}
    for e in m["evaluations"]:
        assert {"model", "solver", "nfe", "w2", "energy_distance"} <= set(e)
    # even a 300-step model must beat one Euler step at 8 steps
    assert recs[("euler", 8)]["w2"] < recs[("euler", 1)]["w2"]
    report = (small_run / "report.md").read_text()
    assert "| teacher | euler | 8 |" in report and "| ot |" in report
    # the distill: section's student: its rows, its folder, its figure
    student = {e["nfe"]: e for e in m["evaluations"] if e["model"] == "consistency"}
    assert set(student) == {1, 2, 4} and student[1]["solver"] == "consistency"
    assert student[1]["w2"] < recs[("euler", 1)]["w2"]     # one jump beats one Euler step
    assert "## Few-step students" in report and (small_run / "student.png").exists()
    assert (small_run / "students" / "consistency" / "checkpoint.safetensors").exists()
    rows = {r["coupling"]: r for r in m["coupling_comparison"]}
    assert set(rows) == {"independent", "ot"}
    # minibatch OT straightens the learned paths (Tong et al. 2024; Pooladian et al. 2023)
    assert rows["ot"]["straightness"] < 0.5 * rows["independent"]["straightness"]
    assert rows["ot"]["w2"]["1"] < rows["independent"]["w2"]["1"]
    assert (small_run / "compare" / "ot" / "checkpoint.safetensors").exists()


def test_sample_and_eval_commands(small_run, tmp_path):
    out = tmp_path / "x.npy"
    res = runner.invoke(app, ["sample", str(small_run / "checkpoint.safetensors"), "--solver",
                              "heun", "--nfe", "8", "--n", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()
    res = runner.invoke(app, ["eval", str(small_run), "--solver", "euler", "--nfe", "4",
                              "--n", "100", "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    recs = json.loads((tmp_path / "e.json").read_text())["evaluations"]
    assert recs[0]["solver"] == "euler" and recs[0]["nfe"] == 4


@pytest.mark.parametrize("case", ["nan", "rank3", "missing", "unknown_key", "bad_value"])
def test_bad_input_one_line_error(tmp_path, case):
    args = ["run", "--quiet", "--out", str(tmp_path / "o"), "--steps", "5"]
    if case == "nan":
        a = np.random.default_rng(0).normal(size=(50, 2))
        a[3, 1] = np.nan
        np.save(tmp_path / "bad.npy", a)
        args += ["--target", str(tmp_path / "bad.npy")]
        expect = "NaN"
    elif case == "rank3":
        np.save(tmp_path / "cube.npy", np.zeros((10, 2, 2)))
        args += ["--target", str(tmp_path / "cube.npy")]
        expect = "cube.npy"
    elif case == "missing":
        args += ["--target", str(tmp_path / "nope.npy")]
        expect = "not found"
    elif case == "unknown_key":
        (tmp_path / "c.yaml").write_text("train:\n  stepz: 10\n")
        args.insert(1, str(tmp_path / "c.yaml"))
        expect = "unknown key 'train.stepz'"
    else:
        (tmp_path / "c.yaml").write_text("train:\n  lr: -1\n")
        args.insert(1, str(tmp_path / "c.yaml"))
        expect = "train.lr"
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], res.output
    assert "Traceback" not in res.output


def test_user_file_sorted_by_class(tmp_path):
    """A 2-D mixture saved sorted by class: the seeded split still holds out both classes."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal([-2, 0], 0.3, size=(600, 2)),
                        rng.normal([2, 0], 0.3, size=(600, 2))]).astype(np.float32)
    np.save(tmp_path / "points.npy", a)
    cfg = _write_config(tmp_path / "c.yaml", tmp_path / "o", steps=300)
    res = runner.invoke(app, ["run", str(cfg), "--quiet", "--source", "gaussian", "--target",
                              str(tmp_path / "points.npy")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    best = min(e["w2"] for e in m["evaluations"] if e["solver"] != "euler" or e["nfe"] > 1)
    assert best <= 2.5 * m["reference_w2"], (best, m["reference_w2"])


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """Kill a run with SIGKILL after its first checkpoint; --resume ends bit-identical."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MONGE_THREADS": "1"}
    cfg_a = _write_config(tmp_path / "a.yaml", tmp_path / "a", steps=300, evaluation=LIGHT_EVAL)
    cfg_b = _write_config(tmp_path / "b.yaml", tmp_path / "b", steps=300, evaluation=LIGHT_EVAL)
    cmd = [sys.executable, "-m", "monge", "run", "--quiet"]
    subprocess.run([*cmd, str(cfg_a)], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, str(cfg_b)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    step_at_kill = load_checkpoint(ckpt)[1]["step"]
    assert step_at_kill < 300
    subprocess.run([*cmd, str(cfg_b), "--resume"], check=True, env=env, capture_output=True)
    ta, sa = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, sb = load_checkpoint(ckpt)
    assert sb["step"] == 300
    for k in ta:
        if k.startswith(("model.", "ema.")):
            assert torch.equal(ta[k], tb[k]), k
    ma = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert ma["resumed_from"] == step_at_kill


PATH_EVAL = """eval: {n_samples: 128, solvers: [{solver: heun, nfe: [32]}], trajectories: 0,
       straightness_steps: 4}
compare: {couplings: []}
distill: {methods: []}"""


def _untransported_w2(path: str) -> float:
    """W2 between the path's source N(0, σ(0)²·I) and held-out moons: what a model that moves
    nothing would score (σ(0) is σ_max on VE/EDM/PFGM++ paths)."""
    from monge.data import load_dataset
    from monge.metrics import wasserstein2
    from monge.paths import PATHS

    scale = 1.0 if path in ("interpolant", "kinetic-optimal") else PATHS.build(path).source_scale
    moons = load_dataset("moons", n_train=16, n_test=800, seed=0).test[:128]
    noise = torch.randn(128, 2, generator=torch.Generator().manual_seed(0))
    return wasserstein2(scale * noise, moons)


@pytest.mark.parametrize("path", ["linear", "vp", "vp-cosine", "ve", "edm", "interpolant",
                                  "kinetic-optimal", "pfgmpp"])
def test_every_path_trains_resumes_and_samples(tmp_path, path):
    """Each --path is wired end to end: after 100 steps its samples are closer to the data than
    the source is (and within 5x the held-out floor); a --resume run reloads the finished
    checkpoint (resumed_from = 100, same weights, same W2); sampling from the folder works."""
    cfg = _write_config(tmp_path / "c.yaml", tmp_path / "o", steps=100, evaluation=PATH_EVAL)
    args = ["run", str(cfg), "--quiet", "--source", "gaussian", "--path", path]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    w2 = m["evaluations"][0]["w2"]
    assert m["path"] == path
    bound = min(5 * m["reference_w2"], 0.9 * _untransported_w2(path))
    assert w2 < bound, (w2, m["reference_w2"], bound)
    before, _ = load_checkpoint(tmp_path / "o" / "checkpoint.safetensors")
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert again["resumed_from"] == 100 and again["evaluations"][0]["w2"] == w2
    after, _ = load_checkpoint(tmp_path / "o" / "checkpoint.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("ema."))
    out = tmp_path / "x.npy"
    res = runner.invoke(app, ["sample", str(tmp_path / "o"), "--solver", "euler", "--nfe", "4",
                              "--n", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert np.isfinite(np.load(out)).all()


def test_non_gaussian_source_needs_linear_path(tmp_path):
    res = runner.invoke(app, ["run", "--quiet", "--steps", "5", "--path", "vp", "--out",
                              str(tmp_path)])
    assert res.exit_code != 0 and "Gaussian source" in res.output


def test_torchrun_two_processes_gloo(tmp_path):
    """`torchrun -m monge run` trains data-parallel on CPU (gloo); rank 0 writes the report."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _write_config(tmp_path / "c.yaml", tmp_path / "o", steps=40, evaluation=LIGHT_EVAL)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "monge",
                           "run", str(cfg), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["steps"] == 40 and np.isfinite(m["evaluations"][0]["w2"])
    tensors, _ = load_checkpoint(tmp_path / "o" / "checkpoint.safetensors")
    assert {"rng.train.0", "rng.train.1"} <= set(tensors)
