"""Latent interpolation and its smoothness: ISTD (Smooth Diffusion).

Guo et al. (CVPR 2024), "Smooth Diffusion": invert two data points to the source (plain ODE
inversion, :func:`monge.inverse.inversion.invert`), interpolate the inverted points spherically
at ``points`` evenly spaced ratios (slerp keeps a Gaussian draw's norm), generate every point
with the same solver, and measure the distances between consecutive frames (in a feature space:
the paper's LPIPS; here any ``features`` callable, e.g. the digits classifier's, or pixels). ISTD
is the standard deviation of these distances, averaged over pairs: 0 when the generated frames
change evenly, large when they "snap" between training examples. Cost per pair: one inversion
and ``points`` generations (``steps`` network calls each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError
from monge.inverse.inversion import invert
from monge.solvers import integrate, make_solver


def slerp(a: Tensor, b: Tensor, ratios: Tensor) -> Tensor:
    """Spherical interpolation of two batches ``[B, ...]`` at ``ratios`` [R] → ``[R, B, ...]``
    (linear interpolation where a and b are parallel)."""
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    r = ratios.to(a.dtype).reshape(-1, 1)
    so = torch.sin(omega)
    near = so.abs() < 1e-6
    wa = torch.where(near, 1 - r, torch.sin((1 - r) * omega) / torch.where(near, 1.0, so))
    wb = torch.where(near, r, torch.sin(r * omega) / torch.where(near, 1.0, so))
    out = wa[..., None] * fa[None] + wb[..., None] * fb[None]
    return out.reshape(ratios.numel(), *a.shape)


@dataclass
class ISTDResult:
    """Interpolation smoothness of a model on pairs of data points."""

    istd: float
    """Mean over pairs of the std of consecutive-frame distances."""
    per_pair: Tensor
    """[B] the std for each pair."""
    mean_step: float
    """Mean consecutive-frame distance (the scale ISTD should be read against)."""
    frames: Tensor
    """[points, B, ...] the generated frames (data units of the field)."""
    nfe: int
    """Network calls: two inversions and one batched generation of every frame."""


def istd(field: Callable[..., Tensor], x_a: Tensor, x_b: Tensor, *, steps: int = 50,
         points: int = 11, solver: str = "euler",
         features: Callable[[Tensor], Tensor] | None = None,
         cond: dict[str, Any] | None = None) -> ISTDResult:
    """ISTD of ``field`` on the pairs (x_a[i], x_b[i]) (see the module docstring).

    Args:
        field: the model's velocity field (t = 0 source → t = 1 data).
        x_a, x_b: ``[B, ...]`` data points in the field's units.
        steps, solver: the inversion's and generation's fixed-step solver.
        points: interpolation ratios including both ends (at least 3).
        features: maps frames ``[N, ...]`` to features ``[N, F]`` (None: the frames flattened).
        cond: the model's conditioning (for both points of a pair).
    """
    if x_a.shape != x_b.shape:
        raise InputError(f"x_b: shape {tuple(x_b.shape)} differs from x_a's {tuple(x_a.shape)}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise InputError(f"points: need an integer >= 3, got {points!r}")
    cond = cond or {}
    with torch.no_grad():
        inv_a = invert(field, x_a, steps, solver=solver, cond=cond)
        inv_b = invert(field, x_b, steps, solver=solver, cond=cond)
        z_a, z_b = inv_a.x, inv_b.x
        ratios = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
        zs = slerp(z_a, z_b, ratios)
        b = x_a.shape[0]
        flat = zs.reshape(points * b, *x_a.shape[1:])
        rep = {k: v.repeat(points, *[1] * (v.ndim - 1)) if isinstance(v, Tensor) else v
               for k, v in cond.items()}
        gen = integrate(field, flat, make_solver(solver), steps=steps, cond=rep)
        frames = gen.x
        feats = (features(frames) if features is not None else frames).reshape(points, b, -1)
        dist = (feats[1:] - feats[:-1]).norm(dim=2)                 # [points - 1, B]
    per_pair = dist.std(dim=0)
    nfe = inv_a.nfe + inv_b.nfe + gen.nfe        # batched calls (all frames in one batch)
    return ISTDResult(float(per_pair.mean()), per_pair, float(dist.mean()),
                      frames.reshape(points, *x_a.shape), nfe)
