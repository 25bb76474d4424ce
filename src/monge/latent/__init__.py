"""Latent transport: an autoencoder whose latent space flows are trained and sampled in.

:class:`Autoencoder` (deterministic or VAE, Kingma & Welling 2014) maps images
``[B, C, H, W]`` to latents ``[B, c, H/f, W/f]``; :func:`train_autoencoder` trains it with
monge's trainer; :func:`save_autoencoder` / :func:`load_autoencoder` keep it in safetensors;
:func:`reconstruction_score` and :func:`psnr` measure its reconstruction floor.
:class:`ImplicitDecoder` (LIIF) decodes latents at any output size and :class:`AlignmentLoss`
aligns a latent flow with it (:mod:`monge.latent.implicit_decoder`).
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
from monge.latent.implicit_decoder import (
    AlignmentLoss,
    AlignmentTerms,
    ImplicitDecoder,
    ImplicitDecoderConfig,
    ImplicitDecoderLoss,
    MultiScaleBatch,
    MultiScaleSource,
    RenderedScales,
    ScaleBank,
    ScaleEvaluation,
    ScaleScore,
    ScaleTargets,
    alignment_sampler,
    area_resize,
    cross_scale_consistency,
    ensemble_cells,
    evaluate_scales,
    make_cell,
    make_coords,
    train_implicit_decoder,
)

__all__ = [
    "AlignmentLoss",
    "AlignmentTerms",
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderLoss",
    "AutoencoderOutput",
    "ImplicitDecoder",
    "ImplicitDecoderConfig",
    "ImplicitDecoderLoss",
    "MultiScaleBatch",
    "MultiScaleSource",
    "ReconstructionScore",
    "RenderedScales",
    "ScaleBank",
    "ScaleEvaluation",
    "ScaleScore",
    "ScaleTargets",
    "alignment_sampler",
    "area_resize",
    "check_images",
    "cross_scale_consistency",
    "ensemble_cells",
    "evaluate_scales",
    "load_autoencoder",
    "make_cell",
    "make_coords",
    "psnr",
    "reconstruction_score",
    "save_autoencoder",
    "train_autoencoder",
    "train_implicit_decoder",
]
