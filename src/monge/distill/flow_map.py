"""Flow maps: one object for a learned jump X(x, t → s) between two times of a flow.

A flow map is parameterised by an average velocity u(x, t, s), X(x, t → s) = x + (s − t)·u, with
u(x, t, t) the instantaneous velocity. Its special cases (Boffi, Albergo & Vanden-Eijnden 2025,
"Flow map matching"; "The Principles of Diffusion Models", §flow maps):

- **MeanFlow** (Geng et al. 2025): u is the average velocity (1/(s − t))∫_t^s v dτ, trained with
  the identity u = v + (s − t)·du/dt (:mod:`monge.distill.meanflow`);
- **shortcut models** (Frans et al. 2024): the step size d = s − t is the conditioning;
- **consistency models** (Song et al. 2023): the jump to the data end, s = 1.

:func:`flow_map_sample` jumps along any grid: one network call per jump, so ``steps`` = NFE.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.errors import InputError
from monge.models.embeddings import SinusoidalTimeEmbedding, as_batch_time, class_indices
from monge.solvers import SolveResult


class TwoTimeMLP(nn.Module):
    """An MLP u(x, t, s) for vectors (images are flattened): [x, emb(t) (+ class), emb(s − t)] → u.

    Args:
        shape: per-sample shape; hidden, depth: width and hidden layers; time_dim: embedding size.
        num_classes: classes for conditioning (a learned embedding added to emb(t), with a null
            class at index ``num_classes``), or None.
    """

    def __init__(self, shape: tuple[int, ...], hidden: int = 256, depth: int = 3,
                 time_dim: int = 64, num_classes: int | None = None):
        super().__init__()
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.config = {"shape": list(shape), "hidden": hidden, "depth": depth,
                       "time_dim": time_dim, "num_classes": num_classes}
        dim = math.prod(shape)
        # Low frequencies only (periods 2π/10 ... 2π·10): the MeanFlow target differentiates
        # u in t, and the diffusion-step embedding's ×1000 frequencies would make ∂u/∂t huge.
        self.emb_t = SinusoidalTimeEmbedding(time_dim, max_period=100.0, scale=10.0)
        self.emb_d = SinusoidalTimeEmbedding(time_dim, max_period=100.0, scale=10.0)
        self.class_embedding = (nn.Embedding(num_classes + 1, time_dim)
                                if num_classes is not None else None)
        layers: list[nn.Module] = []
        width = dim + 2 * time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    @property
    def null_class(self) -> int | None:
        """Index of the unconditional class, or None for an unconditional network."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        b = x.shape[0]
        t, s = as_batch_time(t, b, x.device).to(x.dtype), as_batch_time(s, b, x.device).to(
            x.dtype)
        et = self.emb_t(t).to(x.dtype)
        labels = class_indices(y, b, self.num_classes, x.device)
        if labels is not None:
            et = et + self.class_embedding(labels).to(x.dtype)
        h = torch.cat([x.flatten(1), et, self.emb_d(s - t).to(x.dtype)], dim=1)
        return self.net(h).reshape(x.shape)


class EndpointNetwork(nn.Module):
    """A one-time velocity network v(x, t) used as the average velocity of the jump to the data
    end: u(x, t, s) = v(x, t), valid for s = 1 only (consistency models, LCM, MDT-dist).

    Started from a teacher's weights, X(x, t → 1) = x + (1 − t)·v(x, t) is the teacher's one
    Euler step to the end, so the student begins where one-step sampling of the teacher is, and
    keeps the teacher's architecture (MLP or U-Net) and conditioning (``y``).

    Args:
        network: ``network(x, t, **cond)``, e.g. a copy of the teacher's model.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.config = {"endpoint": True, **dict(getattr(network, "config", {}))}

    def forward(self, x: Tensor, t: Tensor, s: Tensor, **cond: Tensor) -> Tensor:
        return self.network(x, t, **cond)


class FlowMap(nn.Module):
    """X(x, t → s) = x + (s − t)·u(x, t, s) from an average-velocity network ``u``.

    Args:
        network: ``network(x, t, s)`` → average velocity (same shape as x).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.nfe = 0

    def average_velocity(self, x: Tensor, t: Tensor, s: Tensor, **cond: Tensor) -> Tensor:
        """u(x, t, s) (one network call, counted); ``cond`` (e.g. ``y``) is passed through."""
        self.nfe += 1
        return self.network(x, t, s, **cond)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, **cond: Tensor) -> Tensor:
        """The jump X(x, t → s)."""
        d = (s - t).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        return x + d * self.average_velocity(x, t, s, **cond)


def flow_map_sample(flow_map: FlowMap, x: Tensor, steps: int = 1, t0: float = 0.0,
                    t1: float = 1.0, grid: Tensor | None = None,
                    cond: dict[str, Tensor] | None = None) -> SolveResult:
    """Jump from t0 to t1 in ``steps`` uniform jumps (or along ``grid``): NFE = steps.
    ``cond`` (e.g. ``{"y": labels}``) is passed to every network call.

    Returns a :class:`~monge.solvers.SolveResult` (the same result type as every solver).
    """
    if grid is None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps: must be a positive integer, got {steps!r}")
        grid = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    grid = torch.as_tensor(grid, dtype=torch.float64)
    b = x.shape[0]
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        x = flow_map(x, torch.full((b,), t, dtype=x.dtype, device=x.device),
                     torch.full((b,), s, dtype=x.dtype, device=x.device), **(cond or {}))
    ok = bool(torch.isfinite(x).all())
    return SolveResult(x=x, nfe=grid.numel() - 1, n_accepted=grid.numel() - 1, n_rejected=0,
                       times=grid, converged=ok,
                       message="" if ok else "the final state holds NaN or Inf values")
