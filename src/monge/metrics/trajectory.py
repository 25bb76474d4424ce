"""Geometry of transport trajectories: straightness, kinetic energy and paired transport cost.

A trajectory is ``states`` of shape ``[T+1, B, ...]`` (``B`` particles at ``T+1`` times) on a
strictly monotone time grid ``times`` of shape ``[T+1]``, e.g. the states of a fine Euler solve.
On each interval the velocity is the finite difference
``Zdot_k = (z_{k+1} - z_k) / (t_{k+1} - t_k)``, which is exactly the velocity an Euler step used,
and time integrals are ``sum_k |t_{k+1} - t_k| * (batch mean)``. A decreasing grid (integrating
from t = 1 back to t = 0) gives the same values as the same trajectory stored forwards.

Reference: X. Liu, C. Gong, Q. Liu, "Flow Straight and Fast: Learning to Generate and Transfer
Data with Rectified Flow", ICLR 2023 (arXiv:2209.03003), Definition of straightness S(Z).
"""

from __future__ import annotations

import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import InputError


def _trajectory_velocities(states: object, times: object) -> tuple[torch.Tensor, torch.Tensor,
                                                                    torch.Tensor]:
    """Check a trajectory; return flattened states ``[T+1, B, D]``, velocities ``[T, B, D]``
    and positive interval lengths ``[T]`` (all float64 on the states' device)."""
    z = check_finite(as_tensor(states, "states"), "states")
    if z.ndim < 2:
        raise InputError(f"states: expected shape [T+1, B, ...], got {tuple(z.shape)}")
    if z.shape[0] < 2:
        raise InputError(f"states: need at least 2 time points, got {z.shape[0]}")
    if z.shape[1] < 1:
        raise InputError("states: the batch dimension is empty")
    t = check_finite(as_tensor(times, "times"), "times")
    if t.ndim != 1 or t.shape[0] != z.shape[0]:
        raise InputError(f"times: expected shape [{z.shape[0]}] to match states, "
                         f"got {tuple(t.shape)}")
    z = z.to(torch.float64).reshape(z.shape[0], z.shape[1], -1)
    t = t.to(dtype=torch.float64, device=z.device)
    dt = t[1:] - t[:-1]
    if not (bool((dt > 0).all()) or bool((dt < 0).all())):
        raise InputError("times: must be strictly increasing or strictly decreasing")
    velocity = (z[1:] - z[:-1]) / dt[:, None, None]
    return z, velocity, dt.abs()


@torch.no_grad()
def straightness(states: object, times: object) -> float:
    """Straightness ``S = int E||(Z_1 - Z_0) - Zdot_t||^2 dt`` of a trajectory (0 = straight).

    Method: Liu et al. (2022, Rectified Flow), ``S(Z) = int_0^1 E||(Z_1 - Z_0) - Zdot_t||^2 dt``.
    ``Z_1 - Z_0`` is generalised to the mean velocity ``(z_end - z_start) / (t_end - t_start)``
    so that a grid spanning a sub-interval is measured consistently; on a grid spanning [0, 1]
    (either direction) it is exactly ``Z_1 - Z_0``. Velocities are finite differences (exact for
    Euler trajectories) and the integral is ``sum_k |dt_k| * mean_b ||vbar_b - Zdot_{k,b}||^2``.
    Cost ``O(T B D)``.

    Args:
        states: trajectory ``[T+1, B, ...]``.
        times: its time grid ``[T+1]``, strictly increasing or strictly decreasing.

    Returns:
        The straightness, ``>= 0``; ``0`` exactly for constant-velocity (straight) paths.

    Example:
        >>> t = torch.linspace(0, 1, 11)
        >>> x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
        >>> z = x0 + t[:, None, None] * (x1 - x0)
        >>> round(straightness(z, t), 12)
        0.0
    """
    z, velocity, dt = _trajectory_velocities(states, times)
    t = as_tensor(times, "times").to(dtype=torch.float64, device=z.device)
    mean_velocity = (z[-1] - z[0]) / (t[-1] - t[0])
    deviation = (velocity - mean_velocity).pow(2).sum(-1).mean(-1)
    return float((dt * deviation).sum())


@torch.no_grad()
def kinetic_energy(states: object, times: object) -> float:
    """Kinetic energy ``int E||Zdot_t||^2 dt`` of a trajectory.

    Method: the dynamic (Benamou-Brenier) cost of the flow, estimated with finite-difference
    velocities as ``sum_k |dt_k| * mean_b ||Zdot_{k,b}||^2``; for a straight path on [0, 1] it
    equals ``E||x_1 - x_0||^2`` (see :func:`transport_cost`), and it is never smaller than that
    (Jensen). See Liu et al. (2022, Rectified Flow) and Benamou & Brenier (2000). Cost
    ``O(T B D)``.

    Args:
        states: trajectory ``[T+1, B, ...]``.
        times: its time grid ``[T+1]``, strictly increasing or strictly decreasing.

    Returns:
        The kinetic energy, ``>= 0``.
    """
    _, velocity, dt = _trajectory_velocities(states, times)
    return float((dt * velocity.pow(2).sum(-1).mean(-1)).sum())


@torch.no_grad()
def transport_cost(x0: object, x1: object) -> float:
    """Mean squared displacement ``E||x1 - x0||^2`` over paired rows.

    This is the quadratic transport cost of the coupling that pairs ``x0[i]`` with ``x1[i]``;
    under the optimal pairing it is ``W2^2`` (see :func:`monge.metrics.w2_assignment`).
    Cost ``O(B D)``.

    Args:
        x0: source points ``[B, ...]``.
        x1: paired target points of the same shape.

    Returns:
        The mean over rows of the squared Euclidean distance.
    """
    a = check_finite(as_tensor(x0, "x0"), "x0")
    b = check_finite(as_tensor(x1, "x1"), "x1")
    if a.ndim == 0 or a.shape != b.shape:
        raise InputError(f"x0 and x1: expected paired arrays of the same shape [B, ...], got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise InputError("x0: the batch dimension is empty")
    diff = b.to(dtype=torch.float64, device=a.device) - a.to(torch.float64)
    return float(diff.reshape(diff.shape[0], -1).pow(2).sum(-1).mean())


__all__ = ["straightness", "kinetic_energy", "transport_cost"]
