"""Latent transport: an autoencoder whose latent space flows are trained and sampled in.

:class:`Autoencoder` (deterministic or VAE, Kingma & Welling 2014) maps images
``[B, C, H, W]`` to latents ``[B, c, H/f, W/f]``; :func:`train_autoencoder` trains it with
monge's trainer; :func:`save_autoencoder` / :func:`load_autoencoder` keep it in safetensors;
:func:`reconstruction_score` and :func:`psnr` measure its reconstruction floor.
"""

from monge.latent.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderLoss,
    AutoencoderOutput,
    ReconstructionScore,
    check_images,
    load_autoencoder,
    psnr,
    reconstruction_score,
    save_autoencoder,
    train_autoencoder,
)

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderLoss",
    "AutoencoderOutput",
    "ReconstructionScore",
    "check_images",
    "load_autoencoder",
    "psnr",
    "reconstruction_score",
    "save_autoencoder",
    "train_autoencoder",
]
