"""Build a field network by name from the data shape: ``build_model("mlp" | "unet", shape)``."""

from __future__ import annotations

import inspect
import math

from torch import nn

from monge.errors import ConfigError
from monge.models.energy import EnergyMLP
from monge.models.mlp import MLP
from monge.models.unet import UNet

__all__ = ["MODEL_KINDS", "build_model", "count_parameters"]

MODEL_KINDS: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet, "energy": EnergyMLP}
"""Model name -> class."""


def build_model(kind: str, shape: tuple[int, ...], num_classes: int | None = None,
                **kwargs) -> nn.Module:
    """Build a network whose output has the per-sample ``shape`` of its input.

    ``"mlp"`` takes any shape (samples are flattened, ``dim = prod(shape)``); ``"unet"`` takes
    images ``(C, H, W)`` with ``H`` and ``W`` divisible by ``2 ** (len(channel_mults) - 1)``.

    Args:
        kind: ``"mlp"``, ``"unet"`` or ``"energy"`` (an MLP energy whose output is −∇ₓE, a
            conservative field; "What does a trained score learn", wgf-score).
        shape: per-sample data shape, e.g. ``(2,)`` or ``(1, 8, 8)``.
        num_classes: number of classes for conditioning, or ``None``.
        **kwargs: further constructor arguments of :class:`MLP` or :class:`UNet`.

    Returns:
        The model (``forward(x, t, y=None)``), on the CPU in float32.

    Raises:
        ConfigError: unknown kind, unknown keyword, or a shape the model cannot take.

    Example:
        >>> net = build_model("unet", (1, 8, 8), num_classes=10)
        >>> count_parameters(net) > 0
        True
    """
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model kind: unknown {kind!r}; choose one of "
                          f"{', '.join(MODEL_KINDS)}")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"shape: expected a tuple of positive integers, got {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"shape: expected a tuple of positive integers, got {shape!r}")
    cls = MODEL_KINDS[kind]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "dim", "in_channels",
                                                                  "num_classes"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"{kind} model: unknown option(s) {', '.join(unknown)}; valid options "
                          f"are {', '.join(sorted(allowed))}")
    if kind in ("mlp", "energy"):
        return cls(math.prod(shape), num_classes=num_classes, **kwargs)
    if len(shape) != 3:
        raise ConfigError(f"unet model: needs image data of shape (C, H, W), got {shape}; use "
                          "the mlp model for vector data")
    mults = tuple(kwargs.get("channel_mults", (1, 2)))
    factor = 2 ** (len(mults) - 1)
    if shape[1] % factor or shape[2] % factor:
        raise ConfigError(f"unet model: height and width {shape[1:]} must be divisible by "
                          f"{factor} (2 ** (len(channel_mults) - 1) with channel_mults={mults})")
    return UNet(in_channels=shape[0], num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
