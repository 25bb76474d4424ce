"""``monge dynamics`` sub-app: each command writes metrics.json and plots; bad input is one line."""

import json

import pytest
import torch
from typer.testing import CliRunner

from monge.cli.dynamics_cmd import dynamics_app

torch.set_num_threads(1)
runner = CliRunner()


def _ok(args):
    res = runner.invoke(dynamics_app, args)
    assert res.exit_code == 0, res.output
    return res


def test_help_lists_the_four_commands():
    res = _ok(["--help"])
    for cmd in ("pg", "stability", "distill-data", "homoode"):
        assert cmd in res.output


def test_pg_lqr_reports_trajectories_and_gap(tmp_path):
    _ok(["pg", "--env", "lqr", "--methods", "n-pg-igt,n-harpg", "--budget", "60",
         "--out", str(tmp_path)])
    m = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("n-pg-igt", "n-harpg"):
        row = m["methods"][name]
        assert row["trajectories_used"] <= 60 and row["final_relative_gap"] > 0
    assert (tmp_path / "pg_curves.png").stat().st_size > 0


def test_stability_small(tmp_path):
    _ok(["stability", "--lrs", "0.05", "--n", "10", "--width", "8", "--steps", "300",
         "--target-loss", "1e-3", "--out", str(tmp_path)])
    m = json.loads((tmp_path / "metrics.json").read_text())
    run = m["runs"][0]
    assert run["lr"] == 0.05 and "trace" in run and "lambda_max_lr" in run
    assert (tmp_path / "sharpness_vs_lr.png").exists()


def test_homoode_small(tmp_path):
    _ok(["homoode", "--models", "homoode,deq", "--epochs", "1", "--hidden", "8", "--width", "8",
         "--out", str(tmp_path)])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["models"]) == {"homoode", "deq"}
    assert 0 <= m["models"]["homoode"]["test_accuracy"] <= 1


@pytest.mark.parametrize("args, text", [
    (["pg", "--methods", "ppo"], "--methods: unknown method"),
    (["pg", "--lr", "-1"], "learning rate must be a finite number > 0"),
    (["stability", "--lrs", "0"], "learning rate must be a finite number > 0"),
    (["homoode", "--models", "resnet"], "model: expected"),
])
def test_bad_input_is_one_error_line(tmp_path, args, text):
    res = runner.invoke(dynamics_app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert text in res.output
    assert "Traceback" not in res.output
