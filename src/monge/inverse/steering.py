"""Classifier steering: generation pulled toward a class by a clean-data classifier on x̂1.

The same two update rules as the posterior samplers of :mod:`monge.inverse.posterior`, with
the task loss L(x̂1) = −log p(K | x̂1) of a classifier on clean data instead of ‖A x̂1 − y‖²:

- ``flowchef`` (Patel et al. 2024, "FlowChef"): the velocity u is computed once per step without
  gradients; x̂1(x) = convert(u, x, t) so ∂x̂1/∂x = κ(t)·I and the gradient ∇ₓL needs the
  classifier's backward pass only (gradient skipping). Per step: x ← x − ζ·∇ₓL, then the Euler
  step with the frozen u.
- ``dps`` (Chung et al. 2023, "Diffusion Posterior Sampling"): the gradient goes through the
  network too (one VJP per step), x' = Euler step − ζ·∇ₓL.

The move is −ζ·∇ₓL, unnormalised: it fades once the classifier is confident (a normalised,
fixed-length step keeps pushing samples past the class's mode). Steering stops after
``steer_until`` of the steps. Cost: one network call per step, plus one VJP
through the network (dps) and one classifier backward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.inverse.posterior import _clamped
from monge.paths import ModelWrapper

STEERING_METHODS = ("flowchef", "dps")


@dataclass
class SteeringResult:
    """Steered samples and their cost."""

    x: Tensor
    method: str
    nfe: int
    gradient_calls: int
    seconds: float
    loss: Tensor
    """−log p(K | x) per sample at the end (the classifier's own verdict)."""


def classifier_steer(model: ModelWrapper, logits: Callable[[Tensor], Tensor], label: int,
                     x0: Tensor, *, method: str = "flowchef", steps: int = 50,
                     step_size: float = 0.05, steer_until: float = 0.9,
                     cond: dict[str, Any] | None = None) -> SteeringResult:
    """Euler sampling from x0 (t = 0) to t = 1 steered toward class ``label``.

    Args:
        model: the model wrapper (any affine path and prediction).
        logits: the clean-data classifier, x1 ``[B, *shape]`` → class logits ``[B, K]``.
        label: the target class.
        x0: starting points (the path's prior draws).
        method: ``flowchef`` (no gradient through the network) or ``dps``.
        steps: Euler steps (= NFE).
        step_size: ζ, the steering move per step is −ζ·∇ₓL.
        steer_until: share of the steps that are steered.
        cond: the model's conditioning (e.g. ``{"y": labels}``), passed untouched.
    """
    if method not in STEERING_METHODS:
        raise InputError(f"method: expected one of {', '.join(STEERING_METHODS)}, got "
                         f"{method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    if not step_size >= 0 or not 0 <= steer_until <= 1:
        raise InputError(f"step_size/steer_until: need step_size >= 0 and steer_until in "
                         f"[0, 1], got {step_size}, {steer_until}")
    if not bool(torch.isfinite(x0).all()):
        raise InputError("x0: contains NaN or Inf values")
    start = time.perf_counter()
    path, cond = model.path, cond or {}
    b = x0.shape[0]
    target = torch.full((b,), int(label), dtype=torch.long, device=x0.device)

    def loss_of(x1: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(logits(x1), target, reduction="none")

    ts = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
    x, grads = x0, 0
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        tb = _clamped(model, torch.full((b,), t, dtype=x.dtype, device=x.device))
        steer = i < round(steer_until * steps) and step_size > 0
        with torch.enable_grad():
            xg = x.detach().requires_grad_(steer)
            if method == "dps" and steer:
                raw = model.network_output(xg, tb, **cond)
                u = path.convert(raw, model.prediction, "velocity", xg, tb)
                x1 = path.convert(raw, model.prediction, "x1", xg, tb)
                grads += 1
            else:
                with torch.no_grad():
                    raw = model.network_output(x, tb, **cond)
                u = path.convert(raw, model.prediction, "velocity", x, tb)
                x1 = path.convert(u, "velocity", "x1", xg, tb) if steer else None
            if steer:
                (g,) = torch.autograd.grad(loss_of(x1).sum(), xg)
        x = (x + (t_next - t) * u).detach()
        if steer:
            x = x - step_size * g
    with torch.no_grad():
        final = loss_of(x)
    return SteeringResult(x, method, steps, grads, time.perf_counter() - start, final)
