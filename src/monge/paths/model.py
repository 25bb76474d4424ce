"""The one model wrapper: a network that knows its path and what it predicts.

A network trained on a path predicts one parameterisation (velocity, clean data x1, noise ε, score
for affine paths; velocity, denoiser or score for stochastic interpolants). :class:`ModelWrapper`
declares both, returns the velocity from ``forward(x, t, **cond)`` (so every solver integrates
it), returns any other parameterisation from ``predict(kind, x, t, **cond)`` through the path's
exact conversions, and counts network calls in ``nfe``, so NFE everywhere means network calls.
Guidance, re-timing and preconditioning are wrappers of the same kind: :class:`ScheduleTransform`
re-times a model onto another affine path with the same log-SNR curve (the flow_matching library's
schedule transform; Lipman et al. 2024, "Flow Matching Guide and Code", §4.8).

Cost: one network call per ``forward``/``predict``, however many kinds ``predict`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from monge.core.tensors import as_time, broadcast_to_batch
from monge.errors import InputError
from monge.paths.base import ProbabilityPath


class ModelWrapper(nn.Module):
    """A network on ``path`` predicting ``prediction``; ``forward`` is the velocity.

    Conversions from x1, ε or score divide by α or σ, which vanish at the ends of some paths, so
    for those predictions the time given to the network and the conversion is clamped to
    [t_clamp, 1 − t_clamp] (``path.t_clamp(prediction)`` by default: 1e-3, 0 for a velocity
    network or a PFGM++ denoiser). The clamp is a declared attribute, shown in ``repr``.

    Args:
        network: ``network(x, t, **cond)`` with t of shape [B].
        path: the path it was trained on.
        prediction: what the network predicts (one of ``path.predictions``).
        t_clamp: override of the clamp distance.

    Example:
        >>> import torch
        >>> from monge.paths import LinearPath, ModelWrapper
        >>> net = lambda x, t: -x                      # an x1-prediction "network"
        >>> model = ModelWrapper(net, LinearPath(), "x1")
        >>> v, x1 = model.predict(("velocity", "x1"), torch.ones(2, 3), torch.full((2,), 0.5))
        >>> model.nfe, tuple(v.shape)
        (1, (2, 3))
    """

    def __init__(self, network: Any, path: ProbabilityPath, prediction: str = "velocity",
                 t_clamp: float | None = None):
        super().__init__()
        if prediction not in path.predictions:
            raise InputError(f"prediction: {prediction!r} is not a parameterisation of "
                             f"{path.name}; expected one of {path.predictions}")
        if isinstance(network, nn.Module):
            self.network = network
        else:
            self._callable = network
        self.path, self.prediction = path, prediction
        self.t_clamp = float(path.t_clamp(prediction) if t_clamp is None else t_clamp)
        if not 0.0 <= self.t_clamp < 0.5:
            raise InputError(f"t_clamp: must lie in [0, 0.5), got {self.t_clamp}")
        self.nfe = 0

    def reset_nfe(self) -> None:
        """Set the network-call counter to zero."""
        self.nfe = 0

    def network_output(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """One network call (counted): the raw prediction of kind ``self.prediction``."""
        self.nfe += 1
        net = self.network if "network" in self._modules else self._callable
        return net(x, t, **cond)

    def predict(self, kind: str | Sequence[str], x: Tensor, t: Tensor, **cond: Any
                ) -> Tensor | tuple[Tensor, ...]:
        """The prediction(s) of ``kind`` at (x, t) from one network call.

        Args:
            kind: a parameterisation (``velocity``, ``x1``, ``epsilon``, ``score``, ...) or a
                tuple of them (then a tuple is returned, in that order).
            x: state [B, ...]; t: times [B].
        """
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if self.t_clamp > 0.0:
            t = t.clamp(self.t_clamp, 1.0 - self.t_clamp)
        out = self.network_output(x, t, **cond)
        preds = tuple(self.path.convert(out, self.prediction, k, x, t) for k in kinds)
        return preds[0] if isinstance(kind, str) else preds

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """The velocity u(x, t) (one network call)."""
        return self.predict("velocity", x, t, **cond)

    def as_field(self, kind: str) -> PredictionField:
        """A field ``(x, t, **cond) -> predict(kind, ...)`` (e.g. the score for an SDE drift)."""
        return PredictionField(self, kind)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, prediction={self.prediction!r}, t_clamp={self.t_clamp}"


class PredictionField(nn.Module):
    """One parameterisation of a :class:`ModelWrapper` as a field (network calls counted by it)."""

    def __init__(self, model: ModelWrapper, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.model.predict(self.kind, x, t, **cond)


class ScheduleTransform(ModelWrapper):
    """Re-time a model trained on one affine path onto another with the same log-SNR range.

    Method: at time r on the new path (ᾱ, σ̄), the old path's time with equal signal-to-noise
    ratio is t = λ⁻¹(λ̄(r)), and the states are related by x̄ = s·x with s = σ̄(r)/σ(t) (equal SNR
    means x̄/ᾱ and x/α carry the same noise). The model's clean-data prediction at (x̄/s, t) is the
    clean-data prediction at (x̄, r), converted to any kind with the new path's formulas. Exact
    (no approximation beyond the float64 inverse of λ); one inner network call per evaluation.

    Args:
        model: the trained model (its path must define ``log_snr``).
        path: the new affine path; sampling the transformed model from t = 0 to 1 on a uniform
            grid is sampling the original on the re-timed grid.
        t_clamp: distance kept from the ends (λ = ±∞ there; default 1e-3).
    """

    def __init__(self, model: ModelWrapper, path: ProbabilityPath, t_clamp: float = 1e-3):
        if "x1" not in model.path.predictions or not hasattr(path, "sigma"):
            raise InputError("ScheduleTransform: both paths must be affine (x1 predictions)")
        super().__init__(model, path, "x1", t_clamp=t_clamp)

    @property
    def inner(self) -> ModelWrapper:
        """The wrapped model."""
        return self.network

    def network_output(self, x: Tensor, r: Tensor, **cond: Any) -> Tensor:
        r64 = as_time(r, x)
        t = self.inner.path.t_from_log_snr(self.path.log_snr(r64))
        s = self.path.sigma(r64) / self.inner.path.sigma(t)
        x_old = x / broadcast_to_batch(s, x)
        before = self.inner.nfe
        out = self.inner.predict("x1", x_old, t.to(x.dtype), **cond)
        self.nfe += self.inner.nfe - before
        return out

    def extra_repr(self) -> str:
        return f"inner path={self.inner.path!r} -> path={self.path!r}"


__all__ = ["ModelWrapper", "PredictionField", "ScheduleTransform"]
