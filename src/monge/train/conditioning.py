"""Class conditioning for training: which labels the model sees, and label dropout for CFG."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from monge.errors import InputError


class LabelConditioning:
    """Turn batch labels into the model's ``cond`` dict.

    Labels reach the model (as ``y``) only for a class-conditional model (``num_classes`` set);
    otherwise they are dropped here, so label-aware couplings can still use them. With
    ``dropout`` > 0 each label is replaced by the null class ``num_classes`` with that
    probability, the training half of classifier-free guidance (Ho & Salimans 2022).

    Args:
        num_classes: number of classes of a class-conditional model, or None.
        dropout: label-dropout probability in [0, 1).
    """

    def __init__(self, num_classes: int | None = None, dropout: float = 0.0):
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"cond_dropout: must be in [0, 1), got {dropout}")
        if dropout > 0 and num_classes is None:
            raise InputError("cond_dropout: needs num_classes (the null class index)")
        self.num_classes, self.dropout = num_classes, dropout

    def __call__(self, y: Tensor | None, generator: torch.Generator | None) -> dict[str, Any]:
        if y is None or self.num_classes is None:
            return {}
        if self.dropout > 0:
            device = generator.device if generator is not None else y.device
            drop = torch.rand(y.shape[0], generator=generator, device=device).to(y.device)
            y = torch.where(drop < self.dropout, torch.full_like(y, self.num_classes), y)
        return {"y": y}
