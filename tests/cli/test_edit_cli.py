"""`monge edit CKPT {interpolate, traverse, upscale}` on a latent digits run: each writes images,
a report and metrics whose figures are consistent with what the images show; bad input is one
error line."""

from __future__ import annotations

import json

from cli_checks import one_error
from typer.testing import CliRunner

from monge.cli.main import app

runner = CliRunner()


def test_interpolate_writes_frames_and_measures_them(tmp_path, latent_run):
    out = tmp_path / "interp"
    res = runner.invoke(app, ["edit", str(latent_run), "interpolate", "--out", str(out),
                              "--pairs", "3", "--frames", "5", "--steps", "8"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())["interpolate"]
    assert (out / "interpolation.png").stat().st_size > 1000
    assert m["pairs"] == 3 and m["frames"] == 5 and m["features"].startswith("digits")
    # ISTD is a spread of distances: non-negative and smaller than the distances' own scale
    # times sqrt(frames - 1) (a std of n non-negative numbers is at most their mean · sqrt(n))
    assert 0 <= m["istd"] <= m["mean_step"] * 2.0 + 1e-9
    # one inversion + one generation per point, 8 Euler steps each, batched over the frames
    assert m["nfe"] == 3 * 8
    # the regenerated end points are near the originals: well under the images' spread (~0.8)
    assert m["inversion_rmse"] < 0.5
    assert "ISTD" in (out / "report.md").read_text()


def test_edit_bad_input_is_one_line(tmp_path, latent_run, teacher):
    one_error(runner.invoke(app, ["edit", str(tmp_path / "nothing"), "interpolate"]),
              "nothing")
    one_error(runner.invoke(app, ["edit", str(latent_run), "interpolate", "--frames", "2",
                                  "--out", str(tmp_path / "o")]), "--frames")
    one_error(runner.invoke(app, ["edit", str(teacher / "teacher"), "interpolate",
                                  "--out", str(tmp_path / "o")]), "not images")
