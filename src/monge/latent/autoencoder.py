"""A small convolutional autoencoder (deterministic or VAE) for latent transport.

Images ``[B, C, H, W]`` map to latents ``[B, c, H/f, W/f]`` (``f`` a power of two) and back.
The network is a plain stack of residual blocks (GroupNorm, SiLU, 3x3 convolutions) with one
stride-2 convolution per halving on the way down and nearest-neighbour upsampling plus a 3x3
convolution per doubling on the way up (the layout of the first-stage autoencoders of latent
diffusion, Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models",
CVPR 2022, without attention or a discriminator). Widths double at each halving.

The variational variant (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) has an
encoder that outputs the posterior mean and log-std per latent element; training decodes the
reparameterised sample ``z = μ + σ·ε`` and adds ``kl_weight`` times the KL divergence to
N(0, I). :meth:`Autoencoder.encode` returns the mean; :meth:`Autoencoder.encode_dist` returns
``(mean, std)``, the posterior std in whose units LayerDiffusion expresses its latent offset.

Training goes through monge's :class:`~monge.train.Trainer` (AdamW, warm-up + cosine schedule,
gradient clipping, checkpoints and a bit-for-bit resume) with :class:`AutoencoderLoss` as the
objective; checkpoints are safetensors files whose metadata holds the configuration, so
:func:`load_autoencoder` rebuilds the network without unpickling anything.

Example:
    >>> import torch
    >>> ae = Autoencoder(AutoencoderConfig(image_shape=(3, 16, 16), latent_channels=4,
    ...                                    downsample=4, width=8))
    >>> x = torch.rand(2, 3, 16, 16) * 2 - 1
    >>> ae.encode(x).shape, ae.decode(ae.encode(x)).shape
    (torch.Size([2, 4, 4, 4]), torch.Size([2, 3, 16, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from monge.data import Dataset
from monge.errors import DataError, InputError
from monge.train import LossOutput, Trainer, TrainerConfig, TrainResult
from monge.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderLoss",
    "AutoencoderOutput",
    "ReconstructionScore",
    "check_images",
    "load_autoencoder",
    "psnr",
    "reconstruction_score",
    "save_autoencoder",
    "train_autoencoder",
]

CHECKPOINT_KIND = "monge.autoencoder"
FORMAT_VERSION = 1
LOG_STD_RANGE = (-10.0, 4.0)
"""The VAE's log-std is clamped to this range (keeps ``exp`` and the KL finite)."""


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of an :class:`Autoencoder` (stored in its checkpoint).

    Attributes:
        image_shape: ``(C, H, W)`` of the images; ``H`` and ``W`` divisible by ``downsample``.
        latent_channels: ``c``, channels of the latent.
        downsample: ``f``, the spatial reduction (1, 2, 4 or 8).
        width: channels of the first stage (doubled at each halving).
        variational: a VAE (posterior mean and std) instead of a deterministic encoder.
        kl_weight: weight of the KL term relative to the reconstruction MSE (both are means
            over elements: KL per latent element, squared error per pixel); VAE only.
        blocks: residual blocks per stage (0: convolutions only).
    """

    image_shape: tuple[int, int, int]
    latent_channels: int = 4
    downsample: int = 2
    width: int = 32
    variational: bool = False
    kl_weight: float = 1e-3
    blocks: int = 1

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.image_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"image_shape: expected (C, H, W) of positive integers, got "
                             f"{self.image_shape!r}")
        object.__setattr__(self, "image_shape", shape)
        f = self.downsample
        if f not in (1, 2, 4, 8):
            raise InputError(f"downsample: expected 1, 2, 4 or 8, got {f!r}")
        if shape[1] % f or shape[2] % f:
            raise InputError(f"downsample: {f} does not divide the image size "
                             f"{shape[1]}x{shape[2]}")
        for name, least in (("latent_channels", 1), ("width", 1), ("blocks", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name}: expected an integer >= {least}, got {value!r}")
        if not (isinstance(self.kl_weight, int | float) and self.kl_weight >= 0
                and math.isfinite(self.kl_weight)):
            raise InputError(f"kl_weight: expected a non-negative number, got "
                             f"{self.kl_weight!r}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(c, H/f, W/f)``."""
        _, h, w = self.image_shape
        return (self.latent_channels, h // self.downsample, w // self.downsample)


@dataclass
class AutoencoderOutput:
    """What :meth:`Autoencoder.forward` returns.

    Attributes:
        reconstruction: decoded images ``[B, C, H, W]``.
        latent: the latent that was decoded (the mean, or ``μ + σ·ε`` when noise was given).
        mean: posterior mean ``[B, c, h, w]`` (the latent of a deterministic encoder).
        log_std: posterior log-std (VAE), ``None`` for a deterministic encoder.
    """

    reconstruction: Tensor
    latent: Tensor
    mean: Tensor
    log_std: Tensor | None


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(_groups(channels), channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(_groups(channels), channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Autoencoder(nn.Module):
    """Convolutional autoencoder ``[B, C, H, W] <-> [B, c, H/f, W/f]`` (see the module doc).

    Args:
        config: the :class:`AutoencoderConfig`.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        if not isinstance(config, AutoencoderConfig):
            raise InputError(f"config: expected AutoencoderConfig, got {type(config).__name__}")
        self.config = config
        channels, c = config.image_shape[0], config.latent_channels
        stages = int(math.log2(config.downsample))
        widths = [config.width * 2 ** s for s in range(stages + 1)]

        down: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        for s in range(stages):
            down += [_ResidualBlock(widths[s]) for _ in range(config.blocks)]
            down.append(nn.Conv2d(widths[s], widths[s + 1], 3, stride=2, padding=1))
        down += [_ResidualBlock(widths[-1]) for _ in range(config.blocks)]
        down += [nn.GroupNorm(_groups(widths[-1]), widths[-1]), nn.SiLU(),
                 nn.Conv2d(widths[-1], 2 * c if config.variational else c, 3, padding=1)]
        self.encoder = nn.Sequential(*down)

        up: list[nn.Module] = [nn.Conv2d(c, widths[-1], 3, padding=1)]
        up += [_ResidualBlock(widths[-1]) for _ in range(config.blocks)]
        for s in reversed(range(stages)):
            up += [nn.Upsample(scale_factor=2, mode="nearest"),
                   nn.Conv2d(widths[s + 1], widths[s], 3, padding=1)]
            up += [_ResidualBlock(widths[s]) for _ in range(config.blocks)]
        up += [nn.GroupNorm(_groups(widths[0]), widths[0]), nn.SiLU(),
               nn.Conv2d(widths[0], channels, 3, padding=1)]
        self.decoder = nn.Sequential(*up)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images it encodes."""
        return self.config.image_shape

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(c, H/f, W/f)`` of its latents."""
        return self.config.latent_shape

    @property
    def variational(self) -> bool:
        return self.config.variational

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior ``(mean, log_std)`` of images ``x`` (``log_std`` is ``None`` for a
        deterministic encoder)."""
        check_images(self, x, "x")
        h = self.encoder(x)
        if not self.variational:
            return h, None
        mean, log_std = h.chunk(2, dim=1)
        return mean, log_std.clamp(*LOG_STD_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """Latent of ``x`` ``[B, C, H, W]``: ``[B, c, H/f, W/f]`` (the posterior mean)."""
        return self.moments(x)[0]

    def encode_dist(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior ``(mean, std)`` of ``x``; a deterministic encoder's std is 0 (a point
        mass)."""
        mean, log_std = self.moments(x)
        return mean, torch.zeros_like(mean) if log_std is None else log_std.exp()

    def decode(self, z: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` from latents ``[B, c, H/f, W/f]``."""
        if z.ndim != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise InputError(f"z: latents of shape {tuple(z.shape[1:])} do not match the "
                             f"autoencoder's latent shape {self.latent_shape}")
        return self.decoder(z)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> AutoencoderOutput:
        """Encode and decode ``x``; with ``noise`` (a VAE), decode ``μ + σ·noise``."""
        mean, log_std = self.moments(x)
        latent = mean if noise is None or log_std is None else mean + log_std.exp() * noise
        return AutoencoderOutput(self.decode(latent), latent, mean, log_std)

    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(encode(x))`` (the posterior mean, no sampling)."""
        return self.decode(self.encode(x))


def check_images(ae: Autoencoder, x: Tensor, name: str = "images") -> None:
    """Raise :class:`InputError` (one line, naming ``name``) unless ``x`` is a batch of
    images of the autoencoder's image shape."""
    if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != ae.image_shape:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name}: images of shape {shape} do not match the autoencoder's "
                         f"image shape [B, {', '.join(map(str, ae.image_shape))}]")


class AutoencoderLoss(nn.Module):
    """Objective of :func:`train_autoencoder` in the trainer's ``loss(model, x0, x1, y1,
    generator)`` form: the images are ``x1`` (``x0`` and ``y1`` are unused).

    Per example: the mean squared error of the reconstruction plus, for a VAE, ``kl_weight``
    times the mean over latent elements of ``KL(N(μ, σ²) ‖ N(0, 1)) = (μ² + σ² − 1)/2 −
    log σ``, with the reparameterised sample ``μ + σ·ε`` (``ε`` from the generator) decoded.
    """

    def forward(self, model: nn.Module, x0: Tensor | None, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None) -> LossOutput:
        ae = getattr(model, "module", model)  # DDP-wrapped or not
        noise = None
        if ae.variational:
            noise = torch.randn((x1.shape[0], *ae.latent_shape), generator=generator,
                                device=x1.device, dtype=x1.dtype)
        out = model(x1, noise=noise)
        per_example = (out.reconstruction - x1).pow(2).flatten(1).mean(dim=1)
        if out.log_std is not None:
            kl = 0.5 * (out.mean.pow(2) + (2 * out.log_std).exp() - 1) - out.log_std
            per_example = per_example + ae.config.kl_weight * kl.flatten(1).mean(dim=1)
        return LossOutput(per_example.mean(), per_example.detach(),
                          torch.zeros(x1.shape[0], device=x1.device, dtype=x1.dtype))


def _images(data: Tensor | Dataset) -> Tensor:
    images = data.train if isinstance(data, Dataset) else data
    if not isinstance(images, Tensor):
        raise InputError(f"data: expected an image tensor or a Dataset, got "
                         f"{type(data).__name__}")
    if not torch.isfinite(images).all():
        raise InputError("data: holds NaN or Inf")
    return images


def image_batches(images: Tensor, device: torch.device
                  ) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor, None]]:
    """The trainer's ``sample_batch`` for reconstruction training: ``n`` rows of ``images``
    drawn uniformly with replacement, returned as both input and target (moved to ``device``
    once)."""
    images = images.to(device)

    def sample_batch(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, None]:
        index = torch.randint(images.shape[0], (n,), generator=generator,
                              device=generator.device).to(device)
        batch = images[index]
        return batch, batch, None
    return sample_batch


def train_autoencoder(ae: Autoencoder, data: Tensor | Dataset, *, steps: int = 2000,
                      batch_size: int = 128, lr: float = 2e-3, seed: int | torch.Generator = 0,
                      progress: bool = False, out_dir: str | Path | None = None,
                      resume: bool = False) -> TrainResult:
    """Train ``ae`` in place on images ``[N, C, H, W]`` (or a Dataset's training split).

    Uses :class:`~monge.train.Trainer` with :class:`AutoencoderLoss`: AdamW, a linear warm-up
    over ``min(100, steps // 10)`` steps then cosine decay, gradient clipping at 1, no EMA
    (the trained weights are the model's). Batches are drawn uniformly with replacement.

    Args:
        ae: the autoencoder (its device is the training device).
        data: images of ``ae.image_shape``, or a :class:`~monge.data.Dataset`.
        steps, batch_size, lr: optimisation budget and peak learning rate.
        seed: seed of the trainer's generator (a ``torch.Generator`` gives one draw of it).
        progress: show a progress bar.
        out_dir: keep ``checkpoint.safetensors`` (loadable by :func:`load_autoencoder`) and
            ``log.jsonl`` there; ``resume`` continues from it bit for bit.

    Returns:
        The trainer's :class:`~monge.train.TrainResult` (losses, time); ``ae`` is left in eval
        mode.

    Raises:
        InputError: images of another shape than ``ae.image_shape`` (one line), NaN/Inf.
    """
    images = _images(data)
    check_images(ae, images, "data")
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(2 ** 62, (1,), generator=seed, device=seed.device))
    sample_batch = image_batches(images, next(ae.parameters()).device)
    config = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr,
                           warmup_steps=min(100, steps // 10), ema_decay=0.0,
                           checkpoint_every=max(steps, 1), seed=int(seed))
    trainer = Trainer(ae, AutoencoderLoss(), sample_batch, config, out_dir=out_dir,
                      metadata=_metadata(ae), progress=progress)
    result = trainer.fit(resume=resume)
    ae.eval()
    return result


def _metadata(ae: Autoencoder) -> dict[str, Any]:
    return {"kind": CHECKPOINT_KIND, "format": FORMAT_VERSION, "config": asdict(ae.config)}


def save_autoencoder(ae: Autoencoder, path: str | Path) -> Path:
    """Write ``ae`` to a safetensors file (weights as ``model.*``, configuration in the
    header metadata), atomically; a readable ``<name>.json`` copy of the metadata goes next
    to it. Returns the path."""
    tensors = {f"model.{k}": v for k, v in ae.state_dict().items()}
    return save_checkpoint(path, tensors, _metadata(ae))


def load_autoencoder(path: str | Path, device: torch.device | str = "cpu") -> Autoencoder:
    """Rebuild an autoencoder from :func:`save_autoencoder`'s file (or the trainer checkpoint
    :func:`train_autoencoder` keeps in ``out_dir``), in eval mode on ``device``.

    Raises:
        DataError: a missing or corrupt file, or one that does not hold an autoencoder (one
            line naming the file).
    """
    tensors, state = load_checkpoint(path, device="cpu")
    if state.get("kind") != CHECKPOINT_KIND or not isinstance(state.get("config"), dict):
        raise DataError(f"{path}: not an autoencoder checkpoint (no {CHECKPOINT_KIND} "
                        "configuration in its metadata)")
    if state.get("format") != FORMAT_VERSION:
        raise DataError(f"{path}: autoencoder checkpoint format {state.get('format')!r}; this "
                        f"version of monge reads format {FORMAT_VERSION}")
    try:
        config = AutoencoderConfig(**state["config"])
    except (TypeError, InputError) as exc:
        raise DataError(f"{path}: invalid autoencoder configuration ({exc})") from None
    ae = Autoencoder(config)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        ae.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(f"{path}: weights do not match the stored configuration "
                        f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    return ae.to(device).eval()


def psnr(x: Tensor, reference: Tensor, peak_to_peak: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10·log10(peak_to_peak² / MSE)`` in dB.

    The default peak-to-peak of 2 is monge's image range ``[-1, 1]``; identical images give
    ``inf``.

    Returns:
        ``[B]`` PSNR of each image of ``x`` against ``reference`` (same shape ``[B, ...]``).
    """
    if x.shape != reference.shape or x.ndim < 2:
        raise InputError(f"psnr: expected two batches of the same shape, got "
                         f"{tuple(x.shape)} and {tuple(reference.shape)}")
    mse = (x.double() - reference.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(peak_to_peak ** 2 / mse)).to(x.dtype)


@dataclass
class ReconstructionScore:
    """Reconstruction quality of an autoencoder on a set of images.

    Attributes:
        mse: mean squared error per pixel (``[-1, 1]`` units).
        psnr: mean over images of the per-image PSNR (dB, peak-to-peak 2).
        baseline_mse: MSE of predicting every image by the set's mean image (the floor any
            useful autoencoder must beat).
    """

    mse: float
    psnr: float
    baseline_mse: float


@torch.no_grad()
def reconstruction_score(ae: Autoencoder, images: Tensor | Dataset, batch_size: int = 512
                         ) -> ReconstructionScore:
    """Reconstruct ``images`` (a Dataset: its test split) through the posterior mean and
    score them (see :class:`ReconstructionScore`)."""
    if isinstance(images, Dataset):
        images = images.test
    check_images(ae, images)
    device = next(ae.parameters()).device
    was_training = ae.training
    ae.eval()
    squared, peaks = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        recon = ae.reconstruct(batch)
        squared.append((recon - batch).double().pow(2).flatten(1).mean(dim=1).cpu())
        peaks.append(psnr(recon, batch).double().cpu())
    ae.train(was_training)
    mean_image = images.double().mean(dim=0, keepdim=True)
    baseline = (images.double() - mean_image).pow(2).mean()
    return ReconstructionScore(mse=float(torch.cat(squared).mean()),
                               psnr=float(torch.cat(peaks).mean()),
                               baseline_mse=float(baseline))
