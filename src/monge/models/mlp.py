"""A time- and class-conditioned multilayer perceptron for vector data (2-D toys, flat arrays)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.errors import ConfigError, InputError
from monge.models.embeddings import (
    GuidanceEmbedding,
    SinusoidalTimeEmbedding,
    as_batch_time,
    class_indices,
    guidance_term,
)

__all__ = ["ACTIVATIONS", "MLP"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}
"""Activation name -> module class, for :class:`MLP`'s ``activation`` argument."""


class MLP(nn.Module):
    """Field network ``(x, t, y) -> output of x's shape`` built from fully connected layers.

    Method: the time goes through a sinusoidal embedding and a two-layer MLP to a ``time_dim``
    vector; with ``num_classes`` set, a learned class embedding (``num_classes + 1`` rows, the
    last one the "null" class used by classifier-free guidance; Ho & Salimans, "Classifier-Free
    Diffusion Guidance", 2021) is added to it. This conditioning vector is concatenated with the
    flattened ``x`` and fed to ``depth`` hidden layers of width ``hidden``, then a linear layer
    back to ``dim``. Cost O(B * (dim + time_dim) * hidden + B * depth * hidden^2) per call.

    Args:
        dim: number of values per sample (``x`` of shape ``[B, *shape]`` with ``prod(shape)
            == dim``).
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
        time_dim: width of the time (and class) embedding.
        num_classes: number of classes for conditioning, or ``None`` for an unconditional model.
        activation: one of :data:`ACTIVATIONS`.

    Example:
        >>> net = MLP(2, hidden=64)
        >>> net(torch.randn(8, 2), torch.rand(8)).shape
        torch.Size([8, 2])
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 64,
                 num_classes: int | None = None, activation: str = "silu",
                 guidance_embedding: bool = False) -> None:
        super().__init__()
        for arg, value in (("dim", dim), ("hidden", hidden), ("depth", depth),
                           ("time_dim", time_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{arg}: expected a positive integer, got {value!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes: expected a positive integer or None, got "
                              f"{num_classes!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation: unknown {activation!r}; choose one of "
                              f"{', '.join(ACTIVATIONS)}")
        self.dim, self.num_classes = dim, num_classes
        self.config = {"dim": dim, "hidden": hidden, "depth": depth, "time_dim": time_dim,
                       "num_classes": num_classes, "activation": activation}
        if guidance_embedding:
            self.config["guidance_embedding"] = True
        act = ACTIVATIONS[activation]
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, time_dim), act(), nn.Linear(time_dim, time_dim))
        self.class_embedding = (nn.Embedding(num_classes + 1, time_dim)
                                if num_classes is not None else None)
        self.guidance_embedding = GuidanceEmbedding(time_dim) if guidance_embedding else None
        layers: list[nn.Module] = [nn.Linear(dim + time_dim, hidden), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), act()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    @property
    def null_class(self) -> int | None:
        """Index of the "null" (unconditional) class, or ``None`` for an unconditional model."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None,
                w: Tensor | float | None = None) -> Tensor:
        """Evaluate the network.

        Args:
            x: samples ``[B, *shape]`` with ``prod(shape) == dim``.
            t: times ``[B]`` (a scalar or ``[B, 1]`` is broadcast).
            y: int labels ``[B]`` in ``0..num_classes`` (``num_classes`` = null class); ``None``
                means the null class (conditional model) or no conditioning.
            w: guidance weight [B] (or a scalar) for a model built with
                ``guidance_embedding=True`` (an LCM student); ``None`` adds nothing.

        Returns:
            Tensor of ``x``'s shape and dtype.
        """
        if x.ndim < 2:
            raise InputError(f"x: expected shape [B, ...], got {tuple(x.shape)}")
        batch = x.shape[0]
        flat = x.reshape(batch, -1)
        if flat.shape[1] != self.dim:
            raise InputError(
                f"x: expected {self.dim} values per sample, got shape {tuple(x.shape)} "
                f"({math.prod(x.shape[1:])} values)")
        t = as_batch_time(t, batch, x.device)
        condition = self.time_embedding[0](t).to(x.dtype)
        condition = self.time_embedding[1:](condition)
        labels = class_indices(y, batch, self.num_classes, x.device)
        if labels is not None:
            condition = condition + self.class_embedding(labels).to(x.dtype)
        condition = condition + guidance_term(self.guidance_embedding, w, batch, x.device, x.dtype)
        out = self.net(torch.cat([flat, condition], dim=1))
        return out.reshape(x.shape)
