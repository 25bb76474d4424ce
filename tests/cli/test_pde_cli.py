"""``monge pde`` sub-app: report folders, metrics.json, one-line errors."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from monge.cli.pde_cmd import pde_app

torch.set_num_threads(1)
runner = CliRunner()


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())["methods"]


def test_advect_writes_report(tmp_path):
    out = tmp_path / "adv"
    res = runner.invoke(pde_app, ["advect", "--out", str(out), "--steps", "2", "--iters", "5",
                                  "--samples", "100", "--width", "8"])
    assert res.exit_code == 0, res.output
    m = _metrics(out)
    assert set(m) == {"insr", "upwind", "lax_wendroff", "semi_lagrangian", "spectral"}
    assert m["spectral"]["relative_l2"] < m["upwind"]["relative_l2"]
    assert (out / "fields.png").exists() and (out / "report.md").exists()


def test_advect_cfl_violation_is_one_line_error(tmp_path):
    res = runner.invoke(pde_app, ["advect", "--out", str(tmp_path), "--method", "upwind",
                                  "--grid-dt", "1.0"])
    assert res.exit_code == 1
    assert "CFL" in res.output and "Traceback" not in res.output


def test_poisson_with_obstacle_and_reused_network(tmp_path):
    mask = np.zeros((16, 16), dtype=bool)
    mask[5:9, 6:10] = True
    np.save(tmp_path / "mask.npy", mask)
    net = tmp_path / "net.safetensors"
    args = ["poisson", "--grid", "16", "--obstacle", str(tmp_path / "mask.npy"), "--network",
            str(net), "--train-grid", "16", "--train-steps", "60", "--method", "cg,ic0,dcdm",
            "--max-iter", "300"]
    res = runner.invoke(pde_app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    m = _metrics(tmp_path / "a")
    assert m["cg"]["converged"] and m["ic0"]["iterations"] < m["cg"]["iterations"]
    assert net.exists()
    res = runner.invoke(pde_app, ["poisson", "--grid", "16", "--network", str(net), "--method",
                                  "dcdm", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert _metrics(tmp_path / "b")["dcdm"]["seconds"] > 0


def test_poisson_bad_input(tmp_path):
    np.save(tmp_path / "float.npy", np.zeros((16, 16)))
    res = runner.invoke(pde_app, ["poisson", "--grid", "16", "--obstacle",
                                  str(tmp_path / "float.npy"), "--out", str(tmp_path)])
    assert res.exit_code == 1 and "boolean" in res.output
    res = runner.invoke(pde_app, ["poisson", "--grid", "15", "--method", "dcdm", "--out",
                                  str(tmp_path)])
    assert res.exit_code == 1 and "even" in res.output
    res = runner.invoke(pde_app, ["poisson", "--method", "lu", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "--method" in res.output


def test_convection_tiny(tmp_path):
    res = runner.invoke(pde_app, ["convection", "--beta", "40", "--adam", "5", "--lbfgs", "2",
                                  "--width", "8", "--depth", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert set(_metrics(tmp_path)) == {"pinn", "lpinn"}


def test_help_lists_commands():
    res = runner.invoke(pde_app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("advect", "heat", "fluid", "convection", "burgers", "poisson"):
        assert cmd in res.output


def test_heat_fluid_burgers_tiny(tmp_path):
    runs = {
        "heat": ["--steps", "1", "--iters", "3", "--samples", "64", "--width", "8"],
        "fluid": ["--steps", "1", "--iters", "2", "--samples", "64", "--width", "8"],
        "burgers": ["--adam", "3", "--lbfgs", "1", "--width", "8", "--depth", "1"],
    }
    for cmd, extra in runs.items():
        out = tmp_path / cmd
        res = runner.invoke(pde_app, [cmd, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        m = _metrics(out)
        assert all(np.isfinite(v["relative_l2"]) for v in m.values())
        assert (out / "fields.png").exists()
    heat = _metrics(tmp_path / "heat")
    assert heat["crank_nicolson"]["relative_l2"] < min(0.06, heat["insr_implicit"]["relative_l2"])
    assert _metrics(tmp_path / "fluid")["spectral"]["relative_l2"] < 1e-10
