"""Standardisation of user data: an affine map fitted on the training split, stored with the
model and undone at sampling, so raw-scale features (values in the thousands, or features whose
scales differ by 10⁴) train as well as the built-in sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError

NORMALIZE_MODES: tuple[str, ...] = ("auto", "standard", "none")


@dataclass
class AffineMap:
    """z = (x − shift)/scale per feature (vectors) or per channel (images); identity when None.

    Attributes:
        shift, scale: tensors broadcastable against one sample (shape ``[*sample_shape]`` with
            singleton axes where statistics were pooled), or None for the identity.
    """

    shift: Tensor | None = None
    scale: Tensor | None = None

    @property
    def is_identity(self) -> bool:
        return self.shift is None

    def encode(self, x: Tensor) -> Tensor:
        """Data units → model units."""
        if self.shift is None:
            return x
        return (x - self.shift.to(x)) / self.scale.to(x)

    def decode(self, z: Tensor) -> Tensor:
        """Model units → data units."""
        if self.shift is None:
            return z
        return z * self.scale.to(z) + self.shift.to(z)

    @classmethod
    def fit(cls, x: Tensor) -> AffineMap:
        """Mean and standard deviation over the training rows: per feature for ``[N, D]`` data,
        per channel for images ``[N, C, H, W]`` (pixels of one channel share one scale, so a
        constant border pixel does not blow up). A constant feature keeps scale 1."""
        if x.shape[0] < 2:
            raise InputError("data: need at least 2 training rows to standardise")
        dims = (0,) if x.ndim == 2 else (0, *range(2, x.ndim))
        x64 = x.double()
        shift = x64.mean(dims, keepdim=True)[0]
        scale = x64.std(dims, keepdim=True)[0]
        scale = torch.where(scale > 1e-12 * scale.max().clamp_min(1e-300), scale,
                            torch.ones_like(scale))
        return cls(shift.float(), scale.float())

    def to_json(self) -> dict[str, Any] | None:
        if self.shift is None:
            return None
        return {"shape": list(self.shift.shape), "shift": self.shift.flatten().tolist(),
                "scale": self.scale.flatten().tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AffineMap:
        if not data:
            return cls()
        shape = tuple(data["shape"])
        return cls(torch.tensor(data["shift"]).reshape(shape),
                   torch.tensor(data["scale"]).reshape(shape))


def standardizer(x: Tensor, mode: str, *, builtin: bool) -> AffineMap:
    """The map for training data ``x`` under ``mode``: ``standard`` always fits one, ``none``
    never does, ``auto`` fits one for user files and folders (built-in sets are already at unit
    scale and are left as they are)."""
    if mode not in NORMALIZE_MODES:
        raise InputError(f"data.normalize: expected one of {NORMALIZE_MODES}, got {mode!r}")
    if mode == "none" or (mode == "auto" and builtin):
        return AffineMap()
    return AffineMap.fit(x)
