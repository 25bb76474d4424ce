"""Probability paths: where x_t lies between source x0 (t = 0) and data x1 (t = 1)."""

from __future__ import annotations

from monge.errors import InputError
from monge.paths.affine import (
    PREDICTIONS,
    AffinePath,
    EDMPath,
    LinearPath,
    Prediction,
    VEPath,
    VPPath,
)
from monge.paths.gmm import GaussianMixture

PATHS: dict[str, type[AffinePath]] = {
    "linear": LinearPath,
    "vp": VPPath,
    "ve": VEPath,
    "edm": EDMPath,
}


def make_path(name: str, **kwargs) -> AffinePath:
    """Build a path by name (``linear``, ``vp``, ``vp-cosine``, ``ve``, ``edm``)."""
    if name == "vp-cosine":
        return VPPath(schedule="cosine", **kwargs)
    if name not in PATHS:
        raise InputError(f"path: unknown name {name!r}; expected one of "
                         f"{sorted([*PATHS, 'vp-cosine'])}")
    return PATHS[name](**kwargs)


__all__ = ["PATHS", "PREDICTIONS", "AffinePath", "EDMPath", "GaussianMixture", "LinearPath",
           "Prediction", "VEPath", "VPPath", "make_path"]
