"""Time grids: each is what its name says (uniform in λ, Karras ρ-spacing, SD3 shift), has the
solve's exact ends, is applied once, and bad specs get one clear error."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.paths import EDMPath, LinearPath, ModelWrapper, VPPath
from monge.solvers import DDIM, GRIDS, integrate, make_grid, parse_grid
from monge.solvers.grids import shift_time


def _model(path):
    return ModelWrapper(lambda x, t: torch.zeros_like(x), path, "x1", t_clamp=0.0)


def test_logsnr_grid_is_uniform_in_log_snr():
    model = _model(VPPath("cosine"))
    ts = make_grid("logsnr", 10, 0.1, 0.9, model=model)
    lam = model.path.log_snr(ts)
    torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((10,), float(lam[1] - lam[0]),
                                                              dtype=torch.float64))
    assert float(ts[0]) == 0.1 and float(ts[-1]) == 0.9


def test_infinite_log_snr_ends_are_clamped_then_exact():
    """Linear path: λ(0) = −∞, λ(1) = +∞; inner points are uniform in λ on [δ, 1 − δ]."""
    model = _model(LinearPath())
    ts = make_grid("logsnr", 6, 0.0, 1.0, model=model, )
    assert float(ts[0]) == 0.0 and float(ts[-1]) == 1.0
    lam = model.path.log_snr(ts[1:-1])
    d = lam[1:] - lam[:-1]
    torch.testing.assert_close(d, torch.full_like(d, float(d[0])))
    assert bool((ts[1:] > ts[:-1]).all())


def test_karras_grid_on_the_edm_path_is_its_uniform_grid():
    """EDM's σ(t) is the ρ = 7 interpolation, so the Karras grid is uniform in t there."""
    path = EDMPath()
    ts = make_grid("karras:7", 12, model=_model(path))
    torch.testing.assert_close(ts, torch.linspace(0, 1, 13, dtype=torch.float64))
    sb = path.sigma(ts)
    rho = 5.0
    ts5 = make_grid("karras:5", 12, model=_model(path))
    r = path.sigma(ts5) ** (1 / rho)
    torch.testing.assert_close(r[1:] - r[:-1], torch.full((12,), float(r[1] - r[0]),
                                                          dtype=torch.float64))
    assert float(sb[0]) == pytest.approx(80.0)


def test_shift_grid():
    ts = make_grid("shift:3", 8)
    u = 1 - torch.linspace(0, 1, 9, dtype=torch.float64)
    torch.testing.assert_close(ts, 1 - 3 * u / (1 + 2 * u))
    torch.testing.assert_close(make_grid("shift:1", 8), torch.linspace(0, 1, 9,
                                                                       dtype=torch.float64))
    # S > 1 spends more steps near the noise end (t = 0)
    assert float(ts[1] - ts[0]) < float(ts[-1] - ts[-2])
    # the map with 1/S inverts the map with S
    torch.testing.assert_close(shift_time(shift_time(u, 3.0), 1 / 3), u)
    # resolution dependent: d = 256 → S = √(256/64) = 2
    torch.testing.assert_close(make_grid("shift:res", 8, dim=256), make_grid("shift:2", 8))
    # a sub-interval keeps its ends
    sub = make_grid("shift:3", 4, 0.2, 0.7)
    assert (float(sub[0]), float(sub[-1])) == (0.2, 0.7)


@pytest.mark.parametrize("spec", ["uniform", "logsnr", "karras", "shift:3"])
def test_grid_is_applied_once_through_integrate(spec):
    """integrate(steps=N, grid=spec) steps exactly on make_grid(spec, N): not re-shifted."""
    model = _model(VPPath("cosine"))
    res = integrate(model, torch.zeros(2, 2, dtype=torch.float64), DDIM(), steps=7, grid=spec,
                    t0=0.05, t1=0.95)
    torch.testing.assert_close(res.times, make_grid(spec, 7, 0.05, 0.95, model=model))


def test_bad_specs():
    for spec, msg in (("banana", "unknown name"), ("uniform:3", "takes no argument"),
                      ("karras:x", "must be a number"), ("shift:-1", "positive number"),
                      ("", "expected a name")):
        with pytest.raises(InputError, match=msg):
            make_grid(spec, 4)
    with pytest.raises(InputError, match="noise schedule"):
        make_grid("logsnr", 4)              # no model
    with pytest.raises(InputError, match="dim="):
        make_grid("shift:res", 4)
    assert parse_grid("karras:5") == ("karras", {"rho": 5.0})
    assert set(GRIDS.names()) == {"uniform", "logsnr", "karras", "shift"}
    assert math.isfinite(float(make_grid("karras", 3, model=_model(VPPath()))[1]))
