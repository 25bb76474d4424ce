"""INSR: operators by autograd, advection tracks the exact profile, heat decays, fluid step."""

import math

import numpy as np
import pytest
import torch

from monge.errors import ConfigError, InputError
from monge.sciml.fields import Siren
from monge.sciml.insr import (
    INSRConfig,
    INSRStepper,
    advection_1d,
    advection_1d_grid,
    advection_operator,
    diffusion_operator,
    heat_2d,
    taylor_green_2d,
)
from monge.sciml.references import relative_l2

torch.set_num_threads(1)


def test_operators_match_closed_forms():
    x = torch.rand(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    u = (x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 1]))[:, None]
    adv = advection_operator([0.5, -2.0])(u, x)[:, 0]
    ux, uy = 2 * x[:, 0] * x[:, 1], x[:, 0] ** 2 + torch.cos(x[:, 1])
    assert torch.allclose(adv, -(0.5 * ux - 2.0 * uy))
    lap = diffusion_operator(0.3)(u, x)[:, 0]
    assert torch.allclose(lap, 0.3 * (2 * x[:, 1] - torch.sin(x[:, 1])))


def test_advection_tracks_exact_profile():
    cfg = INSRConfig(iters=40, lr=5e-4, samples=400, init_iters=250)
    res = advection_1d(width=16, steps=2, dt=0.3, config=cfg, n_eval=1024, seed=0)
    xe = res.grid
    exact0 = np.exp(-((xe + 1.5) ** 2) / (2 * 0.01))
    exact_t = np.exp(-((xe + 1.5 - 0.25 * 0.6) ** 2) / (2 * 0.01))
    stationary = relative_l2(exact0, exact_t)           # error of not moving at all (~1)
    assert res.errors[0] < 0.1
    assert res.relative_l2 < 0.25 * stationary
    assert res.floats == sum(p.numel() for p in Siren(1, 1, 16, 2).parameters())


def test_grid_reference_upwind_is_more_diffusive_than_lax_wendroff():
    up = advection_1d_grid("upwind", 200, steps=20)
    lw = advection_1d_grid("lax_wendroff", 200, steps=20)
    sp = advection_1d_grid("spectral", 200, steps=20)
    assert sp.relative_l2 < lw.relative_l2 < up.relative_l2


def test_heat_implicit_euler_follows_decay():
    cfg = INSRConfig(iters=40, lr=5e-4, samples=500, init_iters=500)
    res = heat_2d(width=24, steps=2, dt=0.05, kappa=1.0, config=cfg, n_eval=24, seed=0)
    X, Y = res.grid[..., 0], res.grid[..., 1]
    from monge.sciml.insr import _heat_exact
    frozen = relative_l2(_heat_exact(X, Y, 0.0, 1.0), _heat_exact(X, Y, 0.1, 1.0))
    assert res.relative_l2 < 0.5 * frozen


def test_fluid_step_runs_and_keeps_energy_bounded():
    cfg = INSRConfig(iters=15, lr=3e-4, samples=300, init_iters=200)
    res = taylor_green_2d(width=16, steps=1, dt=0.05, config=cfg, n_eval=16, seed=0)
    assert math.isfinite(res.relative_l2) and 0.3 < res.extra["energy_ratio"] < 1.2


def test_bad_input():
    net = Siren(1, 1, 8, 1)
    with pytest.raises(ConfigError, match="integrator"):
        INSRStepper(net, [-1.0], [1.0], advection_operator([1.0]), "rk4")
    st = INSRStepper(net, [-1.0], [1.0], advection_operator([1.0]))
    with pytest.raises(InputError, match="dt"):
        st.step(0.0)
    with pytest.raises(InputError, match="domain"):
        INSRStepper(net, [1.0], [-1.0], advection_operator([1.0]))
