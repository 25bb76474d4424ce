"""One place mapping a config's path choice to its parts: path, network wrapper, loss, model.

Everything path-specific is declared by the path itself (:class:`~monge.paths.ProbabilityPath`:
``wrap_network``, ``loss_family``, ``fixed_prediction``, ``initial_state``, ``data_scale``) and
by the registries (``monge.paths.PATHS``, ``monge.train.LOSSES``), so this module never asks which
path it holds. Examples of what the paths declare:

- ``interpolant`` (Albergo et al. 2023): the velocity b is trained directly (``InterpolantLoss``).
- ``kinetic-optimal`` (Shaul et al. 2023): the schedule is estimated from the target's training
  data after scaling it to E‖x1‖² = d; training and sampling happen in that scaled space and
  samples are divided by ``data_scale`` on the way out.
- ``pfgmpp`` (Xu et al. 2023): an EDM-preconditioned denoiser trained with ``PFGMPPLoss``; its
  x1-prediction is the model's declared prediction, and sampling starts from the heavy-tailed
  PFGM++ prior.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from monge.couplings import Coupling
from monge.data import Dataset
from monge.experiments.config import RunConfig
from monge.paths import ModelWrapper, ProbabilityPath, make_path
from monge.train import make_loss


@dataclass
class Method:
    """The path of a run and how to train and sample on it."""

    path: ProbabilityPath
    prediction: str

    @property
    def data_scale(self) -> float:
        return float(self.path.data_scale)

    def wrap_model(self, net: nn.Module) -> nn.Module:
        """The module the trainer optimises (the network, or e.g. its EDM preconditioner)."""
        return self.path.wrap_network(net)

    def loss(self, cfg: RunConfig, coupling: Coupling, num_classes: int | None) -> nn.Module:
        tc = cfg.train
        return make_loss(self.path, prediction=self.prediction, weighting=tc.weighting,
                         time_sampler=tc.time_sampler, coupling=coupling,
                         cond_dropout=tc.cond_dropout, num_classes=num_classes,
                         local_reg=tc.local_reg, local_reg_start=tc.local_reg_start,
                         smooth_reg=tc.smooth_reg)

    def velocity_field(self, model: nn.Module) -> ModelWrapper:
        """The model wrapper the solvers integrate (velocity from ``forward``)."""
        return ModelWrapper(model, self.path, self.prediction)

    def initial_state(self, x0: Tensor, seed: int) -> Tensor:
        """x at t = 0 from source samples x0 (the path decides: x0, σ_max·x0, or a prior draw)."""
        g = torch.Generator(device=x0.device).manual_seed(seed)
        return self.path.initial_state(x0, generator=g)


def build_method(cfg: RunConfig, target: Dataset | None,
                 path_state: dict[str, Any] | None = None) -> Method:
    """Build the path named in ``cfg``: data-dependent paths use the target's training split,
    or ``path_state`` (a path's ``export_state()``, as stored in a checkpoint) without data."""
    p = cfg.path
    path = make_path(p.name, sigma_min=p.sigma_min, sigma_max=p.sigma_max,
                     interpolant=p.interpolant, gamma=p.gamma, gamma_scale=p.gamma_scale, D=p.D,
                     data=None if target is None else target.train, generator=cfg.seed,
                     state=path_state)
    prediction = path.fixed_prediction or cfg.train.prediction
    advice = path.prediction_advice(prediction)
    if advice:
        warnings.warn(advice, UserWarning, stacklevel=2)
    return Method(path, prediction)
