"""Inversion and editing: data → source with a controlled ODE, and back under a new condition.

In monge's time convention (t = 0 source/noise → t = 1 data), for a field v(x, t):

**Plain ODE inversion** integrates dx/dt = v backward from t = 1 to t = 0 (any solver); its
reconstruction error (re-generate from the inverted point) measures how invertible the
discretised flow is.

**RF-Inversion** (Rout, Chen, Ruiz, Caramanis, Shakkottai & Chu, ICLR 2025, "Semantic Image
Inversion and Editing using Rectified Stochastic Differential Equations", Eq. 8 and 15–17) adds a
*conditional pull* toward a fixed end point e at time t_e, the straight-line velocity
v_c = (e − x)/(t_e − t):

    v̂ = v + γ·(v_c − v)   (inversion: e = a fixed source draw z, t_e = 0; γ = 0 plain, 1 → z)
    v̂ = v + η_t·(v_c − v) (editing: e = the original data point y0, t_e = 1; η_t = η on the
                            first [start, stop) fraction of the steps, optionally × (1 − i/N)^p)

taken with explicit Euler steps on a uniform grid (one network call per step).

**Transport-guided inversion** (OTIP, the OT-Inversion code of M. Lupascu, see the spec
``ot-inversion.md``) adds, before the η blend and during the first φ of the editing steps, a
clipped pull Δ = λ_i·(d − v) with d = (y0 − x)/max(1 − t, t_floor), d clipped to norm
``clip`` per sample, λ_i = s·½(1 + cos(π·min(ρ/φ, 1))) with a linear warm-in over ρ = i/N < 0.05,
optionally rescaled to the model's norm. No OT problem is solved there: d is the W2 geodesic
velocity to a single Dirac. With s = 0 it is RF-Inversion exactly; unclipped, unfloored and
unrescaled it equals RF-Inversion with η_eff = η_t + (1 − η_t)·λ_i.

**The OT-coupled variant** (:func:`ot_targets`) is genuinely optimal transport: a batch of
inverted latents is coupled to a batch of target samples (e.g. another class) by exact OT on the
data-space distances of their sources, and each edit is pulled toward its coupled target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.solvers import integrate, make_solver

Field = Callable[..., Tensor]


@dataclass
class TransportPull:
    """OTIP's clipped, cosine-scheduled pull toward the original point (see module docstring).

    Args:
        strength: s (0 = off: RF-Inversion exactly).
        phase: φ, the fraction of the editing steps where it acts.
        clip: per-sample norm clip of d (None = off).
        t_floor: floor of 1 − t in d (0 = off).
        rescale: rescale Δ per sample to the model velocity's norm.
        warm_in: linear warm-in over ρ < warm_in.
    """

    strength: float = 0.1
    phase: float = 0.3
    clip: float | None = 10.0
    t_floor: float = 0.01
    rescale: bool = False
    warm_in: float = 0.05

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise InputError(f"transport strength: must be >= 0, got {self.strength}")
        if not 0 < self.phase <= 1:
            raise InputError(f"transport phase: must lie in (0, 1], got {self.phase}")
        if self.clip is not None and not self.clip > 0:
            raise InputError(f"transport clip: must be positive or None, got {self.clip}")

    def weight(self, i: int, n: int) -> float:
        """λ_i for step i of n."""
        rho = i / n
        if rho >= self.phase:
            return 0.0
        lam = self.strength * 0.5 * (1 + math.cos(math.pi * min(rho / self.phase, 1.0)))
        if rho < self.warm_in:
            lam *= rho / self.warm_in
        return lam

    def __call__(self, i: int, n: int, t: float, x: Tensor, v: Tensor, target: Tensor
                 ) -> Tensor:
        lam = self.weight(i, n)
        if lam == 0.0:
            return v
        d = (target - x) / max(1.0 - t, self.t_floor, 1e-12)
        shape = (-1, *[1] * (x.ndim - 1))
        if self.clip is not None:
            norm = torch.linalg.vector_norm(d.flatten(1), dim=1).reshape(shape)
            d = d * torch.clamp(self.clip / (norm + 1e-8), max=1.0)
        delta = lam * (d - v)
        if self.rescale:
            nv = torch.linalg.vector_norm(v.flatten(1), dim=1).reshape(shape)
            nd = torch.linalg.vector_norm(d.flatten(1), dim=1).reshape(shape)
            delta = delta * nv / (nd + 1e-8)
        return v + delta


@dataclass
class InversionResult:
    """The inverted (or edited) points and what they cost."""

    x: Tensor
    nfe: int
    times: Tensor


def _check(x: Tensor, steps: int, what: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    if x.ndim < 2:
        raise InputError(f"{what}: expected a batch [B, ...], got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{what}: contains NaN or Inf values")


def invert(field: Field, x1: Tensor, steps: int = 28, *, gamma: float = 0.0,
           noise: Tensor | None = None, solver: str = "euler",
           cond: dict[str, Any] | None = None,
           generator: torch.Generator | None = None) -> InversionResult:
    """Map data x1 (t = 1) to the source (t = 0).

    ``gamma = 0`` is plain ODE inversion with any fixed-step ``solver``; ``gamma > 0`` is
    RF-Inversion's controlled ODE toward a fixed source draw ``noise`` (default: drawn from
    N(0, I) with ``generator``), explicit Euler. Cost: ``steps`` network calls (Euler).
    """
    _check(x1, steps, "data")
    if not 0.0 <= gamma <= 1.0:
        raise InputError(f"gamma: must lie in [0, 1], got {gamma}")
    cond = cond or {}
    if gamma == 0.0:
        res = integrate(field, x1, make_solver(solver), steps=steps, t0=1.0, t1=0.0, cond=cond)
        return InversionResult(res.x, res.nfe, res.times)
    if solver != "euler":
        raise InputError("solver: RF-Inversion (gamma > 0) takes explicit Euler steps")
    if noise is None:
        noise = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
    if noise.shape != x1.shape:
        raise InputError(f"noise: shape {tuple(noise.shape)} differs from the data's "
                         f"{tuple(x1.shape)}")
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    x = x1
    b = x.shape[0]
    for i in range(steps):
        t, t_next = float(times[i]), float(times[i + 1])
        v = field(x, torch.full((b,), t, dtype=x.dtype, device=x.device), **cond)
        v_c = (x - noise) / t                 # (noise − x)/(0 − t): straight to the fixed draw
        x = x + (v + gamma * (v_c - v)) * (t_next - t)
    return InversionResult(x, steps, times)


def edit(field: Field, z: Tensor, original: Tensor | None = None, steps: int = 28, *,
         eta: float = 0.0, start: float = 0.0, stop: float = 0.25, decay: float = 0.0,
         transport: TransportPull | None = None,
         cond: dict[str, Any] | None = None) -> InversionResult:
    """Generate from inverted points z (t = 0) to t = 1, pulled toward ``original`` (RF-Inversion's
    η on the steps i with start ≤ i/N < stop, × (1 − i/N)^decay; OTIP's ``transport`` pull
    first). With ``eta = 0`` and no transport it is plain Euler generation. Cost: ``steps``
    network calls."""
    _check(z, steps, "z")
    if not 0.0 <= eta <= 1.0:
        raise InputError(f"eta: must lie in [0, 1], got {eta}")
    if not 0.0 <= start <= stop <= 1.0:
        raise InputError(f"start/stop: need 0 <= start <= stop <= 1, got {start}, {stop}")
    pulled = eta > 0 or (transport is not None and transport.strength > 0)
    if pulled and original is None:
        raise InputError("original: eta or transport > 0 pulls toward the original data; "
                         "give it")
    if original is not None and original.shape != z.shape:
        raise InputError(f"original: shape {tuple(original.shape)} differs from z's "
                         f"{tuple(z.shape)}")
    cond = cond or {}
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    x, b = z, z.shape[0]
    for i in range(steps):
        t, t_next = float(times[i]), float(times[i + 1])
        v = field(x, torch.full((b,), t, dtype=x.dtype, device=x.device), **cond)
        if transport is not None and original is not None:
            v = transport(i, steps, t, x, v, original)
        rho = i / steps
        eta_t = eta * (1 - rho) ** decay if start <= rho < stop else 0.0
        if eta_t > 0:
            v_c = (original - x) / (1.0 - t)
            v = v + eta_t * (v_c - v)
        x = x + v * (t_next - t)
    return InversionResult(x, steps, times)


def ot_targets(sources: Tensor, candidates: Tensor) -> Tensor:
    """The OT-coupled variant's targets: candidates reordered so that row i is the one the exact
    optimal assignment (squared Euclidean cost, uniform weights) couples to source row i.
    Needs as many candidates as sources. Cost: one n×n assignment (network simplex)."""
    from monge.ot import assignment, sq_euclidean_cost

    if sources.shape != candidates.shape:
        raise InputError(f"candidates: shape {tuple(candidates.shape)} must equal the sources' "
                         f"{tuple(sources.shape)} (one target per source)")
    cost = sq_euclidean_cost(sources.flatten(1).double().cpu(),
                             candidates.flatten(1).double().cpu())
    return candidates[assignment(cost).to(candidates.device)]
