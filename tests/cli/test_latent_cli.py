"""`monge run` with a `latent:` section: the autoencoder is trained and saved beside the run,
the flow lives on its latents, samples come back as images and are measured against held-out
images with the decoder's own floor; a mismatched autoencoder is one error line."""

from __future__ import annotations

import json

import numpy as np
from cli_checks import one_error
from typer.testing import CliRunner

from monge.cli.main import app
from monge.train import load_checkpoint

runner = CliRunner()

CONFIG = """source: gaussian
target: digits
model: {kind: unet, base_channels: 16, conditional: true}
train: {steps: 150, batch_size: 64, checkpoint_every: 150, log_every: 50, cond_dropout: 0.1}
latent: {enabled: true, steps: 200, latent_channels: 4, downsample: 2, width: 16}
eval: {n_samples: 100, solvers: [{solver: euler, nfe: [8]}], trajectories: 0,
       straightness_steps: 4, sweep_nfe: []}
compare: {couplings: []}
distill: {methods: []}
"""


def test_latent_run_trains_on_latents_and_reports_images(tmp_path):
    (tmp_path / "l.yaml").write_text(CONFIG + f"out: {tmp_path / 'run'}\n")
    res = runner.invoke(app, ["run", str(tmp_path / "l.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
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
    bad = CONFIG.replace("latent: {enabled: true,", f"latent: {{enabled: true, autoencoder: "
                         f"{tmp_path / 'other.safetensors'},")
    (tmp_path / "b.yaml").write_text(bad + f"out: {tmp_path / 'bad'}\n")
    one_error(runner.invoke(app, ["run", str(tmp_path / "b.yaml")]), "digits")
    one_error(runner.invoke(app, ["steer", str(run), "--task", "inpaint", "--out",
                                  str(tmp_path / "x.npy")]), "latent model")
