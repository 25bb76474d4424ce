"""The coupling interface: how source samples x0 are paired with target samples x1 for training.

A coupling takes two independently drawn minibatches and returns a :class:`Pairing`: the rows to
train on, in matched order, with the target's conditioning and optional per-pair loss weights
(e.g. W-CFM's Gibbs weights). Flattening for OT happens inside the coupling, never at call sites.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from monge.core.checks import check_same_batch


@dataclass
class Pairing:
    """Matched training pairs.

    Attributes:
        x0: source samples [B, ...].
        x1: target samples [B, ...], row i paired with ``x0[i]``.
        y1: labels of x1 (conditioning), or None.
        weights: per-pair loss weights [B], or None for uniform weights.
    """

    x0: Tensor
    x1: Tensor
    y1: Tensor | None = None
    weights: Tensor | None = None


class Coupling(ABC):
    """Base class: ``coupling(x0, x1, y1=None, generator=None) -> Pairing``."""

    name: str = "coupling"

    def __call__(self, x0: Tensor, x1: Tensor, *, y1: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Pairing:
        check_same_batch(x0, x1, "x0", "x1")
        return self.pair(x0, x1, y1=y1, generator=generator)

    @abstractmethod
    def pair(self, x0: Tensor, x1: Tensor, *, y1: Tensor | None,
             generator: torch.Generator | None) -> Pairing:
        """Pair the rows of x0 with the rows of x1 (batch sizes already checked)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IndependentCoupling(Coupling):
    """The product coupling π0 ⊗ π1: the minibatches are already independent, keep them as drawn.

    Cost O(1). Lipman et al. (2023), "Flow Matching for Generative Modeling"; Liu et al. (2023),
    "Flow Straight and Fast" (1-rectified flow).
    """

    name = "independent"

    def pair(self, x0, x1, *, y1, generator) -> Pairing:
        return Pairing(x0, x1, y1)
