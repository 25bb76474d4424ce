"""Networks of the Text2PDE-style latent flow: descriptor tokeniser and encoder, grid
autoencoder, latent velocity field and the autoregressive rollout baseline.

Zhou et al., "Text2PDE: Latent Diffusion Models for Accessible Physics Simulation" (ICLR 2025,
arXiv:2410.01153), at CPU scale (spec §3). The experiment that trains and measures them is
:mod:`monge.sciml.text2pde`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from monge.errors import InputError
from monge.models.embeddings import SinusoidalTimeEmbedding

__all__ = ["CONDITIONS", "DescriptorTokenizer", "DescriptorEncoder", "GridAutoencoder",
           "LatentFlowNet", "RolloutNet"]

CONDITIONS = ("initial", "text")


# --- text ----------------------------------------------------------------------------------------
class DescriptorTokenizer:
    """Word + digit tokeniser of templated descriptors.

    Words come from a fixed vocabulary (``viscosity``, ``wave(s)``, ``amplitude``, ``burgers``,
    ``,``); numbers are split into digit and ``.`` tokens, so any value can be written. Index 0
    is padding. An unknown word raises :class:`~monge.errors.InputError` naming it.

    Example:
        >>> tok = DescriptorTokenizer()
        >>> tok.encode(["viscosity 0.01, 2 waves, amplitude 1.0"]).shape
        torch.Size([1, 24])
    """

    WORDS = ("viscosity", "wave", "waves", "amplitude", "burgers", ",")
    _NUMBER = re.compile(r"^\d+(\.\d+)?$")

    def __init__(self, max_length: int = 24):
        self.max_length = int(max_length)
        symbols = ["<pad>", *self.WORDS, *"0123456789."]
        self.index = {s: i for i, s in enumerate(symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.index)

    def tokens(self, descriptor: str) -> list[int]:
        """Token indices of one descriptor."""
        if not isinstance(descriptor, str) or not descriptor.strip():
            raise InputError(f"descriptor: expected a non-empty string, got {descriptor!r}")
        out: list[int] = []
        for word in descriptor.lower().replace(",", " , ").split():
            if word in self.WORDS:
                out.append(self.index[word])
            elif self._NUMBER.match(word):
                out.extend(self.index[c] for c in word)
            else:
                raise InputError(f"descriptor {descriptor!r}: unknown word {word!r}; expected "
                                 f"numbers and the words {', '.join(self.WORDS)}")
        if len(out) > self.max_length:
            raise InputError(f"descriptor {descriptor!r}: {len(out)} tokens, more than "
                             f"max_length={self.max_length}")
        return out

    def encode(self, descriptors: Sequence[str], device: torch.device | str = "cpu") -> Tensor:
        """Padded token indices ``[B, max_length]`` (int64)."""
        if isinstance(descriptors, str):
            descriptors = [descriptors]
        rows = [self.tokens(d) for d in descriptors]
        out = torch.zeros(len(rows), self.max_length, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(device)


class DescriptorEncoder(nn.Module):
    """Token indices ``[B, L]`` → a descriptor vector ``[B, dim]``.

    Method: token + learned position embeddings, ``nn.TransformerEncoder`` (pre-norm, padding
    masked), masked mean pooling, a linear map. The small local stand-in for the paper's
    fine-tuned RoBERTa (spec §3). Cost O(B L² dim) per layer.
    """

    def __init__(self, vocab_size: int, max_length: int = 24, dim: int = 64, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise InputError(f"tokens: expected int64 indices [B, L], got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        pad = tokens == 0
        h = self.tokens(tokens) + self.position[: tokens.shape[1]]
        h = self.encoder(h, src_key_padding_mask=pad)
        keep = (~pad).to(h.dtype)[..., None]
        return self.out((h * keep).sum(1) / keep.sum(1).clamp_min(1.0))


# --- building blocks -----------------------------------------------------------------------------
class _PeriodicConv2d(nn.Conv2d):
    """3×3 conv over (time, space): circular padding in space, zero padding in time."""

    def __init__(self, ci: int, co: int, stride: tuple[int, int] = (1, 1)):
        super().__init__(ci, co, 3, stride=stride, padding=(1, 0))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (1, 1, 0, 0), mode="circular"))


class _ResBlock(nn.Module):
    """GroupNorm → SiLU → conv (FiLM by an optional embedding) → GroupNorm → SiLU → conv, + skip."""

    def __init__(self, channels: int, embedding_dim: int | None = None):
        super().__init__()
        g = min(8, channels)
        self.norm1, self.conv1 = nn.GroupNorm(g, channels), _PeriodicConv2d(channels, channels)
        self.norm2, self.conv2 = nn.GroupNorm(g, channels), _PeriodicConv2d(channels, channels)
        self.film = nn.Linear(embedding_dim, 2 * channels) if embedding_dim else None

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


def _check_trajectories(u: Tensor, frames: int, points: int, name: str = "u") -> Tensor:
    if not isinstance(u, Tensor):
        raise InputError(f"{name}: expected a torch tensor, got {type(u).__name__}")
    if u.ndim != 3 or tuple(u.shape[1:]) != (frames, points):
        raise InputError(f"{name}: expected trajectories [B, {frames}, {points}] (the grid this "
                         f"network was built for), got shape {tuple(u.shape)}")
    if not bool(torch.isfinite(u).all()):
        raise InputError(f"{name}: contains NaN or Inf values")
    return u


class GridAutoencoder(nn.Module):
    """Conv autoencoder of trajectories ``[B, frames, points]`` ↔ latents ``[B, C, f/4, p/8]``.

    Method: strided 3×3 convs with residual blocks (circular in space), down by 2 in time and
    space twice and by 2 in space once more; the decoder mirrors it with nearest upsampling.
    Deterministic (the paper's KL weight ~1e-7 makes its VAE essentially an AE; spec §1).
    Cost O(B · frames · points · width²).

    Args:
        frames, points: trajectory grid (multiples of 4 and 8).
        latent_channels: C of the latent.
        width: channels at 1/2 resolution (twice as many at 1/4 and in the latent level).
    """

    def __init__(self, frames: int = 32, points: int = 64, latent_channels: int = 4,
                 width: int = 32):
        super().__init__()
        if frames % 4 or points % 8:
            raise InputError(f"GridAutoencoder: frames must be a multiple of 4 and points of 8, "
                             f"got {frames} x {points}")
        self.frames, self.points, self.latent_channels = frames, points, latent_channels
        w1, w2 = width, 2 * width
        self.encoder = nn.Sequential(
            _PeriodicConv2d(1, w1, (2, 2)), nn.SiLU(), _ResBlock(w1),
            _PeriodicConv2d(w1, w2, (2, 2)), _ResBlock(w2),
            _PeriodicConv2d(w2, w2, (1, 2)), _ResBlock(w2),
            nn.GroupNorm(min(8, w2), w2), nn.SiLU(), nn.Conv2d(w2, latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w2, 1), _ResBlock(w2),
            nn.Upsample(scale_factor=(1, 2)), _PeriodicConv2d(w2, w2), _ResBlock(w2),
            nn.Upsample(scale_factor=(2, 2)), _PeriodicConv2d(w2, w1), _ResBlock(w1),
            nn.Upsample(scale_factor=(2, 2)), _PeriodicConv2d(w1, w1), nn.SiLU(),
            nn.Conv2d(w1, 1, 1))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.frames // 4, self.points // 8)

    def encode(self, u: Tensor) -> Tensor:
        """Latents of (normalised) trajectories ``[B, frames, points]``."""
        u = _check_trajectories(u, self.frames, self.points)
        return self.encoder(u[:, None])

    def decode(self, z: Tensor) -> Tensor:
        """Trajectories ``[B, frames, points]`` from latents."""
        if z.ndim != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise InputError(f"z: expected latents [B, {', '.join(map(str, self.latent_shape))}]"
                             f", got shape {tuple(z.shape)}")
        return self.decoder(z)[:, 0]

    def forward(self, u: Tensor) -> Tensor:
        return self.decode(self.encode(u))


class LatentFlowNet(nn.Module):
    """Velocity field ``(z, t, cond) -> [B, C, f, p]`` on the latent grid, conditioned.

    Method: input conv, ``depth`` residual blocks with FiLM by the sum of an MLP time embedding
    (sinusoidal) and the condition embedding, zero-initialised output conv. ``condition``:

    - ``"initial"``: ``cond = [u0 (points values), normalised log ν]`` of shape
      ``[B, points + 1]``; u0 is encoded by a periodic 1-D conv to the latent's spatial size and
      broadcast over latent time as extra input channels (spatially aligned), ν is embedded.
    - ``"text"``: ``cond`` = token indices ``[B, L]`` through a :class:`DescriptorEncoder`.

    Cost O(B · f · p · width² · depth) per call.
    """

    def __init__(self, latent_shape: tuple[int, int, int], condition: str = "initial", *,
                 points: int = 64, width: int = 64, depth: int = 4, embedding_dim: int = 64,
                 vocab_size: int | None = None, max_length: int = 24):
        super().__init__()
        if condition not in CONDITIONS:
            raise InputError(f"condition: expected one of {CONDITIONS}, got {condition!r}")
        c, _, p = latent_shape
        self.latent_shape, self.condition, self.points = tuple(latent_shape), condition, points
        self.time = nn.Sequential(SinusoidalTimeEmbedding(embedding_dim),
                                  nn.Linear(embedding_dim, embedding_dim), nn.SiLU(),
                                  nn.Linear(embedding_dim, embedding_dim))
        extra = 0
        if condition == "initial":
            if points % p:
                raise InputError(f"points: {points} is not a multiple of the latent width {p}")
            stride = points // p
            extra = 16
            self.frame = nn.Sequential(
                nn.Conv1d(1, 32, 5, padding=2, padding_mode="circular"), nn.SiLU(),
                nn.Conv1d(32, extra, stride, stride=stride))
            self.frame_vector = nn.Sequential(nn.Linear(points + 1, embedding_dim), nn.SiLU(),
                                              nn.Linear(embedding_dim, embedding_dim))
        else:
            if vocab_size is None:
                raise InputError("LatentFlowNet: text conditioning needs vocab_size")
            self.text = DescriptorEncoder(vocab_size, max_length, embedding_dim)
        self.inp = _PeriodicConv2d(c + extra, width)
        self.blocks = nn.ModuleList(_ResBlock(width, embedding_dim) for _ in range(depth))
        self.norm = nn.GroupNorm(min(8, width), width)
        self.out = nn.Conv2d(width, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed_condition(self, cond: Tensor, batch: int) -> tuple[Tensor, Tensor | None]:
        """The condition embedding ``[B, dim]`` and, for ``"initial"``, the frame channels."""
        if cond.shape[0] != batch:
            raise InputError(f"cond: expected batch {batch}, got shape {tuple(cond.shape)}")
        if self.condition == "text":
            return self.text(cond), None
        if cond.ndim != 2 or cond.shape[1] != self.points + 1 or not cond.is_floating_point():
            raise InputError(f"cond: expected [B, {self.points + 1}] floats (u0 and log ν), got "
                             f"{tuple(cond.shape)} {cond.dtype}")
        channels = self.frame(cond[:, None, :self.points])
        return self.frame_vector(cond), channels

    def forward(self, z: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        emb_c, channels = self.embed_condition(cond, z.shape[0])
        emb = self.time(t) + emb_c
        h = z
        if channels is not None:
            h = torch.cat([z, channels[:, :, None, :].expand(-1, -1, z.shape[2], -1)], dim=1)
        h = self.inp(h)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm(h)))


class RolloutNet(nn.Module):
    """Autoregressive baseline: frame k + 1 = frame k + net(frame k, log ν) (periodic 1-D conv).

    Method: ``depth`` circular convs (kernel 5, GELU) on ``[u_k, ν-channel]``, residual update;
    trained on one-step pairs, rolled out from u0 (errors accumulate: the claim under test).
    Cost O(points · width² · depth) per frame.
    """

    def __init__(self, width: int = 64, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(2, width, 5, padding=2, padding_mode="circular"),
                                   nn.GELU()]
        for _ in range(depth - 2):
            layers += [nn.Conv1d(width, width, 5, padding=2, padding_mode="circular"), nn.GELU()]
        layers.append(nn.Conv1d(width, 1, 5, padding=2, padding_mode="circular"))
        self.net = nn.Sequential(*layers)

    def forward(self, u: Tensor, nu: Tensor) -> Tensor:
        """One step: ``u`` ``[B, points]``, ``nu`` normalised log-viscosity ``[B]``."""
        h = torch.stack([u, nu[:, None].expand_as(u)], dim=1)
        return u + self.net(h)[:, 0]

    def rollout(self, u0: Tensor, nu: Tensor, frames: int) -> Tensor:
        """``[B, frames, points]`` from u0 (frame 0 = u0)."""
        out = [u0]
        for _ in range(frames - 1):
            out.append(self(out[-1], nu))
        return torch.stack(out, dim=1)
