"""Editing in a generative model's spaces: latent traversals, higher-resolution extrapolation and
score distillation through a decoder.

- :mod:`monge.editing.extrapolate`: training-free patch-wise extrapolation to a larger canvas
  (AccDiffusion v2 mechanics: windows, skip residual, dilated sampling, window interaction,
  region-conditioned labels) and the object-repetition measure.
- :mod:`monge.editing.score_distillation`: score distillation (SDS) from a flow prior through an
  encoder, with pixel-wise gradient clipping (PGC) and the other clipping rules as a registry.
"""

from monge.editing.extrapolate import (
    EXTRAPOLATION_METHODS,
    ExtrapolationMethod,
    ExtrapolationResult,
    count_objects,
    extrapolate,
    foreground_mask,
    gaussian_smooth,
    kappa,
    permute_sublattices,
    prompt_masks,
    repetition_rate,
    split_sublattices,
    stitch_sublattices,
    unpermute_sublattices,
    window_offsets,
    window_prompts,
)
from monge.editing.score_distillation import (
    PIXEL_CLIP_RULES,
    SDS_WEIGHTINGS,
    CoordinateMLPRenderer,
    DistillResult,
    FreeImageRenderer,
    GradientTailStats,
    clip_pixel_gradient,
    distill_image,
    gradient_tail_stats,
    register_pixel_clip,
    sds_gradient,
    sds_loss,
)

__all__ = [
    "EXTRAPOLATION_METHODS",
    "PIXEL_CLIP_RULES",
    "SDS_WEIGHTINGS",
    "CoordinateMLPRenderer",
    "DistillResult",
    "ExtrapolationMethod",
    "ExtrapolationResult",
    "FreeImageRenderer",
    "GradientTailStats",
    "clip_pixel_gradient",
    "count_objects",
    "distill_image",
    "extrapolate",
    "foreground_mask",
    "gaussian_smooth",
    "gradient_tail_stats",
    "kappa",
    "permute_sublattices",
    "prompt_masks",
    "register_pixel_clip",
    "repetition_rate",
    "sds_gradient",
    "sds_loss",
    "split_sublattices",
    "stitch_sublattices",
    "unpermute_sublattices",
    "window_offsets",
    "window_prompts",
]
