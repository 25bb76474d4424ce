"""Stochastic policy gradients: GPOMDP/REINFORCE, normalised momentum, N-PG-IGT and (N-)HARPG.

Paper: I. Fatkhullin, A. Barakat, A. Kireeva & N. He, "Stochastic Policy Gradient Methods:
Improved Sample Complexity for Fisher-non-degenerate Policies", ICML 2023 (arXiv:2302.01734).
N-PG-IGT (one trajectory per iteration, implicit gradient transport) reaches global
ε-optimality in Õ(ε^-2.5) trajectories and (N-)HARPG (a Hessian-vector correction at a random
point of the segment, two trajectories per iteration) in Õ(ε^-2), against Õ(ε^-3) before.
IGT: Arnold et al. 2019, Cutkosky & Mehta 2020; Hessian-aided PG: Shen et al. 2019.

Estimators (one trajectory τ, discount from time 0, reward-to-go):

    Ψ_h = Σ_{t≥h} γ^t r_t,   g(τ, θ) = Σ_h Ψ_h ∇ log π_θ(a_h|s_h)                      (GPOMDP)
    Φ(τ, θ) = Σ_h Ψ_h log π_θ(a_h|s_h),   S(τ, θ) = Σ_h log π_θ(a_h|s_h)
    B(τ, θ) δ = ∇Φ ⟨∇S, δ⟩ + ∇⟨∇Φ, δ⟩                                  (Hessian-vector estimate)

Updates are ascent on J(θ) = E Σ_h γ^h r_h. Every run counts trajectories (including d_0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from monge.core.checks import make_generator
from monge.dynamics.envs import Trajectory
from monge.errors import InputError

__all__ = ["METHODS", "PGConfig", "PGRun", "gpomdp_gradient", "hessian_vector_estimate",
           "reinforce_gradient", "run_policy_gradient"]

METHODS = ("reinforce", "batch-pg", "momentum", "n-pg-igt", "harpg", "n-harpg")


def _reward_weights(traj: Trajectory, gamma: float) -> tuple[Tensor, Tensor]:
    disc = gamma ** torch.arange(len(traj), dtype=torch.float64) * traj.rewards.double()
    psi = torch.flip(torch.cumsum(torch.flip(disc, [0]), 0), [0])
    return disc, psi


def _logp(policy: Any, theta: Tensor, traj: Trajectory) -> Tensor:
    return policy.log_prob(theta, traj.obs, traj.actions)


def gpomdp_gradient(policy: Any, traj: Trajectory, theta: Tensor, gamma: float) -> Tensor:
    """GPOMDP (REINFORCE with reward-to-go) gradient g(τ, θ) = Σ_h Ψ_h ∇ log π_θ(a_h|s_h).

    Unbiased for ∇J(θ) when τ ~ π_θ. Cost: one backward pass over the trajectory.
    """
    th = theta.detach().double().requires_grad_(True)
    _, psi = _reward_weights(traj, gamma)
    phi = (psi * _logp(policy, th, traj)).sum()
    return torch.autograd.grad(phi, th)[0]


def reinforce_gradient(policy: Any, traj: Trajectory, theta: Tensor, gamma: float) -> Tensor:
    """Plain REINFORCE: (Σ_t γ^t r_t) Σ_h ∇ log π_θ(a_h|s_h) (unbiased, higher variance)."""
    th = theta.detach().double().requires_grad_(True)
    disc, _ = _reward_weights(traj, gamma)
    s = disc.sum() * _logp(policy, th, traj).sum()
    return torch.autograd.grad(s, th)[0]


def hessian_vector_estimate(policy: Any, traj: Trajectory, theta: Tensor, gamma: float,
                            delta: Tensor) -> tuple[Tensor, Tensor]:
    """Unbiased estimate B(τ, θ)δ of ∇²J(θ)δ (Shen et al. 2019), with the GPOMDP gradient.

    Method: double backward, B δ = ∇Φ ⟨∇S, δ⟩ + ∇_θ ⟨∇Φ, δ⟩; the first (score-function) term is
    required for unbiasedness. O(d) memory. Returns ``(B δ, g(τ, θ))``.
    """
    th = theta.detach().double().requires_grad_(True)
    _, psi = _reward_weights(traj, gamma)
    logp = _logp(policy, th, traj)
    g_phi = torch.autograd.grad((psi * logp).sum(), th, create_graph=True)[0]
    g_s = torch.autograd.grad(logp.sum(), th, retain_graph=True)[0]
    delta = delta.detach().double()
    if g_phi.requires_grad:
        hv = torch.autograd.grad(g_phi @ delta, th)[0]
    else:
        hv = torch.zeros_like(delta)
    return g_phi.detach() * (g_s @ delta) + hv, g_phi.detach()


@dataclass
class PGConfig:
    """Step and momentum schedules.

    Attributes:
        method: one of :data:`METHODS`.
        lr: step constant c > 0. Plain methods (reinforce, batch-pg, harpg) step
            θ += c/√(t+1)·d; normalised ones (momentum, n-pg-igt, n-harpg) step
            θ += γ_t d/||d|| with γ_t = c·t0/(t + t0) (~1/t as in the spec).
        t0: offset of the normalised step schedule.
        batch: trajectories per gradient for ``batch-pg`` (1 for the others).
        momentum_power: η_t = (t+1)^(−p): 4/5 for momentum / n-pg-igt (the spec's ε^-2.5
            schedule), 1 for (n-)harpg (η_t ~ 1/t).
        extrapolation_clip: cap on ||θ̃ − θ_t|| at the IGT extrapolation point (pitfall: the
            factor (1−η)/η is large when η is small).
        grad_clip: optional cap on the norm of plain (non-normalised) steps.
        estimator: ``gpomdp`` or ``reinforce`` for the gradient g.
    """

    method: str = "n-harpg"
    lr: float = 0.1
    t0: float = 10.0
    batch: int = 10
    momentum_power: float | None = None
    extrapolation_clip: float = 1.0
    grad_clip: float | None = None
    estimator: str = "gpomdp"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method: expected one of {METHODS}, got {self.method!r}")
        if isinstance(self.lr, bool) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"lr: learning rate must be a finite number > 0, got {self.lr!r}")
        if self.estimator not in ("gpomdp", "reinforce"):
            raise InputError(f"estimator: expected gpomdp or reinforce, got {self.estimator!r}")
        if self.batch < 1:
            raise InputError(f"batch: expected a positive integer, got {self.batch}")
        if self.momentum_power is None:
            self.momentum_power = 1.0 if "harpg" in self.method else 0.8

    def eta(self, t: int) -> float:
        return float((t + 1) ** (-self.momentum_power))

    def step(self, t: int) -> float:
        if self.method in ("reinforce", "batch-pg", "harpg"):
            return self.lr / math.sqrt(t + 1)
        return self.lr * self.t0 / (t + self.t0)


@dataclass
class PGRun:
    """History of one policy-gradient run.

    Attributes:
        method: the method.
        theta: final parameters.
        trajectories: cumulative trajectories used at each logged point.
        values: the logged metric (``evaluate(theta)``, e.g. the exact relative gap on the LQR,
            or the mean sampled return) at each logged point.
        iterations: iterations run.
    """

    method: str
    theta: Tensor
    trajectories: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    iterations: int = 0

    def first_below(self, eps: float) -> int | None:
        """Trajectories used when the metric first fell to ≤ eps (None: never)."""
        for n, v in zip(self.trajectories, self.values, strict=True):
            if v <= eps:
                return n
        return None


def _normalise(d: Tensor) -> Tensor:
    return d / (d.norm() + 1e-12)


def run_policy_gradient(env: Any, policy: Any, theta0: Tensor, config: PGConfig, *,
                        budget: int = 2000, seed: int | torch.Generator | None = 0,
                        evaluate: Callable[[Tensor], float] | None = None,
                        eval_every: int = 10) -> PGRun:
    """Run one policy-gradient method for ``budget`` trajectories.

    Method (ascent; t = iteration; see the module docstring for g and B):

    - ``reinforce``: θ += c/√(t+1)·g(τ, θ), one trajectory per iteration;
      ``batch-pg``: the same with the mean of ``batch`` trajectories.
    - ``momentum``: d_t = (1−η_t) d_{t−1} + η_t g(τ_t, θ_t), θ += γ_t d/||d|| (no IGT; isolates
      the extrapolation).
    - ``n-pg-igt``: as momentum, but τ_t is sampled at θ̃ = θ_t + ((1−η_t)/η_t)(θ_t − θ_{t−1})
      and g is evaluated there (implicit gradient transport); one trajectory per iteration.
    - ``harpg`` / ``n-harpg``: θ_{t+1} = θ_t + γ_t d_t(/||d_t||); q ~ U[0,1],
      θ̂ = qθ_{t+1} + (1−q)θ_t; τ ~ π_{θ_{t+1}}, τ̂ ~ π_{θ̂};
      d_{t+1} = (1−η_t)(d_t + B(τ̂, θ̂)(θ_{t+1}−θ_t)) + η_t g(τ, θ_{t+1}); two trajectories.

    Order/cost: one (IGT, momentum, reinforce) or two (HARPG) trajectories and one backward
    (two for HARPG) per iteration; O(d) memory. Paper: Fatkhullin et al., ICML 2023.

    Args:
        env: an environment with ``rollout(policy, theta, generator)``, ``check_policy`` and
            ``gamma`` (:class:`~monge.dynamics.envs.LQR`, :class:`~monge.dynamics.envs.GymEnv`).
        policy: a policy from :mod:`monge.dynamics.policies`.
        theta0: initial flat parameters.
        config: :class:`PGConfig`.
        budget: total trajectories (the initial d_0 counts).
        seed: seed or torch.Generator of every trajectory and of q.
        evaluate: metric of θ logged every ``eval_every`` trajectories (default: none).

    Returns:
        :class:`PGRun`.
    """
    env.check_policy(policy)
    if not isinstance(theta0, Tensor) or theta0.ndim != 1 or theta0.numel() != policy.n_params:
        raise InputError(f"theta0: expected a flat tensor of {policy.n_params} parameters")
    if budget < 1:
        raise InputError(f"budget: expected a positive number of trajectories, got {budget}")
    gen = make_generator(seed)
    gamma = env.gamma
    grad = gpomdp_gradient if config.estimator == "gpomdp" else reinforce_gradient
    theta = theta0.detach().double().clone()
    run = PGRun(config.method, theta)
    used, next_eval = 0, 0

    def log() -> None:
        nonlocal next_eval
        if evaluate is not None and used >= next_eval:
            run.trajectories.append(used)
            run.values.append(float(evaluate(theta)))
            next_eval = used + eval_every

    log()
    m = config.method
    if m in ("reinforce", "batch-pg"):
        nb = config.batch if m == "batch-pg" else 1
        t = 0
        while used + nb <= budget:
            g = sum(grad(policy, env.rollout(policy, theta, gen), theta, gamma)
                    for _ in range(nb)) / nb
            used += nb
            if config.grad_clip is not None:
                g = g * min(1.0, config.grad_clip / (float(g.norm()) + 1e-12))
            theta = theta + config.step(t) * g
            t += 1
            log()
        run.iterations = t
    elif m in ("momentum", "n-pg-igt"):
        d = grad(policy, env.rollout(policy, theta, gen), theta, gamma)
        used += 1
        prev = theta.clone()
        theta = theta + config.step(0) * _normalise(d)
        t = 1
        log()
        while used + 1 <= budget:
            eta = config.eta(t)
            if m == "n-pg-igt":
                shift = (1 - eta) / eta * (theta - prev)
                nrm = float(shift.norm())
                if nrm > config.extrapolation_clip:
                    shift = shift * (config.extrapolation_clip / nrm)
                point = theta + shift
            else:
                point = theta
            g = grad(policy, env.rollout(policy, point, gen), point, gamma)
            used += 1
            d = (1 - eta) * d + eta * g
            prev = theta
            theta = theta + config.step(t) * _normalise(d)
            t += 1
            log()
        run.iterations = t
    else:  # harpg / n-harpg
        d = grad(policy, env.rollout(policy, theta, gen), theta, gamma)
        used += 1
        t = 0
        while used + 2 <= budget:
            step = _normalise(d) if m == "n-harpg" else d
            if m == "harpg" and config.grad_clip is not None:
                step = step * min(1.0, config.grad_clip / (float(step.norm()) + 1e-12))
            new = theta + config.step(t) * step
            q = float(torch.rand((), generator=gen, dtype=torch.float64))
            mid = q * new + (1 - q) * theta
            tau = env.rollout(policy, new, gen)
            tau_hat = env.rollout(policy, mid, gen)
            used += 2
            v, _ = hessian_vector_estimate(policy, tau_hat, mid, gamma, new - theta)
            g = grad(policy, tau, new, gamma)
            eta = config.eta(t + 1)
            d = (1 - eta) * (d + v) + eta * g
            theta = new
            t += 1
            log()
        run.iterations = t
    run.theta = theta
    if evaluate is not None and (not run.trajectories or run.trajectories[-1] != used):
        run.trajectories.append(used)
        run.values.append(float(evaluate(theta)))
    return run
