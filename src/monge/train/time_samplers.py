"""Training-time distributions for t ∈ [0, 1].

- uniform on [t_min, t_max] (rectified flow: Liu et al. 2023 sample t ~ U(ε, 1));
- logit-normal: t = sigmoid(m + s·z), z ~ N(0, 1) (Esser et al. 2024, "Scaling rectified flow
  transformers", which puts more weight on intermediate times).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from monge.errors import InputError


class TimeSampler(ABC):
    """Draws a batch of training times t of shape [n]."""

    @abstractmethod
    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
        ...


class UniformTime(TimeSampler):
    """t ~ U[t_min, t_max]."""

    def __init__(self, t_min: float = 0.0, t_max: float = 1.0):
        if not 0.0 <= t_min < t_max <= 1.0:
            raise InputError(f"UniformTime: need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = t_min, t_max

    def sample(self, n, *, generator=None, dtype=torch.float32, device="cpu") -> Tensor:
        u = torch.rand(n, generator=generator, dtype=dtype, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    def __repr__(self) -> str:
        return f"UniformTime({self.t_min}, {self.t_max})"


class LogitNormalTime(TimeSampler):
    """t = sigmoid(m + s·z), z ~ N(0, 1) (Esser et al. 2024)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        if std <= 0:
            raise InputError(f"LogitNormalTime: std must be positive, got {std}")
        self.mean, self.std = mean, std

    def sample(self, n, *, generator=None, dtype=torch.float32, device="cpu") -> Tensor:
        z = torch.randn(n, generator=generator, dtype=dtype, device=device)
        return torch.sigmoid(self.mean + self.std * z)

    def __repr__(self) -> str:
        return f"LogitNormalTime({self.mean}, {self.std})"


def make_time_sampler(name: str, **kwargs) -> TimeSampler:
    """``uniform`` or ``logit-normal``."""
    table = {"uniform": UniformTime, "logit-normal": LogitNormalTime}
    if name not in table:
        raise InputError(f"time sampler: unknown {name!r}; expected one of {sorted(table)}")
    return table[name](**kwargs)
