"""Coordinate networks (neural fields) and the CQ-NIR coordinate quantisation.

A neural field maps spatial coordinates ``x: [N, d]`` to values ``[N, out]``; it has no time
input (INSR advances its *weights* in time). Two families:

- :class:`Siren`: sine activations ``sin(ω0 z)`` with Sitzmann et al.'s initialisation (as used by
  INSR, Chen et al., ICML 2023).
- :class:`CoordinateMLP`: a plain MLP (tanh by default) with an optional sinusoidal positional
  encoding of the input.

:func:`quantize_coords` / :class:`QuantizedField` implement CQ-NIR (Jiang, Hua, Han, ICCV 2023):
snap each query to the centre of its cell of a very fine grid before the network sees it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monge.errors import ConfigError, InputError

__all__ = ["Siren", "CoordinateMLP", "positional_encoding", "quantize_coords", "QuantizedField",
           "count_parameters", "make_field"]


def count_parameters(net: nn.Module) -> int:
    """Number of stored floats (parameters) of ``net``: the memory INSR's claim counts."""
    return sum(p.numel() for p in net.parameters())


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")


class _SineLayer(nn.Module):
    def __init__(self, fan_in: int, fan_out: int, omega: float, first: bool) -> None:
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(fan_in, fan_out)
        bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * self.linear(x))


class Siren(nn.Module):
    """SIREN coordinate network: ``depth`` hidden sine layers of ``width``, linear output.

    Method: ``z ← sin(ω0 (W z + b))``; first-layer weights U(-1/fan_in, 1/fan_in), later ones
    U(±√(6/fan_in)/ω0) (Sitzmann et al., NeurIPS 2020; INSR's ``base/networks.py``). Inputs
    are divided by ``scale`` first (INSR keeps samples in [-L/2, L/2]; pass the half-length of
    a larger box to keep the initial frequency content). Cost O(N width² depth).

    Args:
        in_dim: coordinate dimension.
        out_dim: number of output values.
        width: hidden width.
        depth: number of hidden layers.
        omega0: frequency factor (30 in the paper).
        scale: inputs are divided by this before the first layer.
        generator: seed or ``torch.Generator`` for the initialisation.
    """

    def __init__(self, in_dim: int, out_dim: int = 1, width: int = 20, depth: int = 2,
                 omega0: float = 30.0, scale: float = 1.0,
                 generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width),
                        ("depth", depth)):
            _positive(name, v)
        with _seeded(generator):
            layers: list[nn.Module] = [_SineLayer(in_dim, width, omega0, True)]
            layers += [_SineLayer(width, width, omega0, False) for _ in range(depth - 1)]
            out = nn.Linear(width, out_dim)
            bound = math.sqrt(6.0 / width) / omega0
            with torch.no_grad():
                out.weight.uniform_(-bound, bound)
            layers.append(out)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.scale = in_dim, out_dim, float(scale)

    def forward(self, x: Tensor) -> Tensor:
        _check_coords(x, self.in_dim)
        return self.net(x / self.scale)


def positional_encoding(x: Tensor, n_freq: int) -> Tensor:
    """NeRF-style encoding ``[x, sin(2^j π x), cos(2^j π x)]_{j < n_freq}`` of ``x: [N, d]``."""
    if n_freq == 0:
        return x
    freqs = (2.0 ** torch.arange(n_freq, device=x.device, dtype=x.dtype)) * math.pi
    z = x[..., None] * freqs                                    # [N, d, F]
    return torch.cat([x, torch.sin(z).flatten(-2), torch.cos(z).flatten(-2)], dim=-1)


class CoordinateMLP(nn.Module):
    """Plain coordinate MLP ``x -> value`` with optional positional encoding.

    Args:
        in_dim: coordinate dimension.
        out_dim: number of output values.
        width: hidden width.
        depth: number of hidden layers.
        activation: ``"tanh"``, ``"relu"``, ``"silu"`` or ``"softplus"``.
        n_freq: frequencies of :func:`positional_encoding` (0: raw coordinates).
        generator: seed or ``torch.Generator`` for the initialisation.
    """

    ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "softplus": nn.Softplus}

    def __init__(self, in_dim: int, out_dim: int = 1, width: int = 64, depth: int = 3,
                 activation: str = "tanh", n_freq: int = 0,
                 generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width),
                        ("depth", depth)):
            _positive(name, v)
        if activation not in self.ACTIVATIONS:
            raise ConfigError(f"activation: unknown {activation!r}; choose one of "
                              f"{', '.join(self.ACTIVATIONS)}")
        if n_freq < 0:
            raise ConfigError(f"n_freq: expected >= 0, got {n_freq}")
        act = self.ACTIVATIONS[activation]
        feat = in_dim * (1 + 2 * n_freq)
        with _seeded(generator):
            layers: list[nn.Module] = [nn.Linear(feat, width), act()]
            for _ in range(depth - 1):
                layers += [nn.Linear(width, width), act()]
            layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.n_freq = in_dim, out_dim, n_freq

    def forward(self, x: Tensor) -> Tensor:
        _check_coords(x, self.in_dim)
        return self.net(positional_encoding(x, self.n_freq))


def make_field(kind: str, in_dim: int, out_dim: int = 1, width: int = 20, depth: int = 2,
               scale: float = 1.0, generator: int | torch.Generator | None = None) -> nn.Module:
    """Build a field by name: ``"siren"`` (:class:`Siren`) or ``"mlp"`` (tanh
    :class:`CoordinateMLP`); inputs are divided by ``scale``."""
    if kind == "siren":
        return Siren(in_dim, out_dim, width, depth, scale=scale, generator=generator)
    if kind == "mlp":
        return _Scaled(CoordinateMLP(in_dim, out_dim, width, depth, generator=generator), scale)
    raise ConfigError(f"field: unknown kind {kind!r}; choose 'siren' or 'mlp'")


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = net, float(scale)
        self.in_dim, self.out_dim = net.in_dim, net.out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x / self.scale)


def quantize_coords(x: Tensor, lo: float | Tensor, hi: float | Tensor, resolution: int) -> Tensor:
    """CQ-NIR coordinate quantisation: snap each point to the centre of its cell.

    Method (Jiang, Hua, Han, "Coordinate Quantized Neural Implicit Representations for
    Multi-view 3D Reconstruction", ICCV 2023): ``p' = (x - lo)/(hi - lo)``,
    ``idx = floor(p' (R - 1))``, ``q = lo + (hi - lo)(idx + 0.5)/(R - 1)``. The result is
    detached (``floor`` has zero derivative): take spatial gradients w.r.t. ``q`` as a fresh
    leaf, as the paper's code does. Points outside the box are clamped into it. O(N d).

    Args:
        x: coordinates ``[..., d]``.
        lo, hi: box bounds (scalars or ``[d]``), ``hi > lo``.
        resolution: cells per axis R (>= 2).

    Returns:
        Snapped coordinates of ``x``'s shape, dtype and device.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError(f"resolution: expected an integer >= 2, got {resolution!r}")
    lo_t = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
    hi_t = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
    if not bool((hi_t > lo_t).all()):
        raise InputError(f"lo, hi: expected hi > lo, got lo={lo}, hi={hi}")
    p = ((x.detach() - lo_t) / (hi_t - lo_t)).clamp(0.0, 1.0)
    idx = torch.floor(p * (resolution - 1)).clamp(max=resolution - 2)
    return lo_t + (hi_t - lo_t) * (idx + 0.5) / (resolution - 1)


class QuantizedField(nn.Module):
    """Wrap a coordinate network so that it only ever sees CQ-NIR-snapped coordinates.

    Args:
        net: the coordinate network.
        lo, hi: bounding box.
        resolution: cells per axis (the paper uses 25 600 over a box of side 5).
    """

    def __init__(self, net: nn.Module, lo: float, hi: float, resolution: int) -> None:
        super().__init__()
        quantize_coords(torch.zeros(1, 1), lo, hi, resolution)   # validate arguments
        self.net, self.lo, self.hi, self.resolution = net, lo, hi, resolution

    def forward(self, x: Tensor) -> Tensor:
        return self.net(quantize_coords(x, self.lo, self.hi, self.resolution))


def _check_coords(x: Tensor, in_dim: int) -> None:
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise InputError(f"x: expected coordinates of shape [N, {in_dim}], got "
                         f"{tuple(x.shape)}")


class _seeded:
    """Context manager: initialise parameters from a seed/generator without touching the
    global RNG state seen by the caller."""

    def __init__(self, generator: int | torch.Generator | None) -> None:
        self.generator = generator

    def __enter__(self) -> None:
        self._state = torch.random.get_rng_state()
        g = self.generator
        if isinstance(g, torch.Generator):
            seed = int(torch.randint(0, 2**62, (1,), generator=g))
        elif g is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        else:
            seed = int(g)
        torch.manual_seed(seed)

    def __exit__(self, *exc) -> None:
        torch.random.set_rng_state(self._state)
