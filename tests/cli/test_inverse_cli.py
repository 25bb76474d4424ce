"""`monge invert` and `monge diagnose`: inversion reconstructs, edits move toward the new
class, an energy model is conservative and an MLP is not; one error line for bad input."""

from __future__ import annotations

import json

import numpy as np
from cli_checks import one_error
from typer.testing import CliRunner

from monge.cli.main import app

runner = CliRunner()


def test_invert_reconstructs_and_edits_toward_another_class(teacher, tmp_path):
    z = tmp_path / "z.npy"
    res = runner.invoke(app, ["invert", str(teacher / "cond"), "8gaussians", "--n", "128",
                              "--steps", "32", "--out", str(z)])
    assert res.exit_code == 0, res.output
    plain = json.loads(z.with_suffix(".json").read_text())
    assert np.load(z).shape == (128, 2) and plain["nfe"] == 64
    assert plain["reconstruction_rmse"] < 0.1                  # Euler there and back
    res = runner.invoke(app, ["invert", str(teacher / "cond"), "8gaussians", "--n", "128",
                              "--steps", "32", "--gamma", "0.5", "--edit-label", "2",
                              "--out", str(tmp_path / "g.npy")])
    assert res.exit_code == 0, res.output
    rf = json.loads((tmp_path / "g.json").read_text())
    assert rf["reconstruction_rmse"] > plain["reconstruction_rmse"]   # γ trades it away
    edited = np.load(tmp_path / "g_edit.npy")
    # class 2 of 8gaussians is one mode: the edits gather at it, the originals do not
    from monge.data import load_dataset

    ds = load_dataset("8gaussians", n_train=2048, n_test=512, seed=0)
    centre = ds.test[ds.test_labels == 2].mean(0).numpy()
    originals = ds.test[:128].numpy()
    near = lambda a: float(np.linalg.norm(a - centre, axis=1).mean())  # noqa: E731
    assert near(edited) < 0.3 * near(originals), (near(edited), near(originals))
    assert rf["edit_distance_rms"] > 0.5
    one_error(runner.invoke(app, ["invert", str(teacher / "teacher"), "8gaussians",
                                  "--edit-label", "1", "--out", str(tmp_path / "e.npy")]),
              "--edit-label", "not class-conditional")
    one_error(runner.invoke(app, ["invert", str(teacher / "cond"), "8gaussians", "--eta",
                                  "0.5", "--out", str(tmp_path / "e.npy")]), "--edit-label")


def test_diagnose_tells_an_energy_model_from_an_mlp(teacher, tmp_path):
    cfg = (teacher / "t.yaml").read_text().replace("time_dim: 16}", "time_dim: 16, kind: energy}")
    cfg = cfg.replace("steps: 600", "steps: 100").replace(str(teacher / "teacher"),
                                                          str(tmp_path / "energy"))
    (tmp_path / "e.yaml").write_text(cfg)
    assert runner.invoke(app, ["run", str(tmp_path / "e.yaml"), "--quiet"]).exit_code == 0
    got = {}
    for run in (teacher / "teacher", tmp_path / "energy"):
        out = tmp_path / f"d_{run.name}"
        res = runner.invoke(app, ["diagnose", str(run), "--n", "48", "--times", "0.3,0.9",
                                  "--out", str(out)])
        assert res.exit_code == 0, res.output
        got[run.name] = json.loads((out / "metrics.json").read_text())
        assert (out / "conservativeness.png").exists()
    for field in ("velocity", "score"):
        assert max(r["asymmetry"] for r in got["energy"][field]) < 1e-10
        assert min(r["asymmetry"] for r in got["teacher"][field]) > 1e-4
    one_error(runner.invoke(app, ["diagnose", str(teacher / "teacher"), "--times", "0,2",
                                  "--out", str(tmp_path / "x")]), "--times")


def test_steer_samples_fit_the_observation_and_bad_input_is_one_line(teacher, tmp_path):
    np.save(tmp_path / "mask.npy", np.array([1.0, 0.0]))
    y = np.array([[1.5, 0.0], [-1.0, 0.0], [0.5, 0.0]])
    np.save(tmp_path / "y.npy", y)
    for method in ("flowchef", "dps", "replace"):
        out = tmp_path / f"{method}.npy"
        res = runner.invoke(app, ["steer", str(teacher / "teacher"), "--task", "inpaint",
                                  "--mask", str(tmp_path / "mask.npy"), "--observation",
                                  str(tmp_path / "y.npy"), "--method", method, "--out",
                                  str(out)])
        assert res.exit_code == 0, res.output
        x = np.load(out)
        assert x.shape == (3, 2)
        assert np.abs(x[:, 0] - y[:, 0]).max() < 0.2, (method, x)   # the observed coordinate
        rec = json.loads(out.with_suffix(".json").read_text())
        assert rec["nfe"] == 50 and rec["consistency"] < 3 * rec["consistency_expected"]
    np.save(tmp_path / "bad.npy", np.array([[1.0, 0.0, 2.0]]))
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 0.0]]))
    np.save(tmp_path / "m3.npy", np.array([1.0, 0.0, 1.0]))
    base = ["steer", str(teacher / "teacher"), "--task", "inpaint", "--out",
            str(tmp_path / "o.npy")]
    m = ["--mask", str(tmp_path / "mask.npy")]
    for args, needle in (([*m, "--observation", str(tmp_path / "bad.npy")], "--observation"),
                         ([*m, "--observation", str(tmp_path / "nan.npy")], "NaN"),
                         (["--mask", str(tmp_path / "m3.npy"), "--observation",
                           str(tmp_path / "y.npy")], "--mask"),
                         ([*m, "--noise", "-0.1"], "--noise"),
                         ([*m, "--method", "magic"], "--method")):
        one_error(runner.invoke(app, base + args), needle)


def test_steer_classify_moves_samples_to_the_class(teacher, tmp_path):
    clf = tmp_path / "clf.safetensors"
    res = runner.invoke(app, ["train-classifier", str(teacher / "teacher"), "--steps", "200",
                              "--out", str(clf)])
    assert res.exit_code == 0, res.output
    acc = {}
    for zeta in ("0", "0.05"):
        out = tmp_path / f"c{zeta}.npy"
        res = runner.invoke(app, ["steer", str(teacher / "teacher"), "--task", "classify",
                                  "--label", "3", "--classifier", str(clf), "--n", "64",
                                  "--step-size", zeta, "--out", str(out)])
        assert res.exit_code == 0, res.output
        acc[zeta] = json.loads(out.with_suffix(".json").read_text())["accuracy"]
    assert acc["0"] < 0.4 and acc["0.05"] > 0.9, acc      # 1 in 8 classes → the class
    one_error(runner.invoke(app, ["steer", str(teacher / "teacher"), "--task", "classify",
                                  "--out", str(tmp_path / "x.npy")]), "--label")
    one_error(runner.invoke(app, ["steer", str(teacher / "teacher"), "--task", "classify",
                                  "--label", "1", "--out", str(tmp_path / "x.npy")]),
              "--classifier")
