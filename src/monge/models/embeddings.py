"""Time and class embeddings shared by every network in :mod:`monge.models`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.errors import InputError

__all__ = ["GuidanceEmbedding", "SinusoidalTimeEmbedding", "as_batch_time", "class_indices"]


def as_batch_time(t: Tensor | float, batch_size: int, device: torch.device) -> Tensor:
    """Return the time as a 1-D tensor ``[B]`` on ``device``.

    Accepts a Python number or 0-d tensor (broadcast to every sample), or a tensor of shape
    ``[B]``, ``[1]`` or ``[B, 1]``.

    Raises:
        InputError: any other shape, or a non-finite time.
    """
    t = torch.as_tensor(t, device=device)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == 1):
        t = t.reshape(1).expand(batch_size)
    if t.ndim != 1 or t.shape[0] != batch_size:
        raise InputError(
            f"t: expected a scalar or shape [{batch_size}] (or [{batch_size}, 1]), got shape "
            f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError("t: contains NaN or Inf values")
    return t


def class_indices(y: Tensor | None, batch_size: int, num_classes: int | None,
                  device: torch.device) -> Tensor | None:
    """Validate class labels for a conditional model; ``None`` means the null class everywhere.

    Returns ``None`` for an unconditional model (``num_classes is None``), else int64 ``[B]`` in
    ``0..num_classes`` where index ``num_classes`` is the null class (classifier-free guidance).

    Raises:
        InputError: labels given to an unconditional model, wrong shape, non-integer or out of
            range.
    """
    if num_classes is None:
        if y is not None:
            raise InputError("y: the model is unconditional (num_classes=None), got labels")
        return None
    if y is None:
        return torch.full((batch_size,), num_classes, dtype=torch.long, device=device)
    y = torch.as_tensor(y, device=device)
    if y.ndim == 0:
        y = y.reshape(1).expand(batch_size)
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(f"y: expected integer class labels, got dtype {y.dtype}")
    if y.shape != (batch_size,):
        raise InputError(f"y: expected shape [{batch_size}], got {tuple(y.shape)}")
    if bool((y < 0).any()) or bool((y > num_classes).any()):
        raise InputError(
            f"y: labels must lie in 0..{num_classes} ({num_classes} = null class), got range "
            f"{int(y.min())}..{int(y.max())}")
    return y.long()


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of a time ``t in [0, 1]``: ``[B] -> [B, dim]``, no parameters.

    Method: Transformer positional encoding (Vaswani et al., "Attention Is All You Need", 2017)
    as used for diffusion time steps (Ho et al., "Denoising Diffusion Probabilistic Models",
    2020). The time is first multiplied by ``scale`` (default 1000) so that ``[0, 1]`` spans the
    same range as the integer steps ``0..1000`` the frequencies were designed for; without it the
    low frequencies would barely move over ``[0, 1]``. With ``half = dim // 2`` and frequencies
    ``f_k = max_period ** (-k / half)``, the output is
    ``[cos(scale*t*f_0), ..., cos(scale*t*f_{half-1}), sin(...), ...]`` (a zero column is appended
    when ``dim`` is odd). Computed in at least float32; cost O(B * dim).

    Args:
        dim: output width.
        max_period: longest period of the sinusoids (in units of ``scale * t``).
        scale: factor applied to ``t`` before the sinusoids.

    Example:
        >>> emb = SinusoidalTimeEmbedding(64)
        >>> emb(torch.rand(5)).shape
        torch.Size([5, 64])
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if dim < 2:
            raise InputError(f"dim: expected at least 2, got {dim}")
        self.dim = int(dim)
        self.max_period = float(max_period)
        self.scale = float(scale)

    def forward(self, t: Tensor) -> Tensor:
        """Embed ``t`` of shape ``[B]`` (also a scalar or ``[B, 1]``) into ``[B, dim]``."""
        t = torch.as_tensor(t)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        t = t.reshape(-1)
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
        half = self.dim // 2
        exponent = torch.arange(half, device=t.device, dtype=dtype) / half
        frequencies = torch.exp(-math.log(self.max_period) * exponent)
        angles = self.scale * t.to(dtype)[:, None] * frequencies[None, :]
        embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        if self.dim % 2:
            embedding = nn.functional.pad(embedding, (0, 1))
        return embedding

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}, scale={self.scale:g}"


class GuidanceEmbedding(nn.Module):
    """Embedding of a guidance weight w, added to the time embedding: ``[B] -> [B, dim]``.

    Luo et al. (2023), "Latent Consistency Models" (LCM): a student distilled from a guided
    teacher takes the guidance weight as an input, through a Fourier embedding added to the
    time embedding. Here the time embedding's sinusoids of w/10 (scale 1000, as diffusers
    embeds LCM's w·1000: frequencies from 100 rad per unit of w down to 0.01, so w ∈ [0, 20] is
    resolved at every scale), then Linear → SiLU → Linear with the **last layer
    zero-initialised**: a model
    that gains this embedding computes exactly what it did before until it is trained. Cost
    O(B·dim²).

    Args:
        dim: output width (the model's time-embedding width).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sinusoid = SinusoidalTimeEmbedding(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w: Tensor | float, batch_size: int, device: torch.device,
                dtype: torch.dtype) -> Tensor:
        w = as_batch_time(w, batch_size, device)
        return self.mlp(self.sinusoid(w / 10.0).to(dtype))


def guidance_term(module: GuidanceEmbedding | None, w: Tensor | float | None, batch_size: int,
                  device: torch.device, dtype: torch.dtype) -> Tensor | float:
    """The guidance embedding's contribution (0 when ``w`` is None); a model without the
    embedding refuses a weight with one error line."""
    if w is None:
        return 0.0
    if module is None:
        raise InputError("w: this model has no guidance-weight input (build it with "
                         "guidance_embedding=True)")
    return module(w, batch_size, device, dtype)
