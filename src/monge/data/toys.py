"""Built-in 2-D toy distributions, drawn with torch from a generator (reproducible).

Each toy is a function ``toy(n, generator=None) -> Tensor`` returning float32 samples of shape
``[n, 2]`` on the generator's device. Scales are comparable: values lie within about
``[-5, 5]``. These are the standard benchmark sets of the flow-matching literature (e.g.
Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023; Tong et al., "Improving and
generalizing flow-based generative models with minibatch optimal transport", TMLR 2024).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> TOY_DATASETS["moons"](512, g).shape
    torch.Size([512, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from monge.errors import InputError

__all__ = [
    "TOY_DATASETS",
    "TOY_NUM_CLASSES",
    "checkerboard",
    "eight_gaussians",
    "gaussian",
    "moons",
    "rings",
    "spirals",
    "swissroll",
]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n: expected a positive integer number of samples, got {n!r}")
    return n


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=_device(generator), dtype=torch.float32)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=_device(generator), dtype=torch.float32)


def _randint(high: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(high, (n,), generator=generator, device=_device(generator))


def gaussian(n: int, generator: torch.Generator | None = None,
             shape: tuple[int, ...] = (2,)) -> torch.Tensor:
    """Standard normal samples N(0, I) of any per-sample shape (default ``(2,)``).

    Args:
        n: number of samples.
        generator: torch generator (its device is used).
        shape: per-sample shape, e.g. ``(1, 8, 8)`` for a source matching the digits.

    Returns:
        float32 tensor ``[n, *shape]``.
    """
    _check_n(n)
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"shape: expected positive dimensions, got {shape}")
    return _randn((n, *shape), generator)


def eight_gaussians(n: int, generator: torch.Generator | None = None,
                    return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Equal mixture of 8 Gaussians (std 0.5) centred on a circle of radius 4.

    Centres at angles ``2*pi*k/8``, ``k = 0..7``; k is the class label.

    Returns:
        float32 tensor ``[n, 2]`` (and int64 labels ``[n]`` with ``return_labels``).
    """
    _check_n(n)
    label = _randint(8, n, generator)
    angle = 2.0 * math.pi * label.to(torch.float32) / 8.0
    centres = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    x = centres + 0.5 * _randn((n, 2), generator)
    return (x, label.long()) if return_labels else x


def moons(n: int, generator: torch.Generator | None = None,
          return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Two interleaving half circles, as scikit-learn's ``make_moons(noise=0.05)``, scaled.

    Each point picks a moon with probability 1/2 and an angle ``theta ~ U[0, pi]``: the upper
    moon is ``(cos theta, sin theta)``, the lower ``(1 - cos theta, 0.5 - sin theta)``; Gaussian
    noise of std 0.05 is added, then the set is centred (subtract ``(0.5, 0.25)``) and scaled by
    3, so values lie in about ``[-4.7, 4.7] x [-2.5, 2.5]``.

    Returns:
        float32 tensor ``[n, 2]`` (and int64 labels ``[n]``, 1 for the lower moon, with
        ``return_labels``).
    """
    _check_n(n)
    lower = _randint(2, n, generator).to(torch.bool)
    theta = math.pi * _rand((n,), generator)
    x = torch.where(lower, 1.0 - torch.cos(theta), torch.cos(theta))
    y = torch.where(lower, 0.5 - torch.sin(theta), torch.sin(theta))
    points = torch.stack([x, y], dim=1) + 0.05 * _randn((n, 2), generator)
    offset = torch.tensor([0.5, 0.25], device=points.device, dtype=points.dtype)
    x = 3.0 * (points - offset)
    return (x, lower.long()) if return_labels else x


def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 "black" squares of a 4x4 checkerboard covering ``[-4, 4]^2``.

    Squares have side 2; square ``(i, j)`` (column ``i``, row ``j``, from the lower-left corner)
    is filled when ``i + j`` is even.

    Returns:
        float32 tensor ``[n, 2]``.
    """
    _check_n(n)
    row = _randint(4, n, generator)
    half_col = _randint(2, n, generator)
    col = 2 * half_col + (row % 2)  # i + j even
    corner = torch.stack([col, row], dim=1).to(torch.float32) * 2.0 - 4.0
    return corner + 2.0 * _rand((n, 2), generator)


def spirals(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two interleaved Archimedean spirals (1.5 turns each), radius up to 4, noise std 0.1.

    The angle is ``theta = 3*pi*sqrt(u)`` with ``u ~ U[0, 1]``, which spreads points evenly in arc
    length; the radius is ``4 * theta / (3*pi)``; the second spiral is the first rotated by pi.

    Returns:
        float32 tensor ``[n, 2]``.
    """
    _check_n(n)
    theta = 3.0 * math.pi * torch.sqrt(_rand((n,), generator))
    arm = _randint(2, n, generator).to(torch.float32)
    radius = 4.0 * theta / (3.0 * math.pi)
    angle = theta + math.pi * arm
    points = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return points + 0.1 * _randn((n, 2), generator)


def rings(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Four concentric circles of radii 1, 2, 3, 4 with equal mass, radial noise std 0.08.

    Returns:
        float32 tensor ``[n, 2]``.
    """
    _check_n(n)
    radius = (_randint(4, n, generator) + 1).to(torch.float32)
    radius = radius + 0.08 * _randn((n,), generator)
    angle = 2.0 * math.pi * _rand((n,), generator)
    return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


def swissroll(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """2-D swiss roll: ``t * (cos t, sin t)`` for ``t ~ U[1.5*pi, 4.5*pi]``, scaled by 1/7.

    This is the (x, z) projection of scikit-learn's ``make_swiss_roll`` with noise 0.5 (before
    scaling); the 1/7 factor gives each coordinate a standard deviation close to 1.

    Returns:
        float32 tensor ``[n, 2]``.
    """
    _check_n(n)
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand((n,), generator))
    points = t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    return (points + 0.5 * _randn((n, 2), generator)) / 7.0


TOY_NUM_CLASSES: dict[str, int] = {"8gaussians": 8, "moons": 2}
"""Toys with class labels (``toy(n, g, return_labels=True)``): mixture component, moon."""

TOY_DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian,
    "8gaussians": eight_gaussians,
    "moons": moons,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "rings": rings,
    "swissroll": swissroll,
}
"""Toy name -> sampler ``(n, generator) -> [n, 2]`` float32 tensor."""
