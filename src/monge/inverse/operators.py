"""Linear degradation operators A for observations y = A x + σ_y·n (inpainting, super-resolution,
deblurring, compressed sensing).

Every operator acts on a batch ``x [B, *input_shape]`` and returns ``y [B, *output_shape]``; the
per-sample shapes are fixed at construction so that every call can check its input and
:meth:`LinearOperator.matrix` can materialise A as an ``[m, d]`` matrix (m = ∏ output_shape,
d = ∏ input_shape, samples flattened in C order). Each operator gives

- ``forward(x)`` = A x (differentiable, so guidance can back-propagate through it),
- ``adjoint(y)`` = Aᵀ y, exact: ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to rounding,
- ``pinv(y)`` = A⁺ y, the Moore–Penrose pseudo-inverse (for :class:`GaussianBlur` that of the
  blur with its smallest singular values truncated, see there).

Operators keep their parameters in float64 and compute in the dtype and on the device of their
input. ``forward`` and ``adjoint`` check shapes only (no device synchronisation inside sampler
loops); ``pinv`` and :func:`observe`, which see observations, also reject NaN/Inf. Notation as in
``shared/papers/flowchef.md`` and ``flair.md``: y = A x + σ_y·n, n ~ N(0, I).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from monge.core.checks import check_finite
from monge.errors import InputError


def _shape_text(shape: Sequence[int]) -> str:
    return "[B, " + ", ".join(str(s) for s in shape) + "]"


def _as_shape(shape: Sequence[int] | int, what: str) -> tuple[int, ...]:
    """A per-sample shape as a tuple of positive ints."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"{what}: shape must be a sequence of ints, got {shape!r}") from None
    if not out or any(s <= 0 for s in out):
        raise InputError(f"{what}: shape must be non-empty with positive sizes, got {out}")
    return out


class LinearOperator(ABC):
    """A batched linear map A from per-sample shape ``input_shape`` to ``output_shape``.

    Subclasses implement ``_forward``, ``_adjoint`` and ``_pinv`` on already-checked batches;
    the public :meth:`forward`, :meth:`adjoint` and :meth:`pinv` check the input first, so every
    operator reports a wrong shape with the same one-line :class:`~monge.errors.InputError`.
    """

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape of x (without the batch dimension)."""

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample shape of y (without the batch dimension)."""

    @property
    def input_dim(self) -> int:
        """d = ∏ input_shape."""
        return math.prod(self.input_shape)

    @property
    def output_dim(self) -> int:
        """m = ∏ output_shape."""
        return math.prod(self.output_shape)

    @abstractmethod
    def _forward(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def _adjoint(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def _pinv(self, y: Tensor) -> Tensor: ...

    def _like(self, buffer: Tensor, v: Tensor) -> Tensor:
        """``buffer`` (a float64 parameter) in v's dtype and on its device, cached so that a
        sampler loop on a GPU does not copy it from the host at every call."""
        if buffer.dtype == v.dtype and buffer.device == v.device:
            return buffer
        cache = self.__dict__.setdefault("_cast_cache", {})
        key = (id(buffer), v.dtype, v.device)
        hit = cache.get(key)
        if hit is None or hit[0] is not buffer:
            hit = cache[key] = (buffer, buffer.to(dtype=v.dtype, device=v.device))
        return hit[1]

    def _observation_noise(self, noise: Tensor) -> Tensor:
        """The noise :func:`observe` adds, given standard normal ``noise`` of y's shape."""
        return noise

    def _check(self, v: object, shape: tuple[int, ...], method: str, name: str) -> Tensor:
        where = f"{type(self).__name__}.{method}"
        if not isinstance(v, Tensor):
            raise InputError(f"{where}: {name} must be a tensor, got {type(v).__name__}")
        if tuple(v.shape[1:]) != shape or v.ndim != len(shape) + 1:
            raise InputError(f"{where}: {name} must have shape {_shape_text(shape)}, "
                             f"got {tuple(v.shape)}")
        if not torch.is_floating_point(v):
            raise InputError(f"{where}: {name} must be a floating-point tensor, got {v.dtype}")
        return v

    def forward(self, x: Tensor) -> Tensor:
        """A x for ``x [B, *input_shape]`` → ``[B, *output_shape]``."""
        return self._forward(self._check(x, self.input_shape, "forward", "x"))

    __call__ = forward

    def adjoint(self, y: Tensor) -> Tensor:
        """Aᵀ y for ``y [B, *output_shape]`` → ``[B, *input_shape]``."""
        return self._adjoint(self._check(y, self.output_shape, "adjoint", "y"))

    def pinv(self, y: Tensor) -> Tensor:
        """A⁺ y for ``y [B, *output_shape]`` → ``[B, *input_shape]`` (y must be finite)."""
        y = self._check(y, self.output_shape, "pinv", "y")
        check_finite(y, f"{type(self).__name__}.pinv: y")
        return self._pinv(y)

    def matrix(self, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> Tensor:
        """A as an ``[m, d]`` matrix, built by applying :meth:`forward` to the identity basis
        (C-order flattening of both shapes). For tests and small d: it costs d forward calls'
        worth of memory."""
        d = self.input_dim
        basis = torch.eye(d, dtype=dtype, device=device).reshape(d, *self.input_shape)
        return self.forward(basis).reshape(d, self.output_dim).T.contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(input_shape={self.input_shape}, "
                f"output_shape={self.output_shape})")


# ---------------------------------------------------------------------------------------------
# Inpainting


class Mask(LinearOperator):
    """Inpainting: keep the observed entries, zero the others (A = diag(mask)).

    The output is the **masked full-size tensor** ``mask ⊙ x`` (same shape as x), not the list of
    observed entries. A = diag(m) with m ∈ {0, 1} is an orthogonal projection, so
    ``adjoint = pinv = forward``. :func:`observe` adds noise on the observed entries only, so the
    hidden entries of y stay exactly 0 (y lies in the range of A); as a function of x the
    likelihood is the same as with noise everywhere, since rows of zeros carry no information.

    Args:
        mask: boolean or 0/1 tensor, 1 (True) where x is observed.
        shape: the per-sample shape of x; ``mask`` must broadcast to it (e.g. an ``[1, H, W]``
            pixel mask for ``[C, H, W]`` images). Defaults to ``mask.shape``.

    Example:
        >>> op = Mask(torch.tensor([1, 0, 1]))
        >>> op(torch.ones(2, 3, dtype=torch.float64))[0].tolist()
        [1.0, 0.0, 1.0]
    """

    def __init__(self, mask: Tensor, shape: Sequence[int] | None = None):
        if not isinstance(mask, Tensor):
            mask = torch.as_tensor(mask)
        if mask.ndim == 0:
            raise InputError("Mask: mask must have at least one dimension, got a scalar")
        m = mask.to(torch.float64)
        if not bool(((m == 0) | (m == 1)).all()):
            raise InputError("Mask: mask must be boolean or hold only 0 and 1")
        full = tuple(m.shape) if shape is None else _as_shape(shape, "Mask")
        try:
            ok = torch.broadcast_shapes(tuple(m.shape), full) == torch.Size(full)
        except RuntimeError:
            ok = False
        if not ok:
            raise InputError(f"Mask: mask of shape {tuple(m.shape)} does not broadcast to the "
                             f"sample shape {full}")
        self.mask = m.expand(full).clone()
        self._shape = full

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def n_observed(self) -> int:
        """Number of observed entries per sample (the rank of A)."""
        return int(self.mask.sum())

    def _apply(self, v: Tensor) -> Tensor:
        return v * self._like(self.mask, v)

    def _forward(self, x: Tensor) -> Tensor:
        return self._apply(x)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._apply(y)

    def _pinv(self, y: Tensor) -> Tensor:
        return self._apply(y)

    def _observation_noise(self, noise: Tensor) -> Tensor:
        return self._apply(noise)


def _spatial(shape: Sequence[int], what: str) -> tuple[int, ...]:
    shape = _as_shape(shape, what)
    if len(shape) < 2:
        raise InputError(f"{what}: shape must end in (H, W), got {shape}")
    return shape


def box_mask(shape: Sequence[int], box: Sequence[int]) -> Mask:
    """A :class:`Mask` that hides one rectangle of an image (box inpainting).

    Args:
        shape: per-sample shape ending in (H, W), e.g. ``(C, H, W)``.
        box: ``(top, left, height, width)`` of the **hidden** rectangle, in pixels; it must lie
            inside the image. The box is hidden in every channel.
    """
    shape = _spatial(shape, "box_mask")
    h, w = shape[-2:]
    try:
        top, left, bh, bw = (int(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"box_mask: box must be (top, left, height, width), got {box!r}") from None
    if bh <= 0 or bw <= 0 or top < 0 or left < 0 or top + bh > h or left + bw > w:
        raise InputError(f"box_mask: box (top={top}, left={left}, height={bh}, width={bw}) must "
                         f"have positive size and lie inside the {h}x{w} image")
    mask = torch.ones(shape, dtype=torch.float64)
    mask[..., top:top + bh, left:left + bw] = 0.0
    return Mask(mask)


def random_mask(shape: Sequence[int], fraction: float,
                generator: torch.Generator | None = None) -> Mask:
    """A :class:`Mask` that hides a random share of the entries.

    Args:
        shape: per-sample shape. For shapes ending in (H, W) whole pixels are hidden (the same
            positions in every leading/channel dimension); for a 1-D shape, entries.
        fraction: share hidden, in [0, 1]; exactly ``round(fraction · n)`` of the n pixels
            (or entries) are hidden, chosen uniformly without replacement.
        generator: the random source (reproducible masks).
    """
    shape = _as_shape(shape, "random_mask")
    if not (isinstance(fraction, int | float) and not isinstance(fraction, bool)
            and 0.0 <= fraction <= 1.0):
        raise InputError(f"random_mask: fraction (share hidden) must be in [0, 1], "
                         f"got {fraction!r}")
    sites = shape[-2:] if len(shape) >= 2 else shape
    n = math.prod(sites)
    hidden = torch.randperm(n, generator=generator)[:round(fraction * n)]
    site_mask = torch.ones(n, dtype=torch.float64)
    site_mask[hidden] = 0.0
    site_mask = site_mask.reshape((1,) * (len(shape) - len(sites)) + tuple(sites))
    return Mask(site_mask, shape=shape)


# ---------------------------------------------------------------------------------------------
# Super-resolution


class AvgPool(LinearOperator):
    """Super-resolution: average non-overlapping ``factor × factor`` blocks of the last two dims.

    A Aᵀ = I / factor², so Aᵀ is the nearest-neighbour upsampling divided by factor² and the
    pseudo-inverse A⁺ = Aᵀ (A Aᵀ)⁻¹ is plain nearest-neighbour upsampling (A A⁺ = I).

    Args:
        factor: the downsampling factor (an int ≥ 1).
        shape: per-sample shape of x ending in (H, W); H and W must be divisible by ``factor``.
    """

    def __init__(self, factor: int, *, shape: Sequence[int]):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise InputError(f"AvgPool: factor must be an int >= 1, got {factor!r}")
        shape = _spatial(shape, "AvgPool")
        h, w = shape[-2:]
        if h % factor or w % factor:
            raise InputError(f"AvgPool: image size {h}x{w} is not divisible by factor {factor}")
        self.factor = factor
        self._in = shape
        self._out = (*shape[:-2], h // factor, w // factor)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._in

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._out

    def _forward(self, x: Tensor) -> Tensor:
        f = self.factor
        h, w = self._out[-2:]
        return x.reshape(*x.shape[:-2], h, f, w, f).mean(dim=(-3, -1))

    def _upsample(self, y: Tensor) -> Tensor:
        f = self.factor
        h, w = y.shape[-2:]
        big = y[..., :, None, :, None].expand(*y.shape[:-2], h, f, w, f)
        return big.reshape(*y.shape[:-2], h * f, w * f)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._upsample(y) / self.factor**2

    def _pinv(self, y: Tensor) -> Tensor:
        return self._upsample(y)


# ---------------------------------------------------------------------------------------------
# Deblurring


class GaussianBlur(LinearOperator):
    """Deblurring: circular (periodic) convolution of the last two dims with a Gaussian kernel.

    The kernel is ``g gᵀ`` with ``g_i ∝ exp(−i²/(2σ²))``, i = −r..r, r = kernel_size // 2,
    normalised to sum 1. **Boundary:** periodic (the image wraps around), applied through the
    2-D FFT, so A = F⁻¹ diag(k̂) F with a real spectrum k̂ (the kernel is real and symmetric):
    A is symmetric, the adjoint is A itself and exact to rounding, and the singular values of A
    are |k̂|, the largest being k̂(0) = 1.

    **Pseudo-inverse:** a blur's exact pseudo-inverse divides by k̂, which for a Gaussian falls
    to ~exp(−2π²σ²) at the highest frequency (≈ 1e-9 for σ = 1.5), so noise in y would be
    amplified a billion times. ``pinv`` is therefore the truncated-SVD pseudo-inverse: frequencies
    with |k̂| ≤ ``rcond`` · max|k̂| are set to zero, the others divided by k̂. It is the exact
    Moore–Penrose pseudo-inverse of the blur with those singular values removed (the same
    convention as ``torch.linalg.pinv(A, rtol=rcond)``), so A⁺ A A⁺ = A⁺ always and A A⁺ A = A
    whenever no singular value is cut (``rcond`` below the smallest |k̂|).

    Args:
        sigma: kernel standard deviation in pixels (> 0).
        kernel_size: odd kernel width; default ``2·ceil(3σ) + 1``. Must not exceed H or W.
        shape: per-sample shape of x ending in (H, W).
        rcond: relative singular-value cutoff of ``pinv`` (default 1e-3; 0 keeps every nonzero).
    """

    def __init__(self, sigma: float, kernel_size: int | None = None, *, shape: Sequence[int],
                 rcond: float = 1e-3):
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not (
                math.isfinite(sigma) and sigma > 0):
            raise InputError(f"GaussianBlur: sigma must be a finite number > 0, got {sigma!r}")
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * sigma) + 1
        shape = _spatial(shape, "GaussianBlur")
        h, w = shape[-2:]
        if (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)
                or kernel_size < 1 or kernel_size % 2 == 0):
            raise InputError(f"GaussianBlur: kernel_size must be an odd int >= 1, "
                             f"got {kernel_size!r}")
        if kernel_size > min(h, w):
            raise InputError(f"GaussianBlur: kernel_size {kernel_size} exceeds the {h}x{w} image")
        if not (isinstance(rcond, int | float) and math.isfinite(rcond) and 0 <= rcond < 1):
            raise InputError(f"GaussianBlur: rcond must be in [0, 1), got {rcond!r}")
        self.sigma, self.kernel_size, self.rcond = float(sigma), kernel_size, float(rcond)
        self._shape = shape
        r = kernel_size // 2
        i = torch.arange(-r, r + 1, dtype=torch.float64)
        g = torch.exp(-(i**2) / (2 * self.sigma**2))
        g = g / g.sum()
        self.kernel = torch.outer(g, g)                                 # [k, k], sums to 1
        grid = torch.zeros(h, w, dtype=torch.float64)
        grid[:kernel_size, :kernel_size] = self.kernel
        grid = torch.roll(grid, shifts=(-r, -r), dims=(0, 1))           # centre at pixel (0, 0)
        # Real and even kernel: the imaginary part of its DFT is rounding only.
        self.spectrum = torch.fft.rfft2(grid).real                      # [H, W//2 + 1]
        size = self.spectrum.abs()
        keep = size > self.rcond * size.max()
        self._inverse_spectrum = torch.where(keep, 1.0 / torch.where(keep, self.spectrum, 1.0),
                                             0.0)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shape

    def _filter(self, v: Tensor, spectrum: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(v) * self._like(spectrum, v), s=v.shape[-2:])

    def _forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self.spectrum)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self.spectrum)

    def _pinv(self, y: Tensor) -> Tensor:
        return self._filter(y, self._inverse_spectrum)


# ---------------------------------------------------------------------------------------------
# Dense maps


class Projection(LinearOperator):
    """Any dense linear map: ``y = A · flatten(x)`` with ``A [rows, d]`` (compressed sensing,
    random projections, or a small operator given as a matrix).

    ``adjoint`` is Aᵀ; ``pinv`` applies ``torch.linalg.pinv(A)`` computed once at construction
    (float64, default cutoff).

    Args:
        matrix: ``[rows, d]`` finite tensor.
        shape: per-sample shape of x with ∏ shape = d; default ``(d,)``. y is ``[B, rows]``.
    """

    def __init__(self, matrix: Tensor, shape: Sequence[int] | None = None):
        if not isinstance(matrix, Tensor):
            matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise InputError(f"Projection: matrix must be a non-empty [rows, d] matrix, "
                             f"got shape {tuple(matrix.shape)}")
        a = matrix.to(torch.float64)
        check_finite(a, "Projection: matrix")
        shape = (a.shape[1],) if shape is None else _as_shape(shape, "Projection")
        if math.prod(shape) != a.shape[1]:
            raise InputError(f"Projection: sample shape {shape} has {math.prod(shape)} entries "
                             f"but the matrix has d = {a.shape[1]} columns")
        self.A = a
        self.A_pinv = torch.linalg.pinv(a)                              # [d, rows]
        self._in = shape
        self._out = (a.shape[0],)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._in

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._out

    def _forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self._like(self.A, x).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return (y @ self._like(self.A, y)).reshape(y.shape[0], *self._in)

    def _pinv(self, y: Tensor) -> Tensor:
        return (y @ self._like(self.A_pinv, y).T).reshape(y.shape[0], *self._in)


def random_projection(rows: int, d: int, generator: torch.Generator | None = None, *,
                      shape: Sequence[int] | None = None) -> Projection:
    """A :class:`Projection` with i.i.d. N(0, 1/rows) entries (so E‖A x‖² = ‖x‖²).

    Args:
        rows: number of measurements m ≥ 1.
        d: flattened sample size.
        generator: the random source.
        shape: per-sample shape of x (∏ shape = d); default ``(d,)``.
    """
    for name, v in (("rows", rows), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"random_projection: {name} must be an int >= 1, got {v!r}")
    a = torch.randn(rows, d, generator=generator, dtype=torch.float64) / math.sqrt(rows)
    return Projection(a, shape=shape)


# ---------------------------------------------------------------------------------------------
# Observations


def check_sigma_y(sigma_y: float | Tensor, what: str) -> float:
    """σ_y as a float; :class:`~monge.errors.InputError` unless finite and ≥ 0."""
    if isinstance(sigma_y, Tensor):
        if sigma_y.numel() != 1:
            raise InputError(f"{what}: sigma_y must be a scalar, got shape {tuple(sigma_y.shape)}")
        sigma_y = float(sigma_y)
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, int | float) or not (
            math.isfinite(sigma_y) and sigma_y >= 0):
        raise InputError(f"{what}: sigma_y must be a finite number >= 0, got {sigma_y!r}")
    return float(sigma_y)


def observe(op: LinearOperator, x: Tensor, sigma_y: float,
            generator: torch.Generator | None = None) -> Tensor:
    """A noisy observation y = A x + σ_y·n, n ~ N(0, I), in x's dtype and on its device.

    For a :class:`Mask` the noise touches the observed entries only (hidden entries of y stay 0).

    Args:
        op: the degradation operator A.
        x: clean batch ``[B, *op.input_shape]`` (finite).
        sigma_y: observation noise standard deviation (≥ 0).
        generator: the random source of n (on x's device).

    Example:
        >>> op = AvgPool(2, shape=(1, 4, 4))
        >>> observe(op, torch.ones(3, 1, 4, 4), 0.0).shape
        torch.Size([3, 1, 2, 2])
    """
    if not isinstance(op, LinearOperator):
        raise InputError(f"observe: op must be a LinearOperator, got {type(op).__name__}")
    sigma = check_sigma_y(sigma_y, "observe")
    x = op._check(x, op.input_shape, "forward", "x")
    check_finite(x, "observe: x")
    y = op.forward(x)
    if sigma == 0:
        return y
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + sigma * op._observation_noise(noise)


__all__ = ["AvgPool", "GaussianBlur", "LinearOperator", "Mask", "Projection", "box_mask",
           "check_sigma_y", "observe", "random_mask", "random_projection"]
