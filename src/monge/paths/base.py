"""The one path interface shared by affine paths, stochastic interpolants, kinetic-optimal and
PFGM++ paths.

A path says where x_t lies between a source sample x0 (t = 0) and a data sample x1 (t = 1), what a
network trained on it regresses, and what training and sampling need from it:

- ``sample_xt`` / ``target``: x_t and the regression target of each parameterisation;
- ``coefficients`` and, for affine paths, ``alpha``/``sigma`` and their derivatives (float64);
- ``log_snr(t)`` and its inverse ``t_from_log_snr(λ)`` (float64) where they exist;
- ``convert``: exact conversions between the predictions a network may make;
- ``prior_sample`` and ``initial_state``: the t = 0 state for sampling;
- ``data_scale``: a path trained on rescaled data (samples are divided by it on the way out);
- ``loss_family``, ``fixed_prediction``, ``wrap_network`` and ``t_clamp``: what the training layer
  and the model wrapper need, declared here so nothing above this layer dispatches on the type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from monge.errors import InputError


class ProbabilityPath(ABC):
    """Base class of every path (see the module docstring for the interface)."""

    name: str = "path"
    loss_family: str = "flow-matching"
    """Key of the training objective in ``monge.train.LOSSES`` that trains on this path."""
    predictions: tuple[str, ...] = ("velocity",)
    """Parameterisations a network on this path may predict (convertible into each other)."""
    fixed_prediction: str | None = None
    """The one prediction this path's training objective supports (None: configurable)."""
    needs_gaussian_source: bool = False
    """True when the path's t = 0 marginal is (scaled) Gaussian noise, not any source."""
    data_scale: float = 1.0

    @abstractmethod
    def sample_xt(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """x_t for the pair (x0, x1) at per-sample times t [B]."""

    @abstractmethod
    def target(self, kind: str, x0: Tensor, x1: Tensor, t: Tensor, *args: Any) -> Tensor:
        """The regression target of parameterisation ``kind``."""

    def convert(self, pred: Tensor, src: str, dst: str, x: Tensor, t: Tensor) -> Tensor:
        """Convert a prediction of kind ``src`` at (x, t) into kind ``dst`` (exact)."""
        if src == dst:
            return pred
        raise InputError(f"{self.name}: cannot convert a {src!r} prediction into {dst!r}; "
                         f"this path's predictions are {self.predictions}")

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(α/σ) in float64 (affine paths)."""
        raise InputError(f"{self.name}: log-SNR is not defined for this path")

    def t_from_log_snr(self, lam: Tensor | float) -> Tensor:
        """The inverse of :meth:`log_snr` (float64)."""
        raise InputError(f"{self.name}: log-SNR is not defined for this path")

    def marginal_schedule(self) -> Any:
        """An affine path (α, σ, α̇, σ̇ in float64) whose marginals x_t = α·x1 + σ·ε equal this
        path's for a standard Gaussian source, or None. Exponential-integrator and σ̄-variable
        solvers reach the schedule through it; the base path has none."""
        return None

    def prior_sample(self, shape: tuple[int, ...] | torch.Size, *,
                     generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> Tensor:
        """A draw of the t = 0 marginal, for paths whose source is noise."""
        raise InputError(f"{self.name}: the source is data, not a prior; give source samples")

    def initial_state(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The sampling state at t = 0 from source samples x0 (x0 itself by default)."""
        return x0

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """The module training optimises for a bare network (the network itself by default)."""
        return network

    def t_clamp(self, prediction: str) -> float:
        """Distance kept from t = 0 and 1 when a ``prediction`` is converted to a velocity (the
        conversions divide by α or σ, which vanish at the ends of some paths)."""
        return 0.0 if prediction == "velocity" else 1e-3

    def export_state(self) -> dict[str, Any]:
        """JSON-serialisable data a factory needs to rebuild this path without its training
        data (``PATHS.build(name, state=...)``); empty for paths defined by their options."""
        return {}

    def prediction_advice(self, prediction: str) -> str | None:
        """A warning for a prediction that trains poorly on this path (None when fine)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
