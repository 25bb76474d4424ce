"""Time grids as pure functions, registered by name (``GRIDS``).

A grid function returns the float64 times t0, ..., tN of an N-step solve (N + 1 points, t0 and
tN exactly the solve's ends). A grid that depends on a schedule (uniform in log-SNR, Karras ρ)
reaches it through the model wrapper's ``path.marginal_schedule()``, by duck typing, so this
module never imports :mod:`monge.paths`. At an end where λ is infinite or, from float64
round-off, |λ| > 25 (α or σ vanishes: the source of a linear path, the data end of VP) the
spacing is computed from t + δ or t − δ (δ = ``clamp``, default the model's ``t_clamp`` or
1e-3), and the end point is then the exact end.

``make_grid("karras:7", steps, model=m)`` parses ``name:argument`` specs as the CLI does
(``--grid uniform | logsnr | karras[:ρ] | shift:S | shift:res``); a grid is applied exactly once,
to a uniform grid of the solve's steps.

- ``uniform``: equal steps in t.
- ``logsnr``: equal steps in λ = log(α/σ) (DPM-Solver's choice; Lu et al. 2022).
- ``karras``: σ̄_i = (σ̄_max^{1/ρ} + i/N·(σ̄_min^{1/ρ} − σ̄_max^{1/ρ}))^ρ, ρ = 7 (Karras et al.
  2022, "Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5).
- ``shift``: the SD3 time shift on the noise level u = 1 − t, u' = S·u/(1 + (S − 1)·u)
  (Esser et al. 2024, "Scaling Rectified Flow Transformers", §5.3.2); ``shift:res`` takes the
  resolution-dependent factor S = √(d/d_ref) from the data dimension d (``dim=``; d_ref = 64,
  the 8×8 digits, so S = 1 there).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from monge.core.registry import Registry
from monge.errors import InputError

GRIDS: Registry = Registry("grid")
_LAMBDA_MAX = 25.0
"""|λ| beyond which an end is treated as the path's singular end (σ̄ < 1e-11 or > 1e11)."""


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")


@GRIDS.register("uniform", description="equal steps in t")
def uniform_grid(steps: int, t0: float = 0.0, t1: float = 1.0, model: Any = None,
                 **_: Any) -> Tensor:
    """Uniform grid of ``steps`` steps from t0 to t1 (float64, steps + 1 points)."""
    _check_steps(steps)
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


def _schedule(model: Any, grid: str) -> Any:
    path = getattr(model, "path", None)
    view = path.marginal_schedule() if hasattr(path, "marginal_schedule") else None
    if view is None:
        raise InputError(f"grid {grid!r}: needs a model whose path has a noise schedule (a "
                         "monge model wrapper); use --grid uniform or shift:S")
    return view


def _spaced(model: Any, steps: int, t0: float, t1: float, clamp: float | None, name: str,
            to_u, from_u) -> Tensor:
    """Times equally spaced in u = to_u(λ) over [t0, t1], with infinite ends clamped by δ."""
    _check_steps(steps)
    view = _schedule(model, name)
    delta = clamp if clamp is not None else (getattr(model, "t_clamp", 0.0) or 1e-3)
    direction = 1.0 if t1 >= t0 else -1.0
    ends = torch.tensor([t0, t1], dtype=torch.float64)
    lam = view.log_snr(ends)
    inner = ends.clone()
    for i, sign in ((0, direction), (1, -direction)):
        if not abs(float(lam[i])) < _LAMBDA_MAX:  # infinite, or huge from float64 round-off
            inner[i] = ends[i] + sign * delta
    u = to_u(view.log_snr(inner))
    frac = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    ts = view.t_from_log_snr(from_u(u[0] + frac * (u[1] - u[0])))
    ts[0], ts[-1] = t0, t1
    if not bool(torch.isfinite(ts).all()):
        raise InputError(f"grid {name!r}: the schedule gives non-finite times on [{t0}, {t1}]")
    d = ts[1:] - ts[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise InputError(f"grid {name!r}: {steps} steps are too many for the clamped range "
                         f"[{float(inner[0])}, {float(inner[1])}] (times not strictly monotone)")
    return ts


@GRIDS.register("logsnr", description="equal steps in log-SNR λ = log(α/σ)")
def logsnr_grid(steps: int, t0: float = 0.0, t1: float = 1.0, model: Any = None,
                clamp: float | None = None, **_: Any) -> Tensor:
    """Equal steps in λ between the (clamped) ends."""
    return _spaced(model, steps, t0, t1, clamp, "logsnr", lambda lam: lam, lambda u: u)


@GRIDS.register("karras", description="EDM ρ-spacing of σ̄ = σ/α (karras:ρ, default ρ = 7)")
def karras_grid(steps: int, t0: float = 0.0, t1: float = 1.0, model: Any = None,
                rho: float = 7.0, clamp: float | None = None, **_: Any) -> Tensor:
    """Equal steps in σ̄^(1/ρ) = e^(−λ/ρ) between the (clamped) ends."""
    if not (isinstance(rho, int | float) and rho > 0 and math.isfinite(rho)):
        raise InputError(f"grid 'karras': ρ must be a positive number, got {rho!r}")
    return _spaced(model, steps, t0, t1, clamp, "karras",
                   lambda lam: torch.exp(-lam / rho), lambda u: -rho * torch.log(u))


def shift_time(t: Tensor, factor: float) -> Tensor:
    """The SD3 shift in monge time: u = 1 − t ↦ S·u/(1 + (S − 1)·u), t' = 1 − u'."""
    u = 1.0 - t
    return 1.0 - factor * u / (1.0 + (factor - 1.0) * u)


@GRIDS.register("shift", description="SD3 time shift (shift:S static, shift:res by resolution)")
def shift_grid(steps: int, t0: float = 0.0, t1: float = 1.0, model: Any = None,
               factor: float | str = 3.0, dim: int | None = None, base_dim: int = 64,
               **_: Any) -> Tensor:
    """A grid uniform in the unshifted time, mapped through :func:`shift_time` (S > 1 puts more
    steps near the noise end). ``factor="res"`` uses S = √(dim/base_dim)."""
    _check_steps(steps)
    if factor == "res":
        if dim is None:
            raise InputError("grid 'shift:res': needs the data dimension (dim=)")
        factor = math.sqrt(dim / base_dim)
    if not (isinstance(factor, int | float) and factor > 0 and math.isfinite(factor)):
        raise InputError(f"grid 'shift': the factor must be a positive number or 'res', got "
                         f"{factor!r}")
    inverse = 1.0 / float(factor)  # the shift with 1/S is the inverse map
    ends = shift_time(torch.tensor([t0, t1], dtype=torch.float64), inverse)
    ts = shift_time(torch.linspace(float(ends[0]), float(ends[1]), steps + 1,
                                   dtype=torch.float64), float(factor))
    ts[0], ts[-1] = t0, t1
    return ts


_ARGUMENT = {"karras": "rho", "shift": "factor"}


def parse_grid(spec: str) -> tuple[str, dict[str, Any]]:
    """``"karras:5"`` → ("karras", {"rho": 5.0}); ``"shift:res"`` → ("shift", {"factor": "res"}).

    Raises:
        InputError: an unknown grid name, or an argument the grid does not take.
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(f"grid: expected a name such as {GRIDS.help_text()}, got {spec!r}")
    name, _, arg = spec.partition(":")
    name = GRIDS.canonical(name.strip())
    if not arg:
        return name, {}
    if name not in _ARGUMENT:
        raise InputError(f"grid {name!r} takes no argument (got {spec!r})")
    arg = arg.strip()
    if name == "shift" and arg == "res":
        return name, {"factor": "res"}
    try:
        value = float(arg)
    except ValueError:
        raise InputError(f"grid {spec!r}: the argument must be a number"
                         + (" or 'res'" if name == "shift" else "")) from None
    return name, {_ARGUMENT[name]: value}


def make_grid(spec: str, steps: int, t0: float = 0.0, t1: float = 1.0,
              model: Any = None, dim: int | None = None) -> Tensor:
    """The grid ``spec`` (a name or ``name:argument``) with ``steps`` steps from t0 to t1."""
    name, kwargs = parse_grid(spec)
    return GRIDS.build(name, steps=steps, t0=t0, t1=t1, model=model, dim=dim, **kwargs)
