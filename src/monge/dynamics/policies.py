"""Stochastic policies with a flat parameter vector θ: linear Gaussian and softmax.

Every policy is functional in θ (a 1-D tensor), so gradients and Hessian-vector products of
``log_prob`` with respect to θ come from autograd on that one tensor:

- ``log_prob(theta, obs, act) -> [T]``, ``sample(theta, obs, generator) -> act``,
- ``act_shape`` (what the environment must accept) and ``n_params``.

The Gaussian policy keeps σ fixed (Fisher non-degeneracy, Fatkhullin et al., ICML 2023,
arXiv:2302.01734, §2: learning σ changes the problem).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from monge.errors import InputError

__all__ = ["LinearGaussianPolicy", "SoftmaxPolicy"]

Features = Callable[[Tensor], Tensor]


def _check_theta(theta: Tensor, n: int) -> Tensor:
    if not isinstance(theta, Tensor) or theta.ndim != 1 or theta.numel() != n:
        shape = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
        raise InputError(f"theta: expected a flat tensor of {n} parameters, got {shape}")
    return theta


class LinearGaussianPolicy:
    """π_θ(a|s) = N(K φ(s) (+ b), σ² I) with θ = vec(K) (row-major, then b).

    Args:
        obs_dim: observation dimension (or feature dimension when ``features`` is given).
        act_dim: action dimension.
        sigma: fixed exploration std σ > 0.
        bias: learn an offset b.
        features: optional map φ from observations [T, obs] to features [T, obs_dim].
    """

    def __init__(self, obs_dim: int, act_dim: int, sigma: float = 0.3, bias: bool = False,
                 features: Features | None = None):
        if sigma <= 0:
            raise InputError(f"sigma: must be > 0, got {sigma}")
        self.obs_dim, self.act_dim, self.sigma = int(obs_dim), int(act_dim), float(sigma)
        self.bias, self.features = bias, features
        self.act_shape: tuple[int, ...] = (self.act_dim,)
        self.n_params = self.act_dim * self.obs_dim + (self.act_dim if bias else 0)
        self.discrete = False

    def gain(self, theta: Tensor) -> Tensor:
        """The matrix K [act_dim, obs_dim]."""
        _check_theta(theta, self.n_params)
        return theta[: self.act_dim * self.obs_dim].reshape(self.act_dim, self.obs_dim)

    def theta_from(self, gain: Tensor, offset: Tensor | None = None) -> Tensor:
        """Flat θ from a gain K (and an offset b)."""
        parts = [gain.reshape(-1)]
        if self.bias:
            parts.append(torch.zeros(self.act_dim, dtype=gain.dtype) if offset is None
                         else offset.reshape(-1))
        return torch.cat(parts)

    def _phi(self, obs: Tensor) -> Tensor:
        f = self.features(obs) if self.features is not None else obs
        if f.shape[-1] != self.obs_dim:
            raise InputError(f"policy: expects {self.obs_dim} observation features, got "
                             f"{f.shape[-1]}")
        return f

    def mean(self, theta: Tensor, obs: Tensor) -> Tensor:
        mu = self._phi(obs) @ self.gain(theta).T
        if self.bias:
            mu = mu + theta[self.act_dim * self.obs_dim:]
        return mu

    def log_prob(self, theta: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        """Per-step log densities [T] of actions [T, act_dim] at observations [T, obs]."""
        z = (act - self.mean(theta, obs)) / self.sigma
        return (-0.5 * z.pow(2) - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, theta: Tensor, obs: Tensor, generator: torch.Generator) -> Tensor:
        mu = self.mean(theta, obs)
        return mu + self.sigma * torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                                             device=mu.device)


class SoftmaxPolicy:
    """π_θ(a|s) = softmax(W φ(s) + b)_a over ``n_actions`` discrete actions, θ = vec(W), b.

    Args:
        obs_dim: observation (feature) dimension.
        n_actions: number of actions.
        bias: learn the logit offsets b.
        features: optional feature map φ.
    """

    def __init__(self, obs_dim: int, n_actions: int, bias: bool = True,
                 features: Features | None = None):
        if n_actions < 2:
            raise InputError(f"n_actions: need at least 2 actions, got {n_actions}")
        self.obs_dim, self.n_actions, self.bias, self.features = (int(obs_dim), int(n_actions),
                                                                  bias, features)
        self.act_shape: tuple[int, ...] = ()
        self.n_params = n_actions * obs_dim + (n_actions if bias else 0)
        self.discrete = True

    def logits(self, theta: Tensor, obs: Tensor) -> Tensor:
        _check_theta(theta, self.n_params)
        f = self.features(obs) if self.features is not None else obs
        if f.shape[-1] != self.obs_dim:
            raise InputError(f"policy: expects {self.obs_dim} observation features, got "
                             f"{f.shape[-1]}")
        w = theta[: self.n_actions * self.obs_dim].reshape(self.n_actions, self.obs_dim)
        out = f @ w.T
        if self.bias:
            out = out + theta[self.n_actions * self.obs_dim:]
        return out

    def log_prob(self, theta: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        logp = torch.log_softmax(self.logits(theta, obs), -1)
        return logp.gather(-1, act.long().reshape(*logp.shape[:-1], 1)).squeeze(-1)

    def sample(self, theta: Tensor, obs: Tensor, generator: torch.Generator) -> Tensor:
        p = torch.softmax(self.logits(theta, obs), -1)
        return torch.multinomial(p.reshape(-1, self.n_actions), 1,
                                 generator=generator).reshape(p.shape[:-1])
