"""Arbitrary-scale decoding of latents: a LIIF implicit decoder and the latent-flow alignment loss.

Kim & Kim, "Arbitrary-Scale Image Generation and Upsampling using Latent Diffusion Model and
Implicit Neural Decoder", CVPR 2024 (arXiv 2403.10255), with the local implicit image function
(LIIF) of Chen, Liu & Wang, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR 2021 (arXiv 2012.09161).

**Decoder.** A feature net D_φ (a few 3×3 convolutions) maps an autoencoder latent ``z``
``[B, c, h, w]`` to a feature map at the latent resolution; each feature is replaced by the
concatenation of its 3×3 neighbourhood (feature unfolding, zero padding). The image at a
continuous coordinate ``x_q`` with output-pixel size ``c_q`` (the *cell*) is the local ensemble

    I(x_q) = Σ_{i ∈ 4 nearest cells} (S_i / S) · f_θ(ẑ_i, x_q − v_i, c_q),

where ``v_i`` is the centre of latent cell ``i``, ``S_i`` the area of the rectangle between
``x_q`` and the centre of the cell diagonally opposite to ``i`` and ``S = Σ S_i`` (bilinear
weights: they sum to 1, and a query at a cell centre takes that cell alone), and f_θ an MLP.
Any output size is a grid of queries; the ensemble makes ``I`` continuous in ``x_q``.

**Coordinates** (one convention everywhere, :func:`make_coords`): the image covers the square
``[-1, 1]²``; a coordinate is ``(y, x)`` = (row, column) in tensor-index order, ``y`` downwards
and ``x`` to the right; the pixel ``(i, j)`` of an ``H × W`` image has its centre at
``(−1 + (2i + 1)/H, −1 + (2j + 1)/W)`` and its cell (size) is ``(2/H, 2/W)``
(:func:`make_cell`). The latent cells follow the same rule at ``h × w``. Inside f_θ the
relative coordinate ``x_q − v_i`` and the cell are measured in latent cells (multiplied by
``(h/2, w/2)``), so that one trained decoder serves any output size.

**Cost.** The first layer of f_θ is linear in the concatenation ``[ẑ_i, δ, c]``, so its feature
part is computed once per latent cell; each query then costs ``4 × (depth − 1)`` small
matrix-vector products of width ``hidden`` (the ensemble's four cells) — O(H·W·hidden²) per
image, memory bounded by querying in chunks (:meth:`ImplicitDecoder.query`).

**Training** (:func:`train_implicit_decoder`): the autoencoder is frozen; per batch a random
output size is drawn, the base-resolution images are encoded, ``queries`` random pixels of the
ground truth at the drawn size are decoded and the L1 error is minimised. Ground truth at any
size comes from a :class:`MultiScaleSource`: :class:`RenderedScales` renders procedural images
exactly at a size drawn from a continuous scale range; :class:`ScaleBank` holds pre-rendered
images at a fixed set of sizes (cheaper: render once).

**Alignment** (:class:`AlignmentLoss`): a latent flow is trained with flow matching plus
``λ·L_align``, where the flow's clean-latent prediction ẑ1 (monge's convention: t = 1 is data; on
the linear path ẑ1 = x_t + (1 − t)·v) is decoded by the *frozen* implicit decoder at a random
size and compared with the ground truth at that size. The paper writes ẑ0 and x_t − t·v in its
reversed time; the gradient reaches the flow through the frozen decoder. Batch format: the
trainer's ``sample_batch`` returns ``(x0, x1, y1)`` with ``x1`` the encoded base images and
``y1`` a :class:`ScaleTargets` holding the same scenes at one drawn size (and their class
labels); :func:`alignment_sampler` builds it from a source. Cost per step: one flow network call
plus the decoder's forward and backward on ``align_batch_size × queries`` coordinates.

Example:
    >>> import torch
    >>> dec = ImplicitDecoder(ImplicitDecoderConfig(latent_channels=4, out_channels=3,
    ...                                             feature_channels=8, hidden=16))
    >>> z = torch.randn(2, 4, 4, 4)
    >>> dec.decode(z, (24, 37)).shape
    torch.Size([2, 3, 24, 37])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from monge.data.procedural import ProceduralData, ProceduralImages, SceneFactors
from monge.errors import InputError
from monge.latent.autoencoder import psnr
from monge.paths import LinearPath, Prediction
from monge.paths.affine import AffinePath
from monge.train import LossOutput, Trainer, TrainerConfig, TrainResult
from monge.train.conditioning import LabelConditioning
from monge.train.time_samplers import TimeSampler, UniformTime

__all__ = [
    "AlignmentLoss",
    "AlignmentTerms",
    "ImplicitDecoder",
    "ImplicitDecoderConfig",
    "ImplicitDecoderLoss",
    "MultiScaleBatch",
    "MultiScaleSource",
    "RenderedScales",
    "ScaleBank",
    "ScaleEvaluation",
    "ScaleScore",
    "ScaleTargets",
    "alignment_sampler",
    "area_resize",
    "cross_scale_consistency",
    "ensemble_cells",
    "evaluate_scales",
    "load_implicit_decoder",
    "make_cell",
    "make_coords",
    "save_implicit_decoder",
    "train_implicit_decoder",
]

DEFAULT_CHUNK_ELEMENTS = 2 ** 22
"""Automatic chunking keeps ``batch × chunk × cells × hidden`` activations under this count
(16 MiB of float32 per activation)."""

_ENSEMBLE_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))
_COORD_TOLERANCE = 1e-5


# --- coordinates ---------------------------------------------------------------------------------


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    dims = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        dims = tuple(dims)  # type: ignore[arg-type]
    except TypeError:
        dims = ()
    if len(dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                             for d in dims):
        raise InputError(f"{name}: expected a positive integer or (H, W) of positive integers, "
                         f"got {size!r}")
    return dims  # type: ignore[return-value]


def make_coords(height: int, width: int, *, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates of an ``height × width`` image, ``[height·width, 2]``.

    Row ``i·width + j`` holds ``(y, x) = (−1 + (2i + 1)/height, −1 + (2j + 1)/width)``: the
    image covers ``[-1, 1]²``, rows in row-major order (so ``out.reshape(height, width, ...)``
    is the image), ``y`` down the rows and ``x`` across the columns (the module's convention).
    """
    _positive_int(height, "height")
    _positive_int(width, "width")
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
    return grid.to(device=device, dtype=dtype)


def make_cell(height: int, width: int, *, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """The cell (pixel size) of an ``height × width`` image in coordinate units:
    ``(2/height, 2/width)``, shape ``[2]``."""
    _positive_int(height, "height")
    _positive_int(width, "width")
    return torch.tensor([2.0 / height, 2.0 / width], device=device, dtype=dtype)


def ensemble_cells(coords: Tensor, latent_size: tuple[int, int], local_ensemble: bool = True
                   ) -> tuple[Tensor, Tensor]:
    """The latent cells that answer each query and their weights.

    With the local ensemble: the four cells whose centres surround ``coords`` on the infinite
    lattice of cell centres, in the order (top-left, top-right, bottom-left, bottom-right), with
    weight ``S_opposite / S`` (``S_k`` = area of the rectangle between the query and centre
    ``k``, measured in cells; these are the bilinear weights and ``S = 1``), and indices clamped
    to the grid (a query beyond the outermost centres gives its weight to the border cell).
    Without it: the nearest cell, weight 1.

    Args:
        coords: ``[..., 2]`` query coordinates ``(y, x)`` in ``[-1, 1]``.
        latent_size: ``(h, w)`` of the feature grid.

    Returns:
        ``(index, weight)``: int64 ``[..., K, 2]`` (row, column) cell indices and ``[..., K]``
        weights (``K`` = 4, or 1 without the ensemble) that sum to 1 over ``K``.
    """
    h, w = _size(latent_size, "latent_size")
    size = torch.tensor([h, w], device=coords.device, dtype=coords.dtype)
    top = size - 1
    u = (coords + 1) * size / 2 - 0.5  # continuous cell index; cell centres are integers
    if not local_ensemble:
        index = torch.minimum(torch.floor(u + 0.5).clamp_min(0), top)
        return index[..., None, :].long(), torch.ones(u.shape[:-1] + (1,), device=u.device,
                                                      dtype=u.dtype)
    base = torch.floor(u)
    frac = u - base
    offsets = torch.tensor(_ENSEMBLE_OFFSETS, device=u.device, dtype=u.dtype)
    index = torch.minimum((base[..., None, :] + offsets).clamp_min(0), top).long()
    area = (frac[..., None, :] - offsets).abs().prod(dim=-1)  # [..., 4]
    # cell k takes the area of the rectangle at the opposite corner (offsets are ordered so
    # that the opposite of k is 3 − k)
    weight = area.flip(-1) / area.sum(dim=-1, keepdim=True)
    return index, weight


# --- the decoder ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitDecoderConfig:
    """Architecture of an :class:`ImplicitDecoder`.

    Attributes:
        latent_channels: channels ``c`` of the autoencoder latent.
        out_channels: image channels.
        feature_channels: channels of D_φ's feature map.
        feature_layers: 3×3 convolutions in D_φ (SiLU between them).
        hidden: width of the MLP f_θ (ReLU, as in LIIF).
        depth: linear layers of f_θ (at least 2; the paper's small version uses 4).
        unfold: 3×3 feature unfolding (LIIF); off: f_θ sees the cell's own feature only.
        cell_decoding: give f_θ the output-pixel size (LIIF's cell decoding).
        local_ensemble: blend the 4 nearest cells with area weights; off: nearest cell only.
    """

    latent_channels: int
    out_channels: int = 3
    feature_channels: int = 32
    feature_layers: int = 2
    hidden: int = 64
    depth: int = 4
    unfold: bool = True
    cell_decoding: bool = True
    local_ensemble: bool = True

    def __post_init__(self) -> None:
        for name, least in (("latent_channels", 1), ("out_channels", 1),
                            ("feature_channels", 1), ("feature_layers", 1), ("hidden", 1),
                            ("depth", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name}: expected an integer >= {least}, got {value!r}")
        for name in ("unfold", "cell_decoding", "local_ensemble"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name}: expected a bool, got {getattr(self, name)!r}")


class ImplicitDecoder(nn.Module):
    """LIIF decoder: latents ``[B, c, h, w]`` → image values at any coordinates (module doc).

    Args:
        config: the :class:`ImplicitDecoderConfig`.

    Example:
        >>> dec = ImplicitDecoder(ImplicitDecoderConfig(latent_channels=4, hidden=16))
        >>> z = torch.randn(1, 4, 4, 4)
        >>> dec.query(z, make_coords(3, 5), make_cell(3, 5)).shape
        torch.Size([1, 15, 3])
    """

    def __init__(self, config: ImplicitDecoderConfig) -> None:
        super().__init__()
        if not isinstance(config, ImplicitDecoderConfig):
            raise InputError(f"config: expected ImplicitDecoderConfig, got "
                             f"{type(config).__name__}")
        self.config = config
        width = config.feature_channels
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, width, 3, padding=1)]
        for _ in range(config.feature_layers - 1):
            layers += [nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
        self.feature_net = nn.Sequential(*layers)
        in_features = width * (9 if config.unfold else 1)
        # f_θ's first layer acts on [ẑ, δ, c]; it is split so that the feature part runs once
        # per latent cell instead of once per (query, cell) pair (an exact re-association)
        self.feature_in = nn.Linear(in_features, config.hidden)
        self.coord_in = nn.Linear(2 + 2 * int(config.cell_decoding), config.hidden, bias=False)
        body: list[nn.Module] = []
        for _ in range(config.depth - 2):
            body += [nn.ReLU(), nn.Linear(config.hidden, config.hidden)]
        body += [nn.ReLU(), nn.Linear(config.hidden, config.out_channels)]
        self.body = nn.Sequential(*body)

    @classmethod
    def for_autoencoder(cls, ae: nn.Module, **options: object) -> ImplicitDecoder:
        """A decoder for ``ae``'s latents and image channels (other options as in
        :class:`ImplicitDecoderConfig`)."""
        shape = getattr(ae, "latent_shape", None)
        image = getattr(ae, "image_shape", None)
        if shape is None or image is None:
            raise InputError(f"ae: expected an autoencoder with latent_shape and image_shape, "
                             f"got {type(ae).__name__}")
        return cls(ImplicitDecoderConfig(latent_channels=shape[0], out_channels=image[0],
                                         **options))  # type: ignore[arg-type]

    def _check_latents(self, z: Tensor, name: str = "z") -> None:
        if not isinstance(z, Tensor) or z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise InputError(f"{name}: expected latents [B, {self.config.latent_channels}, h, w], "
                             f"got {shape}")
        if not torch.isfinite(z).all():
            raise InputError(f"{name}: holds NaN or Inf")

    def feature_map(self, z: Tensor) -> Tensor:
        """D_φ(z): the feature map ``[B, feature_channels, h, w]`` at the latent resolution."""
        self._check_latents(z)
        return self.feature_net(z)

    def query_features(self, features: Tensor, coords: Tensor, cell: Tensor | None = None,
                       chunk_size: int | None = None) -> Tensor:
        """Decode a feature map (from :meth:`feature_map`) at ``coords``.

        Args:
            features: ``[B, feature_channels, h, w]``.
            coords: ``[Q, 2]`` (shared by the batch) or ``[B, Q, 2]`` coordinates ``(y, x)``
                in ``[-1, 1]`` (:func:`make_coords`).
            cell: the output-pixel size per query: ``[2]``, ``[Q, 2]`` or ``[B, Q, 2]``
                (:func:`make_cell`); required with ``cell_decoding``, ignored without it.
            chunk_size: queries per chunk (``None``: as many as keep the activations under
                :data:`DEFAULT_CHUNK_ELEMENTS`); the result does not depend on it.

        Returns:
            ``[B, Q, out_channels]``.
        """
        cfg = self.config
        if (not isinstance(features, Tensor) or features.ndim != 4
                or features.shape[1] != cfg.feature_channels):
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features)
            raise InputError(f"features: expected [B, {cfg.feature_channels}, h, w], got "
                             f"{shape}")
        batch, _, h, w = features.shape
        coords = _batch_coords(coords, batch, features)
        cells = _batch_cell(cell, coords, cfg.cell_decoding)
        if chunk_size is not None:
            _positive_int(chunk_size, "chunk_size")
        k = 4 if cfg.local_ensemble else 1
        chunk = chunk_size or max(1, DEFAULT_CHUNK_ELEMENTS // (batch * k * cfg.hidden))
        if cfg.unfold:
            features = F.unfold(features, 3, padding=1).view(batch, -1, h, w)
        projected = self.feature_in(features.flatten(2).transpose(1, 2))  # [B, h·w, hidden]
        pieces = [self._query_chunk(projected, (h, w), coords[:, s:s + chunk],
                                    None if cells is None else cells[:, s:s + chunk])
                  for s in range(0, coords.shape[1], chunk)]
        return torch.cat(pieces, dim=1)

    def _query_chunk(self, projected: Tensor, latent_size: tuple[int, int], coords: Tensor,
                     cell: Tensor | None) -> Tensor:
        batch, queries = coords.shape[:2]
        hidden = projected.shape[-1]
        index, weight = ensemble_cells(coords, latent_size, self.config.local_ensemble)
        k = index.shape[-2]
        flat = index[..., 0] * latent_size[1] + index[..., 1]  # [B, q, K]
        gathered = projected.gather(1, flat.reshape(batch, -1, 1).expand(-1, -1, hidden))
        gathered = gathered.view(batch, queries, k, hidden)
        size = torch.tensor(latent_size, device=coords.device, dtype=coords.dtype)
        centre = (2 * index.to(coords.dtype) + 1) / size - 1
        extra = [(coords[..., None, :] - centre) * size / 2]  # δ in latent cells
        if cell is not None:
            extra.append((cell * size / 2)[..., None, :].expand(-1, -1, k, -1))
        values = self.body(gathered + self.coord_in(torch.cat(extra, dim=-1)))
        return (weight[..., None] * values).sum(dim=-2)

    def query(self, z: Tensor, coords: Tensor, cell: Tensor | None = None,
              chunk_size: int | None = None) -> Tensor:
        """Image values ``[B, Q, out_channels]`` of latents ``z`` ``[B, c, h, w]`` at
        ``coords`` (see :meth:`query_features` for ``coords``, ``cell`` and ``chunk_size``)."""
        return self.query_features(self.feature_map(z), coords, cell, chunk_size)

    def forward(self, z: Tensor, coords: Tensor, cell: Tensor | None = None,
                chunk_size: int | None = None) -> Tensor:
        """:meth:`query` (so that a DDP-wrapped decoder trains through ``forward``)."""
        return self.query(z, coords, cell, chunk_size)

    def decode(self, z: Tensor, size: int | Sequence[int], chunk_size: int | None = None
               ) -> Tensor:
        """Images ``[B, out_channels, H, W]`` of latents ``z`` at ``size`` = ``(H, W)`` (any
        positive integers), queried at the pixel centres with the pixel size as the cell."""
        height, width = _size(size)
        coords = make_coords(height, width, device=z.device, dtype=z.dtype)
        cell = make_cell(height, width, device=z.device, dtype=z.dtype)
        out = self.query(z, coords, cell, chunk_size)
        return out.view(out.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()


def _batch_coords(coords: Tensor, batch: int, like: Tensor) -> Tensor:
    if not isinstance(coords, Tensor) or coords.ndim not in (2, 3) or coords.shape[-1] != 2:
        shape = tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__
        raise InputError(f"coords: expected [Q, 2] or [B, Q, 2] coordinates (y, x), got {shape}")
    if coords.ndim == 3 and coords.shape[0] != batch:
        raise InputError(f"coords: batch of {coords.shape[0]} does not match the {batch} latents")
    if not torch.isfinite(coords).all() or coords.abs().max() > 1 + _COORD_TOLERANCE:
        raise InputError("coords: expected finite coordinates in [-1, 1] (the image square)")
    coords = coords.to(device=like.device, dtype=like.dtype)
    return coords.expand(batch, -1, -1) if coords.ndim == 2 else coords


def _batch_cell(cell: Tensor | None, coords: Tensor, needed: bool) -> Tensor | None:
    if not needed:
        return None
    if not isinstance(cell, Tensor) or cell.ndim not in (1, 2, 3) or cell.shape[-1] != 2:
        shape = tuple(cell.shape) if isinstance(cell, Tensor) else type(cell).__name__
        raise InputError(f"cell: expected the output-pixel size [2], [Q, 2] or [B, Q, 2] "
                         f"(make_cell), got {shape}")
    cell = cell.to(device=coords.device, dtype=coords.dtype)
    try:
        cell = torch.broadcast_to(cell, coords.shape)
    except RuntimeError:
        raise InputError(f"cell: shape {tuple(cell.shape)} does not broadcast to the "
                         f"coordinates' {tuple(coords.shape)}") from None
    if not torch.isfinite(cell).all() or (cell <= 0).any():
        raise InputError("cell: expected finite positive pixel sizes")
    return cell


# --- resizing and consistency --------------------------------------------------------------------


def _area_matrix(n_out: int, n_in: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``A[o, i]`` = fraction of output pixel ``o`` covered by input pixel ``i``."""
    edges_out = torch.arange(n_out + 1, dtype=torch.float64) / n_out
    edges_in = torch.arange(n_in + 1, dtype=torch.float64) / n_in
    lo = torch.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = torch.minimum(edges_out[1:, None], edges_in[None, 1:])
    return ((hi - lo).clamp_min(0) * n_out).to(device=device, dtype=dtype)


def area_resize(images: Tensor, size: int | Sequence[int]) -> Tensor:
    """Resize ``images`` ``[B, C, H, W]`` to ``size`` by exact area averaging.

    Each output pixel is the mean, over its square, of the piecewise-constant image the input
    pixels define (``A_h · X · A_wᵀ`` with fractional overlap weights; rows of ``A`` sum to
    1). For an integer ratio this is average pooling, so a box-filtered render at ``k·R``
    resized to ``R`` is the render at ``R``; for other ratios input pixels straddling an output
    edge are split by area (unlike ``interpolate(mode="area")``, which does not split them).
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"images: expected [B, C, H, W], got {shape}")
    height, width = _size(size)
    a_h = _area_matrix(height, images.shape[2], images.device, images.dtype)
    a_w = _area_matrix(width, images.shape[3], images.device, images.dtype)
    return torch.einsum("oh,bchw,pw->bcop", a_h, images, a_w)


def cross_scale_consistency(images_a: Tensor, images_b: Tensor) -> Tensor:
    """Per-image MSE ``[B]`` between two renderings of the same images at different sizes,
    both area-resized (:func:`area_resize`) to the smaller height and width."""
    for name, x in (("images_a", images_a), ("images_b", images_b)):
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"{name}: expected [B, C, H, W], got {shape}")
    if images_a.shape[:2] != images_b.shape[:2]:
        raise InputError(f"images_b: batch and channels {tuple(images_b.shape[:2])} differ from "
                         f"images_a's {tuple(images_a.shape[:2])}")
    common = (min(images_a.shape[2], images_b.shape[2]), min(images_a.shape[3], images_b.shape[3]))
    diff = area_resize(images_a, common) - area_resize(images_b, common)
    return diff.double().pow(2).flatten(1).mean(dim=1).to(images_a.dtype)


# --- multi-scale ground truth --------------------------------------------------------------------


@dataclass
class MultiScaleBatch:
    """Images at the autoencoder's resolution and the same scenes at one other size.

    Attributes:
        base: ``[n, C, H, W]`` at the base (autoencoder) resolution, to be encoded.
        target: ``[n, C, H', W']`` ground truth at the drawn size.
        labels: int64 ``[n]`` class labels, or ``None``.
    """

    base: Tensor
    target: Tensor
    labels: Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H', W')`` of the target."""
        return (self.target.shape[2], self.target.shape[3])


def _index(n: int, high: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(device)


class ScaleBank:
    """Ground truth pre-rendered at a fixed set of sizes (the training scale set).

    :meth:`sample` draws one size uniformly from :attr:`sizes`, then ``n`` images uniformly
    with replacement.

    Args:
        base: ``[N, C, H, W]`` images at the base resolution.
        targets: ``{size: [N, C, H', W']}`` the same images at other sizes (``size`` an int or
            ``(H', W')``).
        labels: int64 ``[N]`` class labels, or ``None``.
    """

    def __init__(self, base: Tensor, targets: Mapping[int | tuple[int, int], Tensor],
                 labels: Tensor | None = None) -> None:
        if not isinstance(base, Tensor) or base.ndim != 4 or not torch.isfinite(base).all():
            raise InputError("base: expected finite images [N, C, H, W]")
        if not isinstance(targets, Mapping) or not targets:
            raise InputError("targets: expected a non-empty {size: images} mapping")
        self.base = base
        self.targets: dict[tuple[int, int], Tensor] = {}
        for key, images in targets.items():
            size = _size(key, "targets")
            if (not isinstance(images, Tensor) or images.ndim != 4
                    or images.shape[:2] != base.shape[:2] or tuple(images.shape[2:]) != size):
                shape = tuple(images.shape) if isinstance(images, Tensor) else type(images)
                raise InputError(f"targets[{key!r}]: expected [{base.shape[0]}, {base.shape[1]}, "
                                 f"{size[0]}, {size[1]}], got {shape}")
            self.targets[size] = images
        if labels is not None and (not isinstance(labels, Tensor)
                                   or tuple(labels.shape) != (base.shape[0],)):
            raise InputError(f"labels: expected [{base.shape[0]}] class labels")
        self.labels = labels

    @classmethod
    def from_procedural(cls, data: ProceduralData, sizes: Sequence[int | tuple[int, int]], *,
                        split: str = "train", n: int | None = None) -> ScaleBank:
        """Render the first ``n`` scenes of ``data``'s ``split`` exactly at each of ``sizes``."""
        factors, images, labels = _split(data, split)
        if n is not None:
            _positive_int(n, "n")
            factors, images, labels = factors[:n], images[:n], labels[:n]
        if not isinstance(sizes, Sequence) or not sizes:
            raise InputError(f"sizes: expected a non-empty sequence of sizes, got {sizes!r}")
        targets = {_size(s, "sizes"): data.spec.render(factors, _size(s, "sizes"))
                   for s in sizes}
        return cls(images, targets, labels)

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """The sizes a batch can be drawn at."""
        return tuple(self.targets)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the base images."""
        return tuple(self.base.shape[1:])  # type: ignore[return-value]

    def sample(self, n: int, generator: torch.Generator) -> MultiScaleBatch:
        """``n`` images and their ground truth at one uniformly drawn size."""
        _positive_int(n, "n")
        size = self.sizes[int(_index(1, len(self.sizes), generator, torch.device("cpu")))]
        index = _index(n, self.base.shape[0], generator, self.base.device)
        labels = self.labels[index] if self.labels is not None else None
        return MultiScaleBatch(self.base[index], self.targets[size][index], labels)


def _split(data: ProceduralData, split: str) -> tuple[SceneFactors, Tensor, Tensor]:
    if not isinstance(data, ProceduralData):
        raise InputError(f"data: expected ProceduralData (load_procedural), got "
                         f"{type(data).__name__}")
    if split not in ("train", "test"):
        raise InputError(f"split: expected 'train' or 'test', got {split!r}")
    if split == "train":
        return data.train_factors, data.train, data.train_labels
    return data.test_factors, data.test, data.test_labels


class RenderedScales:
    """Ground truth rendered exactly at a size drawn from a continuous scale range.

    :meth:`sample` draws a scale ``s ~ U[low, high]`` and renders the batch at
    ``round(s·R)`` pixels per side (``R`` the base resolution), scenes drawn uniformly from
    ``data``'s split (a :class:`~monge.data.ProceduralData`) or freshly from a
    :class:`~monge.data.ProceduralImages` spec. Rendering costs O(n·size²) per batch.

    Args:
        data: the scenes.
        scale_range: ``(low, high)`` output scales relative to the base resolution (LIIF's
            default ×1–×4).
        split: which split of a ``ProceduralData`` to draw from.
    """

    def __init__(self, data: ProceduralData | ProceduralImages,
                 scale_range: tuple[float, float] = (1.0, 4.0), *, split: str = "train") -> None:
        if isinstance(data, ProceduralData):
            _split(data, split)
            self.spec = data.spec
        elif isinstance(data, ProceduralImages):
            self.spec = data
        else:
            raise InputError(f"data: expected ProceduralData or ProceduralImages, got "
                             f"{type(data).__name__}")
        try:
            low, high = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            low, high = math.nan, math.nan
        if not (0 < low <= high and math.isfinite(high)):
            raise InputError(f"scale_range: expected (low, high) with 0 < low <= high, got "
                             f"{scale_range!r}")
        self.data, self.split, self.scale_range = data, split, (low, high)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the base images."""
        return self.spec.shape

    def sample(self, n: int, generator: torch.Generator) -> MultiScaleBatch:
        """``n`` scenes rendered at the base resolution and at one drawn size."""
        _positive_int(n, "n")
        low, high = self.scale_range
        u = float(torch.rand((), generator=generator, device=generator.device,
                             dtype=torch.float64))
        size = max(1, round((low + (high - low) * u) * self.spec.resolution))
        if isinstance(self.data, ProceduralData):
            factors, images, labels = _split(self.data, self.split)
            index = _index(n, len(factors), generator, images.device)
            base, labels = images[index], labels[index]
            factors = factors[index.to(factors.kind.device)]
        else:
            factors = self.spec.sample_factors(n, generator)
            base, labels = self.spec.render(factors), self.spec.labels(factors)
        return MultiScaleBatch(base, self.spec.render(factors, size).to(base.device), labels)


MultiScaleSource = ScaleBank | RenderedScales
"""Where multi-scale ground truth comes from: ``sample(n, generator) -> MultiScaleBatch`` and
``image_shape``."""


def _source(source: object) -> MultiScaleSource:
    if isinstance(source, ScaleBank | RenderedScales):
        return source
    if isinstance(source, ProceduralData | ProceduralImages):
        return RenderedScales(source)
    raise InputError(f"source: expected a ScaleBank, RenderedScales, ProceduralData or "
                     f"ProceduralImages, got {type(source).__name__}")


def _check_pair(decoder: ImplicitDecoder, ae: nn.Module, image_shape: tuple[int, ...]) -> None:
    if not isinstance(decoder, ImplicitDecoder):
        raise InputError(f"decoder: expected an ImplicitDecoder, got {type(decoder).__name__}")
    latent, image = getattr(ae, "latent_shape", None), getattr(ae, "image_shape", None)
    if latent is None or image is None or not callable(getattr(ae, "encode", None)):
        raise InputError(f"ae: expected an Autoencoder, got {type(ae).__name__}")
    if latent[0] != decoder.config.latent_channels or image[0] != decoder.config.out_channels:
        raise InputError(f"decoder: {decoder.config.latent_channels} latent / "
                         f"{decoder.config.out_channels} image channels do not match the "
                         f"autoencoder's {latent[0]} / {image[0]}")
    if tuple(image_shape) != tuple(image):
        raise InputError(f"source: base images of shape {tuple(image_shape)} do not match the "
                         f"autoencoder's image shape {tuple(image)}")


def _pixels(images: Tensor, queries: int | None, generator: torch.Generator | None
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Random query pixels of ``images`` ``[B, C, H, W]``: ``(coords [B, Q, 2], cell [2],
    values [B, Q, C])`` (all pixels when ``queries`` is None or at least H·W)."""
    batch, channels, height, width = images.shape
    grid = make_coords(height, width, device=images.device, dtype=images.dtype)
    cell = make_cell(height, width, device=images.device, dtype=images.dtype)
    values = images.flatten(2).transpose(1, 2)  # [B, H·W, C]
    if queries is None or queries >= height * width:
        return grid.expand(batch, -1, -1), cell, values
    device = generator.device if generator is not None else images.device
    index = torch.randint(height * width, (batch, queries), generator=generator,
                          device=device).to(images.device)
    return grid[index], cell, values.gather(1, index[..., None].expand(-1, -1, channels))


def _pixel_error(pred: Tensor, target: Tensor, norm: str) -> Tensor:
    diff = pred - target
    return (diff.abs() if norm == "l1" else diff.pow(2)).flatten(1).mean(dim=1)


def _check_norm(norm: str) -> str:
    if norm not in ("l1", "l2"):
        raise InputError(f"norm: expected 'l1' or 'l2', got {norm!r}")
    return norm


# --- training the decoder ------------------------------------------------------------------------


class ImplicitDecoderLoss(nn.Module):
    """Objective of :func:`train_implicit_decoder` in the trainer's ``loss(model, x0, x1, y1,
    generator)`` form: ``x0`` are latents ``[B, c, h, w]``, ``x1`` the ground truth
    ``[B, C, H', W']`` at the batch's size (``y1`` unused); the L1 (or L2) error of the decoder
    at ``queries`` random pixels per image (with replacement; all pixels when ``None``).
    """

    def __init__(self, queries: int | None = 256, norm: str = "l1") -> None:
        super().__init__()
        if queries is not None:
            _positive_int(queries, "queries")
        self.queries, self.norm = queries, _check_norm(norm)

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: object = None,
                generator: torch.Generator | None = None) -> LossOutput:
        coords, cell, values = _pixels(x1, self.queries, generator)
        per_example = _pixel_error(model(x0, coords, cell), values, self.norm)
        return LossOutput(per_example.mean(), per_example.detach(),
                          torch.zeros(x0.shape[0], device=x0.device, dtype=x0.dtype))


def train_implicit_decoder(decoder: ImplicitDecoder, ae: nn.Module,
                           source: MultiScaleSource | ProceduralData | ProceduralImages, *,
                           steps: int = 2000, batch_size: int = 32, queries: int | None = 256,
                           lr: float = 1e-3, norm: str = "l1", seed: int = 0,
                           progress: bool = False, out_dir: str | Path | None = None
                           ) -> TrainResult:
    """Train ``decoder`` in place on ``ae``'s frozen latents (LIIF training, module doc).

    Per step: a batch from ``source`` at one random size, its base images encoded by ``ae``
    (no gradient), ``queries`` random pixels of the ground truth decoded, L1 loss. Uses
    :class:`~monge.train.Trainer` (AdamW, warm-up over ``min(100, steps // 10)`` steps then
    cosine decay, gradient clipping at 1, no EMA).

    Args:
        decoder: the implicit decoder (its device is the training device).
        ae: the autoencoder whose encoder stays fixed.
        source: a :class:`ScaleBank`, a :class:`RenderedScales`, or procedural data (then
            ``RenderedScales(data)``: scales ×1–×4).
        steps, batch_size, lr: optimisation budget.
        queries: pixels decoded per image and step (``None``: every pixel).
        norm: ``"l1"`` (LIIF) or ``"l2"``.
        seed: seed of the trainer's generator.
        progress, out_dir: progress bar; folder for the trainer's checkpoint and log.

    Returns:
        The trainer's :class:`~monge.train.TrainResult`; ``decoder`` is left in eval mode.
    """
    source = _source(source)
    _check_pair(decoder, ae, source.image_shape)
    loss = ImplicitDecoderLoss(queries, norm)
    device = next(decoder.parameters()).device
    ae.eval()

    def sample_batch(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, None]:
        batch = source.sample(n, generator)
        with torch.no_grad():
            z = ae.encode(batch.base.to(device))
        return z, batch.target.to(device), None

    config = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr,
                           warmup_steps=min(100, steps // 10), ema_decay=0.0,
                           checkpoint_every=max(steps, 1), log_every=max(1, steps // 20),
                           seed=int(seed))
    result = Trainer(decoder, loss, sample_batch, config, out_dir=out_dir,
                     progress=progress).fit()
    decoder.eval()
    return result


# --- files ---------------------------------------------------------------------------------------

DECODER_KIND = "monge.implicit_decoder"


def save_implicit_decoder(decoder: ImplicitDecoder, path: str | Path) -> Path:
    """Write ``decoder`` to a safetensors file (weights as ``model.*``, its
    :class:`ImplicitDecoderConfig` in the header), atomically. Returns the path."""
    from dataclasses import asdict

    from monge.train.checkpoint import save_checkpoint

    if not isinstance(decoder, ImplicitDecoder):
        raise InputError(f"decoder: expected an ImplicitDecoder, got {type(decoder).__name__}")
    tensors = {f"model.{k}": v for k, v in decoder.state_dict().items()}
    return save_checkpoint(path, tensors, {"kind": DECODER_KIND,
                                           "config": asdict(decoder.config)})


def load_implicit_decoder(path: str | Path, device: torch.device | str = "cpu"
                          ) -> ImplicitDecoder:
    """Rebuild a decoder from :func:`save_implicit_decoder`'s file, in eval mode on ``device``.

    Raises:
        DataError: a missing or corrupt file, or one that does not hold an implicit decoder.
    """
    from monge.errors import DataError
    from monge.train.checkpoint import load_checkpoint

    tensors, state = load_checkpoint(path, device="cpu")
    if state.get("kind") != DECODER_KIND or not isinstance(state.get("config"), dict):
        raise DataError(f"{path}: not an implicit-decoder file (no {DECODER_KIND} "
                        "configuration in its metadata)")
    try:
        decoder = ImplicitDecoder(ImplicitDecoderConfig(**state["config"]))
        decoder.load_state_dict({k[len("model."):]: v for k, v in tensors.items()
                                 if k.startswith("model.")})
    except (TypeError, InputError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: the implicit decoder does not load ({first})") from None
    return decoder.to(device).eval()


# --- alignment of a latent flow ------------------------------------------------------------------


@dataclass
class ScaleTargets:
    """The batch's ground truth at its drawn size, carried in the trainer's ``y1`` slot.

    Attributes:
        images: ``[B, C, H', W']``, row ``i`` the scene whose latent is ``x1[i]``.
        labels: int64 ``[B]`` class labels (passed to a class-conditional flow), or ``None``.
    """

    images: Tensor
    labels: Tensor | None = None


def alignment_sampler(ae: nn.Module, source: MultiScaleSource | ProceduralData |
                      ProceduralImages, *, latent_scale: float = 1.0,
                      device: torch.device | str | None = None
                      ) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor, ScaleTargets]]:
    """The trainer's ``sample_batch`` for a latent flow with :class:`AlignmentLoss`.

    ``sample_batch(n, generator)`` draws a :class:`MultiScaleBatch`, encodes its base images
    with the frozen ``ae`` (no gradient) and returns ``(x0, x1, y1)``: ``x0 ~ N(0, I)`` of the
    latent shape, ``x1 = encode(base) / latent_scale`` and ``y1 = ScaleTargets(target,
    labels)``. :class:`~monge.train.FlowMatchingLoss` accepts the same batches (it ignores
    ``y1`` for an unconditional model), so flows with and without alignment see the same data.

    Args:
        ae: the autoencoder.
        source: multi-scale ground truth (procedural data: ``RenderedScales(data)``).
        latent_scale: the flow works on latents divided by this (e.g. their std).
        device: where the batch goes (default: the autoencoder's device).
    """
    source = _source(source)
    if not callable(getattr(ae, "encode", None)) or getattr(ae, "image_shape", None) is None:
        raise InputError(f"ae: expected an Autoencoder, got {type(ae).__name__}")
    if tuple(source.image_shape) != tuple(ae.image_shape):
        raise InputError(f"source: base images of shape {tuple(source.image_shape)} do not "
                         f"match the autoencoder's image shape {tuple(ae.image_shape)}")
    if not (isinstance(latent_scale, int | float) and latent_scale > 0
            and math.isfinite(latent_scale)):
        raise InputError(f"latent_scale: expected a positive number, got {latent_scale!r}")
    target_device = torch.device(device) if device is not None else next(ae.parameters()).device
    ae.eval()

    def sample_batch(n: int, generator: torch.Generator
                     ) -> tuple[Tensor, Tensor, ScaleTargets]:
        batch = source.sample(n, generator)
        with torch.no_grad():
            x1 = ae.encode(batch.base.to(target_device)) / latent_scale
        x0 = torch.randn(x1.shape, generator=generator, device=generator.device,
                         dtype=x1.dtype).to(target_device)
        labels = batch.labels.to(target_device) if batch.labels is not None else None
        return x0, x1, ScaleTargets(batch.target.to(target_device), labels)

    return sample_batch


@dataclass
class AlignmentTerms:
    """The two terms of the last :class:`AlignmentLoss` step (batch means)."""

    flow: float
    align: float


class AlignmentLoss(nn.Module):
    """Flow matching plus ``weight · L_align`` through a frozen implicit decoder (module doc).

    Per batch ``(x0, x1, y1 = ScaleTargets)``: t from the time sampler, ``x_t`` on ``path``,
    the flow-matching MSE of ``model(x_t, t)`` on the path's ``prediction`` target, and, on the
    first ``align_batch_size`` examples, ``L_align`` = the L1 (or L2) error between
    ``decoder(ẑ1 · latent_scale)`` and ``y1.images`` at ``queries`` random pixels, where
    ``ẑ1`` is the model's clean-latent prediction (the path's exact conversion; on the linear
    path with a velocity model ``ẑ1 = x_t + (1 − t)·v``). The decoder's parameters are frozen
    (``requires_grad`` off, eval mode); the gradient of ``L_align`` reaches the model through
    it. Pairs are kept as drawn (the rows of ``x1`` and ``y1.images`` must stay matched), and
    with ``weight = 0`` the loss is :class:`~monge.train.FlowMatchingLoss`'s for the same
    generator state.

    Args:
        decoder: the trained :class:`ImplicitDecoder` (frozen here).
        weight: λ ≥ 0.
        path: the affine path (default linear).
        prediction: what the model outputs (``velocity``, ``x1``, ``epsilon``, ``score``).
        queries: pixels per image in ``L_align`` (``None``: all; memory grows with it).
        align_batch_size: examples per batch in ``L_align`` (``None``: all).
        norm: ``"l1"`` or ``"l2"`` for ``L_align``.
        latent_scale: the flow's latents are the autoencoder's divided by this.
        time_sampler: distribution of t (default U[0, 1]).
        num_classes: for a class-conditional model (labels from ``y1.labels``).

    The last step's terms are in :attr:`last` (:class:`AlignmentTerms`).
    """

    def __init__(self, decoder: ImplicitDecoder, weight: float = 1.0,
                 path: AffinePath | None = None, prediction: Prediction = "velocity", *,
                 queries: int | None = 128, align_batch_size: int | None = None,
                 norm: str = "l1", latent_scale: float = 1.0,
                 time_sampler: TimeSampler | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__()
        if not isinstance(decoder, ImplicitDecoder):
            raise InputError(f"decoder: expected an ImplicitDecoder, got {type(decoder).__name__}")
        if not (isinstance(weight, int | float) and weight >= 0 and math.isfinite(weight)):
            raise InputError(f"weight: expected a non-negative number, got {weight!r}")
        path = path if path is not None else LinearPath()
        if not isinstance(path, AffinePath):
            raise InputError(f"path: expected an affine path, got {type(path).__name__}")
        if prediction not in path.predictions:
            raise InputError(f"prediction: {prediction!r} is not a parameterisation of "
                             f"{path.name}; expected one of {path.predictions}")
        for name, value in (("queries", queries), ("align_batch_size", align_batch_size)):
            if value is not None:
                _positive_int(value, name)
        if not (isinstance(latent_scale, int | float) and latent_scale > 0
                and math.isfinite(latent_scale)):
            raise InputError(f"latent_scale: expected a positive number, got {latent_scale!r}")
        decoder.requires_grad_(False)
        decoder.eval()
        self.decoder, self.weight = decoder, float(weight)
        self.path, self.prediction = path, prediction
        self.queries, self.align_batch_size = queries, align_batch_size
        self.norm, self.latent_scale = _check_norm(norm), float(latent_scale)
        self.time_sampler = time_sampler or UniformTime()
        self.labels = LabelConditioning(num_classes)
        self.last: AlignmentTerms | None = None

    def train(self, mode: bool = True) -> AlignmentLoss:
        """The frozen decoder stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.decoder.eval()
        return self

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: ScaleTargets,
                generator: torch.Generator | None = None) -> LossOutput:
        if not isinstance(y1, ScaleTargets):
            raise InputError(f"y1: expected ScaleTargets (the batch's ground truth at its "
                             f"drawn size; see alignment_sampler), got {type(y1).__name__}")
        images = y1.images
        if (not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] != x1.shape[0]
                or images.shape[1] != self.decoder.config.out_channels):
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise InputError(f"y1.images: expected [{x1.shape[0]}, "
                             f"{self.decoder.config.out_channels}, H, W], got {shape}")
        t = self.time_sampler.sample(x1.shape[0], generator=generator, dtype=x1.dtype,
                                     device=x1.device)
        xt = self.path.sample_xt(x0, x1, t)
        pred = model(xt, t, **self.labels(y1.labels, generator))
        target = self.path.target(self.prediction, x0, x1, t)
        flow = (pred - target).pow(2).flatten(1).mean(dim=1)
        loss = flow.mean()
        align_mean = 0.0
        if self.weight > 0:
            n = x1.shape[0] if self.align_batch_size is None else min(self.align_batch_size,
                                                                      x1.shape[0])
            z1 = self.path.convert(pred[:n], self.prediction, "x1", xt[:n], t[:n])
            coords, cell, values = _pixels(images[:n].to(z1), self.queries, generator)
            decoded = self.decoder.query(z1 * self.latent_scale, coords, cell)
            align = _pixel_error(decoded, values, self.norm)
            loss = loss + self.weight * align.mean()
            align_mean = float(align.detach().mean())
        self.last = AlignmentTerms(float(flow.detach().mean()), align_mean)
        return LossOutput(loss, flow.detach(), t)


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class ScaleScore:
    """Decoding quality at one output size.

    Attributes:
        size: output pixels per side.
        scale: ``size`` over the base resolution.
        psnr: mean PSNR (dB, peak-to-peak 2) of the implicit decoder vs the exact render.
        bicubic_psnr: the same for the autoencoder's fixed-size decode, bicubic-resized.
        consistency: mean MSE between the implicit decoder's output at this size,
            area-resized to the base resolution, and its output at the base resolution.
        bicubic_consistency: the same for the bicubic baseline (vs the fixed-size decode).
        in_training: whether ``size`` lies in the training scale set (``None``: not given).
    """

    size: int
    scale: float
    psnr: float
    bicubic_psnr: float
    consistency: float
    bicubic_consistency: float
    in_training: bool | None = None


@dataclass
class ScaleEvaluation:
    """:func:`evaluate_scales`'s result: one :class:`ScaleScore` per size."""

    scores: list[ScaleScore] = field(default_factory=list)
    images: int = 0

    def by_size(self) -> dict[int, ScaleScore]:
        """The scores keyed by size."""
        return {s.size: s for s in self.scores}


@torch.no_grad()
def evaluate_scales(decoder: ImplicitDecoder, ae: nn.Module, data: ProceduralData,
                    sizes: Sequence[int], *, split: str = "test", n: int | None = 256,
                    training_sizes: Callable[[int], bool] | Sequence[int] | None = None,
                    batch_size: int = 64, chunk_size: int | None = None) -> ScaleEvaluation:
    """PSNR against the exact render and cross-scale consistency at each of ``sizes``.

    The first ``n`` scenes of ``split`` are encoded at the base resolution ``R``; each size is
    decoded by ``decoder`` and, as the baseline, by ``ae.decode`` at ``R`` followed by
    ``interpolate(mode="bicubic", align_corners=False, antialias=False)``. Both outputs are
    clamped to ``[-1, 1]`` (the image range) before scoring.

    Args:
        training_sizes: the training scale set (a predicate on the size or a list of sizes),
            used to mark each score; ``None`` leaves ``in_training`` unset.
    """
    factors, images, _ = _split(data, split)
    if n is not None:
        _positive_int(n, "n")
        factors, images = factors[:n], images[:n]
    sizes = [_positive_int(s, "sizes") for s in sizes]
    if not sizes:
        raise InputError("sizes: expected at least one output size")
    _check_pair(decoder, ae, data.spec.shape)
    _positive_int(batch_size, "batch_size")
    device = next(decoder.parameters()).device
    base = data.spec.resolution
    ours: dict[int, list[Tensor]] = {s: [] for s in sizes}
    bic_psnr: dict[int, list[Tensor]] = {s: [] for s in sizes}
    cons: dict[int, list[Tensor]] = {s: [] for s in sizes}
    bic_cons: dict[int, list[Tensor]] = {s: [] for s in sizes}
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        scenes = factors[start:start + batch_size]
        z = ae.encode(batch)
        fixed = ae.decode(z).clamp(-1, 1)
        at_base = decoder.decode(z, base, chunk_size).clamp(-1, 1)
        for s in sizes:
            truth = data.spec.render(scenes, s).to(device)
            out = at_base if s == base else decoder.decode(z, s, chunk_size).clamp(-1, 1)
            bic = F.interpolate(fixed, size=(s, s), mode="bicubic", align_corners=False,
                                antialias=False).clamp(-1, 1)
            ours[s].append(psnr(out, truth).double().cpu())
            bic_psnr[s].append(psnr(bic, truth).double().cpu())
            cons[s].append(cross_scale_consistency(out, at_base).double().cpu())
            bic_cons[s].append(cross_scale_consistency(bic, fixed).double().cpu())
    if training_sizes is None:
        def inside(s: int) -> bool | None:
            return None
    elif callable(training_sizes):
        inside = training_sizes  # type: ignore[assignment]
    else:
        allowed = set(training_sizes)

        def inside(s: int) -> bool | None:
            return s in allowed
    scores = [ScaleScore(s, s / base, float(torch.cat(ours[s]).mean()),
                         float(torch.cat(bic_psnr[s]).mean()), float(torch.cat(cons[s]).mean()),
                         float(torch.cat(bic_cons[s]).mean()), inside(s)) for s in sizes]
    return ScaleEvaluation(scores, images.shape[0])
