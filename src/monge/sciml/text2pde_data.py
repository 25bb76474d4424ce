"""Viscous Burgers trajectories from known factors, their text descriptors and physical read-outs.

The data of the Text2PDE-style experiment (Zhou et al., "Text2PDE: Latent Diffusion Models for
Accessible Physics Simulation", ICLR 2025, arXiv:2410.01153; spec §3): 1-D viscous Burgers
``u_t + u u_x = ν u_xx`` on the periodic unit interval, saved as 32 frames × 64 points, from
three known factors:

- viscosity ν (log-uniform, rounded to two significant digits so the descriptor is exact),
- number of waves m (the dominant wavenumber of the initial state: m crests in the domain),
- amplitude A = max |u0| (rounded to one decimal).

The initial state is ``u0 = A s / max|s|`` with ``s = sin(2π m x + φ_m) + Σ_{j<m} c_j
sin(2π j x + φ_j)``, random phases φ and ``c_j ~ U[0, 1/2]``, so mode m dominates. Each
trajectory has the templated descriptor ``"viscosity 0.012, 2 waves, amplitude 0.8"``.

The solver is a batched pseudo-spectral method (2/3 dealiasing, classical RK4 with the exact
integrating factor of the viscous term), run on a finer grid and sampled at the saved points;
it agrees with :func:`monge.sciml.references.spectral_burgers` (the library's reference) to
its tolerance and conserves mass to round-off. The read-outs turn a trajectory back into
factors: :func:`estimate_viscosity` uses the exact energy identity of periodic Burgers,
``dE/dt = -ν ∫ u_x² dx`` (the convective term conserves ``E = ½ ∫ u² dx``), and
:func:`dominant_wavenumber` reads the number of waves off the first frame's spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monge.errors import InputError

__all__ = ["BurgersTrajectories", "burgers_pseudo_spectral", "make_burgers_trajectories",
           "describe", "energy", "estimate_viscosity", "dominant_wavenumber",
           "amplitude_of"]


@dataclass
class BurgersTrajectories:
    """A set of Burgers trajectories with the factors that generated them.

    Attributes:
        u: solutions ``[N, frames, points]`` (float64), frame 0 is the initial state.
        nu: viscosities ``[N]``.
        waves: number of waves (dominant wavenumber) ``[N]``.
        amplitude: ``max |u0|`` ``[N]``.
        descriptors: one templated text descriptor per trajectory.
        times: frame times ``[frames]`` (from 0 to ``t_final``).
        length: period of the domain.
    """

    u: np.ndarray
    nu: np.ndarray
    waves: np.ndarray
    amplitude: np.ndarray
    descriptors: list[str]
    times: np.ndarray
    length: float = 1.0

    def __len__(self) -> int:
        return int(self.u.shape[0])

    @property
    def x(self) -> np.ndarray:
        """Grid points ``[points]`` on ``[0, length)``."""
        n = self.u.shape[2]
        return self.length * np.arange(n) / n

    def subset(self, index) -> BurgersTrajectories:
        """The trajectories at ``index`` (a slice or an integer array)."""
        idx = np.arange(len(self))[index]
        return BurgersTrajectories(self.u[idx], self.nu[idx], self.waves[idx],
                                   self.amplitude[idx], [self.descriptors[i] for i in idx],
                                   self.times, self.length)


def _checked_field(u0, name: str = "u0") -> np.ndarray:
    u = np.asarray(u0, dtype=np.float64)
    if u.ndim == 1:
        u = u[None]
    if u.ndim != 2 or u.shape[1] < 4:
        raise InputError(f"{name}: expected shape [N, points] with at least 4 points, got "
                         f"{np.shape(u0)}")
    if not np.isfinite(u).all():
        raise InputError(f"{name}: contains NaN or Inf values")
    return u


def burgers_pseudo_spectral(u0, nu, times, *, length: float = 1.0, cfl: float = 0.2
                            ) -> np.ndarray:
    """Solve periodic viscous Burgers for a batch of initial states at once.

    Method: ``û_t = -ν k² û - (i k / 2) F[u²]`` with the 2/3 rule on the product, integrated
    by classical RK4 on ``e^{ν k² t} û`` (the integrating factor makes the viscous term exact
    and removes its stiffness). The step keeps ``max|u0| dt / dx <= cfl`` (Burgers obeys a
    maximum principle, so ``max|u0|`` bounds the speed). Spectral in space, order 4 in time;
    O(N n log n) per stage, vectorised over the batch.

    Args:
        u0: initial states ``[N, n]`` (or ``[n]``) on a periodic grid of period ``length``.
        nu: viscosity, one number or ``[N]`` (each > 0).
        times: increasing output times starting at 0.
        length: period of the domain.
        cfl: step limit ``max|u0| dt / dx``.

    Returns:
        ``[N, len(times), n]`` solutions (frame 0 is ``u0``).
    """
    u = _checked_field(u0)
    batch, n = u.shape
    nu = np.broadcast_to(np.asarray(nu, dtype=np.float64), (batch,))
    if not (np.isfinite(nu).all() and (nu > 0).all()):
        raise InputError("nu: expected positive, finite viscosities")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 1 or times[0] != 0 or (np.diff(times) <= 0).any():
        raise InputError("times: expected a 1-D increasing array starting at 0")
    if not 0 < cfl <= 1:
        raise InputError(f"cfl: expected a number in (0, 1], got {cfl}")
    k = 2 * np.pi / length * np.arange(n // 2 + 1)
    keep = np.arange(n // 2 + 1) < n / 3

    def nonlinear(vh: np.ndarray) -> np.ndarray:
        v = np.fft.irfft(vh * keep, n=n, axis=1)
        return -0.5j * k * np.fft.rfft(v * v, axis=1) * keep

    speed = max(float(np.abs(u).max()), 1e-12)
    dt_max = cfl * (length / n) / speed
    uh = np.fft.rfft(u, axis=1)
    out = [u.copy()]
    for t_prev, t_next in zip(times[:-1], times[1:], strict=True):
        m = max(1, math.ceil((t_next - t_prev) / dt_max - 1e-9))
        dt = (t_next - t_prev) / m
        e1 = np.exp(-nu[:, None] * k * k * dt / 2)
        e2 = e1 * e1
        for _ in range(m):
            a = nonlinear(uh)
            b = nonlinear(e1 * (uh + dt / 2 * a))
            c = nonlinear(e1 * uh + dt / 2 * b)
            d = nonlinear(e2 * uh + dt * e1 * c)
            uh = e2 * uh + dt / 6 * (e2 * a + 2 * e1 * (b + c) + d)
        out.append(np.fft.irfft(uh, n=n, axis=1))
    return np.stack(out, axis=1)


def describe(nu: float, waves: int, amplitude: float) -> str:
    """The templated descriptor, e.g. ``"viscosity 0.012, 2 waves, amplitude 0.8"``."""
    return f"viscosity {nu:.2g}, {int(waves)} wave{'s' if waves != 1 else ''}, " \
           f"amplitude {amplitude:.1f}"


def make_burgers_trajectories(n: int, *, seed: int = 0, points: int = 64, frames: int = 32,
                              t_final: float = 0.25, nu_range: tuple[float, float] = (0.005,
                                                                                      0.05),
                              waves: tuple[int, ...] = (1, 2, 3),
                              amplitude_range: tuple[float, float] = (0.5, 1.0),
                              refine: int = 4) -> BurgersTrajectories:
    """Draw ``n`` Burgers trajectories from random factors (module docstring) and solve them.

    Cost: one batched :func:`burgers_pseudo_spectral` solve on ``refine × points`` points (about
    a second per thousand trajectories with the defaults).

    Args:
        n: number of trajectories.
        seed: seed of the factors, phases and mode weights.
        points, frames: saved grid (``points`` even) and number of frames (frame 0 = u0).
        t_final: time of the last frame.
        nu_range: log-uniform viscosity range.
        waves: allowed numbers of waves (each in 1..points/4).
        amplitude_range: uniform amplitude range.
        refine: the solve runs on ``refine × points`` points, then is sampled at the saved ones.

    Returns:
        :class:`BurgersTrajectories`.
    """
    if n < 1 or frames < 2 or points < 8 or points % 2 or refine < 1:
        raise InputError(f"make_burgers_trajectories: need n >= 1, frames >= 2, even points "
                         f">= 8 and refine >= 1 (got n={n}, frames={frames}, points={points}, "
                         f"refine={refine})")
    lo, hi = nu_range
    if not 0 < lo <= hi or t_final <= 0:
        raise InputError(f"nu_range, t_final: expected 0 < lo <= hi and t_final > 0, got "
                         f"{nu_range}, {t_final}")
    if not waves or min(waves) < 1 or max(waves) > points // 4:
        raise InputError(f"waves: expected numbers in 1..{points // 4}, got {waves}")
    rng = np.random.default_rng(seed)
    nu = np.array([float(f"{v:.2g}") for v in np.exp(rng.uniform(np.log(lo), np.log(hi), n))])
    m = rng.choice(np.asarray(waves), size=n)
    amp = np.round(rng.uniform(*amplitude_range, n), 1)
    fine = refine * points
    x = np.arange(fine) / fine
    s = np.zeros((n, fine))
    phases = rng.uniform(0, 2 * np.pi, (n, max(waves)))
    weights = rng.uniform(0, 0.5, (n, max(waves)))
    for i in range(n):
        for j in range(1, m[i] + 1):
            c = 1.0 if j == m[i] else weights[i, j - 1]
            s[i] += c * np.sin(2 * np.pi * j * x + phases[i, j - 1])
    u0 = amp[:, None] * s / np.abs(s).max(axis=1, keepdims=True)
    times = np.linspace(0.0, t_final, frames)
    u = burgers_pseudo_spectral(u0, nu, times)[:, :, ::refine]
    desc = [describe(a, b, c) for a, b, c in zip(nu, m, amp, strict=True)]
    return BurgersTrajectories(u, nu, m.astype(np.int64), amp, desc, times)


def _trajectories(u, name: str = "u") -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 2:
        u = u[None]
    if u.ndim != 3 or u.shape[1] < 2 or u.shape[2] < 4:
        raise InputError(f"{name}: expected trajectories [N, frames, points], got shape "
                         f"{np.shape(u)}")
    if not np.isfinite(u).all():
        raise InputError(f"{name}: contains NaN or Inf values")
    return u


def energy(u, length: float = 1.0) -> np.ndarray:
    """Kinetic energy ``E = ½ ∫ u² dx`` of every frame: ``[N, frames]``."""
    u = _trajectories(u)
    return 0.5 * length * (u * u).mean(axis=-1)


def estimate_viscosity(u, times, length: float = 1.0, modes: int | None = None) -> np.ndarray:
    """Viscosity read back from the energy decay of each trajectory.

    Method: integrating ``dE/dt = -ν ∫ u_x² dx`` over the saved window gives
    ``ν̂ = (E(t_0) - E(t_end)) / ∫ ∫ u_x² dx dt``, with spectral ``u_x`` and the trapezoid rule
    in time. Exact for the PDE up to the time quadrature and the grid's resolution; a
    generated trajectory that decays at the wrong rate gets the wrong ν̂. O(N T n log n).

    Args:
        u: trajectories ``[N, frames, points]``.
        times: frame times ``[frames]``.
        length: period of the domain.
        modes: keep only wavenumbers ``< modes`` (low-pass; None keeps all).

    Returns:
        ``[N]`` estimates (NaN where the energy does not change).
    """
    u = _trajectories(u)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (u.shape[1],):
        raise InputError(f"times: expected {u.shape[1]} frame times, got shape {times.shape}")
    n = u.shape[2]
    uh = np.fft.rfft(u, axis=-1)
    if modes is not None:
        uh[..., modes:] = 0
        u = np.fft.irfft(uh, n=n, axis=-1)
    k = 2 * np.pi / length * np.arange(n // 2 + 1)
    ux = np.fft.irfft(1j * k * uh, n=n, axis=-1)
    dissipation = length * (ux * ux).mean(axis=-1)
    e = energy(u, length)
    integral = np.trapezoid(dissipation, times, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(integral > 0, (e[:, 0] - e[:, -1]) / integral, np.nan)


def dominant_wavenumber(u) -> np.ndarray:
    """The number of waves of each trajectory: the largest Fourier mode (>= 1) of frame 0."""
    u = _trajectories(u)
    return np.abs(np.fft.rfft(u[:, 0], axis=-1))[:, 1:].argmax(axis=-1) + 1


def amplitude_of(u) -> np.ndarray:
    """``max |u|`` of the first frame of each trajectory."""
    return np.abs(_trajectories(u)[:, 0]).max(axis=-1)


