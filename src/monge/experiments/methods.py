"""One place mapping a config's path choice to its parts: path, model wrapper, loss, field, prior.

Most paths are affine (x_t = α·x1 + σ·x0) and share one recipe: ``FlowMatchingLoss`` on the
declared prediction and ``VelocityField`` for sampling. Three need more:

- ``interpolant`` (Albergo et al. 2023): ``InterpolantLoss`` trains the velocity b directly.
- ``kinetic-optimal`` (Shaul et al. 2023): the schedule is estimated from the target's training
  data after scaling it to E‖x1‖² = d; training and sampling happen in that scaled space and
  samples are divided by ``data_scale`` on the way out.
- ``pfgmpp`` (Xu et al. 2023): an EDM-preconditioned denoiser (``EDMPreconditioner``) trained
  with ``PFGMPPLoss`` on the D-dimensional perturbation kernel; its x1-prediction becomes a
  velocity through ``VelocityField(..., "x1", t_clamp=0)``, and sampling starts from the
  heavy-tailed PFGM++ prior.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from monge.couplings import Coupling
from monge.data import Dataset
from monge.experiments.config import RunConfig
from monge.paths import AffinePath, make_path
from monge.paths.field import VelocityField
from monge.paths.interpolant import StochasticInterpolant, make_interpolant
from monge.paths.kinetic_optimal import KineticOptimalPath
from monge.paths.pfgmpp import EDMPreconditioner, PFGMPPPath
from monge.train import FlowMatchingLoss
from monge.train.interpolant_loss import InterpolantLoss
from monge.train.pfgmpp_loss import PFGMPPLoss
from monge.train.time_samplers import make_time_sampler

Path = AffinePath | StochasticInterpolant


@dataclass
class Method:
    """The path of a run and how to train and sample on it."""

    path: Path
    prediction: str
    data_scale: float = 1.0

    def wrap_model(self, net: nn.Module) -> nn.Module:
        """The module the trainer optimises (the network, or its EDM preconditioner)."""
        if isinstance(self.path, PFGMPPPath):
            return EDMPreconditioner(net, self.path)
        return net

    def loss(self, cfg: RunConfig, coupling: Coupling, num_classes: int | None) -> nn.Module:
        tc = cfg.train
        if isinstance(self.path, StochasticInterpolant):
            return InterpolantLoss(self.path, target="velocity", coupling=coupling,
                                   cond_dropout=tc.cond_dropout, num_classes=num_classes)
        if isinstance(self.path, PFGMPPPath):
            return PFGMPPLoss(self.path, cond_dropout=tc.cond_dropout, num_classes=num_classes)
        return FlowMatchingLoss(self.path, target=tc.prediction, weighting=tc.weighting,
                                time_sampler=make_time_sampler(tc.time_sampler),
                                coupling=coupling, cond_dropout=tc.cond_dropout,
                                num_classes=num_classes)

    def velocity_field(self, model: nn.Module) -> nn.Module:
        """The velocity the solvers integrate."""
        if isinstance(self.path, StochasticInterpolant):
            return model  # an interpolant's network is its velocity b
        if isinstance(self.path, PFGMPPPath):
            return VelocityField(model, self.path, "x1", t_clamp=0.0)
        return VelocityField(model, self.path, self.prediction)

    def initial_state(self, x0: Tensor, seed: int) -> Tensor:
        """x at t = 0 from source samples x0: x0 itself on the linear path and interpolants,
        σ_max·ε on VE/EDM paths, a fresh draw of the heavy-tailed prior for PFGM++."""
        if isinstance(self.path, PFGMPPPath):
            g = torch.Generator(device=x0.device).manual_seed(seed)
            return self.path.prior_sample(x0.shape, generator=g, dtype=x0.dtype,
                                          device=x0.device)
        scale = getattr(self.path, "source_scale", 1.0)
        return scale * x0 if scale != 1.0 else x0


def build_method(cfg: RunConfig, target: Dataset) -> Method:
    """Build the path named in ``cfg`` (data-dependent paths use the target's training split)."""
    p = cfg.path
    if p.name == "interpolant":
        return Method(make_interpolant(p.interpolant, gamma=p.gamma, gamma_scale=p.gamma_scale),
                      "velocity")
    if p.name == "kinetic-optimal":
        if cfg.train.prediction == "velocity":
            warnings.warn("path kinetic-optimal with a velocity-prediction network trained "
                          "poorly here (the conditional velocity's variance explodes where the "
                          "path moves fast; benchmarks/kinetic_optimal.py); consider "
                          "train.prediction: x1", UserWarning, stacklevel=2)
        path = KineticOptimalPath.from_data(target.train, generator=cfg.seed)
        return Method(path, cfg.train.prediction, data_scale=float(path.data_scale))
    if p.name == "pfgmpp":
        return Method(PFGMPPPath(D=p.D, **p.kwargs()), "x1")
    return Method(make_path(p.name, **p.kwargs()), cfg.train.prediction)
