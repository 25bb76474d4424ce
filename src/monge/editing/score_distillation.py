"""Score distillation through an encoder, with pixel-wise gradient clipping (PGC).

Score Distillation Sampling (SDS) optimises the parameters θ of a differentiable renderer so
that its image x(θ), mapped to a latent z = E(x) by a frozen encoder, looks likely under a
frozen generative prior: each step draws a time t and noise ε, asks the prior for its denoised
estimate ẑ of z_t, and pushes z toward ẑ *without* differentiating the prior's network. The
pixel gradient is then g_x = (∂E/∂x)ᵀ ∇_z L_SDS and flows into θ.

PGC (Pan, Lu, Zhu, Zhang, "Enhancing High-Resolution 3D Generation through Pixel-wise Gradient
Clipping", ICLR 2024, arXiv 2310.12474; ``pgc.md``) observes that the encoder's backward path
was never trained for this and returns spatially erratic, large per-pixel gradients. It clips
each pixel's gradient *vector* (over the colour channels) by its largest channel magnitude,

    g_x[b, :, h, w] ← g_x[b, :, h, w] · min(1, c / max_ch |g_x[b, ch, h, w]|),

which keeps every pixel's direction and bounds max_ch |g| by c, as a backward hook on the
rendered image tensor (before the gradient reaches θ), not on the parameters.

What is here:

- :func:`sds_gradient` / :func:`sds_loss`: the SDS gradient of a flow prior in monge's
  convention (linear path, t = 0 noise, t = 1 data), with a choice of weighting w(t)
  (:data:`SDS_WEIGHTINGS`); one network call, no network Jacobian.
- :data:`PIXEL_CLIP_RULES`: ``none``, ``pgc``, ``clamp`` (elementwise: changes the direction),
  ``global`` (per-image gradient-norm clipping), ``global_max`` (per-image scaling by the
  largest entry, the paper's "global scaling by the max") and ``soft`` (c·g / (max_ch|g| + c));
  :func:`clip_pixel_gradient` applies one, :func:`register_pixel_clip` installs it as a hook
  (with the threshold multiplied by an AMP loss scale where there is one).
- :func:`gradient_tail_stats`: how heavy-tailed the per-pixel gradient norms are (the
  mechanism PGC addresses).
- :func:`distill_image` with two 2-D stand-ins for a 3-D representation,
  :class:`FreeImageRenderer` and :class:`CoordinateMLPRenderer` (a neural field on the pixel
  grid), returning a :class:`DistillResult`.

Cost: per SDS step one prior call on the latent, one encoder forward and one encoder VJP (the
renderer's forward/backward besides). PGC itself is an abs-max over channels and a multiply per
pixel, O(B·C·H·W), negligible.

Example:
    >>> import torch
    >>> prior = lambda z, t: -z                      # a velocity field on the linear path
    >>> render = FreeImageRenderer((3, 4, 4), batch=2, generator=0)
    >>> result = distill_image(render, lambda x: x, prior, steps=5, lr=0.1, rule="pgc", c=0.1)
    >>> tuple(result.image.shape), len(result.fm_loss)
    ((2, 3, 4, 4), 5)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from monge.core.checks import check_finite, make_generator
from monge.core.registry import Registry
from monge.errors import InputError

__all__ = [
    "PIXEL_CLIP_RULES",
    "SDS_WEIGHTINGS",
    "CoordinateMLPRenderer",
    "DistillResult",
    "FreeImageRenderer",
    "GradientTailStats",
    "clip_pixel_gradient",
    "distill_image",
    "gradient_tail_stats",
    "register_pixel_clip",
    "sds_gradient",
    "sds_loss",
]

Weighting = str | Callable[[Tensor], Tensor]

# ---------------------------------------------------------------------------------------------
# SDS weightings w(t) of the base direction z − ẑ

SDS_WEIGHTINGS: Registry[Tensor] = Registry("sds weighting")
"""w(t) multiplying the base direction z − ẑ; each factory maps float64 times ``t [B]`` to
``[B]`` weights (``SDS_WEIGHTINGS.build(name, t=t)``)."""


@SDS_WEIGHTINGS.register("velocity", description="w = 1/(1 − t): the velocity residual "
                         "(z − ε) − v̂ (rectified-flow SDS, FLAIR's regulariser)")
def _velocity_weight(t: Tensor) -> Tensor:
    return 1.0 / (1.0 - t)


@SDS_WEIGHTINGS.register("x1", description="w = 1: the clean-prediction residual z − ẑ")
def _x1_weight(t: Tensor) -> Tensor:
    return torch.ones_like(t)


@SDS_WEIGHTINGS.register("epsilon", description="w = t/(1 − t): the noise residual ε̂ − ε "
                         "(DreamFusion's SDS with unit weight)")
def _epsilon_weight(t: Tensor) -> Tensor:
    return t / (1.0 - t)


def _weights(weighting: Weighting, t: Tensor) -> Tensor:
    """w(t) as float64 ``[B]`` (checked: finite, non-negative)."""
    if isinstance(weighting, str):
        w = SDS_WEIGHTINGS.build(weighting, t=t)
    elif callable(weighting):
        w = torch.as_tensor(weighting(t), dtype=torch.float64, device=t.device)
        if w.ndim == 0:
            w = w.expand(t.shape)
        if w.shape != t.shape:
            raise InputError(f"weighting: a callable must map times [B] to weights [B], got "
                             f"shape {tuple(w.shape)} for {tuple(t.shape)}")
    else:
        raise InputError(f"weighting: expected one of {', '.join(SDS_WEIGHTINGS.names())} or "
                         f"a callable w(t), got {type(weighting).__name__}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise InputError("weighting: w(t) must be finite and non-negative")
    return w


def _times(t: Tensor | float, z: Tensor) -> Tensor:
    """t as float64 ``[B]`` in [0, 1) (a scalar is repeated)."""
    if isinstance(t, bool) or not isinstance(t, Tensor | float | int):
        raise InputError(f"t: expected a float or a tensor [B], got {type(t).__name__}")
    t64 = torch.as_tensor(t, dtype=torch.float64, device=z.device)
    if t64.ndim == 0:
        t64 = t64.expand(z.shape[0])
    if t64.shape != (z.shape[0],):
        raise InputError(f"t: expected a scalar or shape [{z.shape[0]}], got "
                         f"{tuple(t64.shape)}")
    if not bool(torch.isfinite(t64).all()) or bool((t64 < 0).any()) or bool((t64 >= 1).any()):
        raise InputError("t: times must lie in [0, 1) (t = 1 is clean data: nothing to "
                         "distil there)")
    return t64


def _expand(coef: Tensor, x: Tensor) -> Tensor:
    return coef.to(dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _sds_terms(model: Callable[..., Tensor], z: Tensor, t: Tensor | float, noise: Tensor,
               weighting: Weighting, cond: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """(w(t)·(z − ẑ), the velocity residual (z − ε) − v̂), both detached."""
    if not callable(model):
        raise InputError(f"model: expected a velocity field model(z, t, **cond), got "
                         f"{type(model).__name__}")
    if not isinstance(z, Tensor) or z.ndim < 2 or not torch.is_floating_point(z):
        raise InputError("z: expected a floating-point tensor [B, ...]")
    if not isinstance(noise, Tensor) or noise.shape != z.shape:
        shape = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise InputError(f"noise: expected a tensor of z's shape {tuple(z.shape)}, got {shape}")
    check_finite(z, "z")
    check_finite(noise, "noise")
    t64 = _times(t, z)
    w = _weights(weighting, t64)
    with torch.no_grad():
        z = z.detach()
        eps = noise.detach().to(z.dtype)
        tb, sb = _expand(t64, z), _expand(1.0 - t64, z)
        z_t = tb * z + sb * eps
        v = model(z_t, t64.to(z.dtype), **cond)
        if not isinstance(v, Tensor) or v.shape != z.shape:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise InputError(f"model: returned {shape}, expected a velocity of z's shape "
                             f"{tuple(z.shape)}")
        residual = (z - eps) - v          # = (z − ẑ)/(1 − t), ẑ = z_t + (1 − t)·v
        grad = _expand(w * (1.0 - t64), z) * residual
    return grad, residual


def sds_gradient(model: Callable[..., Tensor], z: Tensor, t: Tensor | float, noise: Tensor,
                 *, weighting: Weighting = "velocity", **cond: Any) -> Tensor:
    """The score-distillation gradient ∇_z L_SDS of a flow prior at latents z (detached).

    Method (monge's convention: linear path, t = 0 noise, t = 1 data). The noisy latent is
    z_t = t·z + (1 − t)·ε; a velocity prior v̂ = v(z_t, t) gives the clean prediction
    ẑ = z_t + (1 − t)·v̂ and the noise prediction ε̂ = z_t − t·v̂. The gradient returned is

        ∇_z L_SDS = w(t)·(z − ẑ) = w(t)·(1 − t)·((z − ε) − v̂),

    i.e. proportional to the velocity residual. Derivation from the spec's diffusion form
    ∇_z L = w_s·(ε_φ(z_s, s) − ε) with z_s = a_s z + b_s ε (s = 1 at noise): in monge's time
    a = t, b = 1 − t (s = 1 − t), and

        ε̂ − ε = z_t − t·v̂ − ε = t·((z − ε) − v̂) = t/(1 − t)·(z − ẑ),

    so every classical form is z − ẑ times a scalar weight of t (:data:`SDS_WEIGHTINGS`):
    ``"epsilon"`` (w = t/(1 − t)) is exactly ε̂ − ε, ``"velocity"`` (w = 1/(1 − t), the
    default) is (z − ε) − v̂, the spec's rectified-flow form w·(v_φ − (ε − z)) written with
    monge's velocity (the rectified-flow velocity ε − z is minus monge's z − ε), and ``"x1"``
    (w = 1) is z − ẑ. The velocity residual is also the gradient of the flow-matching loss
    ½‖v̂ − (z − ε)‖² in z with the network's Jacobian term dropped, which is FLAIR's
    regulariser (``monge.inverse.flair``: w·α̇(α̇ − α σ̇/σ)(μ − x̂1) = w/(1 − t)·(μ − x̂1) on
    the linear path): the same score-distillation term. Descending it pulls z toward ẑ.

    Cost: one network call, under ``torch.no_grad`` (no Jacobian of the network).

    Args:
        model: a velocity field ``model(z_t, t, **cond)`` on the linear path with t ``[B]``
            (e.g. a :class:`~monge.paths.ModelWrapper`, whose ``forward`` is the velocity).
        z: latents ``[B, ...]`` (their graph is not used).
        t: time in [0, 1): a float or ``[B]``.
        noise: ε, of z's shape (the source sample).
        weighting: a name in :data:`SDS_WEIGHTINGS` or a callable mapping float64 ``t [B]``
            to non-negative weights ``[B]``.
        **cond: passed to the model (e.g. ``y=labels``).

    Returns:
        The gradient, z's shape and dtype, detached.

    Example:
        >>> import torch
        >>> z, eps = torch.ones(2, 3), torch.zeros(2, 3)
        >>> sds_gradient(lambda x, t: -x, z, 0.5, eps)   # v̂ = −z_t, residual (z − ε) − v̂
        tensor([[1.5000, 1.5000, 1.5000],
                [1.5000, 1.5000, 1.5000]])
    """
    return _sds_terms(model, z, t, noise, weighting, cond)[0]


def sds_loss(model: Callable[..., Tensor], z: Tensor, t: Tensor | float, noise: Tensor, *,
             weighting: Weighting = "velocity", **cond: Any) -> Tensor:
    """A surrogate scalar whose gradient in z is :func:`sds_gradient`: (g.detach()·z).sum().

    Backpropagating it through ``z = E(x(θ))`` gives the pixel gradient (∂E/∂x)ᵀ g and, from
    there, θ's gradient. Its value is meaningless (track the flow-matching loss instead; see
    :class:`DistillResult`). Arguments as in :func:`sds_gradient`.
    """
    grad = sds_gradient(model, z, t, noise, weighting=weighting, **cond)
    return (grad * z).sum()


# ---------------------------------------------------------------------------------------------
# pixel-gradient clipping rules

PIXEL_CLIP_RULES: Registry[Tensor] = Registry("pixel clip rule")
"""Rules ``rule(g, c) -> g'`` on a pixel gradient ``[B, C, H, W]`` (channel-first; the max is
over C only). Apply one with :func:`clip_pixel_gradient` or as a hook with
:func:`register_pixel_clip`."""


def _channel_max(g: Tensor) -> Tensor:
    return g.abs().amax(dim=1, keepdim=True)


@PIXEL_CLIP_RULES.register("none", description="identity (plain SDS)")
def _clip_none(g: Tensor, c: float) -> Tensor:
    return g


@PIXEL_CLIP_RULES.register("pgc", description="g·min(1, c / max_ch|g|) per pixel: keeps each "
                           "pixel's direction, bounds max_ch|g| by c (the paper)")
def _clip_pgc(g: Tensor, c: float) -> Tensor:
    # c/0 = inf, clamped to 1: a zero pixel stays zero (no NaN)
    return g * (c / _channel_max(g)).clamp(max=1.0)


@PIXEL_CLIP_RULES.register("clamp", description="elementwise clamp to [−c, c] (changes a "
                           "pixel's direction)")
def _clip_clamp(g: Tensor, c: float) -> Tensor:
    return g.clamp(-c, c)


@PIXEL_CLIP_RULES.register("global", description="per image: g·min(1, c/‖g‖) (gradient-norm "
                           "clipping of the whole image)")
def _clip_global(g: Tensor, c: float) -> Tensor:
    norm = g.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    return g * (c / norm).clamp(max=1.0)


@PIXEL_CLIP_RULES.register("global_max", description="per image: g·min(1, c/max|g|) (the "
                           "paper's global scaling by the max)")
def _clip_global_max(g: Tensor, c: float) -> Tensor:
    peak = g.abs().flatten(1).amax(dim=1).reshape(-1, 1, 1, 1)
    return g * (c / peak).clamp(max=1.0)


@PIXEL_CLIP_RULES.register("soft", description="c·g / (max_ch|g| + c) per pixel (a soft "
                           "PGC: direction kept, max_ch|g| < c)")
def _clip_soft(g: Tensor, c: float) -> Tensor:
    return c * g / (_channel_max(g) + c)


def _threshold(c: float, name: str = "c") -> float:
    if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
        raise InputError(f"{name}: expected a positive finite threshold, got {c!r}")
    return float(c)


def clip_pixel_gradient(g: Tensor, rule: str, c: float) -> Tensor:
    """Apply the clipping rule ``rule`` of :data:`PIXEL_CLIP_RULES` with threshold ``c`` to a
    pixel gradient ``g [B, C, H, W]`` (channel-first).

    Example:
        >>> import torch
        >>> g = torch.tensor([1.0, 0.25]).reshape(1, 2, 1, 1)         # one pixel, two channels
        >>> clip_pixel_gradient(g, "pgc", 0.5).flatten().tolist()     # direction kept
        [0.5, 0.125]
        >>> clip_pixel_gradient(g, "clamp", 0.5).flatten().tolist()   # direction changed
        [0.5, 0.25]
    """
    if not isinstance(g, Tensor) or g.ndim != 4 or not torch.is_floating_point(g):
        shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise InputError(f"g: expected a floating-point pixel gradient [B, C, H, W] "
                         f"(channel-first), got {shape}")
    if not isinstance(rule, str):
        raise InputError(f"rule: expected one of {PIXEL_CLIP_RULES.help_text()}, got "
                         f"{type(rule).__name__}")
    return PIXEL_CLIP_RULES.build(rule, g=g, c=_threshold(c))


def register_pixel_clip(image: Tensor, rule: str, c: float, *, loss_scale: float = 1.0,
                        observer: Callable[[Tensor, Tensor], None] | None = None
                        ) -> RemovableHandle:
    """Install a clipping rule as a backward hook on a rendered image tensor.

    The hook replaces the gradient reaching ``image`` (and so everything upstream of it: the
    renderer's parameters θ) by ``clip_pixel_gradient(g, rule, c·loss_scale)``. Put it on the
    image, not on the parameters: parameter-level clipping is a different method.

    Args:
        image: the rendered image ``[B, C, H, W]`` (channel-first), part of a graph
            (``requires_grad``).
        rule: a name in :data:`PIXEL_CLIP_RULES`.
        c: the threshold in unscaled gradient units (the paper's released code: 0.1).
        loss_scale: the AMP loss scale, when the backward pass runs on a scaled loss (the hook
            then sees scaled gradients, so the threshold is scaled with them).
        observer: called as ``observer(raw, clipped)`` inside the hook (e.g. to record
            :func:`gradient_tail_stats` of the raw pixel gradient).

    Returns:
        The hook's handle (``.remove()`` uninstalls it).
    """
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise InputError(f"image: expected a rendered image tensor [B, C, H, W] "
                         f"(channel-first), got {shape}")
    if not image.requires_grad:
        raise InputError("image: does not require grad (render it from parameters that do)")
    if rule not in PIXEL_CLIP_RULES:
        PIXEL_CLIP_RULES.canonical(rule)          # raises, listing the rules
    threshold = _threshold(c) * _threshold(loss_scale, "loss_scale")
    if observer is not None and not callable(observer):
        raise InputError(f"observer: expected a callable(raw, clipped), got "
                         f"{type(observer).__name__}")

    def hook(grad: Tensor) -> Tensor:
        clipped = PIXEL_CLIP_RULES.build(rule, g=grad, c=threshold)
        if observer is not None:
            observer(grad, clipped)
        return clipped

    return image.register_hook(hook)


# ---------------------------------------------------------------------------------------------
# tail statistics


@dataclass
class GradientTailStats:
    """How heavy-tailed the per-pixel gradient norms of a batch are.

    The norm of pixel p is n_p = ‖g[b, :, h, w]‖₂ (over the channels). Every figure is computed
    per image and then averaged over the images, so that differences of overall scale between
    images (each drew its own t) do not count as a tail; ratios are scale-free.

    Attributes:
        images: images in the batch.
        pixels: pixels per image (H·W).
        median: per-image median norm (absolute scale; mean over images).
        q90_ratio, q99_ratio: 90 % and 99 % quantiles over the median.
        max_ratio: largest norm over the median.
        kurtosis: Pearson kurtosis E[(n − n̄)⁴]/Var(n)² of the norms (NaN for a constant image).
        entry_kurtosis: Pearson kurtosis of the raw entries g[b, c, h, w] (3 for Gaussian
            entries).
        top_share: share of the squared norm Σ n_p² carried by the largest 1 % of pixels
            (at least one pixel).
    """

    images: int
    pixels: int
    median: float
    q90_ratio: float
    q99_ratio: float
    max_ratio: float
    kurtosis: float
    entry_kurtosis: float
    top_share: float


def _pearson_kurtosis(x: Tensor) -> Tensor:
    """Per row of ``x [B, n]`` (float64); NaN where the variance is 0."""
    centred = x - x.mean(dim=1, keepdim=True)
    var = centred.pow(2).mean(dim=1)
    fourth = centred.pow(4).mean(dim=1)
    return torch.where(var > 0, fourth / var.clamp_min(1e-300).pow(2),
                       torch.full_like(var, float("nan")))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    inf = torch.full_like(num, float("inf"))
    nan = torch.full_like(num, float("nan"))
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.where(num > 0, inf, nan))


def gradient_tail_stats(g: Tensor) -> GradientTailStats:
    """Per-pixel gradient-norm tail statistics of ``g [B, C, H, W]`` (channel-first).

    Example:
        >>> import torch
        >>> g = torch.ones(1, 3, 10, 10); g[0, :, 0, 0] = 10.0      # one spike pixel
        >>> s = gradient_tail_stats(g)
        >>> round(s.max_ratio, 3), round(s.top_share, 4)
        (10.0, 0.5025)
    """
    if not isinstance(g, Tensor) or g.ndim != 4 or not torch.is_floating_point(g):
        shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise InputError(f"g: expected a floating-point gradient [B, C, H, W], got {shape}")
    if g.shape[0] < 1 or g.shape[2] * g.shape[3] < 2:
        raise InputError(f"g: need at least one image of at least two pixels, got "
                         f"{tuple(g.shape)}")
    check_finite(g, "g")
    g64 = g.detach().to(torch.float64)
    norms = g64.norm(dim=1).flatten(1)                      # [B, H·W]
    quant = torch.quantile(norms, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64,
                                               device=norms.device), dim=1)
    median = quant[0]
    top = max(1, round(0.01 * norms.shape[1]))
    squared = norms.pow(2)
    total = squared.sum(dim=1)
    top_sum = squared.topk(top, dim=1).values.sum(dim=1)

    def mean(x: Tensor) -> float:
        return float(x.mean())

    return GradientTailStats(
        images=int(g.shape[0]), pixels=int(norms.shape[1]), median=mean(median),
        q90_ratio=mean(_ratio(quant[1], median)), q99_ratio=mean(_ratio(quant[2], median)),
        max_ratio=mean(_ratio(norms.amax(dim=1), median)),
        kurtosis=mean(_pearson_kurtosis(norms)),
        entry_kurtosis=mean(_pearson_kurtosis(g64.flatten(1))),
        top_share=mean(_ratio(top_sum, total)))


# ---------------------------------------------------------------------------------------------
# renderers: differentiable 2-D stand-ins for a 3-D representation


def _shape(shape: Iterable[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"shape: expected (C, H, W) of positive integers, got {shape!r}")
    return dims  # type: ignore[return-value]


def _count(value: int, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name}: expected an integer >= {least}, got {value!r}")
    return value


class FreeImageRenderer(nn.Module):
    """A free image: θ holds one value per pixel and channel (the simplest "renderer").

    Args:
        shape: ``(C, H, W)``.
        batch: independent images rendered together.
        init_scale: θ is drawn from N(0, init_scale²) (0: zeros).
        activation: ``"tanh"`` (image = tanh θ, in (−1, 1)) or ``"identity"`` (image = θ:
            the pixel gradient is θ's gradient).
        generator: seed or generator of the initialisation.
    """

    def __init__(self, shape: Iterable[int], batch: int = 1, *, init_scale: float = 0.1,
                 activation: str = "tanh", generator: int | torch.Generator | None = None
                 ) -> None:
        super().__init__()
        dims = _shape(shape)
        _count(batch, "batch")
        if activation not in ("tanh", "identity"):
            raise InputError(f"activation: expected 'tanh' or 'identity', got {activation!r}")
        if not (isinstance(init_scale, int | float) and math.isfinite(init_scale)
                and init_scale >= 0):
            raise InputError(f"init_scale: expected a non-negative number, got {init_scale!r}")
        gen = make_generator(generator)
        self.activation = activation
        self.theta = nn.Parameter(init_scale * torch.randn((batch, *dims), generator=gen))

    def forward(self) -> Tensor:
        """The image ``[B, C, H, W]``."""
        return torch.tanh(self.theta) if self.activation == "tanh" else self.theta


class CoordinateMLPRenderer(nn.Module):
    """A coordinate MLP (neural field) rendered on the pixel grid; ``batch`` independent fields.

    Pixel centres (x, y) ∈ (−1, 1)² are lifted by Fourier features
    [x, y, sin(2ᵏπx), cos(2ᵏπx), sin(2ᵏπy), cos(2ᵏπy)] for k < ``frequencies`` (Tancik et al.,
    NeurIPS 2020) and mapped by a SiLU MLP to C channels with a tanh output (values in (−1, 1)).
    Each of the ``batch`` fields has its own weights (batched matrix products), so they train
    independently with any elementwise optimiser. Parameters are shared across pixels, which is
    what makes per-pixel clipping matter for it even under Adam.

    Args:
        shape: ``(C, H, W)``.
        batch: independent fields.
        hidden, depth: width and number of hidden layers.
        frequencies: Fourier octaves.
        generator: seed or generator of the initialisation.
    """

    def __init__(self, shape: Iterable[int], batch: int = 1, *, hidden: int = 64,
                 depth: int = 3, frequencies: int = 4,
                 generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        self.shape = _shape(shape)
        _count(batch, "batch")
        _count(hidden, "hidden")
        _count(depth, "depth")
        _count(frequencies, "frequencies", least=0)
        channels, height, width = self.shape
        ys = (torch.arange(height) + 0.5) / height * 2 - 1
        xs = (torch.arange(width) + 0.5) / width * 2 - 1
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = [grid_x.reshape(-1), grid_y.reshape(-1)]
        for k in range(frequencies):
            for axis in (grid_x, grid_y):
                angle = (2.0 ** k) * math.pi * axis.reshape(-1)
                coords += [torch.sin(angle), torch.cos(angle)]
        self.register_buffer("features", torch.stack(coords, dim=1))   # [H·W, F]
        gen = make_generator(generator)
        dims = [self.features.shape[1], *([hidden] * depth), channels]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand((batch, fan_in, fan_out), generator=gen) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w * math.sqrt(3.0)))     # Var = 1/fan_in
            self.biases.append(nn.Parameter(torch.zeros(batch, 1, fan_out)))

    def forward(self) -> Tensor:
        """The images ``[B, C, H, W]``."""
        batch = self.weights[0].shape[0]
        h = self.features.unsqueeze(0).expand(batch, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            h = torch.tanh(h) if i == last else nn.functional.silu(h)
        channels, height, width = self.shape
        return h.transpose(1, 2).reshape(batch, channels, height, width)


# ---------------------------------------------------------------------------------------------
# the driver


@dataclass
class DistillResult:
    """What :func:`distill_image` returns.

    Attributes:
        image: the final render ``[B, C, H, W]`` (detached).
        fm_loss: per step, the prior's flow-matching loss at the current latent and that step's
            (t, ε): mean over elements of ((z − ε) − v̂)² (what SDS descends, Jacobian-free).
        tail_stats: :func:`gradient_tail_stats` of the raw (unclipped) pixel gradient, every
            ``record_every`` steps.
        clipped_fraction: per step, the fraction of pixels whose gradient the rule changed.
        pixel_grad_norm: per step, the mean per-image norm of the raw pixel gradient.
        steps: optimisation steps taken.
        nfe: prior network calls (one per step).
        seconds: wall time.
    """

    image: Tensor
    fm_loss: list[float] = field(default_factory=list)
    tail_stats: list[GradientTailStats] = field(default_factory=list)
    clipped_fraction: list[float] = field(default_factory=list)
    pixel_grad_norm: list[float] = field(default_factory=list)
    steps: int = 0
    nfe: int = 0
    seconds: float = 0.0


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def distill_image(render: Callable[[], Tensor], encoder: Callable[[Tensor], Tensor],
                  model: Callable[..., Tensor], *, steps: int, lr: float, rule: str = "pgc",
                  c: float = 0.1, weighting: Weighting = "velocity",
                  t_range: tuple[float, float] = (0.02, 0.98), optimizer: str = "adam",
                  parameters: Iterable[Tensor] | None = None,
                  cond: Mapping[str, Any] | None = None,
                  generator: int | torch.Generator | None = 0, record_every: int = 10,
                  loss_scale: float = 1.0) -> DistillResult:
    """Optimise a renderer's parameters θ by SDS through an encoder, with a pixel-gradient rule.

    Each step: render x = render(); install the clipping hook on x
    (:func:`register_pixel_clip`); encode z = encoder(x); draw t ~ U(t_range) per image and
    ε ~ N(0, I); backpropagate :func:`sds_loss` (so θ receives the clipped
    (∂E/∂x)ᵀ·∇_z L_SDS); take one optimiser step. With ``encoder = lambda x: x`` and a
    pixel-space prior this is plain pixel-space SDS.

    Args:
        render: an ``nn.Module`` (or a callable with ``parameters`` given) whose call with no
            arguments returns the image ``[B, C, H, W]`` from θ.
        encoder: frozen map image → latent (e.g. ``Autoencoder.encode``); its parameters are
            not updated (call ``requires_grad_(False)`` on it, or its weight gradients are
            computed and accumulated for nothing).
        model: the velocity prior on latents (see :func:`sds_gradient`).
        steps: optimisation steps.
        lr: learning rate.
        rule, c: the clipping rule of :data:`PIXEL_CLIP_RULES` and its threshold.
        weighting: SDS weighting (see :func:`sds_gradient`).
        t_range: ``(t_min, t_max)`` with 0 ≤ t_min ≤ t_max < 1 (monge time; t near 1 is
            little noise).
        optimizer: ``"adam"`` or ``"sgd"``.
        parameters: θ (default: ``render.parameters()``).
        cond: conditioning passed to the prior (e.g. ``{"y": labels}``).
        generator: seed or generator of t and ε.
        record_every: record tail statistics every this many steps (and at the last step).
        loss_scale: multiplies the surrogate loss and the threshold (an AMP-style loss scale;
            the parameters' gradients are unscaled before the step).

    Returns:
        A :class:`DistillResult`.
    """
    if not callable(render):
        raise InputError(f"render: expected a callable renderer, got {type(render).__name__}")
    if not callable(encoder):
        raise InputError(f"encoder: expected a callable image -> latent, got "
                         f"{type(encoder).__name__}")
    _count(steps, "steps")
    _count(record_every, "record_every")
    lr = _positive(lr, "lr")
    if rule not in PIXEL_CLIP_RULES:
        PIXEL_CLIP_RULES.canonical(rule)
    c = _threshold(c)
    scale = _threshold(loss_scale, "loss_scale")
    try:
        t_min, t_max = (float(v) for v in t_range)
    except (TypeError, ValueError):
        raise InputError(f"t_range: expected (t_min, t_max), got {t_range!r}") from None
    if not 0.0 <= t_min <= t_max < 1.0:
        raise InputError(f"t_range: expected 0 <= t_min <= t_max < 1, got {t_range!r}")
    if parameters is None:
        if not isinstance(render, nn.Module):
            raise InputError("parameters: required when render is not an nn.Module")
        parameters = render.parameters()
    params = [p for p in parameters if isinstance(p, Tensor) and p.requires_grad]
    if not params:
        raise InputError("parameters: no tensor that requires grad")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise InputError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    cond = dict(cond or {})
    device = params[0].device
    gen = make_generator(generator, device=device)
    result = DistillResult(image=torch.empty(0))
    record: dict[str, Any] = {}

    def observer(raw: Tensor, clipped: Tensor) -> None:
        raw = raw / scale
        record["changed"] = float((clipped / scale - raw).abs().amax(dim=1).gt(0).double()
                                  .mean())
        record["norm"] = float(raw.flatten(1).norm(dim=1).mean())
        if record.get("stats"):
            result.tail_stats.append(gradient_tail_stats(raw))

    start = time.perf_counter()
    for step in range(steps):
        image = render()
        if not isinstance(image, Tensor) or image.ndim != 4:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise InputError(f"render: returned {shape}, expected an image [B, C, H, W]")
        record.clear()
        record["stats"] = step % record_every == 0 or step == steps - 1
        handle = register_pixel_clip(image, rule, c, loss_scale=scale, observer=observer)
        z = encoder(image)
        if not isinstance(z, Tensor) or z.shape[0] != image.shape[0]:
            raise InputError("encoder: must return a latent tensor [B, ...] with the image's "
                             "batch size")
        t = t_min + (t_max - t_min) * torch.rand(z.shape[0], generator=gen, device=device,
                                                 dtype=torch.float64)
        eps = torch.randn(z.shape, generator=gen, device=device, dtype=z.dtype)
        grad, residual = _sds_terms(model, z, t, eps, weighting, cond)
        opt.zero_grad(set_to_none=True)
        (scale * (grad * z).sum()).backward()
        handle.remove()
        if scale != 1.0:
            for p in params:
                if p.grad is not None:
                    p.grad.div_(scale)
        opt.step()
        result.fm_loss.append(float(residual.pow(2).mean()))
        result.clipped_fraction.append(record.get("changed", float("nan")))
        result.pixel_grad_norm.append(record.get("norm", float("nan")))
    with torch.no_grad():
        result.image = render().detach()
    result.steps, result.nfe = steps, steps
    result.seconds = time.perf_counter() - start
    return result
