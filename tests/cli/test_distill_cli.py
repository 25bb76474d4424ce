"""`monge distill`: reflow and one-step students written as ordinary run folders, sampled by
`monge sample`, straighter than their teacher; pairs resumable; one error line for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_checks import one_error
from typer.testing import CliRunner

from monge.cli.main import app
from monge.train import load_checkpoint

runner = CliRunner()

def test_reflow_then_one_step(teacher, tmp_path):
    out = tmp_path / "rf"
    args = ["distill", str(teacher / "teacher"), "--pairs", "3000", "--steps", "400",
            "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "reflow-2" and metrics["teacher_nfe"] > 0
    s = metrics["straightness"]
    assert s["reflow-2"] < 0.3 * s["teacher"], s
    w1 = {e["model"]: e["w2"] for e in metrics["evaluations"] if e["nfe"] == 1}
    assert w1["reflow-2"] < w1["teacher"], w1
    _, state = load_checkpoint(out)
    assert state["distill"][0]["method"] == "reflow"
    # the pairs are stored and reused: a rerun into the same folder spends no new teacher NFE
    pair_files = sorted((out / "pairs").glob("pairs-*.safetensors"))
    assert pair_files
    res = runner.invoke(app, ["sample", str(out), "--solver", "euler", "--nfe", "1", "--n",
                              "32", "--out", str(tmp_path / "s.npy")])
    assert res.exit_code == 0 and np.load(tmp_path / "s.npy").shape == (32, 2)
    res = runner.invoke(app, ["eval", str(out), "--solver", "euler", "--nfe", "1", "--n", "32",
                              "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "e.json").read_text())["evaluations"][0]
    assert rec["model"] == "reflow-2"
    teacher_rec = json.loads((teacher / "teacher" / "metrics.json").read_text())["evaluations"]
    assert all(r["model"] == "teacher" for r in teacher_rec)
    res = runner.invoke(app, ["distill", str(out), "--method", "onestep", "--pairs", "2000",
                              "--steps", "200", "--out", str(tmp_path / "one"), "--quiet"])
    assert res.exit_code == 0, res.output
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert one["method"] == "onestep"
    assert [d["method"] for d in load_checkpoint(tmp_path / "one")[1]["distill"]] == [
        "reflow", "onestep"]


@pytest.mark.parametrize("args,needles", [
    (["--method", "banana"], ["--method", "reflow"]),
    (["--pairs", "0"], ["--pairs"]),
    (["TEACHER_VP"], ["linear path", "'vp'"]),
])
def test_bad_input(teacher, tmp_path, args, needles):
    ckpt = str(teacher / "teacher")
    if args[0] == "TEACHER_VP":
        ckpt, args = str(teacher / "vp"), []
    one_error(runner.invoke(app, ["distill", ckpt, "--out", str(tmp_path / "o"), *args]),
              *needles)


@pytest.mark.parametrize("method,sampler,run,steps", [
    ("meanflow", "flow-map", "teacher", 150), ("shortcut", "flow-map", "teacher", 400),
    ("consistency", "consistency", "teacher", 400), ("mdt", "consistency", "teacher", 400),
    ("lcm", "consistency", "cond", 400), ("lcm-lora", "consistency", "cond", 400)])
def test_flow_map_students_sample_and_evaluate_with_their_own_sampler(teacher, tmp_path, method,
                                                                      sampler, run, steps):
    out = tmp_path / method
    extra = ["--guidance-range", "1,1.5"] if method == "lcm" else []
    res = runner.invoke(app, ["distill", str(teacher / run), "--method", method,
                              "--steps", str(steps), "--out", str(out), "--quiet", *extra])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    w1 = {e["model"]: e["w2"] for e in metrics["evaluations"] if e["nfe"] == 1}
    assert w1[method] < w1["teacher"], w1            # one jump beats one Euler step
    assert load_checkpoint(out)[1]["student"]["sampler"] == sampler
    res = runner.invoke(app, ["sample", str(out), "--nfe", "2", "--n", "16", "--out",
                              str(tmp_path / "s.npy")])
    assert res.exit_code == 0 and f"({sampler}, NFE 2)" in res.output, res.output
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()
    rec_file = tmp_path / "e.json"
    res = runner.invoke(app, ["eval", str(out), "--nfe", "1", "--n", "64", "--out",
                              str(rec_file)])
    assert res.exit_code == 0, res.output
    rec = json.loads(rec_file.read_text())["evaluations"][0]
    assert rec["model"] == method and rec["nfe"] == 1 and rec["solver"] == sampler
    for args in (["sample", str(out), "--solver", "heun"],
                 ["eval", str(out), "--solver", "euler", "--nfe", "2"]):
        one_error(runner.invoke(app, args), "own sampler")
    if method == "lcm":        # the guidance weight is an input of the student
        a, b = (runner.invoke(app, ["sample", str(out), "--nfe", "1", "--n", "16", "--label",
                                    "3", "--guidance", w, "--out", str(tmp_path / f"{w}.npy")])
                for w in ("1", "3"))
        assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
        assert not np.allclose(np.load(tmp_path / "1.npy"), np.load(tmp_path / "3.npy"))
    if method == "lcm-lora":   # the adapter is saved alone, a small fraction of the model
        assert 0 < metrics["adapter_fraction"] < 0.5
        assert (out / "lcm_adapter.safetensors").stat().st_size < (
            out / "checkpoint.safetensors").stat().st_size / 2


@pytest.mark.parametrize("method,args,needles", [
    ("lcm", [], ["lcm", "class-conditional"]),
    ("lcm-lora", ["--rank", "4096"], ["rank"]),
    ("lcm", ["--guidance-range", "3,1"], ["--guidance-range"]),
])
def test_bad_student_options(teacher, tmp_path, method, args, needles):
    run = "teacher" if method == "lcm" and not args else "cond"
    one_error(runner.invoke(app, ["distill", str(teacher / run), "--method", method,
                                  "--out", str(tmp_path / "o"), *args]), *needles)


def test_lcm_lora_without_peft_is_one_error_line(teacher, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)      # `import peft` now fails
    one_error(runner.invoke(app, ["distill", str(teacher / "cond"), "--method", "lcm-lora",
                                  "--out", str(tmp_path / "o")]), "peft", "monge[lora]")


def test_a_flow_map_student_is_not_a_teacher(teacher, tmp_path):
    out = tmp_path / "cm"
    assert runner.invoke(app, ["distill", str(teacher / "teacher"), "--method", "consistency",
                               "--steps", "5", "--out", str(out), "--quiet"]).exit_code == 0
    one_error(runner.invoke(app, ["distill", str(out), "--method", "reflow", "--out",
                                  str(tmp_path / "o")]), "flow-map student")
