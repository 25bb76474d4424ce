"""Checkpoints: one safetensors file holding tensors, with the JSON state in its metadata.

Everything a bit-identical resume needs lives in one file, written atomically (temporary file in
the same folder, fsync, ``os.replace``), so a run killed at any moment leaves either the previous
or the new checkpoint, never a torn one. Tensors: model weights (``model.*``), EMA weights
(``ema.*``), optimizer state (``optim.*``) and RNG states (``rng.*``, as uint8 tensors). JSON
(``__metadata__["monge"]``): step, config, optimizer hyper-parameters, anything the caller adds.
A readable copy of the JSON is written next to it as ``<name>.json`` for humans.

Loading never unpickles anything: safetensors only holds raw tensors and strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from monge.core.io import atomic_path, atomic_write_bytes
from monge.errors import DataError


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor],
                    state: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` and the JSON-serialisable ``state`` to ``path``."""
    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={"monge": json.dumps(state)})
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(state, indent=2).encode())
    return path


def refresh_json_copy(path: str | Path) -> None:
    """Rewrite ``<name>.json`` from the checkpoint's own metadata (the safetensors file is the
    one source of truth; a run killed between the two atomic writes leaves the copy stale or
    missing)."""
    _, state = load_checkpoint(path)
    atomic_write_bytes(Path(path).with_suffix(".json"), json.dumps(state, indent=2).encode())


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: (tensors, state)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DataError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if "monge" not in meta:
        raise DataError(f"{path}: safetensors file without monge metadata")
    try:
        state = json.loads(meta["monge"])
    except ValueError:
        raise DataError(f"{path}: its monge metadata is not valid JSON (corrupt checkpoint)"
                        ) from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: its monge metadata is not a JSON object (corrupt checkpoint)")
    return tensors, state


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and JSON (for safetensors)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for name, val in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
