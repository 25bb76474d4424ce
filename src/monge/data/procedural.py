"""Procedural images rendered exactly at any resolution from known factors.

Each image is a scene of one or more shapes (disc, square, triangle) on a uniform background.
A scene is described by :class:`SceneFactors` (per object: kind, position, scale, rotation,
colour, and whether it is present; per scene: the background colour), so that every image has
ground truth at every resolution: the factors for disentanglement and traversal metrics, the
object count for repetition detectors, an exact render at any output size for super-resolution
and cross-scale consistency, and an RGBA variant whose alpha channel is the coverage (sprites).

Rendering is **analytic**: a pixel's value is the exact mean of the continuous scene over the
pixel's square (a box filter), not a point sample and not a supersampled estimate. The covered
fraction of each pixel is computed in closed form:

- polygons (square, triangle): Green's theorem with clamped coordinates,
  ``area(P ∩ [x0, x1] × [y0, y1]) = ∮_∂P (clamp(x, x0, x1) − x0) d clamp(y, y0, y1)``; along a
  straight edge the integrand is piecewise linear, so each edge contributes two closed-form
  integrals of a positive part (exact).
- discs: ``area = ∫ len([x0, x1] ∩ [cx − h(y), cx + h(y)]) dy`` with ``h(y) = √(r² − (y − cy)²)``,
  whose pieces integrate in closed form through ``G(t) = (t·√(r² − t²) + r²·asin(t/r)) / 2``.

Both are computed in float64 (rounding error about 1e-13 of a pixel); coverages within 1e-12 of
0 or 1 are snapped to 0 or 1, so interior pixels hold the factor colour exactly. Because the box
filter is additive, a render at ``k·R`` pixels average-pooled by ``k`` equals the render at ``R``
pixels up to float32 rounding, and the mean coverage of a disc is exactly ``π·r²``.

Scenes are composited with the coverage as alpha. When the objects' circumscribed discs are
pairwise disjoint (what :meth:`ProceduralImages.sample_factors` guarantees), coverages add and
the composite is the exact box-filtered scene. A scene with overlapping objects (only from
user-built factors) falls back to the Porter–Duff "over" operator in object order (later objects
on top), the usual coverage-as-alpha approximation (Porter & Duff, "Compositing Digital Images",
SIGGRAPH 1984), exact except on pixels shared by the edges of two objects.

Conventions: canvas coordinates ``(x, y)`` in ``[0, 1]²``, ``x`` to the right across the width,
``y`` downwards across the height (image rows); a non-square resolution stretches the unit
square. ``scale`` is the circumradius (every shape lies within the disc of radius ``scale``
about ``position``); ``rotation`` is in radians, counter-clockwise as displayed; colours are in
``[0, 1]``. Image values are in ``[-1, 1]`` like monge's digits: a value ``v`` maps to
``2·v − 1``. RGBA renders hold the straight (not premultiplied) colour and the alpha
``2·coverage − 1``; fully transparent pixels take the colour of the nearest object, so a
one-object sprite's colour channels are constant (see :func:`premultiply`, :func:`composite`).

Example:
    >>> import torch
    >>> spec = PROCEDURAL_DATASETS["shapes16"]
    >>> factors = spec.sample_factors(8, torch.Generator().manual_seed(0))
    >>> render(factors, 16).shape, render(factors, 40, rgba=True).shape
    (torch.Size([8, 3, 16, 16]), torch.Size([8, 4, 40, 40]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from monge.data.dataset import Dataset
from monge.errors import InputError

__all__ = [
    "PROCEDURAL_DATASETS",
    "ROTATION_PERIOD",
    "SHAPE_KINDS",
    "ProceduralData",
    "ProceduralImages",
    "SceneFactors",
    "composite",
    "load_procedural",
    "premultiply",
    "render",
    "render_coverage",
    "sample_factors",
]

SHAPE_KINDS: tuple[str, ...] = ("disc", "square", "triangle")
"""Shape kinds; ``SceneFactors.kind`` holds indices into this tuple."""

ROTATION_PERIOD: dict[str, float] = {"disc": 0.0, "square": math.pi / 2,
                                     "triangle": 2 * math.pi / 3}
"""Rotational symmetry of each kind: a rotation is identifiable only modulo this period (a disc
has none to identify, so its rotation is drawn as 0)."""

# vertex angles at rotation 0 (counter-clockwise as displayed): an axis-aligned square and an
# equilateral triangle pointing up
_VERTEX_ANGLES: dict[str, tuple[float, ...]] = {
    "square": tuple(math.pi / 4 + k * math.pi / 2 for k in range(4)),
    "triangle": tuple(math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)),
}
_SNAP = 1e-12
_CHUNK_ELEMENTS = 2 ** 21


def _resolution(resolution: int | tuple[int, int]) -> tuple[int, int]:
    dims = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                             for d in dims):
        raise InputError(f"resolution: expected a positive integer or (H, W), got "
                         f"{resolution!r}")
    return dims  # type: ignore[return-value]



@dataclass
class SceneFactors:
    """The known factors of ``N`` scenes of up to ``K`` objects (a batch of tensors).

    Attributes:
        kind: int64 ``[N, K]``, indices into :data:`SHAPE_KINDS`.
        position: ``[N, K, 2]`` centre ``(x, y)`` in ``[0, 1]`` (x right, y down).
        scale: ``[N, K]`` circumradius in canvas units.
        rotation: ``[N, K]`` radians, counter-clockwise as displayed.
        colour: ``[N, K, C]`` object colour in ``[0, 1]`` (``C`` = 1 grey or 3 RGB).
        background: ``[N, C]`` background colour in ``[0, 1]`` (not used by RGBA renders).
        present: bool ``[N, K]``; absent objects are not drawn (scenes with fewer objects).
    """

    kind: Tensor
    position: Tensor
    scale: Tensor
    rotation: Tensor
    colour: Tensor
    background: Tensor
    present: Tensor

    def __post_init__(self) -> None:
        if self.kind.ndim != 2:
            raise InputError(f"factors.kind: expected shape [N, K], got {tuple(self.kind.shape)}")
        n, k = self.kind.shape
        c = self.background.shape[-1] if self.background.ndim == 2 else -1
        expected = {"position": (n, k, 2), "scale": (n, k), "rotation": (n, k),
                    "colour": (n, k, c), "background": (n, c), "present": (n, k)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape or c < 1:
                raise InputError(f"factors.{name}: expected shape {shape} for kind of shape "
                                 f"{(n, k)}, got {got}")

    def __len__(self) -> int:
        return self.kind.shape[0]

    @property
    def max_objects(self) -> int:
        """``K``: object slots per scene."""
        return self.kind.shape[1]

    @property
    def channels(self) -> int:
        """``C``: colour channels (1 or 3)."""
        return self.background.shape[-1]

    @property
    def count(self) -> Tensor:
        """int64 ``[N]``: number of objects present in each scene."""
        return self.present.sum(dim=1)

    def __getitem__(self, index: int | slice | Tensor) -> SceneFactors:
        """The factors of a subset of scenes (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return SceneFactors(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> SceneFactors:
        """The same factors on ``device``."""
        return SceneFactors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass(frozen=True)
class ProceduralImages:
    """A procedural image set: the ranges its factors are drawn from and its resolution.

    Every factor is drawn independently and uniformly: per scene a number of objects in
    ``n_objects`` (inclusive) and a background colour in ``background_range`` per channel; per
    object a kind from ``kinds``, a scale (circumradius) in ``scale_range``, a rotation in
    ``[0, period)`` with the kind's :data:`ROTATION_PERIOD` (so that it is identifiable), a
    colour in ``colour_range`` per channel, and a position in ``position_range`` per axis.
    Scenes with more than one object place them by rejection so that their circumscribed discs
    are at least ``min_gap`` apart (disjoint objects, an exact render, countable components).
    With ``position_range[0] >= scale_range[1]`` every object lies inside the canvas.

    Attributes:
        resolution: pixels per side of the rendered images.
        channels: colour channels, 1 (grey) or 3 (RGB).
        rgba: render sprites ``[C + 1, H, W]`` with alpha = coverage instead of opaque images.
        kinds: shape kinds drawn (names in :data:`SHAPE_KINDS`).
        n_objects: ``(min, max)`` objects per scene.
        position_range, scale_range, colour_range, background_range: ``(low, high)`` ranges.
        min_gap: least distance between the circumscribed discs of two objects.
        label: ``"kind"`` (index in ``kinds`` of the first object) or ``"count"``
            (objects minus ``n_objects[0]``).
    """

    resolution: int = 16
    channels: int = 3
    rgba: bool = False
    kinds: tuple[str, ...] = SHAPE_KINDS
    n_objects: tuple[int, int] = (1, 1)
    position_range: tuple[float, float] = (0.25, 0.75)
    scale_range: tuple[float, float] = (0.12, 0.25)
    colour_range: tuple[float, float] = (0.4, 1.0)
    background_range: tuple[float, float] = (0.0, 0.25)
    min_gap: float = 0.1
    label: str = "kind"

    def __post_init__(self) -> None:
        _resolution(self.resolution)
        if self.channels not in (1, 3):
            raise InputError(f"channels: expected 1 or 3, got {self.channels!r}")
        if not self.kinds or any(kind not in SHAPE_KINDS for kind in self.kinds):
            raise InputError(f"kinds: expected names among {SHAPE_KINDS}, got {self.kinds!r}")
        low, high = self.n_objects
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise InputError(f"n_objects: expected (min, max) with 1 <= min <= max, got "
                             f"{self.n_objects!r}")
        for name, lower, upper in (("position_range", 0.0, 1.0), ("scale_range", 0.0, 0.5),
                                   ("colour_range", 0.0, 1.0), ("background_range", 0.0, 1.0)):
            a, b = getattr(self, name)
            if not lower <= a <= b <= upper or (name == "scale_range" and a <= 0):
                raise InputError(f"{name}: expected low <= high within [{lower}, {upper}], got "
                                 f"{(a, b)!r}")
        if self.min_gap < 0:
            raise InputError(f"min_gap: expected a non-negative distance, got {self.min_gap!r}")
        if self.label not in ("kind", "count"):
            raise InputError(f"label: expected 'kind' or 'count', got {self.label!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image shape ``(C, H, W)`` (``C`` includes alpha for RGBA sets)."""
        return (self.channels + int(self.rgba), self.resolution, self.resolution)

    @property
    def num_classes(self) -> int:
        """Number of label values."""
        if self.label == "kind":
            return len(self.kinds)
        return self.n_objects[1] - self.n_objects[0] + 1

    def sample_factors(self, n: int, generator: torch.Generator) -> SceneFactors:
        """Draw the factors of ``n`` scenes (on the generator's device; see the class doc)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n: expected a positive integer number of scenes, got {n!r}")
        device, k_max = generator.device, self.n_objects[1]

        def uniform(shape: tuple[int, ...], bounds: tuple[float, float]) -> Tensor:
            u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
            return bounds[0] + (bounds[1] - bounds[0]) * u

        count = torch.randint(self.n_objects[0], k_max + 1, (n,), generator=generator,
                              device=device)
        present = torch.arange(k_max, device=device)[None, :] < count[:, None]
        chosen = torch.tensor([SHAPE_KINDS.index(k) for k in self.kinds], device=device)
        kind = chosen[torch.randint(len(self.kinds), (n, k_max), generator=generator,
                                    device=device)]
        scale = uniform((n, k_max), self.scale_range)
        period = torch.tensor([ROTATION_PERIOD[k] for k in SHAPE_KINDS], device=device,
                              dtype=torch.float64)[kind]
        rotation = uniform((n, k_max), (0.0, 1.0)) * period
        colour = uniform((n, k_max, self.channels), self.colour_range)
        background = uniform((n, self.channels), self.background_range)
        position = self._place(scale, present, generator)
        return SceneFactors(kind=kind, position=position.float(), scale=scale.float(),
                            rotation=rotation.float(), colour=colour.float(),
                            background=background.float(), present=present)

    def _place(self, scale: Tensor, present: Tensor, generator: torch.Generator,
               tries: int = 200) -> Tensor:
        n, k_max = scale.shape
        low, high = self.position_range
        position = torch.zeros(n, k_max, 2, dtype=torch.float64, device=scale.device)
        for k in range(k_max):
            pending = present[:, k].clone() if k > 0 else torch.ones_like(present[:, 0])
            for _ in range(tries if k > 0 else 1):
                proposal = low + (high - low) * torch.rand(
                    n, 2, generator=generator, device=scale.device, dtype=torch.float64)
                ok = pending.clone()
                for j in range(k):
                    gap = (proposal - position[:, j]).norm(dim=-1) - scale[:, k] - scale[:, j]
                    ok &= ~present[:, j] | (gap >= self.min_gap)
                position[ok, k] = proposal[ok]
                pending &= ~ok
                if not pending.any():
                    break
            if k > 0 and pending.any():
                raise InputError(
                    f"n_objects: could not place {k + 1} objects {self.min_gap} apart in "
                    f"{int(pending.sum())} scenes; widen position_range or lower scale_range, "
                    "min_gap or n_objects")
        return position

    def labels(self, factors: SceneFactors) -> Tensor:
        """int64 ``[N]`` class labels of ``factors`` under this set's ``label`` rule."""
        if self.label == "count":
            return factors.count - self.n_objects[0]
        lookup = torch.full((len(SHAPE_KINDS),), -1, dtype=torch.int64,
                            device=factors.kind.device)
        for i, kind in enumerate(self.kinds):
            lookup[SHAPE_KINDS.index(kind)] = i
        return lookup[factors.kind[:, 0]]

    def render(self, factors: SceneFactors, resolution: int | tuple[int, int] | None = None
               ) -> Tensor:
        """Render ``factors`` at ``resolution`` (default: this set's) as this set's images."""
        return render(factors, self.resolution if resolution is None else resolution,
                      rgba=self.rgba)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, SceneFactors]:
        """Draw ``n`` images: ``(images [n, *shape] float32, labels [n], factors)``."""
        factors = self.sample_factors(n, generator)
        return self.render(factors), self.labels(factors), factors


PROCEDURAL_DATASETS: dict[str, ProceduralImages] = {
    "shapes16": ProceduralImages(),
    "sprites16": ProceduralImages(rgba=True),
    "scenes16": ProceduralImages(n_objects=(1, 3), position_range=(0.14, 0.86),
                                 scale_range=(0.1, 0.14), label="count"),
}
"""Built-in procedural sets: one RGB shape at 16×16 (label: kind), the same as RGBA sprites
(4 channels, alpha = coverage), and RGB scenes of 1–3 smaller shapes (label: count − 1)."""


def sample_factors(n: int, generator: torch.Generator, *, kinds: tuple[str, ...] = SHAPE_KINDS,
                   n_objects: int | tuple[int, int] = 1, channels: int = 3,
                   **ranges: float | tuple[float, float]) -> SceneFactors:
    """Draw scene factors: shorthand for ``ProceduralImages(...).sample_factors(n, generator)``.

    Args:
        n: number of scenes.
        generator: torch generator (its device is the factors' device).
        kinds: shape kinds to draw from.
        n_objects: objects per scene, a number or an inclusive ``(min, max)`` range.
        channels: 1 (grey) or 3 (RGB).
        **ranges: other :class:`ProceduralImages` fields (``scale_range``, ``min_gap``, ...).

    Example:
        >>> import torch
        >>> f = sample_factors(4, torch.Generator().manual_seed(0), n_objects=(1, 3),
        ...                    position_range=(0.14, 0.86), scale_range=(0.1, 0.14))
        >>> f.max_objects, bool((f.count >= 1).all())
        (3, True)
    """
    if isinstance(n_objects, int):
        n_objects = (n_objects, n_objects)
    spec = ProceduralImages(kinds=tuple(kinds), n_objects=tuple(n_objects),  # type: ignore[arg-type]
                            channels=channels, **ranges)  # type: ignore[arg-type]
    return spec.sample_factors(n, generator)


# --- rendering ------------------------------------------------------------------------------------


def render_coverage(factors: SceneFactors, resolution: int | tuple[int, int],
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The exact fraction of each pixel covered by each object (0 for absent objects).

    Args:
        factors: ``N`` scenes of ``K`` object slots.
        resolution: ``R`` (square) or ``(H, W)``.
        dtype: output dtype (the computation is float64).

    Returns:
        ``[N, K, H, W]`` coverages in ``[0, 1]`` on the factors' device.
    """
    height, width = _resolution(resolution)
    _check_factors(factors)
    n, k = factors.kind.shape
    chunk = max(1, _CHUNK_ELEMENTS // (k * height * width))
    parts = [_coverage(factors[i:i + chunk], height, width) for i in range(0, n, chunk)]
    return torch.cat(parts).to(dtype)


def render(factors: SceneFactors, resolution: int | tuple[int, int], *, rgba: bool = False,
           dtype: torch.dtype = torch.float32) -> Tensor:
    """Render scenes exactly (box-filtered, analytic coverage) at any resolution.

    Args:
        factors: ``N`` scenes (see :class:`SceneFactors`).
        resolution: ``R`` (square) or ``(H, W)``; the unit canvas is stretched to it.
        rgba: return sprites: straight colour plus alpha ``2·coverage − 1`` (no background).
        dtype: output dtype.

    Returns:
        ``[N, C, H, W]`` (``[N, C + 1, H, W]`` with ``rgba``) in ``[-1, 1]``.

    Example:
        >>> import torch
        >>> f = sample_factors(2, torch.Generator().manual_seed(0))
        >>> fine = render(f, 64)
        >>> coarse = torch.nn.functional.avg_pool2d(fine, 4)
        >>> bool((coarse - render(f, 16)).abs().max() < 1e-5)
        True
    """
    height, width = _resolution(resolution)
    _check_factors(factors)
    n, k = factors.kind.shape
    chunk = max(1, _CHUNK_ELEMENTS // (k * height * width))
    parts = [_composite_chunk(factors[i:i + chunk], height, width, rgba)
             for i in range(0, n, chunk)]
    return torch.cat(parts).to(dtype)


def premultiply(rgba: Tensor) -> Tensor:
    """Premultiplied colour of RGBA images in ``[-1, 1]``: ``rgb · a`` with ``a = (alpha + 1)/2``.

    This is LayerDiffusion's ``I_p = (2·I_c − 1)·I_a`` (Zhang & Agrawala 2024): transparent
    pixels become 0 (neutral grey), i.e. the sprite composited over a grey background.
    """
    return composite(rgba, torch.zeros((), dtype=rgba.dtype, device=rgba.device))


def composite(rgba: Tensor, background: Tensor) -> Tensor:
    """Composite RGBA images ``[N, C + 1, H, W]`` over ``background`` (``[-1, 1]`` units,
    broadcastable to ``[N, C, H, W]``): ``rgb · a + background · (1 − a)``."""
    if rgba.ndim != 4 or rgba.shape[1] < 2:
        raise InputError(f"rgba: expected images [N, C + 1, H, W], got {tuple(rgba.shape)}")
    alpha = (rgba[:, -1:] + 1) / 2
    return rgba[:, :-1] * alpha + background * (1 - alpha)


def _check_factors(factors: SceneFactors) -> None:
    if not isinstance(factors, SceneFactors):
        raise InputError(f"factors: expected SceneFactors, got {type(factors).__name__}")
    if len(factors) == 0:
        raise InputError("factors: no scenes")
    for name in ("position", "scale", "rotation", "colour", "background"):
        value = getattr(factors, name)
        if not torch.isfinite(value).all():
            raise InputError(f"factors.{name}: holds NaN or Inf")
    drawn = factors.kind[factors.present]
    if ((drawn < 0) | (drawn >= len(SHAPE_KINDS))).any():
        raise InputError(f"factors.kind: expected indices in 0..{len(SHAPE_KINDS) - 1}")
    if (factors.scale[factors.present] <= 0).any():
        raise InputError("factors.scale: expected positive circumradii")


def _coverage(factors: SceneFactors, height: int, width: int) -> Tensor:
    """``[N, K, H, W]`` float64 coverages of one chunk."""
    n, k = factors.kind.shape
    device, f64 = factors.kind.device, torch.float64
    cover = torch.zeros(n * k, height, width, dtype=f64, device=device)
    kind, present = factors.kind.reshape(-1), factors.present.reshape(-1)
    # pixel units: column j spans x in [j, j + 1], row i spans y in [i, i + 1]
    cx = factors.position[..., 0].reshape(-1).to(f64) * width
    cy = factors.position[..., 1].reshape(-1).to(f64) * height
    scale = factors.scale.reshape(-1).to(f64)
    rotation = factors.rotation.reshape(-1).to(f64)
    x0 = torch.arange(width, dtype=f64, device=device)[None, None, :]
    y0 = torch.arange(height, dtype=f64, device=device)[None, :, None]
    for index, name in enumerate(SHAPE_KINDS):
        rows = torch.nonzero(present & (kind == index)).reshape(-1)
        if rows.numel() == 0:
            continue
        centre_x, centre_y, radius = cx[rows, None, None], cy[rows, None, None], scale[rows]
        if name == "disc":
            area = _disc_area(centre_x, centre_y, radius[:, None, None] * width,
                              radius[:, None, None] * height, x0, y0)
        else:
            angles = torch.tensor(_VERTEX_ANGLES[name], dtype=f64, device=device)
            phi = angles[None, :] + rotation[rows, None]
            # counter-clockwise as displayed: screen y points down
            vx = centre_x[:, :, 0] + radius[:, None] * width * torch.cos(phi)
            vy = centre_y[:, :, 0] - radius[:, None] * height * torch.sin(phi)
            area = _polygon_area(vx, vy, x0, y0)
        cover[rows] = area
    cover = torch.where(cover < _SNAP, 0.0, torch.where(cover > 1 - _SNAP, 1.0, cover))
    return cover.reshape(n, k, height, width)


def _polygon_area(vx: Tensor, vy: Tensor, x0: Tensor, y0: Tensor) -> Tensor:
    """Area of each polygon ``[M, V]`` inside each unit pixel ``[x0, x0+1] × [y0, y0+1]``.

    Green's theorem with the clamp trick: the area of ``P ∩ R`` is
    ``∮_∂P (clamp(x, x0, x1) − x0) d clamp(y, y0, y1)``. Along an edge parametrised by ``y``
    the integrand is ``(x(y) − x0)_+ − (x(y) − x1)_+`` over the part of the edge inside the
    pixel's rows; each positive part of a linear function integrates exactly by the midpoint
    rule on the sub-interval where it is positive.
    """
    x1, y1 = x0 + 1, y0 + 1
    total = torch.zeros(vx.shape[0], y0.shape[1], x0.shape[2], dtype=vx.dtype, device=vx.device)
    n_vertices = vx.shape[1]
    for e in range(n_vertices):
        xa, ya = vx[:, e, None, None], vy[:, e, None, None]
        xb, yb = vx[:, (e + 1) % n_vertices, None, None], vy[:, (e + 1) % n_vertices, None, None]
        dy = yb - ya
        slope = torch.where(dy != 0, (xb - xa) / torch.where(dy != 0, dy, 1.0), 0.0)
        lo = torch.minimum(torch.maximum(torch.minimum(ya, yb), y0), y1)
        hi = torch.minimum(torch.maximum(torch.maximum(ya, yb), y0), y1)
        part = (_positive_part(xa, ya, slope, x0, lo, hi) - _positive_part(xa, ya, slope, x1,
                                                                           lo, hi))
        total = total + torch.sign(dy) * part
    # vertices run counter-clockwise on screen, i.e. clockwise in (x, y-down): flip the sign
    orientation = torch.sign(_shoelace(vx, vy))[:, None, None]
    return (total * orientation).clamp(0.0, 1.0)


def _positive_part(xa: Tensor, ya: Tensor, slope: Tensor, v: Tensor, lo: Tensor,
                   hi: Tensor) -> Tensor:
    """``∫_lo^hi (x(y) − v)_+ dy`` for the line ``x(y) = xa + slope·(y − ya)``."""
    flat = slope == 0
    root = ya + (v - xa) / torch.where(flat, 1.0, slope)
    root = torch.minimum(torch.maximum(root, lo), hi)
    start = torch.where(flat | (slope < 0), lo, root)
    stop = torch.where(flat | (slope > 0), hi, root)
    middle = (start + stop) / 2
    return (stop - start) * (xa + slope * (middle - ya) - v).clamp_min(0.0)


def _shoelace(vx: Tensor, vy: Tensor) -> Tensor:
    return 0.5 * (vx * vy.roll(-1, dims=1) - vx.roll(-1, dims=1) * vy).sum(dim=1)


def _disc_area(cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor, x0: Tensor, y0: Tensor
               ) -> Tensor:
    """Area of each ellipse (a disc stretched by the resolution) inside each unit pixel.

    Rows are rescaled by ``rx/ry`` so the ellipse becomes a circle of radius ``r = rx``; then
    ``area = ∫_a^b [clamp(h, x0 − cx, x1 − cx) + clamp(h, cx − x1, cx − x0)] dt`` over the
    pixel's rows ``t ∈ [a, b]`` (clipped to ``[−r, r]``) with the half-chord ``h = √(r² − t²)``,
    and ``∫ clamp(h, lo, hi) = lo·(b − a) + K(lo) − K(hi)`` with ``K(v) = ∫ (h − v)_+``, which
    is ``G(b') − G(a') − v·(b' − a')`` on ``[a, b] ∩ [−w, w]``, ``w = √(r² − max(v, 0)²)``.
    """
    r, stretch = rx, rx / ry
    a = torch.minimum(torch.maximum((y0 - cy) * stretch, -r), r)
    b = torch.minimum(torch.maximum((y0 + 1 - cy) * stretch, -r), r)

    def g(t: Tensor) -> Tensor:
        return 0.5 * (t * (r * r - t * t).clamp_min(0.0).sqrt()
                      + r * r * torch.asin((t / r).clamp(-1.0, 1.0)))

    def k(v: Tensor) -> Tensor:
        w = (r * r - v.clamp_min(0.0) ** 2).clamp_min(0.0).sqrt()
        a_in, b_in = torch.minimum(torch.maximum(a, -w), w), torch.minimum(torch.maximum(b, -w), w)
        return g(b_in) - g(a_in) - v * (b_in - a_in)

    area = torch.zeros_like(a * x0)
    for lo, hi in ((x0 - cx, x0 + 1 - cx), (cx - x0 - 1, cx - x0)):
        area = area + lo * (b - a) + k(lo) - k(hi)
    return (area / stretch).clamp(0.0, 1.0)


def _composite_chunk(factors: SceneFactors, height: int, width: int, rgba: bool) -> Tensor:
    f64 = torch.float64
    cover = _coverage(factors, height, width)                       # [N, K, H, W]
    colour = factors.colour.to(f64)[..., None, None]               # [N, K, C, 1, 1]
    weight = cover[:, :, None]                                      # [N, K, 1, H, W]
    # disjoint objects: coverages add (exact); otherwise "over" in object order
    premult, alpha = (weight * colour).sum(dim=1), weight.sum(dim=1)
    overlap = _overlapping(factors)
    if overlap.any():
        over_p, over_a = torch.zeros_like(premult[overlap]), torch.zeros_like(alpha[overlap])
        for k in range(factors.max_objects):
            w = weight[overlap, k]
            over_p = over_p + w * (colour[overlap, k] - over_p)
            over_a = over_a + w * (1 - over_a)
        premult[overlap], alpha[overlap] = over_p, over_a
    alpha = alpha.clamp(0.0, 1.0)
    if not rgba:
        background = factors.background.to(f64)[..., None, None]
        return 2 * (premult + (1 - alpha) * background) - 1
    straight = torch.where(alpha > 0, premult / alpha.clamp_min(1e-300),
                           _nearest_colour(factors, height, width))
    return torch.cat([2 * straight.clamp(0.0, 1.0) - 1, 2 * alpha - 1], dim=1)


def _overlapping(factors: SceneFactors) -> Tensor:
    """bool ``[N]``: scenes where two present objects' circumscribed discs intersect."""
    position, scale, present = factors.position.to(torch.float64), factors.scale, factors.present
    distance = torch.cdist(position, position)
    reach = scale[:, :, None] + scale[:, None, :]
    both = present[:, :, None] & present[:, None, :]
    both &= ~torch.eye(factors.max_objects, dtype=torch.bool, device=present.device)
    return (both & (distance < reach)).flatten(1).any(dim=1)


def _nearest_colour(factors: SceneFactors, height: int, width: int) -> Tensor:
    """``[N, C, H, W]``: at each pixel centre the colour of the object whose circumscribed
    circle is nearest (what a fully transparent pixel of a sprite holds)."""
    f64, device = torch.float64, factors.kind.device
    xs = (torch.arange(width, dtype=f64, device=device) + 0.5) / width
    ys = (torch.arange(height, dtype=f64, device=device) + 0.5) / height
    position = factors.position.to(f64)
    dx = xs[None, None, None, :] - position[..., 0, None, None]
    dy = ys[None, None, :, None] - position[..., 1, None, None]
    gap = (dx * dx + dy * dy).sqrt() - factors.scale.to(f64)[..., None, None]
    gap = torch.where(factors.present[..., None, None], gap, math.inf)
    nearest = gap.argmin(dim=1).flatten(1)                          # [N, H*W]
    colour = factors.colour.to(f64)                                 # [N, K, C]
    picked = torch.gather(colour, 1, nearest[..., None].expand(-1, -1, colour.shape[-1]))
    return picked.transpose(1, 2).reshape(len(factors), -1, height, width)


# --- data sets ----------------------------------------------------------------------------------


@dataclass
class ProceduralData(Dataset):
    """A :class:`~monge.data.Dataset` of procedural images that keeps their factors.

    Attributes:
        spec: the :class:`ProceduralImages` it was drawn from.
        train_factors: :class:`SceneFactors` of ``train`` (row ``i`` renders ``train[i]``).
        test_factors: :class:`SceneFactors` of ``test``.
    """

    spec: ProceduralImages = ProceduralImages()
    train_factors: SceneFactors | None = None
    test_factors: SceneFactors | None = None

    @property
    def factors(self) -> SceneFactors:
        """The training factors (alias of :attr:`train_factors`)."""
        assert self.train_factors is not None
        return self.train_factors


def load_procedural(spec: str | ProceduralImages, *, n_train: int = 20000, n_test: int = 2000,
                    seed: int = 0, resolution: int | None = None) -> ProceduralData:
    """Draw a procedural data set: ``n_train`` then ``n_test`` independent scenes.

    Args:
        spec: a name in :data:`PROCEDURAL_DATASETS` or a :class:`ProceduralImages`.
        n_train: training images.
        n_test: held-out images (independent draws, like the 2-D toys).
        seed: seed of the factor draws.
        resolution: render at this many pixels per side instead of the spec's.

    Returns:
        A :class:`ProceduralData` (float32 CPU images in ``[-1, 1]``, labels, factors).

    Example:
        >>> ds = load_procedural("sprites16", n_train=64, n_test=16)
        >>> ds.shape, ds.num_classes, len(ds.train_factors)
        ((4, 16, 16), 3, 64)
    """
    if isinstance(spec, str):
        if spec not in PROCEDURAL_DATASETS:
            raise InputError(f"{spec!r}: unknown procedural data set; built-in names are "
                             f"{', '.join(PROCEDURAL_DATASETS)}")
        name, images = spec, PROCEDURAL_DATASETS[spec]
    elif isinstance(spec, ProceduralImages):
        name, images = "procedural", spec
    else:
        raise InputError(f"spec: expected a name or ProceduralImages, got {type(spec).__name__}")
    for arg, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{arg}: expected a positive integer, got {value!r}")
    if resolution is not None:
        images = replace(images, resolution=resolution)
    generator = torch.Generator().manual_seed(int(seed))
    train_factors = images.sample_factors(n_train, generator)
    test_factors = images.sample_factors(n_test, generator)
    return ProceduralData(
        name=name, train=images.render(train_factors), test=images.render(test_factors),
        train_labels=images.labels(train_factors), test_labels=images.labels(test_factors),
        num_classes=images.num_classes, spec=images, train_factors=train_factors,
        test_factors=test_factors)
