"""`monge run` with a `latent:` section: the autoencoder is trained and saved beside the run,
the flow lives on its latents, samples come back as images and are measured against held-out
images with the decoder's own floor; a mismatched autoencoder is one error line."""

from __future__ import annotations

import json
import shutil

import numpy as np
from cli_checks import LATENT, one_error
from typer.testing import CliRunner

from monge.cli.main import app
from monge.train import load_checkpoint

runner = CliRunner()


def test_latent_run_trains_on_latents_and_reports_images(tmp_path, latent_run):
    run = tmp_path / "run"
    shutil.copytree(latent_run, run)              # this test replaces the run's autoencoder
    m = json.loads((run / "metrics.json").read_text())
    lat = m["latent"]
    assert lat["latent_shape"] == [4, 4, 4] and (run / "autoencoder.safetensors").exists()
    assert lat["reconstruction_mse"] < 0.3 * lat["mean_image_mse"]      # a useful decoder
    _, state = load_checkpoint(run)
    assert state["shape"] == [4, 4, 4] and state["latent"]["data_shape"] == [1, 8, 8]
    assert "frechet" in m["evaluations"][0]                      # measured as digit images
    assert "latent flow on 4×4×4" in (run / "report.md").read_text()
    res = runner.invoke(app, ["sample", str(run), "--nfe", "4", "--n", "6", "--label", "2",
                              "--out", str(tmp_path / "s.npy")])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 8, 8)
    # an autoencoder for other images does not fit this target: one error line
    from monge.latent import Autoencoder, AutoencoderConfig, save_autoencoder

    save_autoencoder(Autoencoder(AutoencoderConfig(image_shape=(3, 16, 16), width=8)),
                     tmp_path / "other.safetensors")
    bad = LATENT.replace("latent: {enabled: true,", f"latent: {{enabled: true, autoencoder: "
                         f"{tmp_path / 'other.safetensors'},")
    (tmp_path / "b.yaml").write_text(bad + f"out: {tmp_path / 'bad'}\n")
    one_error(runner.invoke(app, ["run", str(tmp_path / "b.yaml")]), "digits")
    one_error(runner.invoke(app, ["steer", str(run), "--task", "inpaint", "--out",
                                  str(tmp_path / "x.npy")]), "latent model")
    # the run's autoencoder file replaced by one with other latents: loading it is one error line
    save_autoencoder(Autoencoder(AutoencoderConfig(image_shape=(1, 8, 8), latent_channels=2,
                                                   width=8)), run / "autoencoder.safetensors")
    one_error(runner.invoke(app, ["sample", str(run), "--nfe", "2", "--n", "2", "--out",
                                  str(tmp_path / "t.npy")]), "latents of shape")
    (run / "autoencoder.safetensors").write_bytes(b"truncated")
    one_error(runner.invoke(app, ["sample", str(run), "--nfe", "2", "--n", "2", "--out",
                                  str(tmp_path / "t.npy")]), "autoencoder")
