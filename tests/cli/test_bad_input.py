"""Bad input through the command line: every case exits non-zero with exactly one ``error:``
line naming the input and no traceback (issue: hold up under bad input and faults)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_checks import one_error as _one_error
from safetensors.torch import save_file
from typer.testing import CliRunner

from monge.cli.main import app
from monge.train import load_checkpoint

runner = CliRunner()

TINY = """source: gaussian
target: moons
data: {n_train: 512, n_test: 256}
model: {hidden: 16, depth: 1, time_dim: 8}
train: {steps: 10, batch_size: 32, checkpoint_every: 5, log_every: 5, warmup_steps: 1}
eval: {n_samples: 32, solvers: [{solver: euler, nfe: [2]}], trajectories: 0,
       straightness_steps: 2}
compare: {couplings: []}
distill: {methods: []}
"""




@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    (root / "c.yaml").write_text(TINY + f"out: {root / 'run'}\n")
    res = runner.invoke(app, ["run", str(root / "c.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "run"


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("body,needles", [
    ("train: {steps: true}\n", ["train.steps", "valid integer"]),
    ("out: ''\n", ["'out'", "must not be empty"]),
    ("seed: 1\nseed: 2\n", ["duplicate key 'seed'"]),
    ("seed: 100000000000000000000000\n", ["'seed'", "2**63"]),
    ("train: {stepz: 3}\n", ["unknown key 'train.stepz'"]),
    ("eval: {solvers: [{solver: heun, nfe: [1]}]}\n", ["heun", "NFE per step"]),
    ("eval: {solvers: [{solver: dopri5, rtol: 1.0e-20}]}\n", ["rtol"]),
])
def test_bad_config_values(tmp_path, body, needles):
    _one_error(runner.invoke(app, ["run", str(_config(tmp_path, body)), "--quiet"]), *needles)


def test_config_that_is_a_folder_and_override_into_a_scalar(tmp_path):
    _one_error(runner.invoke(app, ["run", str(tmp_path), "--quiet"]), "is a folder")
    cfg = _config(tmp_path, "train: 5\n")
    _one_error(runner.invoke(app, ["run", str(cfg), "--steps", "3", "--quiet"]),
               "'train' is 5, not a mapping")


@pytest.mark.parametrize("device,needle", [("banana", "not a device name"),
                                           ("cuda:999", "cuda:999"), ("mps", "mps")])
def test_devices_this_machine_lacks(tmp_path, device, needle):
    _one_error(runner.invoke(app, ["run", "--quiet", "--steps", "2", "--out", str(tmp_path / "o"),
                                   "--device", device]), needle)


def test_out_folder_is_never_overwritten_by_accident(tmp_path, trained):
    _one_error(runner.invoke(app, ["run", "--quiet", "--steps", "2", "--out", str(trained)]),
               "already holds a run", "--resume", "--overwrite")
    (tmp_path / "notes.txt").write_text("mine")
    _one_error(runner.invoke(app, ["run", "--quiet", "--steps", "2", "--out", str(tmp_path)]),
               "is not empty")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_error(runner.invoke(app, ["run", "--quiet", "--steps", "2", "--out",
                                   str(blocker / "sub")]), "--out", "cannot write")
    _one_error(runner.invoke(app, ["run", "--quiet", "--steps", "2", "--out", "/proc/monge"]),
               "--out", "cannot write")


@pytest.mark.parametrize("args,needles", [
    (["--nfe", "0"], ["--nfe", "positive"]),
    (["--solver", "heun", "--nfe", "1"], ["heun spends 2 NFE per step"]),
    (["--solver", "banana"], ["solver: unknown name 'banana'", "dopri5"]),
    (["--n", "0"], ["--n"]),
    (["--label", "3"], ["--label", "not class-conditional"]),
])
def test_sample_options(trained, tmp_path, args, needles):
    _one_error(runner.invoke(app, ["sample", str(trained), "--out", str(tmp_path / "x.npy"),
                                   *args]), *needles)


@pytest.mark.parametrize("args,needles", [
    (["--solver", "heun", "--nfe", "0"], ["--nfe", "positive"]),
    (["--solver", "heun", "--nfe", "1"], ["heun spends 2"]),
    (["--solver", "banana"], ["unknown name 'banana'"]),
    (["--n", "-5"], ["--n", "at least 2"]),
    (["--nfe", "4"], ["--nfe", "give --solver too"]),
])
def test_eval_options(trained, args, needles):
    _one_error(runner.invoke(app, ["eval", str(trained), *args]), *needles)


def test_sample_out_gets_the_npy_suffix_it_is_written_with(trained, tmp_path):
    res = runner.invoke(app, ["sample", str(trained), "--n", "8", "--nfe", "2", "--solver",
                              "euler", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.npy").exists() and str(tmp_path / "x.npy") in res.output
    assert np.load(tmp_path / "x.npy").shape == (8, 2)


def _rewrite(src: Path, dst: Path, tensors=None, meta=None) -> Path:
    t, s = load_checkpoint(src / "checkpoint.safetensors")
    tensors = t if tensors is None else tensors(t)
    meta = {"monge": json.dumps(s)} if meta is None else meta(s)
    dst.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dst / "checkpoint.safetensors"),
              metadata=meta)
    return dst


def _nan_first_weight(t):
    key = next(k for k in t if k.startswith("ema.module."))
    return {**t, key: torch.full_like(t[key], float("nan"))}


def _without_shape(s):
    return {"monge": json.dumps({k: v for k, v in s.items() if k != "shape"})}


def _wider(s):
    s = json.loads(json.dumps(s))
    s["run_config"]["model"]["hidden"] = 24
    return {"monge": json.dumps(s)}


@pytest.mark.parametrize("tensors,meta,needles", [
    (_nan_first_weight, None, ["NaN/Inf values", "corrupt"]),
    (None, lambda s: {"monge": "{not json"}, ["not valid JSON"]),
    (None, _without_shape, ["no 'shape'"]),
    (None, _wider, ["weights do not fit the stored config"]),
    (lambda t: {k: v for k, v in t.items() if not k.startswith(("model.", "ema."))}, None,
     ["no model weights"]),
])
def test_broken_checkpoints(trained, tmp_path, tensors, meta, needles):
    bad = _rewrite(trained, tmp_path / "bad", tensors, meta)
    _one_error(runner.invoke(app, ["sample", str(bad), "--out", str(tmp_path / "x.npy")]),
               *needles)
    assert not (tmp_path / "x.npy").exists()


def test_resume_with_another_config_names_the_key(trained, tmp_path):
    cfg = _config(tmp_path, TINY.replace("hidden: 16", "hidden: 20") + f"out: {trained}\n")
    _one_error(runner.invoke(app, ["run", str(cfg), "--quiet", "--resume"]),
               "model.hidden (16 stored, 20 now)")


def test_ot_refuses_a_dense_solve_too_large_and_an_unwritable_out(tmp_path):
    pts = np.random.default_rng(0).normal(size=(5001, 2))
    np.save(tmp_path / "a.npy", pts)
    _one_error(runner.invoke(app, ["ot", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"),
                                   "--method", "exact"]), "too many", "--method auto")
    small = tmp_path / "s.npy"
    np.save(small, pts[:20])
    (tmp_path / "file").write_text("x")
    _one_error(runner.invoke(app, ["ot", str(small), str(small), "--out",
                                   str(tmp_path / "file" / "plan.npz")]), "--out", "cannot write")


def test_a_model_too_big_for_memory_is_one_line(tmp_path):
    cfg = _config(tmp_path, TINY.replace("hidden: 16, depth: 1", "hidden: 10000000, depth: 2")
                  + f"out: {tmp_path / 'o'}\n")
    _one_error(runner.invoke(app, ["run", str(cfg), "--quiet"]), "does not fit in memory")


def test_csv_with_an_empty_first_cell(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n,2\n3,4\n")
    cfg = _config(tmp_path, TINY.replace("target: moons", f"target: {path}")
                  + f"out: {tmp_path / 'o'}\n")
    _one_error(runner.invoke(app, ["run", str(cfg), "--quiet"]), "x.csv",
               "non-numeric value '' at line 2, column 1")


def test_a_constant_target_reports_no_ratio_instead_of_dividing_by_zero(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.ones((400, 2), dtype=np.float32))
    cfg = _config(tmp_path, TINY.replace("target: moons", f"target: {path}")
                  + f"out: {tmp_path / 'o'}\n")
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["reference_w2"] == 0.0 and "n/a" in (tmp_path / "o" / "report.md").read_text()


def test_resume_clears_stale_temporaries_and_refreshes_the_json_copy(tmp_path):
    cfg = _config(tmp_path, TINY + f"out: {tmp_path / 'o'}\n")
    assert runner.invoke(app, ["run", str(cfg), "--quiet"]).exit_code == 0
    run = tmp_path / "o"
    (run / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"torn")   # killed mid-write
    (run / "checkpoint.json").unlink()                                   # killed before the copy
    res = runner.invoke(app, ["run", str(cfg), "--quiet", "--resume"])
    assert res.exit_code == 0, res.output
    assert not list(run.glob(".*.tmp"))
    _, state = load_checkpoint(run / "checkpoint.safetensors")
    assert json.loads((run / "checkpoint.json").read_text())["step"] == state["step"]


def test_eval_says_when_the_data_behind_a_run_changed(tmp_path):
    path = tmp_path / "t.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.normal(size=(300, 2)).astype(np.float32))
    cfg = _config(tmp_path, TINY.replace("target: moons", f"target: {path}")
                  + f"out: {tmp_path / 'o'}\n")
    assert runner.invoke(app, ["run", str(cfg), "--quiet"]).exit_code == 0
    same = runner.invoke(app, ["eval", str(tmp_path / "o"), "--solver", "euler", "--nfe", "2"])
    assert same.exit_code == 0 and "differs from the data" not in same.output
    np.save(path, rng.normal(size=(300, 2)).astype(np.float32) + 1.0)
    changed = runner.invoke(app, ["eval", str(tmp_path / "o"), "--solver", "euler", "--nfe", "2"])
    assert changed.exit_code == 0 and "differs from the data this model was trained" in \
        changed.output
