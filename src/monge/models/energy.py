"""An energy-parameterised field network: the output is ``-∇_x E_θ(x, t, y)``, a gradient field.

The conservative baseline of "Are We Really Learning the Score Function? Reinterpreting Diffusion
Models Through Wasserstein Gradient Flow Matching" (Vuong, McCann, Santos & Lin, TMLR 2025,
arXiv 2509.00336; ``shared/papers/wgf-score.md``): a scalar network ``E_θ`` whose negative
gradient in ``x`` is the predicted field, so its Jacobian ``-∇²E`` is symmetric by construction.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.errors import ConfigError, InputError
from monge.models.embeddings import SinusoidalTimeEmbedding, as_batch_time, class_indices
from monge.models.mlp import ACTIVATIONS

__all__ = ["EnergyMLP"]


class EnergyMLP(nn.Module):
    """Conservative field network ``(x, t, y) -> -∇_x E_θ(x, t, y)`` of ``x``'s shape.

    Method: the same conditioning as :class:`~monge.models.MLP` (sinusoidal time embedding and
    a two-layer MLP to ``time_dim``; with ``num_classes`` a learned class embedding with a
    "null" row for classifier-free guidance), concatenated with the flattened ``x`` and fed to
    ``depth`` hidden layers of width ``hidden`` and a linear read-out to one scalar, the energy
    ``E_θ(x, t, y)``. :meth:`forward` returns ``-∇_x E_θ`` through
    ``torch.autograd.grad(..., create_graph=True)``, so the network trains with the ordinary
    losses (the parameter gradient flows through the input gradient: a double backward) and
    its Jacobian ``-∇²_x E_θ`` is symmetric: the field is exactly conservative (Vuong et al.,
    2025, the "energy parameterisation"). Sign: a velocity or score ``v = -∇E`` points downhill
    in energy (``E = -log p`` gives the score). Cost: one forward and one backward pass of the
    energy network per call (about 2-3x an :class:`MLP` call; training about 3x).

    Inside ``torch.no_grad()`` (sampling) gradient recording is switched on locally and the
    returned field is detached; ``torch.inference_mode()`` cannot be overridden and raises.

    Args:
        dim: number of values per sample (``prod(shape)`` of ``x``'s per-sample shape).
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
        time_dim: width of the time (and class) embedding.
        num_classes: number of classes for conditioning, or ``None`` for an unconditional model.
        activation: a smooth activation of :data:`~monge.models.ACTIVATIONS` (``relu`` is
            refused: the gradient of a ReLU network is piecewise constant, so its field would
            have a zero Jacobian almost everywhere).

    Example:
        >>> net = EnergyMLP(2, hidden=32, depth=2)
        >>> with torch.no_grad():
        ...     v = net(torch.randn(8, 2), torch.rand(8))
        >>> v.shape, v.requires_grad
        (torch.Size([8, 2]), False)
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 64,
                 num_classes: int | None = None, activation: str = "silu") -> None:
        super().__init__()
        for arg, value in (("dim", dim), ("hidden", hidden), ("depth", depth),
                           ("time_dim", time_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{arg}: expected a positive integer, got {value!r}")
        if num_classes is not None and (isinstance(num_classes, bool)
                                        or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes: expected a positive integer or None, got "
                              f"{num_classes!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation: unknown {activation!r}; choose one of "
                              f"{', '.join(ACTIVATIONS)}")
        if activation == "relu":
            raise ConfigError("activation: 'relu' makes -∇E piecewise constant (zero Jacobian "
                              "almost everywhere); choose a smooth one such as 'silu'")
        self.dim, self.num_classes = dim, num_classes
        self.config = {"dim": dim, "hidden": hidden, "depth": depth, "time_dim": time_dim,
                       "num_classes": num_classes, "activation": activation}
        act = ACTIVATIONS[activation]
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, time_dim), act(), nn.Linear(time_dim, time_dim))
        self.class_embedding = (nn.Embedding(num_classes + 1, time_dim)
                                if num_classes is not None else None)
        layers: list[nn.Module] = [nn.Linear(dim + time_dim, hidden), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), act()]
        layers.append(nn.Linear(hidden, 1))
        self.net = nn.Sequential(*layers)

    @property
    def null_class(self) -> int | None:
        """Index of the "null" (unconditional) class, or ``None`` for an unconditional model."""
        return self.num_classes

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"x: expected a tensor of shape [B, ...], got {shape}")
        if math.prod(x.shape[1:]) != self.dim:
            raise InputError(
                f"x: expected {self.dim} values per sample, got shape {tuple(x.shape)} "
                f"({math.prod(x.shape[1:])} values)")

    def energy(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The scalar energy ``E_θ(x, t, y)``, shape ``[B]`` (``x``'s dtype).

        Args:
            x: samples ``[B, *shape]`` with ``prod(shape) == dim``.
            t: times ``[B]`` (a scalar or ``[B, 1]`` is broadcast).
            y: int labels ``[B]`` in ``0..num_classes``, or ``None`` (see :class:`MLP`).
        """
        self._check(x)
        batch = x.shape[0]
        t = as_batch_time(t, batch, x.device)
        condition = self.time_embedding[0](t).to(x.dtype)
        condition = self.time_embedding[1:](condition)
        labels = class_indices(y, batch, self.num_classes, x.device)
        if labels is not None:
            condition = condition + self.class_embedding(labels).to(x.dtype)
        return self.net(torch.cat([x.reshape(batch, -1), condition], dim=1))[:, 0]

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The field ``-∇_x E_θ(x, t, y)``.

        Args:
            x: samples ``[B, *shape]`` with ``prod(shape) == dim``.
            t: times ``[B]`` (a scalar or ``[B, 1]`` is broadcast).
            y: int labels ``[B]`` in ``0..num_classes`` (``num_classes`` = null class), or
                ``None`` (null class, or no conditioning).

        Returns:
            Tensor of ``x``'s shape and dtype. With gradient recording on (training, or a
            Jacobian of the field) it is differentiable in ``x`` and the parameters; under
            ``torch.no_grad()`` it is detached.

        Raises:
            InputError: wrong shape, bad time or labels, or a call inside
                ``torch.inference_mode()``.
        """
        self._check(x)
        if torch.is_inference_mode_enabled():
            raise InputError("EnergyMLP: its field is a gradient and needs autograd; call it "
                             "under torch.no_grad() instead of torch.inference_mode()")
        outer_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            # keep x itself when it already carries a graph, so d(field)/dx stays reachable
            xg = x if (x.requires_grad and outer_grad) else x.detach().requires_grad_(True)
            energy = self.energy(xg, t, y)
            (grad,) = torch.autograd.grad(energy.sum(), xg, create_graph=outer_grad)
        return -grad if outer_grad else -grad.detach()
