"""Steering and inverse problems: recover x from a degraded, noisy observation y = A x + σ_y·n.

The foundation of the layer: degradation operators A (:class:`Mask` for inpainting,
:class:`AvgPool` for super-resolution, :class:`GaussianBlur` for deblurring, :class:`Projection`
for any dense map), each with an exact adjoint and a pseudo-inverse, :func:`observe` to draw y,
and :func:`gmm_posterior`, the closed-form posterior p(x | y) of a Gaussian-mixture prior, against
which the posterior samplers (DPS, ΠGDM, FlowChef, FLAIR) are tested.
"""

from monge.inverse.exact import FullCovarianceMixture, GaussianMixturePosterior, gmm_posterior
from monge.inverse.operators import (
    AvgPool,
    GaussianBlur,
    LinearOperator,
    Mask,
    Projection,
    box_mask,
    check_sigma_y,
    observe,
    random_mask,
    random_projection,
)

__all__ = ["AvgPool", "FullCovarianceMixture", "GaussianBlur", "GaussianMixturePosterior",
           "LinearOperator", "Mask", "Projection", "box_mask", "check_sigma_y", "gmm_posterior",
           "observe", "random_mask", "random_projection"]

from monge.inverse.flair import FLAIR, FlairCalibration, flair_calibration  # noqa: E402
from monge.inverse.posterior import (  # noqa: E402
    DPS,
    POSTERIOR_METHODS,
    DFlow,
    FlowChef,
    InverseProblem,
    LikelihoodGuidance,
    PiGDM,
    PosteriorContext,
    PosteriorMethod,
    PosteriorResult,
    Replace,
    StepCorrection,
    make_posterior_method,
    posterior_sample,
    score_to_velocity_coefficient,
)

__all__ += ["DPS", "FLAIR", "POSTERIOR_METHODS", "DFlow", "FlairCalibration", "FlowChef",
            "InverseProblem", "LikelihoodGuidance", "PiGDM", "PosteriorContext",
            "PosteriorMethod", "PosteriorResult", "Replace", "StepCorrection",
            "flair_calibration", "make_posterior_method", "posterior_sample",
            "score_to_velocity_coefficient"]
