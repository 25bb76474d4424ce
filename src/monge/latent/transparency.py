"""Latent transparency: RGBA images through a frozen RGB autoencoder (LayerDiffusion).

Method: Zhang & Agrawala, "Transparent Image Layer Diffusion using Latent Transparency"
(SIGGRAPH 2024, arXiv:2402.17113). A frozen (variational) autoencoder ``(E, D)`` and a latent
flow trained on its latents are turned into a transparent-image generator by hiding the alpha
channel in a *small offset* of the latent, so that the latent distribution, and hence the
pretrained flow, barely changes:

1. The RGBA image (straight colour ``I_c``, alpha ``I_a``) is premultiplied,
   ``I_p = (2·I_c − 1)·I_a`` in the paper's ``[0, 1]`` convention. monge's images live in
   ``[-1, 1]`` with the alpha channel stored as ``2·coverage − 1``, so the same image is
   ``rgb · a`` with ``a = (alpha + 1)/2``: exactly :func:`monge.data.procedural.premultiply`
   (transparent pixels become 0, neutral grey). The frozen encoder gives the posterior
   ``(μ, s)`` of ``I_p``; the base latent is ``x = μ``.
2. The latent transparency encoder ``E_a`` (:class:`TransparencyEncoder`: 3x3 convolutions,
   SiLU, one stride-2 stage per halving down to the latent resolution, last convolution
   zero-initialised, output times a constant ``output_scale``) reads ``[alpha, pad(colour)]``
   (:func:`pad_colour` fills transparent regions by an alpha-weighted push-pull pyramid) and
   gives a *standardised* offset: the adjusted latent is ``x_a = μ + s ⊙ E_a(·)``, an offset in
   units of the encoder's own posterior noise (as in the released inference code). The zero
   initialisation makes ``x_a = μ`` exactly at the start of training.
3. The transparent decoder ``D_a`` (:class:`TransparentDecoder`, a small U-Net) reads the frozen
   decoder's output ``D(x_a)`` and the latent ``x_a`` and predicts ``(Î_c, Î_a)``.
4. :class:`TransparencyLoss`: ``L = L_rec + λ_id·L_id`` with
   ``L_rec = ‖Î_c − I_c‖² + ‖Î_a − I_a‖²`` and the identity loss ``L_id = ‖D(x_a) − D(x)‖²``
   (frozen decoder) that keeps ``x_a`` decoding to the same premultiplied image; each ``‖·‖²``
   is a mean over elements (as in :class:`~monge.latent.AutoencoderLoss`).
   ``identity_weight=0`` is the paper's ablation. The paper's PatchGAN term and its 8-fold
   flip/rotation test-time augmentation are not implemented.
5. The latent flow is then fine-tuned on the adjusted latents ``x_a`` with its usual loss (any
   monge trainer; see ``benchmarks/latent_layerdiffusion.py``).

Measurements: :func:`latent_shift` (Fréchet distance and MMD between the adjusted and base
latent sets), :func:`frozen_flow_loss_gap` (a frozen flow's flow-matching loss on ``x_a`` vs on
``x`` at the same ``(t, noise)`` draws), :func:`alpha_iou`, and :func:`evaluate_transparency`.

Scale of the offset. The paper multiplies ``E_a``'s output by 300 (LoRA-alpha style), which
suits a VAE whose posterior std is far below its latents' spread (a very small KL weight), so
that an offset of a few latent units is hundreds of std units. A small monge VAE
(``kl_weight`` 1e-3) has posterior stds of order 0.05–1, about the latents' own spread, and
with Adam each weight of the zero-initialised last layer moves by about ``lr`` per step, so
the offset can grow by about ``output_scale·lr`` times the layer's fan-in per step. The
default ``output_scale`` here is therefore 1. Observed on ``sprites16`` (f = 4 VAE, 250 steps,
lr 5e-3): without ``L_id`` a scale of 300 drove the offset to an rms of 78 std units (scale 1:
1.8); with a strong ``L_id`` (weight 1000) both scales end near zero (0.02 and 0.04).

Deterministic autoencoders have no posterior std (``s = 0`` would switch the offset off): pass
``fixed_std`` (a constant ``s`` in latent units, e.g. a tenth of the latents' spread), or use a
VAE. ``fixed_std`` also overrides a VAE's posterior std.

Cost: training adds, per example, one frozen encoder pass, two frozen decoder passes (one of
them differentiated, for ``D(x_a)``), and the ``E_a``/``D_a`` passes; encoding an RGBA image
costs one ``E`` and one ``E_a`` pass, decoding one ``D`` and one ``D_a`` pass.

Example:
    >>> import torch
    >>> from monge.latent import Autoencoder, AutoencoderConfig
    >>> ae = Autoencoder(AutoencoderConfig(image_shape=(3, 16, 16), latent_channels=4,
    ...                                    downsample=4, width=8, variational=True))
    >>> model = LatentTransparency(ae, width=8)
    >>> rgba = torch.rand(2, 4, 16, 16) * 2 - 1
    >>> enc = model.encode(rgba)
    >>> bool(torch.equal(enc.latent, enc.mean)), model.decode(enc.latent).shape
    (True, torch.Size([2, 4, 16, 16]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from monge.core.checks import check_finite, make_generator
from monge.data import Dataset
from monge.data.procedural import premultiply
from monge.errors import InputError
from monge.latent.autoencoder import Autoencoder, image_batches, psnr
from monge.metrics import feature_frechet_distance, mmd_rbf
from monge.paths import LinearPath
from monge.paths.affine import AffinePath
from monge.train import LossOutput, Trainer, TrainerConfig, TrainResult

__all__ = [
    "FlowLossGap",
    "LatentShift",
    "LatentTransparency",
    "TransparencyEncoder",
    "TransparencyLoss",
    "TransparencyLossTerms",
    "TransparencyOutput",
    "TransparencyScore",
    "TransparentDecoder",
    "TransparentLatent",
    "alpha_iou",
    "evaluate_transparency",
    "frozen_flow_loss_gap",
    "latent_shift",
    "pad_colour",
    "train_transparency",
]


def _positive_int(value: object, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name}: expected an integer >= {least}, got {value!r}")
    return value


def _positive_float(value: object, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = "a non-negative" if allow_zero else "a positive"
        raise InputError(f"{name}: expected {want} finite number, got {value!r}")
    return float(value)


def _check_rgba(x: object, shape: tuple[int, int, int], name: str) -> Tensor:
    """One-line InputError unless ``x`` is a finite batch ``[B, *shape]``."""
    if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name}: expected RGBA images [B, {', '.join(map(str, shape))}] "
                         f"(straight colour then alpha, in [-1, 1]), got {got}")
    return check_finite(x, name)


# --- colour padding ------------------------------------------------------------------------------

def pad_colour(rgba: Tensor) -> Tensor:
    """Fill the colour of transparent pixels from nearby visible colour (push-pull pyramid).

    Pull: premultiplied colour ``P_0 = c·a`` and coverage ``A_0 = a`` (``a = (alpha + 1)/2``)
    are box-averaged to half resolution repeatedly, down to one pixel. Push: the coarsest
    level's colour is ``P_L / A_L`` (0, neutral grey, where nothing is visible), and each finer
    level composites its own averaged premultiplied colour over the coarser fill,
    ``C_l = P_l + (1 − A_l)·up(C_{l+1})``. At full resolution this is ``c·a + (1 − a)·fill``:
    opaque pixels keep their colour, transparent ones take an alpha-weighted average of the
    visible colour around them (nearer levels first). This is the alpha-weighted pyramid fill
    LayerDiffusion uses for ``E_a``'s input (Gortler et al.'s push-pull, "The Lumigraph",
    SIGGRAPH 1996). Cost: ``O(B·C·H·W)``.

    Args:
        rgba: ``[B, C + 1, H, W]`` straight colour then alpha, in ``[-1, 1]``.

    Returns:
        The padded colour ``[B, C, H, W]``.

    Example:
        >>> rgba = torch.full((1, 4, 4, 4), -1.0); rgba[:, :3, :2] = 0.5; rgba[:, 3, :2] = 1
        >>> bool(torch.allclose(pad_colour(rgba), torch.full((1, 3, 4, 4), 0.5)))
        True
    """
    if not isinstance(rgba, Tensor) or rgba.ndim != 4 or rgba.shape[1] < 2:
        got = tuple(rgba.shape) if isinstance(rgba, Tensor) else type(rgba).__name__
        raise InputError(f"rgba: expected images [B, C + 1, H, W], got {got}")
    check_finite(rgba, "rgba")
    alpha = ((rgba[:, -1:] + 1) / 2).clamp(0, 1)
    levels = [(rgba[:, :-1] * alpha, alpha)]
    while max(levels[-1][1].shape[-2:]) > 1:
        p, a = levels[-1]
        size = (math.ceil(p.shape[-2] / 2), math.ceil(p.shape[-1] / 2))
        levels.append((F.adaptive_avg_pool2d(p, size), F.adaptive_avg_pool2d(a, size)))
    p, a = levels[-1]
    fill = torch.where(a > 0, p / a.clamp_min(torch.finfo(p.dtype).tiny), torch.zeros_like(p))
    for p, a in reversed(levels[:-1]):
        fill = p + (1 - a) * F.interpolate(fill, size=p.shape[-2:], mode="nearest")
    return fill


# --- networks ------------------------------------------------------------------------------------

def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


def _stages(downsample: int) -> int:
    stages = int(round(math.log2(downsample))) if downsample >= 1 else -1
    if stages < 0 or 2 ** stages != downsample:
        raise InputError(f"downsample: expected a power of two, got {downsample!r}")
    return stages


class TransparencyEncoder(nn.Module):
    """``E_a``: ``[alpha, padded colour]`` at image resolution → standardised latent offset.

    Two 3x3 convolutions at full resolution, then per halving a stride-2 and a plain 3x3
    convolution (widths double per halving), SiLU between them, and a last 3x3 convolution to
    the latent channels whose weights and bias are zero, its output multiplied by
    ``output_scale``: the offset is exactly 0 at initialisation and the scale sets how fast it
    can grow (see the module doc). Cost ``O(B·H·W·width²)``.

    Args:
        in_channels: ``C + 1`` (alpha and the colour channels).
        latent_channels: channels of the frozen autoencoder's latent.
        downsample: the autoencoder's spatial reduction (a power of two).
        width: channels at full resolution.
        output_scale: constant multiplying the zero-initialised last layer's output.
    """

    def __init__(self, in_channels: int, latent_channels: int, downsample: int, *,
                 width: int = 16, output_scale: float = 1.0) -> None:
        super().__init__()
        _positive_int(in_channels, "in_channels", 2)
        _positive_int(latent_channels, "latent_channels")
        _positive_int(width, "width")
        self.output_scale = _positive_float(output_scale, "output_scale")
        stages = _stages(downsample)
        widths = [width * 2 ** s for s in range(stages + 1)]
        layers: list[nn.Module] = [_conv(in_channels, width), nn.SiLU(), _conv(width, width),
                                   nn.SiLU()]
        for s in range(stages):
            layers += [_conv(widths[s], widths[s + 1], stride=2), nn.SiLU(),
                       _conv(widths[s + 1], widths[s + 1]), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = _conv(widths[-1], latent_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Offset ``[B, c, H/f, W/f]`` (posterior-std units) of inputs ``[B, C + 1, H, W]``."""
        return self.out(self.body(x)) * self.output_scale


class TransparentDecoder(nn.Module):
    """``D_a``: (frozen decoder output ``D(x_a)``, latent ``x_a``) → RGBA.

    A small U-Net: two 3x3 convolutions on ``D(x_a)`` at full resolution, a stride-2 stage per
    halving down to the latent resolution, where ``x_a`` is concatenated in, then per doubling a
    nearest-neighbour upsampling, a convolution and a skip concatenation with the matching
    down-path features; SiLU throughout; a last 3x3 convolution to ``C + 1`` channels
    (unconstrained; :meth:`LatentTransparency.decode` clamps to ``[-1, 1]``).

    Args:
        colour_channels: ``C``, channels of the frozen decoder's images.
        latent_channels: channels of the latent.
        downsample: the autoencoder's spatial reduction (a power of two).
        width: channels at full resolution (doubled per halving).
    """

    def __init__(self, colour_channels: int, latent_channels: int, downsample: int, *,
                 width: int = 16) -> None:
        super().__init__()
        _positive_int(colour_channels, "colour_channels")
        _positive_int(latent_channels, "latent_channels")
        _positive_int(width, "width")
        stages = _stages(downsample)
        widths = [width * 2 ** s for s in range(stages + 1)]
        self.stem = nn.Sequential(_conv(colour_channels, width), nn.SiLU(), _conv(width, width),
                                  nn.SiLU())
        self.down = nn.ModuleList(
            nn.Sequential(_conv(widths[s], widths[s + 1], stride=2), nn.SiLU(),
                          _conv(widths[s + 1], widths[s + 1]), nn.SiLU())
            for s in range(stages))
        self.mid = nn.Sequential(_conv(widths[-1] + latent_channels, widths[-1]), nn.SiLU(),
                                 _conv(widths[-1], widths[-1]), nn.SiLU())
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          _conv(widths[s + 1], widths[s]), nn.SiLU())
            for s in reversed(range(stages)))
        self.merge = nn.ModuleList(
            nn.Sequential(_conv(2 * widths[s], widths[s]), nn.SiLU())
            for s in reversed(range(stages)))
        self.out = _conv(width, colour_channels + 1)

    def forward(self, decoded: Tensor, latent: Tensor) -> Tensor:
        """RGBA ``[B, C + 1, H, W]`` (straight colour, then alpha) from ``D(x_a)`` and ``x_a``."""
        h = self.stem(decoded)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = self.mid(torch.cat([h, latent], dim=1))
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.out(h)


# --- the model -----------------------------------------------------------------------------------

@dataclass
class TransparentLatent:
    """What :meth:`LatentTransparency.encode` returns.

    Attributes:
        latent: the adjusted latent ``x_a = μ + s ⊙ offset`` ``[B, c, h, w]``.
        mean: the frozen posterior mean ``μ`` of the premultiplied image (the base latent ``x``).
        std: the posterior std ``s`` used (or ``fixed_std`` broadcast).
        offset: ``E_a``'s output, the offset in posterior-std units.
    """

    latent: Tensor
    mean: Tensor
    std: Tensor
    offset: Tensor


@dataclass
class TransparencyOutput:
    """What :meth:`LatentTransparency.forward` returns (everything the loss needs).

    Attributes:
        encoded: the :class:`TransparentLatent`.
        decoded: the frozen decoder's image of the adjusted latent, ``D(x_a)``.
        rgba: ``D_a``'s raw (unclamped) RGBA prediction ``[B, C + 1, H, W]``.
    """

    encoded: TransparentLatent
    decoded: Tensor
    rgba: Tensor


class LatentTransparency(nn.Module):
    """``E_a`` and ``D_a`` around a frozen autoencoder (LayerDiffusion; see the module doc).

    The autoencoder is frozen on construction (``requires_grad_(False)``, kept in eval mode by
    :meth:`train`); it is a submodule, so ``.to(device)`` and ``state_dict`` include it, but an
    optimiser over :meth:`trainable_parameters` or over ``parameters()`` (what
    :func:`train_transparency`'s trainer uses) never changes it: its parameters get no
    gradient and AdamW skips them.

    Args:
        autoencoder: the frozen :class:`~monge.latent.Autoencoder` of premultiplied colour
            images ``(C, H, W)``.
        width: full-resolution width of ``E_a`` and ``D_a``.
        output_scale: ``E_a``'s output scale (default 1; see the module doc for why not 300).
        fixed_std: a constant posterior std (latent units) replacing the VAE's; required for a
            deterministic autoencoder.

    Raises:
        InputError: not an Autoencoder, a deterministic one without ``fixed_std``, bad widths.
    """

    def __init__(self, autoencoder: Autoencoder, *, width: int = 16, output_scale: float = 1.0,
                 fixed_std: float | None = None) -> None:
        super().__init__()
        if not isinstance(autoencoder, Autoencoder):
            raise InputError(f"autoencoder: expected an Autoencoder, got "
                             f"{type(autoencoder).__name__}")
        if fixed_std is None and not autoencoder.variational:
            raise InputError("fixed_std: a deterministic autoencoder has no posterior std to "
                             "express the offset in; pass fixed_std (latent units) or use a "
                             "VAE (AutoencoderConfig(variational=True))")
        self.fixed_std = None if fixed_std is None else _positive_float(fixed_std, "fixed_std")
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        colour, height, width_px = autoencoder.image_shape
        c = autoencoder.latent_shape[0]
        f = autoencoder.config.downsample
        self.encoder = TransparencyEncoder(colour + 1, c, f, width=width,
                                           output_scale=output_scale)
        self.decoder = TransparentDecoder(colour, c, f, width=width)
        self._image_shape = (colour + 1, height, width_px)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C + 1, H, W)`` of the RGBA images."""
        return self._image_shape

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The frozen autoencoder's latent shape."""
        return self.autoencoder.latent_shape

    def train(self, mode: bool = True) -> LatentTransparency:
        super().train(mode)
        self.autoencoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of ``E_a`` and ``D_a`` (the frozen autoencoder's are excluded)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def check(self, rgba: object, name: str = "rgba") -> Tensor:
        """Return ``rgba`` if it is a finite batch ``[B, C + 1, H, W]``; else InputError."""
        return _check_rgba(rgba, self.image_shape, name)

    def encode(self, rgba: Tensor) -> TransparentLatent:
        """Adjusted latent ``x_a = μ + s ⊙ E_a([alpha, pad(colour)])`` of RGBA images."""
        rgba = self.check(rgba)
        with torch.no_grad():
            mean, std = self.autoencoder.encode_dist(premultiply(rgba))
        if self.fixed_std is not None:
            std = torch.full_like(mean, self.fixed_std)
        features = torch.cat([rgba[:, -1:], pad_colour(rgba)], dim=1)
        offset = self.encoder(features)
        return TransparentLatent(latent=mean + std * offset, mean=mean, std=std, offset=offset)

    def forward(self, rgba: Tensor) -> TransparencyOutput:
        """Encode, decode with the frozen decoder, then with ``D_a`` (raw output)."""
        encoded = self.encode(rgba)
        decoded = self.autoencoder.decode(encoded.latent)
        return TransparencyOutput(encoded, decoded, self.decoder(decoded, encoded.latent))

    def decode(self, latent: Tensor) -> Tensor:
        """RGBA images ``[B, C + 1, H, W]`` in ``[-1, 1]`` from (adjusted or generated) latents:
        ``D_a(D(x_a), x_a)``, clamped."""
        if not isinstance(latent, Tensor) or latent.ndim != 4 or \
                tuple(latent.shape[1:]) != self.latent_shape:
            got = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise InputError(f"latent: expected [B, {', '.join(map(str, self.latent_shape))}], "
                             f"got {got}")
        check_finite(latent, "latent")
        return self.decoder(self.autoencoder.decode(latent), latent).clamp(-1, 1)


# --- objective and training ----------------------------------------------------------------------

@dataclass
class TransparencyLossTerms:
    """Per-example terms of :class:`TransparencyLoss` (``[B]`` tensors; ``total`` carries the
    graph).

    Attributes:
        total: ``reconstruction + identity_weight · identity``.
        reconstruction: ``L_rec = colour + alpha``.
        colour: mean squared error of the straight colour ``Î_c``.
        alpha: mean squared error of the alpha ``Î_a``.
        identity: ``L_id``, mean squared difference of ``D(x_a)`` and ``D(x)``.
    """

    total: Tensor
    reconstruction: Tensor
    colour: Tensor
    alpha: Tensor
    identity: Tensor


class TransparencyLoss(nn.Module):
    """``L = L_rec + λ_id·L_id`` (see the module doc), in the trainer's ``loss(model, x0, x1,
    y1, generator)`` form: the RGBA images are ``x1`` (``x0``, ``y1`` and the generator are
    unused; nothing here is random).

    Args:
        identity_weight: ``λ_id`` (the paper's 1; 0 for the ablation without ``L_id``).
    """

    def __init__(self, identity_weight: float = 1.0) -> None:
        super().__init__()
        self.identity_weight = _positive_float(identity_weight, "identity_weight",
                                               allow_zero=True)

    def terms(self, model: LatentTransparency, rgba: Tensor) -> TransparencyLossTerms:
        """The per-example terms for RGBA images ``rgba``."""
        out = model(rgba)
        with torch.no_grad():
            base = model.autoencoder.decode(out.encoded.mean)
        colour = (out.rgba[:, :-1] - rgba[:, :-1]).pow(2).flatten(1).mean(1)
        alpha = (out.rgba[:, -1:] - rgba[:, -1:]).pow(2).flatten(1).mean(1)
        identity = (out.decoded - base).pow(2).flatten(1).mean(1)
        reconstruction = colour + alpha
        return TransparencyLossTerms(reconstruction + self.identity_weight * identity,
                                     reconstruction, colour, alpha, identity)

    def forward(self, model: nn.Module, x0: Tensor | None, x1: Tensor, y1: Tensor | None = None,
                generator: torch.Generator | None = None) -> LossOutput:
        net = getattr(model, "module", model)  # DDP-wrapped or not
        terms = self.terms(net, x1)
        return LossOutput(terms.total.mean(), terms.total.detach(),
                          torch.zeros(x1.shape[0], device=x1.device, dtype=x1.dtype))


def _rgba_images(model: LatentTransparency, data: Tensor | Dataset, name: str,
                 split: str = "train") -> Tensor:
    images = getattr(data, split) if isinstance(data, Dataset) else data
    return model.check(images, name)


def train_transparency(model: LatentTransparency, data: Tensor | Dataset, *,
                       identity_weight: float = 1.0, steps: int = 1000, batch_size: int = 64,
                       lr: float = 1e-3, seed: int = 0, progress: bool = False,
                       out_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``E_a`` and ``D_a`` of ``model`` in place on RGBA images; the autoencoder stays
    frozen.

    Uses :class:`~monge.train.Trainer` with :class:`TransparencyLoss`: AdamW (the frozen
    autoencoder's parameters get no gradient, so only
    :meth:`LatentTransparency.trainable_parameters` move), a linear warm-up over
    ``min(100, steps // 10)`` steps then cosine decay, gradient clipping at 1, no EMA. Batches
    are drawn uniformly with replacement.

    Args:
        model: the :class:`LatentTransparency` (its device is the training device).
        data: RGBA images ``[N, C + 1, H, W]`` in ``[-1, 1]``, or a Dataset (training split).
        identity_weight: ``λ_id`` (0: the ablation without the identity loss).
        steps, batch_size, lr: optimisation budget and peak learning rate.
        seed: seed of the trainer's generator.
        progress: show a progress bar.
        out_dir: keep ``checkpoint.safetensors`` and ``log.jsonl`` there; ``resume`` continues
            from it bit for bit.

    Returns:
        The trainer's :class:`~monge.train.TrainResult`; ``model`` is left in eval mode.

    Raises:
        InputError: not a LatentTransparency, images of the wrong shape, NaN/Inf, bad budget.
    """
    if not isinstance(model, LatentTransparency):
        raise InputError(f"model: expected a LatentTransparency, got {type(model).__name__}")
    images = _rgba_images(model, data, "data")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        _positive_int(value, name)
    _positive_float(lr, "lr")
    loss = TransparencyLoss(identity_weight)
    sample_batch = image_batches(images, next(model.parameters()).device)
    config = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr,
                           warmup_steps=min(100, steps // 10), ema_decay=0.0,
                           checkpoint_every=max(steps, 1), log_every=max(1, steps // 20),
                           seed=int(seed))
    trainer = Trainer(model, loss, sample_batch, config, out_dir=out_dir,
                      metadata={"kind": "monge.latent_transparency",
                                "identity_weight": loss.identity_weight},
                      progress=progress)
    # the trainer optimises model.parameters(); the frozen autoencoder's get no gradient, and
    # AdamW skips parameters without one, so they never move
    result = trainer.fit(resume=resume)
    model.eval()
    return result


# --- measurements --------------------------------------------------------------------------------

def alpha_iou(alpha: Tensor, reference: Tensor, threshold: float = 0.0) -> Tensor:
    """Intersection over union of the masks ``alpha > threshold`` and ``reference >
    threshold``, per image.

    Alphas are in monge's ``[-1, 1]`` convention (``2·coverage − 1``), so the default threshold
    0 is coverage 1/2. Images where both masks are empty score 1.

    Args:
        alpha, reference: ``[B, 1, H, W]`` or ``[B, H, W]`` alphas (same shape).
        threshold: mask threshold.

    Returns:
        ``[B]`` IoU in ``[0, 1]``.

    Example:
        >>> a = torch.tensor([[[1.0, 1.0], [-1.0, -1.0]]])
        >>> float(alpha_iou(a, torch.tensor([[[1.0, -1.0], [-1.0, -1.0]]])))
        0.5
    """
    for value, name in ((alpha, "alpha"), (reference, "reference")):
        if not isinstance(value, Tensor) or value.ndim not in (3, 4) or \
                (value.ndim == 4 and value.shape[1] != 1):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise InputError(f"{name}: expected alphas [B, 1, H, W] or [B, H, W], got {got}")
        check_finite(value, name)
    if alpha.shape != reference.shape:
        raise InputError(f"alpha and reference: shapes differ ({tuple(alpha.shape)} vs "
                         f"{tuple(reference.shape)})")
    a, b = (alpha > threshold).flatten(1), (reference > threshold).flatten(1)
    inter = (a & b).sum(1).double()
    union = (a | b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@dataclass
class LatentShift:
    """How far a set of adjusted latents lies from the base latents, as distributions.

    Attributes:
        frechet: Fréchet distance between Gaussians fitted to the flattened latent sets.
        relative_frechet: ``frechet / tr Cov(base)`` (dimensionless; 0 is no shift).
        mmd: unbiased RBF MMD² (bandwidth: median pairwise distance of the pooled sample),
            about 0 for the same law.
    """

    frechet: float
    relative_frechet: float
    mmd: float


def latent_shift(adjusted: Tensor, base: Tensor, *, mmd_points: int = 2000,
                 generator: int | torch.Generator = 0) -> LatentShift:
    """Distribution shift between adjusted latents ``x_a`` and base latents ``x``.

    Fréchet distance (``O(N·d² + d³)``) and the unbiased RBF MMD² (``O(n²·d)``, at most
    ``mmd_points`` rows per side, subsampled with ``generator``) of the flattened latents; the
    pairing of rows is not used.

    Args:
        adjusted: ``[N, ...]`` adjusted latents (N ≥ 2).
        base: ``[M, ...]`` base latents (M ≥ 2), same per-sample shape.

    Returns:
        A :class:`LatentShift`.
    """
    for value, name in ((adjusted, "adjusted"), (base, "base")):
        if not isinstance(value, Tensor) or value.ndim < 2 or value.shape[0] < 2:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise InputError(f"{name}: expected latents [N, ...] with N >= 2, got {got}")
        check_finite(value, name)
    if adjusted.shape[1:] != base.shape[1:]:
        raise InputError(f"adjusted and base: per-sample shapes differ "
                         f"({tuple(adjusted.shape[1:])} vs {tuple(base.shape[1:])})")
    xa = adjusted.detach().flatten(1).double().cpu()
    xb = base.detach().flatten(1).double().cpu()
    frechet = feature_frechet_distance(xa, xb)
    spread = float(xb.var(dim=0, unbiased=True).sum())
    mmd = mmd_rbf(xa, xb, max_points=mmd_points, generator=generator)
    return LatentShift(frechet=frechet, relative_frechet=frechet / max(spread, 1e-300),
                       mmd=mmd)


@dataclass
class FlowLossGap:
    """A frozen flow's flow-matching loss on adjusted vs base latents (same draws).

    Attributes:
        adjusted_loss: mean loss on ``x_a``.
        base_loss: mean loss on ``x``.
        increase: ``adjusted_loss − base_loss``.
        relative_increase: ``increase / base_loss``.
        standard_error: standard error of ``increase`` (paired per example and draw).
        draws: ``(t, noise)`` draws per latent.
    """

    adjusted_loss: float
    base_loss: float
    increase: float
    relative_increase: float
    standard_error: float
    draws: int


@torch.no_grad()
def frozen_flow_loss_gap(field: nn.Module, adjusted: Tensor, base: Tensor, *,
                         path: AffinePath | None = None, draws: int = 4, batch_size: int = 512,
                         generator: int | torch.Generator = 0) -> FlowLossGap:
    """Flow-matching loss of a frozen velocity field on ``x_a`` vs on ``x``, paired.

    For every latent pair ``(x_a[i], x[i])`` and each of ``draws`` draws, the same time
    ``t ~ U[0, 1]`` and source noise ``x0 ~ N(0, I)`` are used for both, so the difference
    measures only how much worse the field fits the adjusted latents:
    ``ℓ(x1) = mean ‖field(x_t, t) − u_t(x0, x1)‖²`` with ``x_t = α(t)·x1 + σ(t)·x0`` and
    ``u_t`` the path's velocity target (default the linear path, ``u_t = x1 − x0``). Cost:
    ``2·draws·N`` field evaluations, without gradients.

    Args:
        field: velocity field ``field(x, t) -> velocity`` (e.g. a ModelWrapper or the network
            of a velocity-prediction flow), in the latent space the latents are given in.
        adjusted: adjusted latents ``[N, ...]``.
        base: base latents ``[N, ...]``, paired with ``adjusted`` row by row.
        path: the flow's affine path (default :class:`~monge.paths.LinearPath`).
        draws: ``(t, x0)`` draws per latent.
        batch_size: latents per field call.
        generator: seed or generator of the draws (on the latents' device).

    Returns:
        A :class:`FlowLossGap`.
    """
    if not callable(field):
        raise InputError(f"field: expected a callable field(x, t), got {type(field).__name__}")
    for value, name in ((adjusted, "adjusted"), (base, "base")):
        if not isinstance(value, Tensor) or value.ndim < 2 or value.shape[0] < 2:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise InputError(f"{name}: expected latents [N, ...] with N >= 2, got {got}")
        check_finite(value, name)
    if adjusted.shape != base.shape:
        raise InputError(f"adjusted and base: expected paired latents of one shape, got "
                         f"{tuple(adjusted.shape)} and {tuple(base.shape)}")
    _positive_int(draws, "draws")
    _positive_int(batch_size, "batch_size")
    path = path or LinearPath()
    gen = make_generator(generator, adjusted.device)
    diffs, a_losses, b_losses = [], [], []
    for _ in range(draws):
        for start in range(0, adjusted.shape[0], batch_size):
            xa = adjusted[start:start + batch_size]
            xb = base[start:start + batch_size]
            t = torch.rand(xa.shape[0], generator=gen, device=xa.device, dtype=xa.dtype)
            x0 = torch.randn(xa.shape, generator=gen, device=xa.device, dtype=xa.dtype)
            losses = []
            for x1 in (xa, xb):
                xt = path.sample_xt(x0, x1, t)
                target = path.target("velocity", x0, x1, t)
                losses.append((field(xt, t) - target).double().pow(2).flatten(1).mean(1))
            a_losses.append(losses[0])
            b_losses.append(losses[1])
            diffs.append(losses[0] - losses[1])
    diff = torch.cat(diffs)
    adjusted_loss, base_loss = float(torch.cat(a_losses).mean()), float(torch.cat(b_losses).mean())
    increase = float(diff.mean())
    return FlowLossGap(adjusted_loss=adjusted_loss, base_loss=base_loss, increase=increase,
                       relative_increase=increase / max(base_loss, 1e-300),
                       standard_error=float(diff.std() / math.sqrt(diff.numel())),
                       draws=draws)


@dataclass
class TransparencyScore:
    """Reconstruction quality of a trained :class:`LatentTransparency` on RGBA images.

    Attributes:
        colour_psnr: PSNR (dB, ``[-1, 1]`` images) of the straight colour ``Î_c``.
        premultiplied_psnr: PSNR of the premultiplied reconstruction vs ``I_p``.
        alpha_psnr: PSNR of the alpha channel.
        alpha_iou: mean per-image IoU of the alpha masks (threshold 0, coverage 1/2).
        identity_mse: mean ``‖D(x_a) − D(x)‖²`` per element (``L_id``).
        offset_rms: root mean square of the offset in posterior-std units.
        shift: :class:`LatentShift` of the adjusted vs base latents of these images.
    """

    colour_psnr: float
    premultiplied_psnr: float
    alpha_psnr: float
    alpha_iou: float
    identity_mse: float
    offset_rms: float
    shift: LatentShift


@torch.no_grad()
def evaluate_transparency(model: LatentTransparency, rgba: Tensor | Dataset, *,
                          batch_size: int = 512) -> TransparencyScore:
    """Encode and decode RGBA images (a Dataset: its test split) and score the round trip.

    PSNRs are means over images of the per-image PSNR (peak-to-peak 2).

    Returns:
        A :class:`TransparencyScore` (with the latent shift of ``x_a`` vs ``x`` on these
        images).
    """
    if not isinstance(model, LatentTransparency):
        raise InputError(f"model: expected a LatentTransparency, got {type(model).__name__}")
    images = _rgba_images(model, rgba, "rgba", split="test")
    _positive_int(batch_size, "batch_size")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: dict[str, list[Tensor]] = {k: [] for k in ("c", "p", "a", "iou", "id", "off", "xa",
                                                      "x")}
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        out = model(batch)
        pred = out.rgba.clamp(-1, 1)
        base = model.autoencoder.decode(out.encoded.mean)
        rows["c"].append(psnr(pred[:, :-1], batch[:, :-1]))
        rows["p"].append(psnr(premultiply(pred), premultiply(batch)))
        rows["a"].append(psnr(pred[:, -1:], batch[:, -1:]))
        rows["iou"].append(alpha_iou(pred[:, -1:], batch[:, -1:]))
        rows["id"].append((out.decoded - base).double().pow(2).flatten(1).mean(1))
        rows["off"].append(out.encoded.offset.double().pow(2).flatten(1).mean(1))
        rows["xa"].append(out.encoded.latent)
        rows["x"].append(out.encoded.mean)
    model.train(was_training)
    cat = {k: torch.cat(v) for k, v in rows.items()}
    return TransparencyScore(
        colour_psnr=float(cat["c"].mean()), premultiplied_psnr=float(cat["p"].mean()),
        alpha_psnr=float(cat["a"].mean()), alpha_iou=float(cat["iou"].mean()),
        identity_mse=float(cat["id"].mean()), offset_rms=float(cat["off"].mean().sqrt()),
        shift=latent_shift(cat["xa"], cat["x"]))
