"""Editing in a generative model's spaces: latent traversals, higher-resolution extrapolation and
score distillation through a decoder.

- :mod:`monge.editing.extrapolate`: training-free patch-wise extrapolation to a larger canvas
  (AccDiffusion v2 mechanics: windows, skip residual, dilated sampling, window interaction,
  region-conditioned labels) and the object-repetition measure.
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

__all__ = [
    "EXTRAPOLATION_METHODS",
    "ExtrapolationMethod",
    "ExtrapolationResult",
    "count_objects",
    "extrapolate",
    "foreground_mask",
    "gaussian_smooth",
    "kappa",
    "permute_sublattices",
    "prompt_masks",
    "repetition_rate",
    "split_sublattices",
    "stitch_sublattices",
    "unpermute_sublattices",
    "window_offsets",
    "window_prompts",
]
