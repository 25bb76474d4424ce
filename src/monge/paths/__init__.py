"""Probability paths: where x_t lies between source x0 (t = 0) and data x1 (t = 1), the one model
wrapper that knows its path and prediction, and the ``PATHS`` registry.

Every path implements :class:`~monge.paths.base.ProbabilityPath`. ``PATHS.build(name, **options)``
builds one from configuration options (each factory takes the options it needs and ignores the
rest: ``sigma_min``, ``sigma_max``, ``interpolant``, ``gamma``, ``gamma_scale``, ``D``, and
``data``/``generator`` for paths estimated from the target's training data (``data`` may be a
callable, called only by such paths), and ``state`` (a path's ``export_state()``) to rebuild one
without its data).
"""

from __future__ import annotations

from typing import Any

from monge.core.registry import Registry
from monge.paths.affine import (
    PREDICTIONS,
    AffinePath,
    EDMPath,
    LinearPath,
    Prediction,
    VEPath,
    VPPath,
)
from monge.paths.base import ProbabilityPath
from monge.paths.gmm import GaussianMixture
from monge.paths.interpolant import StochasticInterpolant, make_interpolant
from monge.paths.kinetic_optimal import KineticOptimalPath
from monge.paths.likelihood import LikelihoodResult, log_likelihood
from monge.paths.model import ModelWrapper, PredictionField, ScheduleTransform
from monge.paths.pfgmpp import PFGMPPPath

PATHS: Registry[ProbabilityPath] = Registry("path")


def _sigmas(sigma_min: float | None = None, sigma_max: float | None = None) -> dict[str, float]:
    return {k: v for k, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max))
            if v is not None}


@PATHS.register("linear", description="rectified flow / CondOT: α = t, σ = 1 − t (any source)",
                gaussian_source="")
def _linear(**_: Any) -> ProbabilityPath:
    return LinearPath()


@PATHS.register("vp", description="variance preserving, linear β (DDPM/score SDE)",
                gaussian_source="yes")
def _vp(**_: Any) -> ProbabilityPath:
    return VPPath("linear")


@PATHS.register("vp-cosine", description="variance preserving, α = sin(πt/2)",
                gaussian_source="yes")
def _vp_cosine(**_: Any) -> ProbabilityPath:
    return VPPath("cosine")


@PATHS.register("ve", description="variance exploding, geometric σ from σ_max to σ_min",
                gaussian_source="yes")
def _ve(sigma_min: float | None = None, sigma_max: float | None = None,
        **_: Any) -> ProbabilityPath:
    return VEPath(**_sigmas(sigma_min, sigma_max))


@PATHS.register("edm", description="EDM ρ-schedule (Karras et al. 2022), α = 1",
                gaussian_source="yes")
def _edm(sigma_min: float | None = None, sigma_max: float | None = None,
         **_: Any) -> ProbabilityPath:
    return EDMPath(**_sigmas(sigma_min, sigma_max))


@PATHS.register("interpolant", description="stochastic interpolant I(t, x0, x1) + γ(t)·z "
                "(Albergo et al. 2023), trains the velocity b", gaussian_source="",
                prediction="velocity")
def _interpolant(interpolant: str = "linear", gamma: str = "sqrt",
                 gamma_scale: float | None = None, **_: Any) -> ProbabilityPath:
    return make_interpolant(interpolant, gamma=gamma, gamma_scale=gamma_scale)


@PATHS.register("kinetic-optimal", description="kinetic-optimal schedule estimated from the "
                "target's data separation (Shaul et al. 2023)", gaussian_source="yes",
                needs_data="yes")
def _kinetic_optimal(data: Any = None, generator: Any = 0, state: dict | None = None,
                     **_: Any) -> ProbabilityPath:
    from monge.errors import InputError
    if state:  # rebuilt from a checkpoint: no data needed
        path = KineticOptimalPath(state["snr"], state["separation"])
        path.data_scale = float(state["data_scale"])
        return path
    if data is None:
        raise InputError("path kinetic-optimal: needs the target's training data")
    if callable(data):
        data = data()
    return KineticOptimalPath.from_data(data, generator=generator)


@PATHS.register("pfgmpp", description="PFGM++ with augmentation dimension D on the EDM schedule "
                "(Xu et al. 2023), EDM-preconditioned denoiser", gaussian_source="yes",
                prediction="x1")
def _pfgmpp(D: float = 128.0, sigma_min: float | None = None, sigma_max: float | None = None,
            **_: Any) -> ProbabilityPath:
    return PFGMPPPath(D=D, **_sigmas(sigma_min, sigma_max))


def make_path(name: str, **options: Any) -> ProbabilityPath:
    """Build a registered path by name (``PATHS.names()``) from configuration options."""
    return PATHS.build(name, **options)


__all__ = ["PATHS", "PREDICTIONS", "AffinePath", "EDMPath", "GaussianMixture",
           "KineticOptimalPath", "LikelihoodResult", "LinearPath", "ModelWrapper", "PFGMPPPath",
           "Prediction",
           "PredictionField", "ProbabilityPath", "ScheduleTransform", "StochasticInterpolant",
           "VEPath", "VPPath", "log_likelihood", "make_interpolant", "make_path"]
