"""Classifier-free guidance as a model wrapper.

Ho & Salimans (2022), "Classifier-Free Diffusion Guidance": with a model trained with label
dropout (the null class), the guided prediction is

    out_w = out_∅ + w·(out_c − out_∅),

monge's convention: **w = 1 is the conditional model, w = 0 the unconditional one**, w > 1
extrapolates (sharper classes, less diversity). The combination is taken in the network's own
output space (velocity, x1, ε or score): at fixed (x, t) every conversion between them is affine
in the prediction with the same coefficients, and the weights (1 − w, w) sum to one, so the
guided velocity, x̂1 and ε̂ are the same guided quantity seen through the path's conversions
("The Principles of Diffusion Models", §guidance). A guidance interval [t_lo, t_hi] applies
guidance only there (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval");
outside it the conditional model is used (one evaluation).

Cost: inside the interval, one batched network call on 2B rows, counted as 2 evaluations in
``nfe``; outside it, 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.paths import ModelWrapper


def check_weight(weight: float, what: str, nonnegative: bool = False) -> float:
    """A finite guidance weight (and ≥ 0 when ``nonnegative``), as a float."""
    ok = (not isinstance(weight, bool) and isinstance(weight, int | float)
          and math.isfinite(weight) and (weight >= 0 or not nonnegative))
    if not ok:
        need = "finite and >= 0" if nonnegative else "a finite number"
        raise InputError(f"{what}: the weight must be {need}, got {weight!r}")
    return float(weight)


def check_interval(interval: tuple[float, float], what: str) -> tuple[float, float]:
    """A guidance interval 0 ≤ t_lo < t_hi ≤ 1."""
    lo, hi = (float(v) for v in interval)
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"{what}: interval must satisfy 0 <= t_lo < t_hi <= 1, got "
                         f"{interval}")
    return lo, hi


def interval_weight(t: Tensor, interval: tuple[float, float], weight: float, outside: float,
                    x: Tensor) -> Tensor:
    """Per-sample weight broadcast against x: ``weight`` where t lies in the interval."""
    inside = (t >= interval[0]) & (t <= interval[1])
    return torch.where(inside, weight, outside).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))


class ClassifierFreeGuidance(ModelWrapper):
    """A class-conditional model guided with weight w (w = 1: conditional, w = 0: unconditional).

    Args:
        model: the class-conditional :class:`~monge.paths.ModelWrapper` (its network takes
            ``y`` and has a null class, trained with ``train.cond_dropout`` > 0).
        weight: the guidance weight w (finite).
        interval: (t_lo, t_hi) where guidance is applied (default the whole of [0, 1]).
        null_class: the unconditional label (default: the network's ``null_class``).

    Example:
        >>> import torch
        >>> from monge.paths import LinearPath, ModelWrapper
        >>> net = lambda x, t, y=None: x * 0 + (y[:, None] == 2).to(x.dtype)  # toy network
        >>> base = ModelWrapper(net, LinearPath(), "velocity")
        >>> guided = ClassifierFreeGuidance(base, weight=3.0, null_class=2)
        >>> v = guided(torch.zeros(4, 2), torch.full((4,), 0.5), y=torch.zeros(4, dtype=torch.long))
        >>> float(v[0, 0]), guided.nfe      # 1 + 3·(0 − 1) = −2, two evaluations
        (-2.0, 2)
    """

    def __init__(self, model: ModelWrapper, weight: float,
                 interval: tuple[float, float] = (0.0, 1.0), null_class: int | None = None):
        if not isinstance(model, ModelWrapper):
            raise InputError("guidance: wrap a monge ModelWrapper (a model that knows its path)")
        weight = check_weight(weight, "guidance")
        lo, hi = check_interval(interval, "guidance")
        if null_class is None:
            net = getattr(model, "network", getattr(model, "_callable", None))
            null_class = getattr(net, "null_class", None)
        if null_class is None:
            raise InputError("guidance: the model is not class-conditional (no null class); "
                             "train it with model.conditional: true and train.cond_dropout > 0")
        super().__init__(model, model.path, model.prediction, t_clamp=model.t_clamp)
        self.weight, self.interval, self.null_class = weight, (lo, hi), int(null_class)

    @property
    def inner(self) -> ModelWrapper:
        """The guided model."""
        return self.network

    def network_output(self, x: Tensor, t: Tensor, y: Tensor | None = None,
                       w: Tensor | float | None = None, **cond: Any) -> Tensor:
        """The guided output; ``w`` (a float or per-sample [B]) overrides the weight for this
        call (an LCM teacher draws one weight per sample)."""
        if y is None:
            raise InputError("guidance: needs class labels y (e.g. monge sample --label K)")
        inner = self.inner
        lo, hi = self.interval
        inside = (t >= lo) & (t <= hi)
        weight = self.weight if w is None else w
        if isinstance(weight, Tensor):
            if weight.shape != (x.shape[0],) or not bool(torch.isfinite(weight).all()):
                raise InputError(f"guidance: w must be finite with shape [{x.shape[0]}], got "
                                 f"{tuple(weight.shape)}")
            constant = None
        else:
            constant = check_weight(weight, "guidance")
        if constant == 1.0 or not bool(inside.any()):
            self.nfe += 1
            return inner.network_output(x, t, y=y, **cond)
        self.nfe += 2
        null = torch.full_like(y, self.null_class)
        both = inner.network_output(torch.cat([x, x]), torch.cat([t, t]),
                                    y=torch.cat([y, null]), **cond)
        out_c, out_u = both.chunk(2)
        if constant is None:
            wb = weight.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
            w_t = torch.where(inside.reshape(wb.shape), wb, torch.ones_like(wb))
        else:
            w_t = interval_weight(t, self.interval, constant, 1.0, x)
        return out_u + w_t * (out_c - out_u)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, interval={self.interval}, null_class={self.null_class}"
