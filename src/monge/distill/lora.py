"""LoRA adapters for monge's networks, on Hugging Face ``peft`` (the substrate of LCM-LoRA).

Method: low-rank adaptation (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
ICLR 2022) freezes a layer's weight W0 and learns ΔW = (α/r)·B·A with A of shape [r, fan_in]
and B of shape [fan_out, r], B initialised to zero (so a fresh adapter changes nothing). For a
``Conv2d`` layer A is an r-channel convolution with the layer's kernel and B a 1×1 convolution,
so ΔW is a rank-r matrix of shape [out, in·kh·kw]. LCM-LoRA (Luo et al., "LCM-LoRA: A Universal
Stable-Diffusion Acceleration Module", arXiv 2311.05556) distils only such adapters, calls the
learned ΔW an "acceleration vector" τ_LCM, and composes it with a style adapter τ′ by arithmetic:
W = W0 + λ1·τ′ + λ2·τ_LCM (:func:`combine`).

The adapters are ``peft``'s own (``LoraConfig`` + ``get_peft_model``); this module adds what
monge needs around them: targets named by layer kind, a rank check, adapter-only safetensors
files with their rank/alpha/targets in the header, an exact merge/unmerge, a plain merged copy
and exact adapter sums. ``peft`` is optional: ``pip install 'monge[lora]'``.

The adapted model is a ``peft.PeftModel`` that calls the original network with the same
arguments (``model(x, t, y=...)``) and forwards attribute reads (``config``, ``num_classes``,
``null_class``, ...) to it. :func:`add_lora` injects the adapters into the network it is given
(in place, as ``peft`` does); deep-copy it first to keep an untouched original.

Example:
    >>> import torch
    >>> from monge.models import MLP
    >>> model = add_lora(MLP(2, hidden=32, depth=2, time_dim=16), rank=2)
    >>> model(torch.randn(4, 2), torch.rand(4)).shape
    torch.Size([4, 2])
    >>> 0 < adapter_fraction(model) < 0.5
    True
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from monge.core.io import atomic_path
from monge.errors import DataError, InputError

__all__ = ["TARGET_PRESETS", "adapter_fraction", "adapter_state_dict", "add_lora", "combine",
           "disabled", "load_adapter", "merge", "merged_copy", "save_adapter", "set_active",
           "target_names", "unmerge"]

TARGET_PRESETS = ("linear", "all")
"""``targets`` presets: ``"linear"`` = every ``nn.Linear``; ``"all"`` = every ``nn.Linear`` and
``nn.Conv2d``."""

_METADATA_KEY = "monge_lora"
_FORMAT_VERSION = 1
_BASE_WEIGHTS = "_monge_lora_base_weights"  # attribute holding W0 while merged (exact unmerge)


def _peft(caller: str) -> ModuleType:
    """Import ``peft`` lazily (monge imports without it)."""
    try:
        import peft
        import peft.tuners.lora  # noqa: F401  (LoraLayer)
    except ImportError:
        raise InputError(f"{caller} needs peft: pip install 'monge[lora]'") from None
    return peft


def _network(model: nn.Module) -> nn.Module:
    """The monge network inside ``model`` (itself if it has no adapters)."""
    peft = _peft("LoRA")
    return model.get_base_model() if isinstance(model, peft.PeftModel) else model


def _lora_layers(model: nn.Module) -> Iterator[Any]:
    peft = _peft("LoRA")
    return (m for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer))


def _layers(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """Layer name -> targetable layer (``nn.Linear`` / ``nn.Conv2d``) of a plain or adapted
    network; an adapted layer counts once, under its own name, as its base layer."""
    peft = _peft("LoRA")
    found: dict[str, nn.Module] = {}
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, peft.tuners.lora.LoraLayer):
            found[full] = child.get_base_layer()
        elif isinstance(child, (nn.Linear, nn.Conv2d)):
            found[full] = child
        else:
            found.update(_layers(child, f"{full}."))
    return found


def _max_rank(layer: nn.Module) -> int:
    """Largest rank of ΔW for ``layer``: min(out, in) for Linear, min(out, in/groups·kh·kw)
    for Conv2d (its weight read as an [out, in·kh·kw] matrix)."""
    shape = layer.weight.shape
    return min(shape[0], math.prod(shape[1:]))


def target_names(model: nn.Module, targets: str | Sequence[str] = "linear") -> list[str]:
    """Names of the layers ``targets`` selects in ``model`` (plain or already adapted).

    Args:
        model: a network such as :class:`monge.models.MLP` or :class:`monge.models.UNet`.
        targets: ``"linear"`` (every ``nn.Linear``), ``"all"`` (every ``nn.Linear`` and
            ``nn.Conv2d``) or a list of layer names as in ``model.named_modules()``.

    Returns:
        Layer names in module order (duplicates dropped).

    Raises:
        InputError: unknown preset, a name that is not a Linear/Conv2d layer, or no layer.

    Example:
        >>> from monge.models import MLP
        >>> target_names(MLP(2, hidden=8, depth=1, time_dim=4))
        ['time_embedding.1', 'time_embedding.3', 'net.0', 'net.2']
    """
    layers = _layers(_network(model))
    if isinstance(targets, str):
        if targets not in TARGET_PRESETS:
            raise InputError(f"targets: expected 'linear', 'all' or a list of layer names, got "
                             f"{targets!r}")
        kinds = (nn.Linear,) if targets == "linear" else (nn.Linear, nn.Conv2d)
        names = [n for n, layer in layers.items() if isinstance(layer, kinds)]
    else:
        names = list(dict.fromkeys(targets))
        unknown = [n for n in names if not isinstance(n, str) or n not in layers]
        if unknown:
            raise InputError(f"targets: {unknown[0]!r} is not a Linear or Conv2d layer of "
                             f"{type(_network(model)).__name__} (its layers: "
                             f"{', '.join(list(layers)[:6])}{', ...' if len(layers) > 6 else ''})")
    if not names:
        raise InputError(f"targets: {targets!r} selects no layer of {type(model).__name__}")
    return names


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise InputError(f"name: expected a non-empty adapter name without '.', got {name!r}")
    return name


def _require_adapter(model: nn.Module, name: str) -> Any:
    """``model`` as a ``PeftModel`` that holds adapter ``name``."""
    peft = _peft("LoRA")
    if not isinstance(model, peft.PeftModel):
        raise InputError(f"model: {type(model).__name__} has no LoRA adapters; call add_lora "
                         "first")
    if name not in model.peft_config:
        raise InputError(f"name: the model has no adapter {name!r} (it has "
                         f"{', '.join(map(repr, model.peft_config))})")
    return model


def _inject(model: nn.Module, rank: int, alpha: float, names: list[str], name: str
            ) -> nn.Module:
    peft = _peft("add_lora")
    # an anchored alternation of the exact names: peft full-matches a string pattern, whereas a
    # list of names would also match any layer whose name merely ends with one of them
    pattern = "^(?:" + "|".join(layer.replace(".", r"\.") for layer in names) + ")$"
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern,
                             lora_dropout=0.0, bias="none")
    if not isinstance(model, peft.PeftModel):
        return peft.get_peft_model(model, config, adapter_name=name)
    if name in model.peft_config:
        raise InputError(f"name: the model already has an adapter {name!r}")
    unmerge(model)
    model.add_adapter(name, config)
    model.set_adapter(name)
    return model


def add_lora(model: nn.Module, rank: int = 4, alpha: float | None = None,
             targets: str | Sequence[str] = "linear", name: str = "default") -> nn.Module:
    """Add a rank-``rank`` LoRA adapter to the ``targets`` layers of ``model`` and activate it.

    Method: see the module docstring; ΔW = (alpha/rank)·B·A per targeted layer, B = 0 at start,
    base weights frozen (``requires_grad=False``), only the active adapter trainable. Adding a
    second adapter to an adapted model freezes the first. Extra cost per call: O(B·rank·(in +
    out)) per Linear layer, O(B·H·W·rank·(in·kh·kw + out)) per Conv2d layer (none once merged).

    Args:
        model: a monge network (``MLP``, ``UNet``, ...) or a model returned by this function.
            The adapters are injected into it in place.
        rank: the adapter rank r; at most the largest rank of ΔW of every targeted layer
            (min(out, in) for Linear, min(out, in·kh·kw) for Conv2d).
        alpha: LoRA's α (the update is scaled by α / r); ``None`` means ``rank`` (scale 1).
        targets: ``"linear"``, ``"all"`` (Linear and Conv2d) or a list of layer names
            (:func:`target_names`).
        name: adapter name (several adapters can live in one model).

    Returns:
        The adapted model (a ``peft.PeftModel``), called as ``model(x, t, y=...)`` like the
        original; ``model.config``, ``model.num_classes``, ``model.null_class`` read through.

    Raises:
        InputError: bad rank/alpha/name/targets, or ``rank`` above a targeted layer's rank
            (naming the layer and its weight shape); ``peft`` not installed.

    Example:
        >>> from monge.models import UNet
        >>> model = add_lora(UNet(base_channels=8, groups=4), rank=2, targets=["middle.conv1"])
        >>> sum(p.requires_grad for p in model.parameters())
        2
    """
    _peft("add_lora")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"rank: expected a positive integer, got {rank!r}")
    alpha = rank if alpha is None else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (
            math.isfinite(alpha) and alpha > 0):
        raise InputError(f"alpha: expected a positive number, got {alpha!r}")
    name = _check_name(name)
    names = target_names(model, targets)
    layers = _layers(_network(model))
    too_small = [n for n in names if rank > _max_rank(layers[n])]
    if too_small:
        layer = layers[too_small[0]]
        more = f" (and {len(too_small) - 1} more layers)" if len(too_small) > 1 else ""
        raise InputError(
            f"rank: {rank} exceeds the largest rank {_max_rank(layer)} of layer "
            f"'{too_small[0]}' ({type(layer).__name__} weight {list(layer.weight.shape)}){more}; "
            "lower the rank or leave the layer out of targets")
    return _inject(model, rank, alpha, names, name)


def _adapter_layers(model: nn.Module, name: str) -> list[str]:
    """Names of the layers that carry adapter ``name``."""
    peft = _peft("LoRA")
    network = _network(model)
    return [n for n, m in network.named_modules()
            if isinstance(m, peft.tuners.lora.LoraLayer) and name in m.lora_A]


def adapter_state_dict(model: nn.Module, name: str = "default") -> dict[str, Tensor]:
    """The tensors of adapter ``name`` only (its A and B matrices), keyed as ``peft`` keys them.

    The keys (``base_model.model.<layer>.lora_A.weight``, ...) are those of ``peft``'s own
    ``get_peft_model_state_dict``; the values are the live parameters' data (clone before
    changing them). Cost: O(1) per tensor.
    """
    peft = _peft("adapter_state_dict")
    model = _require_adapter(model, name)
    return {k: v.detach() for k, v in
            peft.get_peft_model_state_dict(model, adapter_name=name).items()}


def adapter_fraction(model: nn.Module, name: str = "default") -> float:
    """Parameters of adapter ``name`` divided by the parameters of the base network.

    Example: rank 4 on a 256×256 Linear layer adds 4·(256 + 256) = 2048 parameters to its
    65,792 (3.1 %). Cost O(number of parameter tensors).
    """
    adapter = sum(v.numel() for v in adapter_state_dict(model, name).values())
    base = sum(p.numel() for n, p in model.named_parameters() if ".lora_" not in n)
    return adapter / base


def save_adapter(model: nn.Module, path: str | Path, name: str = "default") -> Path:
    """Write adapter ``name`` (its tensors only) to a safetensors file, atomically.

    The header metadata ``monge_lora`` holds JSON ``{"version", "name", "rank", "alpha",
    "targets", "peft"}`` (``targets`` = the adapted layers' names), enough for
    :func:`load_adapter` to recreate the adapter on a fresh network. The tensors are keyed as
    ``peft`` keys them, so ``peft.set_peft_model_state_dict`` reads them too. Nothing is
    pickled. Cost: the adapter's size on disk (see :func:`adapter_fraction`).

    Returns:
        The path written.
    """
    peft = _peft("save_adapter")
    tensors = {k: v.to("cpu").contiguous() for k, v in adapter_state_dict(model, name).items()}
    config = model.peft_config[name]
    meta = {"version": _FORMAT_VERSION, "name": name, "rank": config.r,
            "alpha": config.lora_alpha, "targets": _adapter_layers(model, name),
            "peft": peft.__version__}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", _METADATA_KEY: json.dumps(meta)})
    return path


def _read_adapter_file(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: LoRA adapter file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for a corrupt file
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable safetensors file ({reason})") from None
    try:
        meta = json.loads(header[_METADATA_KEY])
        rank, alpha, targets = meta["rank"], meta["alpha"], meta["targets"]
        valid = (isinstance(rank, int) and rank >= 1 and isinstance(alpha, (int, float))
                 and alpha > 0 and isinstance(targets, list) and targets
                 and all(isinstance(t, str) for t in targets))
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise DataError(f"{path}: no valid '{_METADATA_KEY}' metadata (not a file written by "
                        "monge.distill.lora.save_adapter)")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise DataError(f"{path}: tensor {bad[0]!r} holds NaN or Inf values")
    return tensors, meta


def load_adapter(model: nn.Module, path: str | Path, name: str = "default") -> nn.Module:
    """Load a file written by :func:`save_adapter` into adapter ``name`` and activate it.

    If ``model`` has no adapter ``name`` (e.g. a fresh ``MLP``), one is first created with the
    file's rank, alpha and targets; otherwise the existing adapter must have the same alpha,
    rank and tensor names/shapes. A merged model is unmerged first. Only safetensors is read
    (never pickle). Cost: reading the file.

    Returns:
        The adapted model (the same object when ``model`` was already adapted).

    Raises:
        DataError: missing or unreadable file, missing metadata, non-finite values.
        InputError: the file does not fit the model (names which tensors differ).
    """
    peft = _peft("load_adapter")
    path = Path(path)
    name = _check_name(name)
    tensors, meta = _read_adapter_file(path)
    if not (isinstance(model, peft.PeftModel) and name in model.peft_config):
        layers = _layers(_network(model))
        unknown = [t for t in meta["targets"] if t not in layers]
        if unknown:
            raise InputError(f"{path}: adapts layer {unknown[0]!r}, which "
                             f"{type(_network(model)).__name__} does not have")
        # no rank check: a combined adapter's rank is the sum of its parts' ranks
        model = _inject(model, meta["rank"], meta["alpha"], meta["targets"], name)
    config = model.peft_config[name]
    if (config.r, config.lora_alpha) != (meta["rank"], meta["alpha"]):
        raise InputError(f"{path}: rank {meta['rank']}, alpha {meta['alpha']} do not match "
                         f"adapter {name!r} (rank {config.r}, alpha {config.lora_alpha})")
    expected = {k: tuple(v.shape) for k, v in adapter_state_dict(model, name).items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
        detail = "; ".join(f"{label} {lst[0]!r}" + (f" (+{len(lst) - 1})" if len(lst) > 1 else "")
                           for label, lst in (("missing", missing), ("unexpected", extra),
                                              ("wrong shape", shapes)) if lst)
        raise InputError(f"{path}: its tensors do not match adapter {name!r} of the model: "
                         f"{detail}")
    unmerge(model)
    result = peft.set_peft_model_state_dict(model, tensors, adapter_name=name)
    if result.unexpected_keys:  # guarded above; kept so a peft change cannot pass silently
        raise InputError(f"{path}: peft did not load {result.unexpected_keys[0]!r}")
    model.set_adapter(name)
    return model


def _is_merged(model: nn.Module) -> bool:
    return any(layer.merged for layer in _lora_layers(model))


def merge(model: nn.Module) -> nn.Module:
    """Fold the active adapter into the base weights, W ← W0 + ΔW (faster calls, same outputs).

    ``peft``'s ``merge_adapter`` does the folding; W0 is kept aside (a copy of every adapted
    layer's weight) so that :func:`unmerge` restores it bit for bit instead of subtracting ΔW
    again (which leaves rounding errors in W0). Merging a merged model does nothing. While
    merged, ``model.state_dict()`` holds W0 + ΔW under the base keys: write checkpoints unmerged.
    Cost: one ΔW = B·A per adapted layer, and memory for a copy of the adapted weights.
    """
    peft = _peft("merge")
    if not isinstance(model, peft.PeftModel):
        raise InputError(f"model: {type(model).__name__} has no LoRA adapters; call add_lora "
                         "first")
    if _is_merged(model):
        return model
    unmerge(model)  # drop a stale copy of W0 (a merge undone by peft itself)
    layers = list(_lora_layers(model))
    object.__setattr__(model, _BASE_WEIGHTS,
                       [layer.get_base_layer().weight.detach().clone() for layer in layers])
    model.merge_adapter()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undo :func:`merge`: the base weights return to W0 exactly; the adapters run separately
    again. Does nothing on an unmerged model. Cost: one copy per adapted weight."""
    peft = _peft("unmerge")
    if not isinstance(model, peft.PeftModel):
        return model
    saved = getattr(model, _BASE_WEIGHTS, None)
    if _is_merged(model):
        model.unmerge_adapter()
    if saved is not None:
        with torch.no_grad():
            for layer, w0 in zip(_lora_layers(model), saved, strict=True):
                layer.get_base_layer().weight.copy_(w0)
        object.__delattr__(model, _BASE_WEIGHTS)
    return model


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain copy of the network with the active adapter folded in (W0 + ΔW), no ``peft``.

    Uses ``peft``'s ``merge_and_unload`` on a deep copy; ``model`` is unchanged. The result is
    the original class (e.g. :class:`monge.models.MLP`) whose ``state_dict`` loads into a fresh
    instance built from the same config. Cost: one copy of the model.
    """
    peft = _peft("merged_copy")
    if not isinstance(model, peft.PeftModel):
        raise InputError(f"model: {type(model).__name__} has no LoRA adapters; call add_lora "
                         "first")
    duplicate = copy.deepcopy(model)
    if hasattr(duplicate, _BASE_WEIGHTS):
        object.__delattr__(duplicate, _BASE_WEIGHTS)
    return duplicate.merge_and_unload()


def combine(model: nn.Module, weights: Mapping[str, float], name: str = "combined"
            ) -> nn.Module:
    """Adapter arithmetic: a new adapter with ΔW = Σ_i λ_i·ΔW_i exactly, made active.

    This is LCM-LoRA's composition W = W0 + λ1·τ′ + λ2·τ_LCM (Luo et al. 2023, Eq. 1) with
    ``weights = {"style": λ1, "lcm": λ2}``. It is ``peft``'s ``add_weighted_adapter`` with
    ``combination_type="cat"``: A = [λ_1 s_1 A_1; λ_2 s_2 A_2; ...] (rows stacked), B = [B_1,
    B_2, ...] (columns side by side), rank Σ r_i and scale 1, so B·A = Σ λ_i s_i B_i A_i
    (s_i = α_i / r_i). ``peft``'s ``"linear"`` type is not this sum: it needs equal ranks and
    forms (Σ c_i B_i)(Σ c_i A_i), c_i = sqrt(λ_i s_i), with cross terms B_i A_j. (With a single
    adapter ``peft`` always uses ``"linear"``, which is then exact.) The inputs are kept.
    A merged model is unmerged first. Cost: the combined adapter has rank Σ r_i, so its extra
    call cost is the sum of the parts'.

    Args:
        model: an adapted model holding every adapter named in ``weights``.
        weights: adapter name -> λ (any real; negative subtracts).
        name: name of the new adapter (must be new).

    Returns:
        ``model``, with adapter ``name`` active.
    """
    _peft("combine")
    name = _check_name(name)
    if not weights:
        raise InputError("weights: expected at least one adapter name -> weight")
    for adapter, weight in weights.items():
        _require_adapter(model, adapter)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(
                weight):
            raise InputError(f"weights: {adapter!r} -> {weight!r} is not a finite number")
    if name in model.peft_config:  # peft would silently keep the old adapter
        raise InputError(f"name: the model already has an adapter {name!r}")
    unmerge(model)
    model.add_weighted_adapter(list(weights), [float(w) for w in weights.values()], name,
                               combination_type="cat")
    model.set_adapter(name)
    return model


def set_active(model: nn.Module, name: str) -> nn.Module:
    """Make adapter ``name`` the active (and only trainable) one; a merged model is unmerged
    first (exactly, see :func:`unmerge`). Cost: O(number of adapted layers)."""
    model = _require_adapter(model, _check_name(name))
    unmerge(model)
    model.set_adapter(name)
    return model


@contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` computes the base network exactly (adapters bypassed): the
    frozen teacher of LCM-LoRA from the same weights. A merged model is unmerged for the block
    and merged again after it."""
    peft = _peft("disabled")
    if not isinstance(model, peft.PeftModel):
        raise InputError(f"model: {type(model).__name__} has no LoRA adapters; call add_lora "
                         "first")
    was_merged = _is_merged(model)
    unmerge(model)
    try:
        with model.disable_adapter():
            yield model
    finally:
        if was_merged:
            merge(model)
