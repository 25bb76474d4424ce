"""Input validation and shared helpers for the OT solvers (one wording for every solver)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from monge.core.checks import as_tensor, check_finite
from monge.errors import InputError

EpsScale = Literal["absolute", "max_cost"]


@dataclass
class Problem:
    """A validated OT problem: tensors on one device/dtype, batched as ``[B, n]``, ``[B, n, m]``."""

    a: torch.Tensor
    b: torch.Tensor
    C: torch.Tensor
    batched: bool

    @property
    def dtype(self) -> torch.dtype:
        return self.C.dtype

    def unbatch(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the leading batch dimension added for an unbatched problem."""
        return x if self.batched else x[0]


def default_tol(dtype: torch.dtype) -> float:
    """Default marginal-error tolerance: 1e-8 in float64, about 1e-5 in float32."""
    return max(1e-8, 100.0 * torch.finfo(dtype).eps)


def prepare(a, b, C, *, batch_ok: bool = True, mass_rtol: float | None = None) -> Problem:
    """Validate and convert ``(a, b, C)``; ``a``/``b`` may be ``None`` (uniform).

    The cost's floating dtype and device win; integer costs become the default float dtype;
    half-precision costs (float16, bfloat16) are refused with one line.
    Marginals are checked for shape, sign, finiteness and equal total mass (relative tolerance
    ``mass_rtol``, default ``max(1e-6, 100 * dtype eps)``); ``b`` is then rescaled to ``a``'s mass.
    """
    C = as_tensor(C, "C")
    if C.dtype in (torch.float16, torch.bfloat16):
        raise InputError(f"C: dtype {C.dtype} is too coarse for OT (marginal errors of ~1e-2 and "
                         "worse); convert to float32 or float64")
    if C.ndim not in ((2, 3) if batch_ok else (2,)):
        want = "[n, m] or [B, n, m]" if batch_ok else "[n, m]"
        raise InputError(f"C: expected a cost matrix of shape {want}, got shape {tuple(C.shape)}")
    if C.shape[-1] == 0 or C.shape[-2] == 0:
        raise InputError(f"C: empty cost matrix of shape {tuple(C.shape)}")
    check_finite(C, "C")
    batched = C.ndim == 3
    if not batched:
        C = C.unsqueeze(0)
    B, n, m = C.shape
    marg = []
    for name, x, size in (("a", a, n), ("b", b, m)):
        if x is None:
            x = torch.full((B, size), 1.0 / size, dtype=C.dtype, device=C.device)
        else:
            x = as_tensor(x, name).to(dtype=C.dtype, device=C.device)
            if x.ndim == 1 and x.shape[0] == size:
                x = x.expand(B, size)
            elif not (x.ndim == 2 and batched and x.shape == (B, size)):
                raise InputError(
                    f"{name}: expected shape {(size,)}{' or ' + str((B, size)) if batched else ''}"
                    f" to match C of shape {tuple(C.shape if batched else C.shape[1:])},"
                    f" got {tuple(x.shape)}")
            check_finite(x, name)
            if bool((x < 0).any()):
                raise InputError(f"{name}: marginal has {int((x < 0).sum())} negative entries")
        marg.append(x)
    a, b = marg
    b = check_masses(a, b, mass_rtol)
    return Problem(a=a.contiguous(), b=b.contiguous(), C=C.contiguous(), batched=batched)


def resolve_eps(eps: float, eps_scale: EpsScale, C: torch.Tensor) -> tuple[float, float | None]:
    """Turn ``eps`` into cost units; returns ``(eps_abs, cost_scale or None)``."""
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise InputError(f"eps: must be a positive finite number, got {eps!r}")
    if eps_scale == "absolute":
        return float(eps), None
    if eps_scale == "max_cost":
        scale = float(C.abs().max())
        if scale == 0.0:
            raise InputError("eps: cannot be relative to the cost scale when C is all zeros")
        return float(eps) * scale, scale
    raise InputError(f"eps_scale: expected 'absolute' or 'max_cost', got {eps_scale!r}")


def check_eps_precision(eps: float, C: torch.Tensor, flags: list[str]) -> None:
    """Warn (and flag) when ``eps`` is so small that ``C/eps`` loses all precision in the dtype."""
    spread = float(C.max() - C.min())
    if spread > 0 and eps < 10.0 * torch.finfo(C.dtype).eps * float(C.abs().max()):
        msg = (f"eps: {eps:.3g} is below the {C.dtype} resolution of the cost "
               f"(max |C| = {float(C.abs().max()):.3g}); the result is unreliable")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        flags.append("eps_below_dtype_precision")


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Raise :class:`InputError` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_positive_float(value: float, name: str) -> float:
    """Raise :class:`InputError` unless ``value`` is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise InputError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def marginal_error(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||P 1 - a||_1 + ||P^T 1 - b||_1`` over the last two dimensions."""
    return (P.sum(-1) - a).abs().sum(-1) + (P.sum(-2) - b).abs().sum(-1)


def check_masses(a: torch.Tensor, b: torch.Tensor, mass_rtol: float | None = None) -> torch.Tensor:
    """Check that ``a`` and ``b`` have equal positive total mass (relative tolerance
    ``mass_rtol``, default ``max(1e-6, 100 * dtype eps)``); returns ``b`` rescaled to ``a``'s
    mass. The one place every OT solver (dense or online) checks masses."""
    sa, sb = a.detach().sum(-1), b.detach().sum(-1)
    if bool((sa <= 0).any()) or bool((sb <= 0).any()):
        raise InputError("a and b: marginals must have positive total mass")
    rtol = mass_rtol if mass_rtol is not None else max(1e-6, 100.0 * torch.finfo(a.dtype).eps)
    gap = ((sa - sb).abs() / torch.maximum(sa, sb)).max()
    if float(gap) > rtol:
        raise InputError(
            f"a and b: total masses differ ({float(sa.flatten()[0]):.6g} vs "
            f"{float(sb.flatten()[0]):.6g}, relative gap {float(gap):.2e} > {rtol:.1e})")
    return b * (sa / sb).unsqueeze(-1).to(b.dtype)
