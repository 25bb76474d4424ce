"""Solvers: measured convergence orders, adaptive tolerance, inversion, NFE accounting, SDE."""

import math
import warnings

import pytest
import torch

from monge.errors import ConvergenceWarning, InputError
from monge.paths import GaussianMixture, LinearPath
from monge.solvers import (
    RK4,
    Dopri5,
    Euler,
    EulerMaruyama,
    Heun,
    Midpoint,
    PIController,
    integrate,
)


def _field(x, t):
    """dx/dt = −x·cos(t) + sin(t) (linear, time dependent)."""
    return -x * torch.cos(t)[:, None] + torch.sin(t)[:, None]


def _exact(x0, t=1.0):
    """Closed form by variation of constants, evaluated with high-order quadrature."""
    s = torch.linspace(0, t, 20001, dtype=torch.float64)
    integrand = torch.exp(torch.sin(s)) * torch.sin(s)
    integral = torch.trapezoid(integrand, s)
    return torch.exp(-torch.sin(torch.tensor(t, dtype=torch.float64))) * (x0 + integral)


X0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64)


@pytest.mark.parametrize("solver,expected", [(Euler(), 1), (Midpoint(), 2), (Heun(), 2),
                                              (RK4(), 4)], ids=lambda s: getattr(s, "name", s))
def test_measured_order(solver, expected):
    assert solver.order == expected
    exact = _exact(X0)
    ns = [8, 16, 32, 64]
    errs = [float((integrate(_field, X0, solver, steps=n).x - exact).abs().max()) for n in ns]
    slope = -(math.log(errs[-1]) - math.log(errs[0])) / (math.log(ns[-1]) - math.log(ns[0]))
    assert abs(slope - expected) < 0.25, (errs, slope)


def test_dopri5_meets_tolerance_and_counts_nfe():
    exact = _exact(X0)
    for tol in (1e-4, 1e-7):
        res = integrate(_field, X0, Dopri5(), controller=PIController(rtol=tol, atol=tol))
        assert res.converged
        assert float((res.x - exact).abs().max()) < 10 * tol
        # 1 (init) + 1 (initial-step heuristic) + 6 per attempted step (FSAL)
        assert res.nfe == 2 + 6 * (res.n_accepted + res.n_rejected)
        assert float(res.times[-1]) == 1.0


def test_dopri5_fixed_grid_is_fifth_order():
    exact = _exact(X0)
    errs = [float((integrate(_field, X0, Dopri5(), steps=n).x - exact).abs().max()) for n in (2, 4)]
    assert math.log2(errs[0] / errs[1]) > 4.3


def test_forward_backward_reconstructs_with_dopri5():
    gmm = GaussianMixture(means=torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), stds=torch.tensor([0.3,
                                                                                          0.5]))
    field = gmm.field(LinearPath())
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ctl = PIController(rtol=1e-6, atol=1e-6)
    fwd = integrate(field, x0, Dopri5(), controller=ctl)
    back = integrate(field, fwd.x, Dopri5(), t0=1.0, t1=0.0, controller=ctl)
    assert back.converged and float((back.x - x0).abs().max()) < 1e-4


def test_trajectory_and_callback():
    seen = []
    res = integrate(_field, X0, Heun(), steps=5, return_trajectory=True,
                    callback=lambda d: seen.append(d["t"]))
    assert res.trajectory.shape == (6, 2, 2) and res.nfe == 10
    torch.testing.assert_close(res.trajectory[-1], res.x)
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_fixed_step_requires_steps_and_grid_must_be_monotone():
    with pytest.raises(InputError, match="fixed-step"):
        integrate(_field, X0, Euler())
    with pytest.raises(InputError, match="monotone"):
        integrate(_field, X0, Euler(), grid=[0.0, 0.5, 0.4, 1.0])
    with pytest.raises(InputError, match="positive integer"):
        integrate(_field, X0, Euler(), steps=0)


def test_adaptive_flags_non_convergence():
    stiff = lambda x, t: -1e4 * (x - torch.cos(t)[:, None])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = integrate(stiff, X0, Dopri5(), controller=PIController(max_steps=20))
    assert not res.converged and "max_steps" in res.message
    assert any(issubclass(x.category, ConvergenceWarning) for x in w)


def test_euler_maruyama_ou_marginal():
    """OU dx = −x dt + √2 dW from x=2: mean 2e^{−t}, var 1 − e^{−2t} (weak order 1)."""
    x = torch.full((20000, 1), 2.0, dtype=torch.float64)
    res = integrate(lambda x, t: -x, x, EulerMaruyama(math.sqrt(2.0), generator=0), steps=200)
    m, v = float(res.x.mean()), float(res.x.var())
    assert abs(m - 2 * math.exp(-1)) < 0.03
    assert abs(v - (1 - math.exp(-2))) < 0.03
    again = integrate(lambda x, t: -x, x, EulerMaruyama(math.sqrt(2.0), generator=0), steps=200)
    assert torch.equal(res.x, again.x)
