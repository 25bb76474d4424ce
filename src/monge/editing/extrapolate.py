"""Training-free higher-resolution extrapolation: patch-wise re-generation with dilated sampling.

Method: Lin, Lin, Zhan & Ji, "AccDiffusion v2: Towards More Accurate Higher-Resolution Diffusion
Extrapolation" (arXiv 2412.02099; v1 "AccDiffusion", ECCV 2024), which composes MultiDiffusion
(Bar-Tal et al., ICML 2023: overlapping windows, averaged), DemoFusion (Du et al., CVPR 2024:
progressive upscaling, skip residual, dilated sampling) and its own window interaction and
patch-content-aware prompts. A field trained at base size ``h × w`` samples an ``S·h × S·w``
canvas: generate (or take) a base image, then for every stage ``s = 2..S`` upsample the previous
stage bicubically and re-generate it with an Euler loop whose every step combines

1. **skip residual** ``z ← (1 − c1)·z + c1·z_t^up``, ``c1 = κ³``, towards the forward-noised copy
   ``z_t^up = t·x_up + (1 − t)·ε`` of the upsampled image (one fixed ``ε`` per stage);
2. **local branch**: overlapping base-size windows (stride half a window), each evaluated with its
   own conditioning (its *patch prompt*: the classes whose base-pass mask covers at least ``c`` of
   the window), the stepped windows averaged where they overlap → ``Z_loc``;
3. **global branch** (dilated sampling): the ``s²`` interleaved sub-lattices ``z[..., i::s, j::s]``
   (each of base size) are evaluated on a Gaussian-smoothed copy (kernel ``2s − 1``,
   ``σ = 0.99·κ + 0.01``, re-standardised to the un-smoothed mean and standard deviation) and
   the step is applied to the un-smoothed sub-lattices; with **window interaction** every element
   position independently permutes which sub-lattice it belongs to before the network call, and
   the inverse permutation is applied to the predicted velocity → ``Z_glob``;
4. **fusion** ``z = (1 − c2)·Z_loc + c2·Z_glob``, ``c2 = κ`` (global early, local late).

Time convention (monge's, see ``DESIGN.md``): ``t = 0`` is noise and ``t = 1`` data on the linear
path, the field is a velocity and an Euler step is ``z + Δt·v``. The paper's cosine weight is
``κ = ½(1 + cos(π(T − t_d)/T))`` in diffusion time ``t_d ∈ [0, T]`` (``t_d = T`` noise); with
``t = 1 − t_d/T`` it is ``κ(t) = ½(1 + cos(π·t))``: 1 at ``t = 0`` (noise), 0 at ``t = 1``
(data), see :func:`kappa`. An Euler step of the linear-path velocity is the flow analogue of the
paper's scheduler step, so averaging stepped windows equals stepping with the averaged velocity.

Patch prompts without a text model: the conditioning is a multi-hot *bag of classes*
(``cond[label_key]`` of shape ``[B, K]``) and the cross-attention map of each "token" is replaced
by a per-class map of the base image supplied by the caller (``region_masks``, e.g. a class
detector's probabilities); :func:`prompt_masks` applies the paper's rule (map > its mean, then a
morphological opening) and :func:`window_prompts` keeps, per window, the classes of the global bag
whose mask covers at least ``threshold`` of the window. The ControlNet conditioning of v2 is not
reproduced.

Methods (:data:`EXTRAPOLATION_METHODS`), each adding one ingredient: ``direct`` (the whole canvas
from noise at once), ``multidiffusion`` (windows, global labels), ``demofusion`` (+ skip
residual, progressive), ``dilated`` (+ dilated sampling), ``interaction`` (+ window interaction),
``accdiffusion`` (+ patch prompts, the full method) and ``dilation-only`` (the global branch
alone, no windows, no skip residual: plain dilated sampling). A method without the skip residual
starts every stage from ``z_0^up = ε``, pure noise that never sees the upsampled image again, so
its earlier stages carry nothing and only the last stage (``s = S``) is run.

Cost per Euler step of stage ``s``: ``(2s − 1)²`` base-size window evaluations (local branch) plus
``s²`` sub-lattice evaluations (global branch), i.e. about ``5s²`` base evaluations against ``s²``
for ``direct``; plus ``O(s²·h·w·C·s)`` for the smoothing. Memory is one batch of windows.

Also here: :func:`count_objects` (connected components of a foreground mask) and
:func:`repetition_rate`, the object-repetition measure of the paper's qualitative claims.

Example:
    >>> import torch
    >>> field = lambda x, t, y: -x            # any field(x, t, **cond) trained at 8 x 8
    >>> base = torch.zeros(2, 3, 8, 8)
    >>> res = extrapolate(field, base, 2, 4, method="interaction",
    ...                   generator=torch.Generator().manual_seed(0), y=torch.ones(2, 3))
    >>> res.x.shape, sorted(res.stages)
    (torch.Size([2, 3, 16, 16]), [2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from monge.core.checks import make_generator
from monge.errors import InputError

__all__ = [
    "EXTRAPOLATION_METHODS",
    "ExtrapolationMethod",
    "ExtrapolationResult",
    "count_objects",
    "extrapolate",
    "foreground_mask",
    "gaussian_smooth",
    "kappa",
    "permute_sublattices",
    "prompt_masks",
    "repetition_rate",
    "split_sublattices",
    "stitch_sublattices",
    "unpermute_sublattices",
    "window_offsets",
    "window_prompts",
]

Field = Callable[..., Tensor]


# --- the method registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtrapolationMethod:
    """Which ingredients of AccDiffusion v2 a sampler uses.

    Attributes:
        name: registry name.
        direct: sample the whole large canvas at once from noise (no windows, no stages).
        windows: local branch (MultiDiffusion windows, averaged).
        skip_residual: DemoFusion's skip residual towards the noised upsampled image
            (``c1 = κ³``); also makes the sampler progressive (one stage per ``s = 2..S``).
        dilated: global branch (dilated sampling with Gaussian smoothing), fused with ``c2 = κ``
            (or alone when ``windows`` is off).
        interaction: window interaction (per-element permutation of sub-lattice membership).
        region_labels: patch-content-aware labels in the windows instead of the global labels.
    """

    name: str
    direct: bool = False
    windows: bool = False
    skip_residual: bool = False
    dilated: bool = False
    interaction: bool = False
    region_labels: bool = False

    def __post_init__(self) -> None:
        if self.direct and (self.windows or self.skip_residual or self.dilated):
            raise InputError(f"method {self.name!r}: direct sampling has no other ingredient")
        if not self.direct and not (self.windows or self.dilated):
            raise InputError(f"method {self.name!r}: needs windows or dilated sampling")
        if self.interaction and not self.dilated:
            raise InputError(f"method {self.name!r}: window interaction needs dilated sampling")
        if self.region_labels and not self.windows:
            raise InputError(f"method {self.name!r}: region labels need windows")


EXTRAPOLATION_METHODS: dict[str, ExtrapolationMethod] = {
    m.name: m for m in (
        ExtrapolationMethod("direct", direct=True),
        ExtrapolationMethod("multidiffusion", windows=True),
        ExtrapolationMethod("demofusion", windows=True, skip_residual=True),
        ExtrapolationMethod("dilated", windows=True, skip_residual=True, dilated=True),
        ExtrapolationMethod("interaction", windows=True, skip_residual=True, dilated=True,
                            interaction=True),
        ExtrapolationMethod("accdiffusion", windows=True, skip_residual=True, dilated=True,
                            interaction=True, region_labels=True),
        ExtrapolationMethod("dilation-only", dilated=True),
    )
}
"""The ablation ladder of the paper plus plain dilated sampling (see the module docstring)."""


@dataclass
class ExtrapolationResult:
    """Output of :func:`extrapolate`.

    Attributes:
        x: the final canvas ``[B, C, S·h, S·w]``.
        stages: the canvas after each stage that ran, keyed by its scale ``s``.
        window_labels: per stage, the windows' labels ``[B, n_windows, K]`` (region labels only).
        network_calls: number of (batched) field calls.
        base_evaluations: field evaluations per image counted in base-size canvases (a window or
            a sub-lattice is 1, a ``direct`` call on the ``s·h × s·w`` canvas is ``s²``).
        method: the method used.
    """

    x: Tensor
    stages: dict[int, Tensor]
    window_labels: dict[int, Tensor] = field(default_factory=dict)
    network_calls: int = 0
    base_evaluations: float = 0.0
    method: str = ""


# --- schedule -----------------------------------------------------------------------------------


def kappa(t: Tensor | float) -> Tensor | float:
    """The paper's cosine weight in monge time: ``κ(t) = ½(1 + cos(π·t))``.

    AccDiffusion/DemoFusion write ``κ = ½(1 + cos(π(T − t_d)/T))`` with diffusion time
    ``t_d ∈ [0, T]`` running from noise (``t_d = T``) to data; monge's ``t = 1 − t_d/T`` turns it
    into ``½(1 + cos(π·t))``: 1 at ``t = 0`` (noise) and 0 at ``t = 1`` (data).

    Args:
        t: time(s) in ``[0, 1]``.

    Returns:
        ``κ(t)`` of the same type.
    """
    if isinstance(t, Tensor):
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise InputError("t: expected times in [0, 1]")
        return 0.5 * (1 + torch.cos(math.pi * t))
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
        raise InputError(f"t: expected a time in [0, 1], got {t!r}")
    return 0.5 * (1 + math.cos(math.pi * t))


# --- dilated sampling ---------------------------------------------------------------------------


def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name}: expected images [B, C, H, W], got {shape}")


def _check_scale(scale: int, name: str = "scale") -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise InputError(f"{name}: expected an integer >= 2, got {scale!r}")
    return int(scale)


def split_sublattices(x: Tensor, scale: int) -> Tensor:
    """The ``s²`` interleaved sub-lattices of a canvas: ``out[i·s + j] = x[:, :, i::s, j::s]``.

    Args:
        x: canvas ``[B, C, H, W]`` with ``H`` and ``W`` divisible by ``scale``.
        scale: ``s >= 1``.

    Returns:
        ``[s², B, C, H/s, W/s]``; :func:`stitch_sublattices` is its exact inverse.
    """
    _check_images(x, "x")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale: expected a positive integer, got {scale!r}")
    b, c, height, width = x.shape
    if height % scale or width % scale:
        raise InputError(f"x: height and width must be divisible by scale={scale}, got "
                         f"{(height, width)}")
    s = int(scale)
    # [B, C, h, s, w, s] -> [s, s, B, C, h, w]: element (i, j) of each s x s cell is lattice i*s+j
    cells = x.reshape(b, c, height // s, s, width // s, s).permute(3, 5, 0, 1, 2, 4)
    return cells.reshape(s * s, b, c, height // s, width // s)


def stitch_sublattices(sublattices: Tensor, scale: int) -> Tensor:
    """Inverse of :func:`split_sublattices`: ``[s², B, C, h, w] -> [B, C, s·h, s·w]``."""
    if not isinstance(sublattices, Tensor) or sublattices.ndim != 5:
        raise InputError(f"sublattices: expected [s², B, C, h, w], got "
                         f"{getattr(sublattices, 'shape', type(sublattices).__name__)}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale: expected a positive integer, got {scale!r}")
    s = int(scale)
    n, b, c, h, w = sublattices.shape
    if n != s * s:
        raise InputError(f"sublattices: expected {s * s} sub-lattices for scale={s}, got {n}")
    cells = sublattices.reshape(s, s, b, c, h, w).permute(2, 3, 4, 0, 5, 1)
    return cells.reshape(b, c, h * s, w * s)


def permute_sublattices(sublattices: Tensor, generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor]:
    """Window interaction: permute, independently at every element position, which sub-lattice
    supplies it (the official code's per-element shuffle, channels included).

    Args:
        sublattices: ``[n, ...]`` (``n = s²`` sub-lattices).
        generator: random generator.

    Returns:
        ``(permuted, index)`` with ``permuted[k] = sublattices[index[k]]`` element-wise;
        :func:`unpermute_sublattices` undoes it exactly.
    """
    if not isinstance(sublattices, Tensor) or sublattices.ndim < 2:
        raise InputError("sublattices: expected a tensor [n, ...] with n sub-lattices")
    noise = torch.rand(sublattices.shape, generator=generator, dtype=torch.float32,
                       device=generator.device if generator is not None else sublattices.device)
    index = noise.to(sublattices.device).argsort(dim=0)
    return sublattices.gather(0, index), index


def unpermute_sublattices(permuted: Tensor, index: Tensor) -> Tensor:
    """Inverse of :func:`permute_sublattices`: ``out[index[k]] = permuted[k]`` element-wise."""
    if permuted.shape != index.shape:
        raise InputError(f"index: expected shape {tuple(permuted.shape)}, got "
                         f"{tuple(index.shape)}")
    return torch.empty_like(permuted).scatter_(0, index, permuted)


def gaussian_smooth(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Gaussian-smooth each channel and re-standardise to the input's per-image mean and std.

    DemoFusion/AccDiffusion smooth the canvas before dilated sampling so that the sub-lattices
    see coherent content; smoothing shrinks the variance, which a model trained on unsmoothed
    inputs would misread as a different noise level, hence the re-standardisation (per image,
    over channels and pixels). Separable depthwise convolution with reflect padding.

    Args:
        x: ``[B, C, H, W]``.
        kernel_size: odd positive size (``2s − 1`` in the method).
        sigma: positive standard deviation in pixels.

    Returns:
        The smoothed canvas, of ``x``'s shape, mean and standard deviation (per image).
    """
    _check_images(x, "x")
    if (isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer))
            or kernel_size < 1 or kernel_size % 2 == 0):
        raise InputError(f"kernel_size: expected an odd positive integer, got {kernel_size!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma: expected a positive number, got {sigma!r}")
    pad = kernel_size // 2
    if pad >= min(x.shape[-2:]):
        raise InputError(f"kernel_size: {kernel_size} too large for a {tuple(x.shape[-2:])} "
                         "canvas")
    offsets = torch.arange(kernel_size, dtype=torch.float64, device=x.device) - pad
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).to(x.dtype)
    c = x.shape[1]
    smooth = x
    if pad:
        smooth = F.pad(smooth, (pad, pad, 0, 0), mode="reflect")
        smooth = F.conv2d(smooth, weights.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        smooth = F.pad(smooth, (0, 0, pad, pad), mode="reflect")
        smooth = F.conv2d(smooth, weights.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    dims = (1, 2, 3)
    mean, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    smooth_mean, smooth_std = smooth.mean(dims, keepdim=True), smooth.std(dims, keepdim=True)
    return (smooth - smooth_mean) / smooth_std.clamp_min(1e-12) * std + mean


# --- windows and patch prompts ------------------------------------------------------------------


def window_offsets(size: int, window: int) -> list[int]:
    """Start offsets of windows of length ``window`` with stride ``window // 2`` covering
    ``0..size`` (the last window is flush with the end)."""
    if window < 2 or size < window:
        raise InputError(f"window: expected 2 <= window <= size, got window={window}, "
                         f"size={size}")
    offsets = list(range(0, size - window + 1, window // 2))
    if offsets[-1] != size - window:
        offsets.append(size - window)
    return offsets


def _windows(height: int, width: int, h: int, w: int) -> list[tuple[int, int]]:
    return [(i, j) for i in window_offsets(height, h) for j in window_offsets(width, w)]


def prompt_masks(token_maps: Tensor, *, opening_iterations: int | None = None) -> Tensor:
    """Binary per-token masks from attention-like maps (the paper's patch-prompt rule).

    Per image and token: mask = map > the map's mean, then a morphological opening (erode, then
    dilate, with the 3×3 cross) of ``opening_iterations`` (default ``max(1, min(h, w) // 16)``,
    the paper's "proportional to map size / 16").

    Args:
        token_maps: ``[B, K, h, w]`` non-negative maps (cross-attention maps in the paper; any
            per-class saliency or detector probability here).
        opening_iterations: iterations of the opening (0 disables it).

    Returns:
        bool ``[B, K, h, w]``.
    """
    _check_images(token_maps, "token_maps")
    if not bool(torch.isfinite(token_maps).all()):
        raise InputError("token_maps: contains NaN or Inf values")
    h, w = token_maps.shape[-2:]
    if opening_iterations is None:
        opening_iterations = max(1, min(h, w) // 16)
    if isinstance(opening_iterations, bool) or opening_iterations < 0:
        raise InputError(f"opening_iterations: expected a non-negative integer, got "
                         f"{opening_iterations!r}")
    masks = token_maps > token_maps.mean(dim=(2, 3), keepdim=True)
    if opening_iterations == 0:
        return masks
    arr = masks.cpu().numpy()
    opened = np.zeros_like(arr)
    for b in range(arr.shape[0]):
        for k in range(arr.shape[1]):
            opened[b, k] = ndimage.binary_opening(arr[b, k], iterations=opening_iterations)
    return torch.from_numpy(opened).to(token_maps.device)


def window_prompts(masks: Tensor, scale: int, *, window: tuple[int, int] | None = None,
                   threshold: float = 0.3, labels: Tensor | None = None) -> Tensor:
    """Per-window multi-hot labels: token ``k`` is in a window iff its mask, upsampled to the
    stage's canvas, covers at least ``threshold`` of the window (and ``k`` is in ``labels``).

    Args:
        masks: base-resolution token masks ``[B, K, h, w]`` (bool or in ``[0, 1]``).
        scale: the stage's scale ``s``; the canvas is ``s·h × s·w``.
        window: window size (default the base size ``(h, w)``).
        threshold: ``c`` in the paper (0.3).
        labels: the global multi-hot labels ``[B, K]``; windows keep only these tokens.

    Returns:
        ``[B, n_windows, K]`` in the dtype of ``labels`` (float32 without), windows in row-major
        order of :func:`window_offsets`.
    """
    _check_images(masks, "masks")
    s = int(scale) if not isinstance(scale, bool) and isinstance(scale, (int, np.integer)) else 0
    if s < 1:
        raise InputError(f"scale: expected a positive integer, got {scale!r}")
    if not 0 < threshold <= 1:
        raise InputError(f"threshold: expected a fraction in (0, 1], got {threshold!r}")
    b, k, h, w = masks.shape
    if labels is not None and tuple(labels.shape) != (b, k):
        raise InputError(f"labels: expected shape {(b, k)} to match masks, got "
                         f"{tuple(labels.shape)}")
    wh, ww = window if window is not None else (h, w)
    up = F.interpolate(masks.float(), scale_factor=s, mode="nearest")
    fractions = torch.stack([up[:, :, i:i + wh, j:j + ww].mean(dim=(2, 3))
                             for i, j in _windows(s * h, s * w, wh, ww)], dim=1)
    dtype = labels.dtype if labels is not None and labels.is_floating_point() else torch.float32
    included = (fractions >= threshold).to(dtype)
    if labels is not None:
        included = included * (labels[:, None, :] > 0).to(dtype)
    return included


# --- the sampler --------------------------------------------------------------------------------


def _repeat_cond(cond: dict[str, Any], batch: int, times: int) -> dict[str, Any]:
    """Tile per-sample conditioning for ``times`` stacked copies of the batch (copy-major)."""
    out = {}
    for key, value in cond.items():
        if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == batch:
            out[key] = value.repeat(times, *([1] * (value.ndim - 1)))
        else:
            out[key] = value
    return out


class _Counter:
    def __init__(self, field: Field) -> None:
        self.field, self.calls, self.evaluations = field, 0, 0.0

    def __call__(self, x: Tensor, t: float, per_image: float, **cond: Any) -> Tensor:
        self.calls += 1
        self.evaluations += per_image
        out = self.field(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), **cond)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise InputError(f"field: expected an output of shape {tuple(x.shape)}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        return out


def extrapolate(field: Field, x_base: Tensor, scale: int, steps: int, *,
                method: str | ExtrapolationMethod = "accdiffusion",
                generator: torch.Generator | int | None = None,
                region_masks: Tensor | None = None, label_key: str = "y",
                window_threshold: float = 0.3, **cond: Any) -> ExtrapolationResult:
    """Extrapolate base-size images to ``scale``× their size with a field trained at base size.

    Args:
        field: velocity field ``field(x, t, **cond)`` on monge's linear path (t = 0 noise,
            t = 1 data), fully convolutional or at least valid at the base size ``h × w``
            (``direct`` needs it at every canvas size).
        x_base: base-resolution images ``[B, C, h, w]`` (e.g. sampled by the same field);
            ``direct`` uses only their shape.
        scale: target scale ``S`` (an integer >= 2); the output is ``[B, C, S·h, S·w]``.
        steps: Euler steps per stage.
        method: a name in :data:`EXTRAPOLATION_METHODS` or an :class:`ExtrapolationMethod`.
        generator: seed or generator for the per-stage noise and the permutations.
        region_masks: base-resolution token masks ``[B, K, h, w]`` (e.g. from
            :func:`prompt_masks`), required by methods with ``region_labels``.
        label_key: the conditioning entry holding the multi-hot labels ``[B, K]`` that the
            windows' patch prompts replace.
        window_threshold: ``c``, the least covered fraction of a window that keeps a token.
        **cond: conditioning passed to the field (per-sample tensors are tiled over windows
            and sub-lattices).

    Returns:
        :class:`ExtrapolationResult`.

    Raises:
        InputError: a bad argument (scale, steps, method, shapes, missing masks or labels).
    """
    _check_images(x_base, "x_base")
    if not bool(torch.isfinite(x_base).all()):
        raise InputError("x_base: contains NaN or Inf values")
    s_max = _check_scale(scale)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps: expected a positive integer, got {steps!r}")
    if isinstance(method, str):
        if method not in EXTRAPOLATION_METHODS:
            raise InputError(f"method: unknown {method!r}; expected one of "
                             f"{', '.join(EXTRAPOLATION_METHODS)}")
        method = EXTRAPOLATION_METHODS[method]
    elif not isinstance(method, ExtrapolationMethod):
        raise InputError(f"method: expected a name or ExtrapolationMethod, got "
                         f"{type(method).__name__}")
    b, c, h, w = x_base.shape
    if h < 2 or w < 2:
        raise InputError(f"x_base: expected a base size of at least 2 x 2, got {(h, w)}")
    if method.region_labels:
        labels = cond.get(label_key)
        if not isinstance(labels, Tensor) or labels.ndim != 2 or labels.shape[0] != b:
            raise InputError(f"{label_key}: method {method.name!r} needs multi-hot labels "
                             f"[{b}, K] in the conditioning")
        if region_masks is None:
            raise InputError(f"region_masks: method {method.name!r} needs token masks "
                             f"[{b}, {labels.shape[1]}, {h}, {w}]")
        _check_images(region_masks, "region_masks")
        if tuple(region_masks.shape) != (b, labels.shape[1], h, w):
            raise InputError(f"region_masks: expected shape {(b, labels.shape[1], h, w)}, got "
                             f"{tuple(region_masks.shape)}")
    gen = make_generator(generator, device=x_base.device)
    net = _Counter(field)
    times = [i / steps for i in range(steps + 1)]
    result = ExtrapolationResult(x=x_base, stages={}, method=method.name)

    with torch.no_grad():
        if method.direct:
            z = _noise((b, c, s_max * h, s_max * w), gen, x_base)
            for t, t_next in zip(times[:-1], times[1:], strict=True):
                z = z + (t_next - t) * net(z, t, float(s_max * s_max), **cond)
            result.stages[s_max] = z
        else:
            x_prev = x_base
            first = 2 if method.skip_residual else s_max
            for s in range(first, s_max + 1):
                x_prev, labels_s = _stage(net, method, x_prev, s, (h, w), times, gen, cond,
                                          region_masks, label_key, window_threshold)
                result.stages[s] = x_prev
                if labels_s is not None:
                    result.window_labels[s] = labels_s
    result.x = result.stages[s_max]
    result.network_calls, result.base_evaluations = net.calls, net.evaluations
    return result


def _noise(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, device=gen.device, dtype=like.dtype).to(like.device)


def _stage(net: _Counter, method: ExtrapolationMethod, x_prev: Tensor, s: int,
           base: tuple[int, int], times: list[float], gen: torch.Generator,
           cond: dict[str, Any], region_masks: Tensor | None, label_key: str,
           threshold: float) -> tuple[Tensor, Tensor | None]:
    """One progressive stage at scale ``s`` (see the module docstring for the step)."""
    h, w = base
    b = x_prev.shape[0]
    height, width = s * h, s * w
    x_up = F.interpolate(x_prev, size=(height, width), mode="bicubic", align_corners=False)
    eps = _noise(tuple(x_up.shape), gen, x_up)
    windows = _windows(height, width, h, w) if method.windows else []
    n_win = len(windows)

    window_cond, labels_s = None, None
    if method.windows:
        window_cond = _repeat_cond(cond, b, n_win)
        if method.region_labels:
            assert region_masks is not None
            labels = cond[label_key]
            labels_s = window_prompts(region_masks, s, window=(h, w), threshold=threshold,
                                      labels=labels)
            # [B, n_win, K] -> window-major [n_win * B, K], the order of the stacked windows
            window_cond[label_key] = labels_s.transpose(0, 1).reshape(n_win * b, -1)
    lattice_cond = _repeat_cond(cond, b, s * s) if method.dilated else None
    counts = torch.zeros(1, 1, height, width, dtype=x_up.dtype, device=x_up.device)
    for i, j in windows:
        counts[..., i:i + h, j:j + w] += 1

    z = eps
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        dt, k = t_next - t, float(kappa(t))
        if method.skip_residual:
            c1 = k ** 3
            z = (1 - c1) * z + c1 * (t * x_up + (1 - t) * eps)
        velocity_local = velocity_global = None
        if method.windows:
            stacked = torch.cat([z[..., i:i + h, j:j + w] for i, j in windows])
            v = net(stacked, t, float(n_win), **window_cond)
            velocity_local = torch.zeros_like(z)
            for n, (i, j) in enumerate(windows):
                velocity_local[..., i:i + h, j:j + w] += v[n * b:(n + 1) * b]
            velocity_local = velocity_local / counts
        if method.dilated:
            smoothed = gaussian_smooth(z, 2 * s - 1, 0.99 * k + 0.01)
            inputs = split_sublattices(smoothed, s)
            index = None
            if method.interaction:
                inputs, index = permute_sublattices(inputs, gen)
            v = net(inputs.reshape(s * s * b, *inputs.shape[2:]), t, float(s * s),
                    **lattice_cond).reshape(inputs.shape)
            if index is not None:
                v = unpermute_sublattices(v, index)
            # the step applies to the un-smoothed sub-lattices: z + dt * stitch(v)
            velocity_global = stitch_sublattices(v, s)
        if velocity_local is None:
            velocity = velocity_global
        elif velocity_global is None:
            velocity = velocity_local
        else:
            velocity = (1 - k) * velocity_local + k * velocity_global
        z = z + dt * velocity
    return z, labels_s


# --- detection ----------------------------------------------------------------------------------


def foreground_mask(images: Tensor, *, threshold: float = 0.2,
                    background: Tensor | None = None) -> Tensor:
    """Pixels that differ from the background colour: ``max_c |x − bg| > threshold``.

    Args:
        images: ``[B, C, H, W]`` in ``[-1, 1]``.
        threshold: least channel difference (image units) of a foreground pixel.
        background: ``[B, C]`` background colours; default the per-image, per-channel median
            (objects cover well under half of a ``scenes16`` canvas).

    Returns:
        bool ``[B, H, W]``.
    """
    _check_images(images, "images")
    if not bool(torch.isfinite(images).all()):
        raise InputError("images: contains NaN or Inf values")
    if background is None:
        background = images.flatten(2).median(dim=2).values
    elif tuple(background.shape) != tuple(images.shape[:2]):
        raise InputError(f"background: expected shape {tuple(images.shape[:2])}, got "
                         f"{tuple(background.shape)}")
    return (images - background[:, :, None, None]).abs().amax(dim=1) > threshold


def count_objects(images: Tensor, *, threshold: float = 0.2, min_area: int = 3,
                  background: Tensor | None = None) -> Tensor:
    """Number of objects per image: 4-connected components of :func:`foreground_mask` with at
    least ``min_area`` pixels (scipy.ndimage.label).

    Args:
        images: ``[B, C, H, W]`` in ``[-1, 1]``.
        threshold: foreground threshold (see :func:`foreground_mask`).
        min_area: least pixels of a counted component (absolute, at any resolution, so that
            objects of the base size are counted on a large canvas too).
        background: optional ``[B, C]`` background colours.

    Returns:
        int64 ``[B]``.

    Example:
        >>> import torch
        >>> x = -torch.ones(1, 3, 16, 16)
        >>> x[..., 2:5, 2:5] = 1; x[..., 9:13, 8:12] = 0.5
        >>> count_objects(x).tolist()
        [2]
    """
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise InputError(f"min_area: expected a positive integer, got {min_area!r}")
    masks = foreground_mask(images, threshold=threshold, background=background).cpu().numpy()
    counts = []
    for mask in masks:
        labelled, n = ndimage.label(mask)
        areas = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
        counts.append(int((areas >= min_area).sum()))
    return torch.tensor(counts, dtype=torch.int64)


def repetition_rate(high: Tensor, base: Tensor, **detector: Any) -> Tensor:
    """Object repetition: ``count_objects(high) − count_objects(base)`` per image (float32).

    Args:
        high: extrapolated images ``[B, C, H', W']``.
        base: the base images they came from ``[B, C, h, w]``.
        **detector: options of :func:`count_objects`.
    """
    _check_images(high, "high")
    _check_images(base, "base")
    if high.shape[:2] != base.shape[:2]:
        raise InputError(f"high: expected batch and channels {tuple(base.shape[:2])} like "
                         f"base, got {tuple(high.shape[:2])}")
    return (count_objects(high, **detector) - count_objects(base, **detector)).float()
