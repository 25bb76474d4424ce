"""ODE and SDE samplers of stochastic interpolants, forward (ρ0 → ρ1) and backward (ρ1 → ρ0).

Albergo, Boffi & Vanden-Eijnden (2023), "Stochastic Interpolants: A Unifying Framework for Flows
and Diffusions" (arXiv 2303.08797), §2.2. With the velocity b and the score s of the interpolant,
every diffusion level ε(t) ≥ 0 gives a process with the marginals ρ_t of x_t:

- ODE:          dX = b(t, X) dt,
- forward SDE:  dX = [b + ε(t)·s](t, X) dt + √(2ε(t)) dW,  integrated from t = 0 to 1,
- backward SDE: dX = [b − ε(t)·s](t, X) dt + √(2ε(t)) dW̄, integrated from t = 1 down to 0.

Both SDEs solve the Fokker–Planck equation ∂_t ρ = −∇·(ρ b) because ∇·(ρ s) = Δρ. The drift is
built in one place, :func:`sde_drift`; the integration is :func:`monge.solvers.integrate` with
:class:`~monge.solvers.EulerMaruyama`, whose step x + h·f + g·√|h|·ξ with h = t_next − t < 0 is
exactly the backward SDE above (the spec's |dt| convention). ε can be chosen after training; the
SDE's KL error is bounded by ~(1/ε)·E|b̂ − b|² + ε·E|ŝ − s|², which is why it is more forgiving of
drift errors than the ODE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from monge.core.tensors import broadcast_to_batch
from monge.errors import InputError
from monge.paths.interpolant import StochasticInterpolant
from monge.paths.model import ModelWrapper
from monge.solvers.base import Field, Solver, SolveResult
from monge.solvers.fixed import Heun
from monge.solvers.integrate import integrate
from monge.solvers.sde import EulerMaruyama

Direction = Literal["forward", "backward"]
Epsilon = float | Callable[[Tensor], Tensor]
"""Diffusion level ε(t): a constant ≥ 0 or a function of a float64 time tensor."""


def epsilon_at(eps: Epsilon, t: Tensor) -> Tensor:
    """ε evaluated at the times ``t`` (float64 tensor of any shape)."""
    t64 = t.to(torch.float64)
    if callable(eps):
        return torch.as_tensor(eps(t64), dtype=torch.float64, device=t64.device)
    return torch.full_like(t64, float(eps))


def _check_eps(eps: Epsilon) -> None:
    if not callable(eps):
        if not isinstance(eps, int | float) or not float(eps) >= 0.0 or eps == float("inf"):
            raise InputError(f"eps: must be a finite number >= 0 or a function of t, got {eps!r}")


def _check_direction(direction: str) -> float:
    if direction not in ("forward", "backward"):
        raise InputError(f"direction: expected 'forward' or 'backward', got {direction!r}")
    return 1.0 if direction == "forward" else -1.0


class GammaSquaredEpsilon:
    """ε(t) = ε₀·γ(t)²/max_t γ²: a diffusion level that vanishes with γ at both ends.

    Near the ends a score recovered as s = −η/γ scales like 1/γ and its Lipschitz constant like
    1/γ², so a constant ε makes Euler–Maruyama unstable there for a fixed step; with ε ∝ γ² the
    stiffness ε·|∇s| stays bounded (the spec's "ε(t) that vanishes at the endpoints").

    Args:
        eps: peak level ε₀ ≥ 0 (reached where γ is largest).
        interpolant: supplies γ.
    """

    def __init__(self, eps: float, interpolant: StochasticInterpolant):
        _check_eps(float(eps))
        if interpolant.is_deterministic:
            raise InputError("GammaSquaredEpsilon: the interpolant has gamma 'zero'")
        self.eps, self.interpolant = float(eps), interpolant
        grid = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
        self._peak = float(interpolant.gamma(grid).pow(2).max())

    def __call__(self, t: Tensor) -> Tensor:
        return self.eps * self.interpolant.gamma(t).pow(2) / self._peak

    def __repr__(self) -> str:
        return f"GammaSquaredEpsilon({self.eps})"


def sde_drift(velocity: Field, score: Field | None, eps: Epsilon,
              direction: Direction = "forward") -> Field:
    """The SDE drift b ± ε(t)·s as a field ``drift(x, t, **cond)`` (the one place it is built).

    Args:
        velocity: b(x, t, **cond), t of shape [B].
        score: s(x, t, **cond) (may be None only when ε ≡ 0).
        eps: diffusion level ε(t) (constant or function of t).
        direction: ``forward`` (b + ε·s, integrate 0 → 1) or ``backward`` (b − ε·s, 1 → 0).

    Returns:
        A field with the solvers' signature.
    """
    _check_eps(eps)
    sign = _check_direction(direction)
    if score is None:
        if callable(eps) or float(eps) != 0.0:
            raise InputError("score: the SDE drift b ± ε·s needs a score field when ε > 0")
        return velocity

    def drift(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        e = broadcast_to_batch(epsilon_at(eps, t), x)
        return velocity(x, t, **cond) + sign * e * score(x, t, **cond)

    return drift


def sde_diffusion(eps: Epsilon) -> Callable[[float], float]:
    """g(t) = √(2ε(t)) as the scalar function :class:`~monge.solvers.EulerMaruyama` takes."""
    _check_eps(eps)

    def g(t: float) -> float:
        value = float(epsilon_at(eps, torch.tensor(float(t), dtype=torch.float64)))
        if value < 0:
            raise InputError(f"eps: ε(t) must be >= 0, got {value} at t={t}")
        return (2.0 * value) ** 0.5

    return g


def score_from_denoiser(denoiser: Field, interpolant: StochasticInterpolant,
                        t_clamp: float = 1e-3) -> Field:
    """Score field s = −η_z/γ of a denoiser network η_z: the ``score`` view of a
    :class:`~monge.paths.model.ModelWrapper` declaring the prediction ``denoiser``, with t clamped
    to [t_clamp, 1 − t_clamp] (the division by γ is singular at the ends, where γ = 0). The
    wrapper counts the network calls."""
    if interpolant.is_deterministic:
        raise InputError("score_from_denoiser: the interpolant has gamma 'zero'")
    return ModelWrapper(denoiser, interpolant, "denoiser", t_clamp=t_clamp).as_field("score")


def velocity_from_parts(interpolant_velocity: Field, denoiser: Field,
                        interpolant: StochasticInterpolant, t_clamp: float = 1e-3) -> Field:
    """Velocity field b = v + γ̇·η_z from fields v = E[∂_t I | x] and η_z (t clamped as above).

    Two networks make one velocity here, so this stays a small combinator rather than one
    :class:`~monge.paths.model.ModelWrapper` (which wraps exactly one network)."""

    def velocity(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        tc = t.clamp(t_clamp, 1.0 - t_clamp)
        return interpolant.velocity_from_parts(interpolant_velocity(x, tc, **cond),
                                               denoiser(x, tc, **cond), tc)

    return velocity


def sample_interpolant(velocity: Field, x: Tensor, *, score: Field | None = None,
                       eps: Epsilon = 0.0, steps: int = 100, direction: Direction = "forward",
                       solver: Solver | None = None,
                       generator: torch.Generator | int | None = None,
                       t0: float | None = None, t1: float | None = None,
                       cond: dict[str, Any] | None = None,
                       return_trajectory: bool = False) -> SolveResult:
    """Transport samples with the interpolant's ODE (ε ≡ 0) or SDE (ε > 0).

    Method: ε ≡ 0 integrates dX = b dt with ``solver`` (default Heun, order 2, 2 NFE/step);
    otherwise Euler–Maruyama (weak order 1) on the drift :func:`sde_drift` with diffusion
    √(2ε(t)), 2 field evaluations (b and s) per step. Forward runs t0 = 0 → t1 = 1 (ρ0 → ρ1),
    backward t0 = 1 → t1 = 0 (ρ1 → ρ0).

    Args:
        velocity: b(x, t, **cond).
        x: samples of ρ_{t0} [B, ...].
        score: s(x, t, **cond); required when ε > 0.
        eps: diffusion level ε(t) ≥ 0 (constant or function of a float64 time tensor).
        steps: number of uniform steps.
        direction: ``forward`` or ``backward``.
        solver: ODE solver for ε ≡ 0 (ignored for the SDE).
        generator: seed or generator for the Brownian increments (SDE only).
        t0, t1: override the start/end times (e.g. to stop short of a singular end).
        cond: conditioning passed to the fields untouched.
        return_trajectory: keep every state.

    Returns:
        :class:`~monge.solvers.SolveResult` (NFE counts the drift evaluations; the SDE drift
        costs two network calls each).

    Example:
        >>> from monge.paths.interpolant import GaussianInterpolant, make_interpolant
        >>> g = GaussianInterpolant(make_interpolant(), [0.0], 1.0, [3.0], 0.25)
        >>> x0 = g.sample(4000, 0, generator=torch.Generator().manual_seed(0))
        >>> res = sample_interpolant(g.velocity, x0, score=g.score, eps=0.5, generator=0)
        >>> abs(float(res.x.mean()) - 3.0) < 0.1
        True
    """
    sign = _check_direction(direction)
    if t0 is None:
        t0 = 0.0 if sign > 0 else 1.0
    if t1 is None:
        t1 = 1.0 if sign > 0 else 0.0
    if (t1 - t0) * sign <= 0:
        raise InputError(f"t0, t1: a {direction} solve needs t1 {'>' if sign > 0 else '<'} t0, "
                         f"got t0={t0}, t1={t1}")
    drift = sde_drift(velocity, score, eps, direction)
    deterministic = not callable(eps) and float(eps) == 0.0
    if deterministic:
        chosen = solver or Heun()
    else:
        chosen = EulerMaruyama(sde_diffusion(eps), generator=generator)
    return integrate(drift, x, chosen, steps=steps, t0=t0, t1=t1, cond=cond,
                     return_trajectory=return_trajectory)


EPSILON_SCHEDULES: dict[str, str] = {
    "constant": "ε(t) = eps",
    "gamma2": "ε(t) = eps·γ(t)²/max γ² (vanishes at the ends)",
}


def make_epsilon(name: str, eps: float, interpolant: StochasticInterpolant | None = None
                 ) -> Epsilon:
    """Build ε(t) by name: ``constant`` or ``gamma2`` (needs the interpolant)."""
    _check_eps(eps)
    if name == "constant":
        return float(eps)
    if name == "gamma2":
        if interpolant is None:
            raise InputError("make_epsilon: 'gamma2' needs the interpolant")
        return GammaSquaredEpsilon(eps, interpolant)
    raise InputError(f"eps schedule: unknown name {name!r}; expected one of "
                     f"{sorted(EPSILON_SCHEDULES)}")


__all__ = ["EPSILON_SCHEDULES", "Direction", "Epsilon", "GammaSquaredEpsilon", "epsilon_at",
           "make_epsilon", "sample_interpolant", "score_from_denoiser", "sde_diffusion",
           "sde_drift", "velocity_from_parts"]
