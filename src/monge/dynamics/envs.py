"""Environments for policy-gradient studies: an exact linear–quadratic regulator and gymnasium.

:class:`LQR` has an exact (noise-free) cost J(K) for a linear Gaussian policy a ~ N(Kx, σ²I),
both over the finite horizon that rollouts use (a covariance recursion) and discounted over an
infinite horizon (a Lyapunov equation), and the exact optimal gain from the discounted Riccati
equation (``scipy.linalg.solve_discrete_are``). :class:`GymEnv` adapts gymnasium classic-control
tasks (Pendulum-v1, CartPole-v1); gymnasium is the optional extra ``monge[rl]``.

Spec: Fatkhullin, Barakat, Kireeva & He, ICML 2023 (arXiv:2302.01734), §5 of our spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from monge.dynamics.policies import LinearGaussianPolicy, SoftmaxPolicy
from monge.errors import InputError, MongeError

__all__ = ["LQR", "GymEnv", "MissingDependencyError", "Trajectory", "check_policy_matches",
           "make_env"]


class MissingDependencyError(MongeError, ImportError):
    """An optional dependency (an extra of ``monge``) is not installed."""


@dataclass
class Trajectory:
    """One episode: observations [T, obs], actions [T, *act_shape], rewards [T] (T ≤ horizon)."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor

    def __len__(self) -> int:
        return int(self.rewards.numel())

    def discounted_return(self, gamma: float) -> float:
        w = gamma ** torch.arange(len(self), dtype=self.rewards.dtype)
        return float((w * self.rewards).sum())


def check_policy_matches(policy: Any, act_shape: tuple[int, ...], obs_dim: int | None,
                         env_name: str, discrete: bool | None = None) -> None:
    """Raise one :class:`InputError` line if the policy's action shape/type or observation size
    does not match the environment."""
    p_shape = tuple(getattr(policy, "act_shape", ()))
    if discrete is not None and bool(getattr(policy, "discrete", False)) != discrete:
        want = "discrete" if discrete else "continuous"
        got = "continuous" if discrete else "discrete"
        raise InputError(f"policy: {type(policy).__name__} has {got} actions but the "
                         f"environment {env_name} has {want} actions; use "
                         f"{'SoftmaxPolicy' if discrete else 'LinearGaussianPolicy'}")
    if p_shape != tuple(act_shape):
        raise InputError(f"policy: action shape {p_shape} does not match the environment "
                         f"{env_name} action shape {tuple(act_shape)}")
    if obs_dim is not None and getattr(policy, "features", None) is None \
            and getattr(policy, "obs_dim", obs_dim) != obs_dim:
        raise InputError(f"policy: observation size {policy.obs_dim} does not match the "
                         f"environment {env_name} observation size {obs_dim}")


def _default_lqr(n_x: int, n_u: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n_x, n_x, generator=g, dtype=torch.float64)
    a = 0.95 * m / torch.linalg.eigvals(m).abs().max()
    b = torch.randn(n_x, n_u, generator=g, dtype=torch.float64) / math.sqrt(n_x)
    return a, b


class LQR:
    """Stochastic LQR x_{t+1} = A x_t + B a_t + w_t, reward −(x^T Q x + a^T R a).

    x_0 ~ N(0, I), w_t ~ N(0, noise_std² I), finite horizon H, discount γ. Default matrices: a
    seeded random stable A (spectral radius 0.95), B = randn/√n_x, Q = I, R = I.

    Args:
        n_x, n_u: state and action dimensions (4 and 2 as in the spec).
        horizon: H.
        gamma: discount.
        noise_std: process noise std.
        A, B, Q, R: optional matrices (float64 tensors).
        seed: seed of the default A, B.
    """

    name = "lqr"

    def __init__(self, n_x: int = 4, n_u: int = 2, horizon: int = 50, gamma: float = 0.99,
                 noise_std: float = 0.1, A: Tensor | None = None, B: Tensor | None = None,
                 Q: Tensor | None = None, R: Tensor | None = None, seed: int = 0):
        a0, b0 = _default_lqr(n_x, n_u, seed)
        self.A = (a0 if A is None else torch.as_tensor(A, dtype=torch.float64))
        self.B = (b0 if B is None else torch.as_tensor(B, dtype=torch.float64))
        self.n_x, self.n_u = self.A.shape[0], self.B.shape[1]
        if self.A.shape != (self.n_x, self.n_x) or self.B.shape[0] != self.n_x:
            raise InputError(f"A, B: shapes {tuple(self.A.shape)} and {tuple(self.B.shape)} "
                             "do not fit x' = A x + B a")
        self.Q = torch.eye(self.n_x, dtype=torch.float64) if Q is None else \
            torch.as_tensor(Q, dtype=torch.float64)
        self.R = torch.eye(self.n_u, dtype=torch.float64) if R is None else \
            torch.as_tensor(R, dtype=torch.float64)
        self.horizon, self.gamma, self.noise_std = int(horizon), float(gamma), float(noise_std)
        self.act_shape = (self.n_u,)
        self.obs_dim = self.n_x
        self._finite_opt: dict[float, tuple[Tensor, float]] = {}

    # --- exact quantities ----------------------------------------------------------------------
    def cost(self, K: Tensor, sigma: float) -> Tensor:
        """Exact expected discounted finite-horizon cost E Σ_{h<H} γ^h (x^TQx + a^TRa) of the
        policy a ~ N(Kx, σ²I) (differentiable in K): covariance recursion
        Σ_{h+1} = (A+BK) Σ_h (A+BK)^T + σ² B B^T + W, Σ_0 = I."""
        K = K.to(torch.float64)
        ak = self.A + self.B @ K
        m = self.Q + K.T @ self.R @ K
        noise = sigma ** 2 * self.B @ self.B.T + self.noise_std ** 2 * torch.eye(
            self.n_x, dtype=torch.float64)
        sig = torch.eye(self.n_x, dtype=torch.float64)
        c_act = sigma ** 2 * torch.trace(self.R)
        total = K.new_zeros(()).to(torch.float64)
        for h in range(self.horizon):
            total = total + self.gamma ** h * (torch.trace(m @ sig) + c_act)
            sig = ak @ sig @ ak.T + noise
        return total

    def cost_infinite(self, K: Tensor, sigma: float) -> Tensor:
        """Exact discounted infinite-horizon cost: tr(P Σ_0) + γ/(1−γ) tr(P N) + σ² tr R/(1−γ),
        where P = Q + K^T R K + γ (A+BK)^T P (A+BK) (a Lyapunov equation); inf if unstable."""
        K = K.to(torch.float64)
        ak = self.A + self.B @ K
        if float(torch.linalg.eigvals(ak).abs().max()) * math.sqrt(self.gamma) >= 1:
            return torch.tensor(float("inf"), dtype=torch.float64)
        n = self.n_x
        m = self.Q + K.T @ self.R @ K
        lhs = torch.eye(n * n, dtype=torch.float64) - self.gamma * torch.kron(ak.T, ak.T)
        p = torch.linalg.solve(lhs, m.reshape(-1)).reshape(n, n)
        noise = sigma ** 2 * self.B @ self.B.T + self.noise_std ** 2 * torch.eye(
            n, dtype=torch.float64)
        g = self.gamma
        return torch.trace(p) + g / (1 - g) * torch.trace(p @ noise) + \
            sigma ** 2 * torch.trace(self.R) / (1 - g)

    def optimal_gain(self) -> Tensor:
        """The optimal stationary gain K* of the discounted infinite-horizon problem from the
        discrete algebraic Riccati equation (scipy ``solve_discrete_are`` on √γA, √γB); the
        policy noise σ does not change it (certainty equivalence)."""
        from scipy.linalg import solve_discrete_are

        g = self.gamma
        a, b = (math.sqrt(g) * self.A).numpy(), (math.sqrt(g) * self.B).numpy()
        p = torch.from_numpy(solve_discrete_are(a, b, self.Q.numpy(), self.R.numpy()))
        return -torch.linalg.solve(self.R + g * self.B.T @ p @ self.B, g * self.B.T @ p @ self.A)

    def optimal_finite(self, sigma: float) -> tuple[Tensor, float]:
        """The best stationary gain for the finite-horizon cost (what rollouts measure) and its
        cost: (chord) Newton on the exact cost from the Riccati gain, to machine precision."""
        key = float(sigma)
        if key not in self._finite_opt:
            k = self.optimal_gain().reshape(-1).clone()
            f = lambda v: self.cost(v.reshape(self.n_u, self.n_x), sigma)
            h = torch.func.hessian(f)(k)
            for it in range(60):  # chord Newton: Hessian refreshed every 8 iterations
                if it and it % 8 == 0:
                    h = torch.func.hessian(f)(k)
                step = torch.linalg.solve(h, torch.func.grad(f)(k))
                k = k - step
                if float(step.norm()) < 1e-13 * (1 + float(k.norm())):
                    break
            self._finite_opt[key] = (k.reshape(self.n_u, self.n_x), float(f(k)))
        return self._finite_opt[key]

    def relative_gap(self, K: Tensor, sigma: float) -> float:
        """(J(K) − J*)/J* for the finite-horizon cost, J* from :meth:`optimal_finite`."""
        _, best = self.optimal_finite(sigma)
        return (float(self.cost(K.detach(), sigma)) - best) / best

    # --- sampling ------------------------------------------------------------------------------
    def check_policy(self, policy: Any) -> None:
        check_policy_matches(policy, self.act_shape, self.n_x, "lqr", discrete=False)

    def rollout(self, policy: Any, theta: Tensor, generator: torch.Generator) -> Trajectory:
        """Sample one trajectory of H steps under ``policy`` with parameters ``theta``."""
        self.check_policy(policy)
        H, n, m = self.horizon, self.n_x, self.n_u
        x0 = torch.randn(n, generator=generator, dtype=torch.float64)
        w = self.noise_std * torch.randn(H, n, generator=generator, dtype=torch.float64)
        if isinstance(policy, LinearGaussianPolicy) and policy.features is None:
            # fast path: the same draws as the generic loop would need, in numpy
            eps = torch.randn(H, m, generator=generator, dtype=torch.float64).numpy()
            K = policy.gain(theta.detach().double()).numpy()
            b = (theta.detach().double()[n * m:].numpy() if policy.bias else np.zeros(m))
            A, B = self.A.numpy(), self.B.numpy()
            xs, acts = np.empty((H, n)), np.empty((H, m))
            x, wn = x0.numpy(), w.numpy()
            for h in range(H):
                a = K @ x + b + policy.sigma * eps[h]
                xs[h], acts[h] = x, a
                x = A @ x + B @ a + wn[h]
            obs, act = torch.from_numpy(xs), torch.from_numpy(acts)
        else:
            obs_l, act_l, x = [], [], x0
            for h in range(H):
                a = policy.sample(theta.detach().double(), x[None], generator)[0]
                obs_l.append(x)
                act_l.append(a)
                x = self.A @ x + self.B @ a + w[h]
            obs, act = torch.stack(obs_l), torch.stack(act_l)
        rew = -(((obs @ self.Q) * obs).sum(1) + ((act @ self.R) * act).sum(1))
        return Trajectory(obs, act, rew)


class GymEnv:
    """A gymnasium environment as a trajectory sampler (optional extra ``monge[rl]``).

    Args:
        env_id: e.g. ``Pendulum-v1`` (continuous, 1-D torque) or ``CartPole-v1`` (2 actions).
        horizon: maximum steps per episode (default: the environment's limit).
        gamma: discount used by the estimators.
        kwargs: passed to ``gymnasium.make``.
    """

    def __init__(self, env_id: str = "Pendulum-v1", horizon: int | None = None,
                 gamma: float = 0.99, **kwargs: Any):
        try:
            import gymnasium
        except ImportError:
            raise MissingDependencyError(
                f"{env_id}: gymnasium is not installed; install the extra with "
                "pip install 'monge[rl]' (or pip install gymnasium)") from None
        try:
            self.env = gymnasium.make(env_id, **kwargs)
        except Exception as exc:  # gymnasium raises its own error types
            raise InputError(f"env: cannot make {env_id!r} ({exc})") from None
        self.name = env_id
        space = self.env.action_space
        self.discrete = hasattr(space, "n")
        self.n_actions = int(space.n) if self.discrete else None
        self.act_shape: tuple[int, ...] = () if self.discrete else tuple(space.shape)
        self.low = None if self.discrete else np.asarray(space.low, dtype=np.float64)
        self.high = None if self.discrete else np.asarray(space.high, dtype=np.float64)
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        limit = getattr(self.env.spec, "max_episode_steps", None) or 1000
        self.horizon = int(horizon or limit)
        self.gamma = float(gamma)

    def check_policy(self, policy: Any) -> None:
        check_policy_matches(policy, self.act_shape, self.obs_dim, self.name,
                             discrete=self.discrete)
        if self.discrete and isinstance(policy, SoftmaxPolicy) and \
                policy.n_actions != self.n_actions:
            raise InputError(f"policy: {policy.n_actions} actions, but {self.name} has "
                             f"{self.n_actions}")

    def rollout(self, policy: Any, theta: Tensor, generator: torch.Generator) -> Trajectory:
        """One episode (until termination, truncation or ``horizon`` steps); continuous actions
        are clipped to the action box when applied (the log-probability uses the sampled one)."""
        self.check_policy(policy)
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        obs, _ = self.env.reset(seed=seed)
        obs_l, act_l, rew_l = [], [], []
        th = theta.detach().double()
        for _ in range(self.horizon):
            o = torch.as_tensor(np.asarray(obs, dtype=np.float64).reshape(-1))
            a = policy.sample(th, o[None], generator)[0]
            if self.discrete:
                applied = int(a)
            else:
                applied = np.clip(a.numpy(), self.low, self.high).astype(np.float32)
            obs, r, terminated, truncated, _ = self.env.step(applied)
            obs_l.append(o)
            act_l.append(a)
            rew_l.append(float(r))
            if terminated or truncated:
                break
        return Trajectory(torch.stack(obs_l), torch.stack(act_l),
                          torch.tensor(rew_l, dtype=torch.float64))


def make_env(name: str, **kwargs: Any) -> LQR | GymEnv:
    """``lqr``, ``pendulum`` or ``cartpole`` (the latter two need gymnasium)."""
    key = name.lower()
    if key == "lqr":
        return LQR(**kwargs)
    if key == "pendulum":
        return GymEnv("Pendulum-v1", **kwargs)
    if key == "cartpole":
        return GymEnv("CartPole-v1", **kwargs)
    raise InputError(f"env: expected lqr, pendulum or cartpole, got {name!r}")

