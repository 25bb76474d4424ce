"""Autograd-graph memory meter: peak bytes of tensors saved for backward (any device)."""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["GraphMemoryMeter"]


# --------------------------------------------------------------------------------------------
class GraphMemoryMeter:
    """Peak bytes of tensors saved for backward (the autograd graph's activation memory).

    Uses ``torch.autograd.graph.saved_tensors_hooks``: every saved tensor is wrapped and
    counted until its graph is freed. Device independent (CPU or GPU).
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    class _Box:
        __slots__ = ("t", "__weakref__")

        def __init__(self, t: Tensor):
            self.t = t

    def _pack(self, t: Tensor):
        box = self._Box(t)
        size = t.numel() * t.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(box, self._free, size)
        return box

    def _free(self, size: int) -> None:
        self.live -= size

    @staticmethod
    def _unpack(box):
        return box.t

    @contextmanager
    def track(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self
