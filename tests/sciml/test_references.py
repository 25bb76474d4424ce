"""Classical reference solvers: convergence orders, exactness, Taylor–Green, CFL errors."""

import math
import warnings

import numpy as np
import pytest

from monge.errors import InputError
from monge.sciml.references import (
    CFLWarning,
    fourier_interpolate,
    heat_dirichlet_2d,
    lax_wendroff_advection,
    periodic_grid,
    relative_l2,
    semi_lagrangian_advection,
    spectral_advection,
    spectral_burgers,
    spectral_heat,
    spectral_navier_stokes_2d,
    stable_fluids_2d,
    taylor_green_vortex,
    upwind_advection,
)

L = 2 * np.pi


def _advect_errors(scheme, ns, **kw):
    errs = []
    for n in ns:
        x = periodic_grid(n, 0, L)
        res = scheme(np.sin(x), 1.0, L / n, 1.0, cfl=0.5, **kw)
        errs.append(relative_l2(res.u, np.sin(x - 1.0)))
    return np.array(errs)


def _order(errs):
    return np.log2(errs[:-1] / errs[1:])


def test_upwind_first_order():
    p = _order(_advect_errors(upwind_advection, [64, 128, 256]))
    assert np.all(np.abs(p - 1) < 0.15), p


def test_lax_wendroff_second_order():
    p = _order(_advect_errors(lax_wendroff_advection, [32, 64, 128]))
    assert np.all(np.abs(p - 2) < 0.15), p


def test_semi_lagrangian_converges_and_any_dt():
    errs = []
    for n in (64, 128, 256):
        x = periodic_grid(n, 0, L)
        dx = L / n
        res = semi_lagrangian_advection(np.sin(x), 1.0, dx, 1.0, dt=2 * dx)  # CFL = 2
        errs.append(relative_l2(res.u, np.sin(x - 1.0)))
    p = _order(np.array(errs))
    assert np.all(p > 0.8), p


def test_spectral_advection_exact_for_band_limited():
    x = periodic_grid(64, 0, L)
    u0 = np.sin(x) + 0.3 * np.cos(5 * x)
    beta, nu, t = 30.0, 0.01, 0.7
    exact = (np.exp(-nu * t) * np.sin(x - beta * t)
             + 0.3 * np.exp(-25 * nu * t) * np.cos(5 * (x - beta * t)))
    assert relative_l2(spectral_advection(u0, beta, L, t, nu=nu), exact) < 1e-12


def test_spectral_heat_exact_2d():
    x = periodic_grid(32, 0, L)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u0 = np.sin(X) * np.cos(2 * Y)
    u = spectral_heat(u0, 0.1, L, 0.5)
    assert relative_l2(u, u0 * math.exp(-0.1 * 5 * 0.5)) < 1e-12


def test_fourier_interpolate_exact():
    x = periodic_grid(16, 0, L)
    q = np.linspace(0, L, 37)
    assert np.allclose(fourier_interpolate(np.cos(3 * x) + 1, L, q), np.cos(3 * q) + 1)


def test_heat_dirichlet_second_order():
    errs = []
    for m in (15, 31):
        h = 2.0 / (m + 1)
        g = -1 + h * np.arange(1, m + 1)
        X, Y = np.meshgrid(g, g, indexing="ij")
        u0 = np.sin(np.pi * (X + 1) / 2) * np.sin(np.pi * (Y + 1) / 2)
        res = heat_dirichlet_2d(u0, 0.1, h, 0.5, dt=h / 4)
        errs.append(relative_l2(res.u, u0 * math.exp(-0.1 * 2 * (np.pi / 2) ** 2 * 0.5)))
    order = math.log2(errs[0] / errs[1])
    assert order > 1.8 and order < 2.3, errs


def test_burgers_spectral_matches_fine_and_conserves_mass():
    x = periodic_grid(128, 0, L)
    u0 = np.sin(x) + 0.5
    times = np.array([0.0, 0.25, 0.5])
    coarse = spectral_burgers(u0, 0.05, L, times)
    fine = spectral_burgers(np.sin(periodic_grid(256, 0, L)) + 0.5, 0.05, L, times)
    assert relative_l2(coarse[-1], fine[-1, ::2]) < 1e-6
    assert abs(coarse[-1].mean() - 0.5) < 1e-9


def test_taylor_green_divergence_free_and_matches_spectral():
    n, nu, t = 32, 0.05, 0.5
    x = periodic_grid(n, 0, L)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u0, v0, _ = taylor_green_vortex(X, Y)
    k = 2 * np.pi * np.fft.fftfreq(n, d=L / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    div = np.fft.ifft2(1j * kx * np.fft.fft2(u0) + 1j * ky * np.fft.fft2(v0)).real
    assert np.abs(div).max() < 1e-12
    u, v = spectral_navier_stokes_2d(u0, v0, nu, L, t, dt=0.01)
    ue, ve, _ = taylor_green_vortex(X, Y, t, nu)
    assert relative_l2(np.stack([u, v]), np.stack([ue, ve])) < 1e-8
    # stable fluids (semi-Lagrangian + projection) dissipates: energy drops below the exact one
    us, vs = stable_fluids_2d(u0, v0, L, t, dt=0.05, nu=nu)
    assert (us**2 + vs**2).mean() < (ue**2 + ve**2).mean()


def test_cfl_violation_raises_or_flags():
    x = periodic_grid(32, 0, L)
    dx = L / 32
    with pytest.raises(InputError, match="CFL"):
        upwind_advection(np.sin(x), 1.0, dx, 1.0, dt=2 * dx)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = lax_wendroff_advection(np.sin(x), 1.0, dx, 2 * dx * 5, dt=2 * dx, on_cfl="warn")
    assert not res.stable and any(issubclass(i.category, CFLWarning) for i in w)


def test_bad_input():
    with pytest.raises(InputError, match="u0"):
        upwind_advection(np.array([1.0, np.nan, 0.0]), 1.0, 0.1, 0.1)
    with pytest.raises(InputError, match="nu"):
        spectral_burgers(np.zeros(8), -1.0, L, [0.0, 1.0])
