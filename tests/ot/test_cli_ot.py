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
