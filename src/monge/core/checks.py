"""Small input checks shared by every layer (one place, one wording)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from monge.errors import InputError


def as_tensor(x, name: str, *, dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Convert ``x`` (tensor, numpy array or sequence) to a tensor, keeping its device/dtype
    unless asked. Integer and boolean input becomes the default float dtype."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray | Sequence | float | int):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}: cannot convert to a tensor ({exc})") from None
    else:
        raise InputError(f"{name}: expected a tensor or array, got {type(x).__name__}")
    if not torch.is_floating_point(t) and dtype is None:
        t = t.to(torch.get_default_dtype())
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise :class:`InputError` naming ``name`` if ``x`` holds NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise InputError(f"{name}: contains {n_nan} NaN and {n_inf} Inf values")
    return x


def check_ndim(x: torch.Tensor, name: str, ndim: int | Sequence[int]) -> torch.Tensor:
    """Raise :class:`InputError` if ``x.ndim`` is not (one of) ``ndim``."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise InputError(f"{name}: expected {want} dimensions, got shape {tuple(x.shape)}")
    return x


def check_same_batch(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise :class:`InputError` if the leading (batch) dimensions differ."""
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"{name_a} and {name_b}: batch sizes differ ({a.shape[0]} vs {b.shape[0]})")


def make_generator(seed: int | torch.Generator | None,
                   device: torch.device | str = "cpu") -> torch.Generator:
    """Return a ``torch.Generator``: the one given, or a new one seeded with ``seed``
    (a fresh non-deterministic seed when ``None``)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g
