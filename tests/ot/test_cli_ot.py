"""`monge ot` command: solves between two point files, writes the plan, fails cleanly."""

import numpy as np
import ot
import pytest

from monge.cli.ot_cmd import ot_command
from monge.errors import MongeError


def test_ot_command_writes_plan_matching_pot(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 2)), rng.normal(1.0, 0.2, (30, 2))
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    out, png = tmp_path / "plan.npz", tmp_path / "plan.png"
    ot_command(tmp_path / "x.npy", tmp_path / "y.csv", method="exact", eps=1e-3,
               eps_scale="max_cost", k=2, tol=None, max_iter=None, out=out, plot=png)
    data = np.load(out, allow_pickle=False)
    x32, y32 = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    ref = ot.emd2(np.full(40, 1 / 40), np.full(30, 1 / 30), ot.dist(x32, y32))
    assert data["plan"].shape == (40, 30) and abs(float(data["cost"]) - ref) <= 1e-9
    assert png.stat().st_size > 0
    ot_command(tmp_path / "x.npy", tmp_path / "y.csv", method="sns", eps=1e-2,
               eps_scale="max_cost", k=2, tol=1e-9, max_iter=None, out=out, plot=None)
    assert float(np.load(out)["marginal_error"]) <= 1e-9


def test_ot_command_bad_input_raises_monge_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "z.npy", np.zeros((5, 3)))
    with pytest.raises(MongeError):
        ot_command(tmp_path / "x.npy", tmp_path / "missing.npy")
    with pytest.raises(MongeError, match="dimensions differ"):
        ot_command(tmp_path / "x.npy", tmp_path / "z.npy")
    with pytest.raises(MongeError, match="--method"):
        ot_command(tmp_path / "x.npy", tmp_path / "x.npy", method="magic")


def test_ot_command_auto_online_writes_potentials_only(tmp_path, monkeypatch, capsys):
    import monge.cli.ot_cmd as cmd
    from monge.ot import online_sinkhorn

    rng = np.random.default_rng(1)
    x, y = rng.random((300, 2)), rng.normal(0.5, 0.3, (250, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out, png = tmp_path / "pot.npz", tmp_path / "plan.png"
    monkeypatch.setattr(cmd, "MAX_WRITTEN_PLAN", 1000)
    # a 1 KiB memory limit stands in for a 10^5-point problem: auto must go online
    cmd.ot_command(tmp_path / "x.npy", tmp_path / "y.npy", eps=0.05, tol=1e-7,
                   max_dense_gb=1e-6, out=out, plot=png, progress=True)
    data = np.load(out, allow_pickle=False)
    assert str(data["method"]) == "online_sinkhorn" and "plan" not in data.files
    assert data["f"].shape == (300,) and float(data["marginal_error"]) <= 1e-7
    ref = online_sinkhorn(np.float32(x).astype(np.float64), np.float32(y).astype(np.float64),
                          0.05, eps_scale="max_cost", tol=1e-9)
    assert float(data["cost"]) == pytest.approx(float(ref.cost), rel=1e-6)
    assert png.stat().st_size > 0
    assert "auto -> online_sinkhorn" in capsys.readouterr().out
    # default method is auto; a small problem stays dense and writes its plan
    cmd.ot_command(tmp_path / "x.npy", tmp_path / "y.npy", eps=0.05, out=out, progress=False)
    data = np.load(out, allow_pickle=False)
    assert str(data["method"]) == "sinkhorn"
    with pytest.raises(MongeError, match="--dtype"):
        cmd.ot_command(tmp_path / "x.npy", tmp_path / "y.npy", dtype="float16")
