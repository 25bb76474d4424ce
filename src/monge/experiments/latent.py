"""The autoencoder of a latent run (``latent:`` in a config): trained once per run folder and
saved beside its checkpoint, or read from a given file; the flow is then trained on its latents
(:func:`monge.experiments.build.build_components`) and every sample is decoded before it is
measured, so the report compares images with images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from monge.data import load_dataset
from monge.errors import ConfigError
from monge.experiments.config import RunConfig

AE_NAME = "autoencoder.safetensors"


def prepare_autoencoder(cfg: RunConfig, out: Path, *, resume: bool, progress: bool,
                        device: str | torch.device) -> tuple[Any, str | None]:
    """(autoencoder, file as stored in the checkpoint: absolute, or relative to the run
    folder), or (None, None) for a run without ``latent.enabled``."""
    from monge.latent import (
        Autoencoder,
        AutoencoderConfig,
        load_autoencoder,
        reconstruction_score,
        save_autoencoder,
        train_autoencoder,
    )

    lc = cfg.latent
    if not lc.enabled:
        return None, None
    if lc.autoencoder is not None:
        path = Path(lc.autoencoder).expanduser().resolve()
        return load_autoencoder(path, device).eval(), str(path)
    file = out / AE_NAME
    if resume and file.exists():
        return load_autoencoder(file, device).eval(), AE_NAME
    target = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    if len(target.shape) != 3:
        raise ConfigError(f"latent.enabled: the autoencoder takes images [C, H, W]; target "
                          f"{cfg.target!r} has samples of shape {target.shape}")
    try:
        ae_cfg = AutoencoderConfig(image_shape=tuple(target.shape),
                                   latent_channels=lc.latent_channels,
                                   downsample=lc.downsample, width=lc.width,
                                   variational=lc.variational, kl_weight=lc.kl_weight)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"latent: {exc}") from None
    torch.manual_seed(cfg.seed)
    ae = Autoencoder(ae_cfg).to(device)
    if progress:
        print(f"latent: training the autoencoder {target.shape} → {ae_cfg.latent_shape} "
              f"({lc.steps} steps)")
    train_autoencoder(ae, target.train, steps=lc.steps, seed=cfg.seed, progress=progress)
    ae.eval()
    if progress:
        score = reconstruction_score(ae, target.test)
        print(f"latent: held-out reconstruction PSNR {score.psnr:.2f} dB (MSE {score.mse:.4g}, "
              f"mean-image baseline {score.baseline_mse:.4g})")
    save_autoencoder(ae, file)
    return ae, AE_NAME
