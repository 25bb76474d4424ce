"""The ``LOSSES`` registry: which training objective trains on a path.

A path declares its ``loss_family`` (:class:`~monge.paths.base.ProbabilityPath`); the factory
registered under that name builds the objective from the run's options, so no code above this
layer needs to know which path is which. Every factory takes the same keywords and ignores those
its objective has no use for.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from monge.core.registry import Registry
from monge.errors import InputError
from monge.paths.base import ProbabilityPath
from monge.train.interpolant_loss import InterpolantLoss
from monge.train.local_reg import START_STATES, LocallyRegularizedLoss
from monge.train.losses import FlowMatchingLoss
from monge.train.pfgmpp_loss import PFGMPPLoss
from monge.train.smooth_reg import SmoothnessRegularizedLoss
from monge.train.time_samplers import make_time_sampler

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("flow-matching", description="conditional flow matching on an affine path "
                 "(declared target and weighting)")
def _flow_matching(path: ProbabilityPath, *, prediction: str = "velocity",
                   weighting: str = "none", time_sampler: str = "uniform",
                   coupling: Any = None, cond_dropout: float = 0.0,
                   num_classes: int | None = None) -> nn.Module:
    return FlowMatchingLoss(path, target=prediction, weighting=weighting,
                            time_sampler=make_time_sampler(time_sampler), coupling=coupling,
                            cond_dropout=cond_dropout, num_classes=num_classes)


@LOSSES.register("interpolant", description="stochastic-interpolant regression of the velocity b")
def _interpolant(path: ProbabilityPath, *, coupling: Any = None, cond_dropout: float = 0.0,
                 num_classes: int | None = None, **_: Any) -> nn.Module:
    return InterpolantLoss(path, target="velocity", coupling=coupling,
                           cond_dropout=cond_dropout, num_classes=num_classes)


@LOSSES.register("pfgmpp", description="PFGM++ denoising on the D-dimensional kernel")
def _pfgmpp(path: ProbabilityPath, *, cond_dropout: float = 0.0,
            num_classes: int | None = None, **_: Any) -> nn.Module:
    return PFGMPPLoss(path, cond_dropout=cond_dropout, num_classes=num_classes)


def make_loss(path: ProbabilityPath, *, local_reg: float | None = 0.0,
              local_reg_start: str = "interpolant", smooth_reg: float | None = 0.0,
              **options: Any) -> nn.Module:
    """The objective that trains on ``path`` (its ``loss_family``) with ``options``.

    With ``local_reg`` = λ > 0 (0 or None: off) it is wrapped in
    :class:`~monge.train.local_reg.LocallyRegularizedLoss` (λ·R of one dopri5 step at a random
    time, started as ``local_reg_start``: ``"interpolant"`` or ``"ode"``). With
    ``smooth_reg`` = λ > 0 it is wrapped in
    :class:`~monge.train.smooth_reg.SmoothnessRegularizedLoss` (Smooth Diffusion's step-wise
    variation penalty).
    """
    if local_reg_start not in START_STATES:
        raise InputError(f"local_reg_start: unknown {local_reg_start!r}; expected one of "
                         f"{START_STATES}")
    loss = LOSSES.build(path.loss_family, path=path, **options)
    prediction = path.fixed_prediction or options.get("prediction", "velocity")
    if smooth_reg:
        loss = SmoothnessRegularizedLoss(loss, smooth_reg, path, prediction=prediction)
    if local_reg is None or (isinstance(local_reg, int | float)
                              and not isinstance(local_reg, bool) and local_reg == 0):
        return loss
    return LocallyRegularizedLoss(loss, local_reg, path, prediction=prediction,
                                  start=local_reg_start)
