"""Device names checked once, up front: one line for a device this machine does not have."""

from __future__ import annotations

import torch

from monge.errors import InputError


def resolve_device(name: str | torch.device) -> torch.device:
    """The ``torch.device`` for ``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked.

    Raises:
        InputError: an unknown device string, or a device this build/machine does not have
            (e.g. ``cuda`` on a CPU-only build, ``cuda:3`` on a 1-GPU machine).
    """
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device: {name!r} is not a device name (use cpu, cuda, cuda:N or mps)"
                         ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {name!r} requested but this torch build or machine has no "
                             "CUDA GPU; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device: {name!r} requested but only {count} CUDA device(s) exist")
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"device: {name!r} requested but MPS is not available here")
        return dev
    raise InputError(f"device: {name!r} is not supported (use cpu, cuda, cuda:N or mps)")
