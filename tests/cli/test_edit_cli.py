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


def test_traverse_learns_directions_that_change_the_image(tmp_path, latent_run):
    from safetensors.torch import load_file

    out = tmp_path / "trav"
    res = runner.invoke(app, ["edit", str(latent_run), "traverse", "--out", str(out),
                              "--directions", "3", "--train-steps", "15", "--frames", "4",
                              "--starts", "2", "--batch-size", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())["traverse"]
    assert m["space"] == "latent" and m["dim"] == 4 * 4 * 4 and m["directions"] == 3
    assert abs(m["chance"] - 1 / 3) < 1e-9 and 0 <= m["accuracy"] <= 1
    assert len(m["per_direction"]) == 3
    assert all(c > 1e-4 for c in m["image_change"])     # every direction moves the image
    weights = load_file(str(out / "potentials.safetensors"))
    assert any(k.startswith("field.") for k in weights)
    assert any(k.startswith("classifier.") for k in weights)
    assert (out / "traversals.png").stat().st_size > 1000


def test_upscale_decodes_at_any_size(tmp_path, latent_run):
    out = tmp_path / "up"
    res = runner.invoke(app, ["edit", str(latent_run), "upscale", "--out", str(out),
                              "--scale", "1.5", "--scale", "2.5", "--decoder-steps", "40",
                              "--samples", "3", "--nfe", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())["upscale"]
    assert m["sizes"] == [12, 20] and m["base"] == 8                   # round(1.5·8), 2.5·8
    assert m["ground_truth"].startswith("none")                      # digits: no exact render
    assert all(v is None for v in m["psnr"].values())
    assert all(0 <= v < 0.5 for v in m["consistency"].values())
    assert 0 < m["base_psnr"] and m["base_psnr"] <= m["autoencoder_psnr"] + 10
    assert (out / "upscaled.png").stat().st_size > 1000
    # the saved decoder is reused: no training, the same decodes, hence the same figures
    again = tmp_path / "again"
    res = runner.invoke(app, ["edit", str(latent_run), "upscale", "--out", str(again),
                              "--scale", "1.5", "--scale", "2.5", "--decoder",
                              str(out / "implicit_decoder.safetensors"), "--samples", "3",
                              "--nfe", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    m2 = json.loads((again / "metrics.json").read_text())["upscale"]
    assert m2["decoder_steps"] == 0 and m2["base_psnr"] == m["base_psnr"]
    assert m2["consistency"] == m["consistency"]
    one_error(runner.invoke(app, ["edit", str(latent_run), "upscale", "--decoder",
                                  str(latent_run / "checkpoint.safetensors"), "--out",
                                  str(tmp_path / "bad")]), "not an implicit-decoder file")


def test_edit_bad_input_is_one_line(tmp_path, latent_run, teacher):
    one_error(runner.invoke(app, ["edit", str(tmp_path / "nothing"), "interpolate"]),
              "nothing")
    one_error(runner.invoke(app, ["edit", str(latent_run), "interpolate", "--frames", "2",
                                  "--out", str(tmp_path / "o")]), "--frames")
    one_error(runner.invoke(app, ["edit", str(teacher / "teacher"), "interpolate",
                                  "--out", str(tmp_path / "o")]), "not images")
    one_error(runner.invoke(app, ["edit", str(latent_run), "upscale", "--scale", "0",
                                  "--out", str(tmp_path / "o")]), "--scale")
    one_error(runner.invoke(app, ["edit", str(latent_run), "traverse", "--space", "pixels",
                                  "--out", str(tmp_path / "o")]), "--space")
