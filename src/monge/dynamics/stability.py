"""Dynamical stability of SGD: the tr(H) ≤ 2B/η check, plain SGD, and a sharpness logger.

Linearised SGD with batch S_t of size B (drawn with replacement) around an interpolating
square-loss minimum, e_{t+1} = (I − η H_{S_t}) e_t, is mean-square stable only if
tr(H) ≤ 2/η for B = 1 (Wu & Su, ICML 2023, arXiv:2305.17490); for batch B the same second-moment
argument gives roughly tr(H) ≤ 2B/η (our derivation, see the spec), while GD only needs
λ_max(H) ≤ 2/η.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from monge.core.checks import make_generator
from monge.dynamics.hessian import LossFn, hessian_trace, top_hessian_eigenvalue
from monge.errors import InputError

__all__ = ["SGDRun", "SharpnessCallback", "StabilityReport", "check_lr", "run_sgd",
           "stability_report"]


def check_lr(lr: float, name: str = "lr") -> float:
    """Raise :class:`InputError` unless ``lr`` is a finite positive number."""
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) \
            or lr <= 0:
        raise InputError(f"{name}: learning rate must be a finite number > 0, got {lr!r}")
    return float(lr)


@dataclass
class StabilityReport:
    """Linear-stability diagnostics of a minimum for SGD with step η and batch B.

    Attributes:
        lr, batch_size: η and B.
        loss: loss at the point (the check is meaningful only near an interpolating minimum).
        trace, trace_std_error, trace_method: tr(H) and how it was computed.
        lambda_max: top Hessian eigenvalue (Lanczos).
        trace_lr_over_b: tr(H)·η/B, compared with 2 (SGD condition).
        lambda_max_lr: λ_max·η, compared with 2 (GD condition).
        sgd_stable: tr(H)·η/B ≤ 2 (with ``slack``).
        gd_stable: λ_max·η ≤ 2 (with ``slack``).
        sgd_margin, gd_margin: 2 − tr(H)·η/B and 2 − λ_max·η (positive: inside the bound).
    """

    lr: float
    batch_size: int
    loss: float
    trace: float
    trace_std_error: float
    trace_method: str
    lambda_max: float
    trace_lr_over_b: float
    lambda_max_lr: float
    sgd_stable: bool
    gd_stable: bool
    sgd_margin: float
    gd_margin: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stability_report(model: nn.Module, loss_fn: LossFn, batch: Any, lr: float,
                     batch_size: int = 1, *, trace_method: str = "gauss-newton",
                     probes: int = 100, iters: int = 30, slack: float = 0.05,
                     generator: torch.Generator | int | None = 0) -> StabilityReport:
    """Check the SGD (tr H·η/B ≤ 2) and GD (λ_max·η ≤ 2) linear-stability conditions.

    Method: tr(H) by :func:`~monge.dynamics.hessian.hessian_trace` (default: exact Gauss–Newton
    trace, which is the Hessian at an interpolating square-loss minimum), λ_max by Lanczos on
    HVPs. Paper: Wu & Su, ICML 2023 (arXiv:2305.17490): stable SGD minima satisfy tr(H) ≤ 2/η
    (B = 1); the 2B/η scaling for batch B (with replacement) is the spec's derivation.

    Args:
        model, loss_fn, batch: as in :func:`~monge.dynamics.hessian.hessian_trace`; ``batch``
            should be the full training set (the Hessian of the empirical loss).
        lr: SGD step η > 0.
        batch_size: B ≥ 1.
        trace_method: ``gauss-newton``, ``exact`` or ``hutchinson``.
        probes: Hutchinson probes (``trace_method="hutchinson"``).
        iters: Lanczos iterations for λ_max.
        slack: relative slack allowed for non-exact interpolation (5% default).
        generator: seed or torch.Generator of the random probes.

    Returns:
        :class:`StabilityReport`.
    """
    lr = check_lr(lr)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
    tr = hessian_trace(model, loss_fn, batch, trace_method, probes=probes, generator=generator)
    eig = top_hessian_eigenvalue(model, loss_fn, batch, iters=iters, generator=generator)
    t_ratio = tr.value * lr / batch_size
    e_ratio = eig.value * lr
    return StabilityReport(lr, batch_size, tr.loss, tr.value, tr.std_error, trace_method,
                           eig.value, t_ratio, e_ratio, t_ratio <= 2 * (1 + slack),
                           e_ratio <= 2 * (1 + slack), 2 - t_ratio, 2 - e_ratio)


@dataclass
class SGDRun:
    """Result of :func:`run_sgd`.

    Attributes:
        steps: SGD steps taken.
        final_loss: full-data loss at the end (inf if diverged).
        converged: final loss ≤ ``target_loss``.
        diverged: the loss became non-finite or exceeded ``diverge_loss``.
        losses: (step, full loss) pairs logged every ``log_every`` steps.
    """

    steps: int
    final_loss: float
    converged: bool
    diverged: bool
    losses: list[tuple[int, float]] = field(default_factory=list)


def run_sgd(model: nn.Module, loss_fn: LossFn, data: tuple[Tensor, Tensor], lr: float,
            batch_size: int, steps: int, *, seed: int | torch.Generator | None = 0,
            target_loss: float = 1e-6, diverge_loss: float = 1e6, log_every: int = 200,
            callback: Callable[[int, nn.Module], Any] | None = None) -> SGDRun:
    """Plain SGD (no momentum, no weight decay) with minibatches drawn with replacement.

    Method: θ ← θ − η ∇L_{S_t}(θ), S_t = B indices drawn uniformly with replacement (the sampling
    of Wu & Su's analysis); ``batch_size >= n`` means full-batch GD. Stops early once the full
    loss is ≤ ``target_loss`` (checked every ``log_every`` steps) or diverges.

    Args:
        model: network, trained in place.
        loss_fn: ``loss_fn(model, (x, y))`` returning the mean loss of a batch (scalar).
        data: ``(x, y)`` training tensors.
        lr: step η > 0; batch_size: B; steps: maximum steps.
        seed: seed or torch.Generator of the batch draws.
        callback: called as ``callback(step, model)`` after every step (e.g. a
            :class:`SharpnessCallback`).

    Returns:
        :class:`SGDRun`.
    """
    lr = check_lr(lr)
    x, y = data
    n = x.shape[0]
    gen = make_generator(seed, x.device)
    params = [p for p in model.parameters() if p.requires_grad]
    losses: list[tuple[int, float]] = []

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model, (x, y)))

    step, loss = 0, full_loss()
    losses.append((0, loss))
    diverged = not math.isfinite(loss)
    while step < steps and not diverged and loss > target_loss:
        if batch_size >= n:
            xb, yb = x, y
        else:
            idx = torch.randint(0, n, (batch_size,), generator=gen, device=x.device)
            xb, yb = x[idx], y[idx]
        batch_loss = loss_fn(model, (xb, yb))
        grads = torch.autograd.grad(batch_loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
        step += 1
        if callback is not None:
            callback(step, model)
        if step % log_every == 0 or step == steps:
            loss = full_loss()
            losses.append((step, loss))
            diverged = not math.isfinite(loss) or loss > diverge_loss
    if diverged:
        loss = float("inf")
    return SGDRun(step, loss, loss <= target_loss, diverged, losses)


class SharpnessCallback:
    """Trainer-agnostic sharpness logger: call ``cb(step, model)`` after each optimiser step.

    Every ``every`` steps it records the top Hessian eigenvalue (Lanczos, ``iters`` HVPs) and,
    with ``trace_probes > 0``, a Hutchinson trace of ``loss_fn(model, batch)`` on a fixed probe
    batch; with ``lr`` set it also records λ_max·η and tr·η (the edge-of-stability ratios).
    Rows go to ``self.history`` and, if ``path`` is given, to a JSONL file.

    Example (any loop)::

        cb = SharpnessCallback(loss_fn, probe_batch, every=100, lr=0.1)
        for step in range(1, steps + 1):
            ...; optimizer.step(); cb(step, model)
    """

    def __init__(self, loss_fn: LossFn, batch: Any, every: int = 100, *,
                 lr: float | None = None, iters: int = 20, trace_probes: int = 0,
                 path: str | Path | None = None, seed: int = 0):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"every: expected a positive integer, got {every!r}")
        self.loss_fn, self.batch, self.every = loss_fn, batch, every
        self.lr = None if lr is None else check_lr(lr)
        self.iters, self.trace_probes, self.seed = iters, trace_probes, seed
        self.path = Path(path) if path is not None else None
        self.history: list[dict[str, float]] = []

    def __call__(self, step: int, model: nn.Module) -> dict[str, float] | None:
        if step % self.every != 0:
            return None
        eig = top_hessian_eigenvalue(model, self.loss_fn, self.batch, iters=self.iters,
                                     generator=self.seed + step)
        row: dict[str, float] = {"step": step, "lambda_max": eig.value}
        if self.trace_probes > 0:
            tr = hessian_trace(model, self.loss_fn, self.batch, "hutchinson",
                               probes=self.trace_probes, generator=self.seed + step)
            row.update(trace=tr.value, trace_std_error=tr.std_error)
        if self.lr is not None:
            row["lambda_max_lr"] = eig.value * self.lr
            if "trace" in row:
                row["trace_lr"] = row["trace"] * self.lr
        self.history.append(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        return row
