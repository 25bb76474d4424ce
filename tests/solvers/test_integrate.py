"""The one integration loop: tuple states, the grid seen by init, gradients through the solve,
flags for non-finite fields, and time arguments checked up front."""

import math
import warnings

import pytest
import torch

from monge.errors import ConvergenceWarning, InputError
from monge.solvers import (
    Dopri5,
    Euler,
    FixedGrid,
    Heun,
    PIController,
    Solver,
    StepOutput,
    integrate,
)


def _decay_with_clock(state, t):
    """dx/dt = −x and dℓ/dt = 1: a tuple state (x, ℓ), as a likelihood solve carries."""
    x, ell = state
    return -x, torch.ones_like(ell)


@pytest.mark.parametrize("solver,kw", [(Heun(), {"steps": 50}),
                                       (Dopri5(), {"controller": PIController(1e-8, 1e-8)})],
                         ids=["heun", "dopri5"])
def test_tuple_state(solver, kw):
    x0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    ell0 = torch.zeros(2, dtype=torch.float64)
    res = integrate(_decay_with_clock, (x0, ell0), solver, return_trajectory=True, **kw)
    x1, ell1 = res.x
    tol = 1e-4 if solver.name == "heun" else 1e-7
    torch.testing.assert_close(x1, x0 * math.exp(-1), rtol=tol, atol=tol)
    torch.testing.assert_close(ell1, torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert res.converged
    traj_x, traj_ell = res.trajectory
    assert traj_x.shape[1:] == x0.shape and traj_ell.shape[1:] == ell0.shape
    assert traj_x.shape[0] == traj_ell.shape[0] == res.n_accepted + 1


def test_tuple_state_needs_one_batch_size():
    with pytest.raises(InputError, match="same batch size"):
        integrate(_decay_with_clock, (torch.zeros(3, 2), torch.zeros(2)), Heun(), steps=2)


class _RecordsGrid(Solver):
    """Euler that records the grid its init saw (a multistep method plans its last steps)."""

    name, order = "recorder", 1

    def init(self, field, x, grid, cond):
        return grid.clone(), 0

    def step(self, field, x, t, t_next, state, cond):
        return StepOutput(x + (t_next - t) * field(x, torch.full((x.shape[0],), t)), 1,
                          state=state)


def test_init_sees_the_whole_grid():
    grid = torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64)
    seen = []
    integrate(lambda x, t: -x, torch.ones(2, 1), _RecordsGrid(), grid=grid,
              callback=lambda d: seen.append(d["t"]))
    solver = _RecordsGrid()
    state, _ = solver.init(None, None, grid, {})
    assert torch.equal(state, grid) and seen == pytest.approx([0.1, 0.5, 1.0])


def test_gradient_through_the_solve_matches_the_exact_sensitivity():
    """With enable_grad the solve is differentiable: d x(1)/d x0 = e^{−1} for dx/dt = −x
    (Heun's discrete sensitivity (1 − h + h²/2)^N → e^{−1})."""
    x0 = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    res = integrate(lambda x, t: -x, x0, Heun(), steps=200, enable_grad=True)
    (grad,) = torch.autograd.grad(res.x.sum(), x0)
    h = 1 / 200
    assert float(grad) == pytest.approx((1 - h + h * h / 2) ** 200, rel=1e-12)
    assert abs(float(grad) - math.exp(-1)) < 1e-5
    with torch.no_grad():
        plain = integrate(lambda x, t: -x, x0, Heun(), steps=2)
    assert not plain.x.requires_grad


def test_fixed_step_solve_of_a_nan_field_is_flagged():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = integrate(lambda x, t: x * float("nan"), torch.ones(3, 2), Euler(), steps=4)
    assert not res.converged and "NaN" in res.message
    assert any(issubclass(x.category, ConvergenceWarning) for x in w)


def test_dopri5_on_a_nan_field_says_so_quickly():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = integrate(lambda x, t: x * float("nan"), torch.ones(3, 2), Dopri5())
    assert not res.converged and "non-finite" in res.message
    assert res.nfe < 200


@pytest.mark.parametrize("kw,match", [({"t1": math.inf, "steps": 4}, "^t1: must be finite"),
                                      ({"t0": math.nan, "steps": 4}, "^t0: must be finite")])
def test_non_finite_times_are_refused(kw, match):
    with pytest.raises(InputError, match=match):
        integrate(lambda x, t: -x, torch.ones(2, 1), Euler(), **kw)


def test_adaptive_solve_with_equal_end_times_is_refused():
    with pytest.raises(InputError, match="t1 != t0"):
        integrate(lambda x, t: -x, torch.ones(2, 1), Dopri5(), t0=0.5, t1=0.5)


def test_a_controller_object_serves_many_solves_and_backward_grids():
    ctl = PIController(rtol=1e-7, atol=1e-7)
    x0 = torch.ones(4, 1, dtype=torch.float64)
    a = integrate(lambda x, t: -x, x0, Dopri5(), controller=ctl)
    b = integrate(lambda x, t: -x, x0, Dopri5(), controller=ctl)
    assert torch.equal(a.x, b.x) and a.nfe == b.nfe
    back = integrate(lambda x, t: -x, a.x, Heun(),
                     controller=FixedGrid(torch.linspace(1.0, 0.0, 201, dtype=torch.float64)))
    assert float((back.x - x0).abs().max()) < 1e-4
    with pytest.raises(InputError, match="no error estimate"):
        integrate(lambda x, t: -x, x0, Heun(), controller=ctl)
    with pytest.raises(InputError, match="not both"):
        integrate(lambda x, t: -x, x0, Heun(), controller=ctl, steps=3)
