"""Diffusion samplers: orders measured in each solver's own variable on a closed-form Gaussian
problem, identities between methods, every path kind, the SDE variant, and bad input."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.paths import PATHS, GaussianMixture, LinearPath, ModelWrapper, VPPath
from monge.solvers import (
    DDIM,
    SOLVERS,
    AdamsBashforth,
    Dopri5,
    DPMSolverPP2MSDE,
    Euler,
    PIController,
    integrate,
    make_grid,
    make_solver,
)
from monge.solvers.multistep import UNIFORM_AB, adams_weights, ghvb_coefficients

MEAN = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
STD = 0.5
GAUSS = GaussianMixture(means=MEAN, stds=torch.tensor([STD], dtype=torch.float64))
X = torch.tensor([[0.3, -1.2], [1.5, 0.7]], dtype=torch.float64)
SCHEDULED = [n for n in SOLVERS.names()
             if SOLVERS.entry(n).info.get("schedule") or n.startswith(("ab", "hb", "ghvb"))]
SCHEDULED = [n for n in SCHEDULED if not make_solver(n).stochastic]


def _t(v: float) -> torch.Tensor:
    return torch.tensor([v], dtype=torch.float64)


def _exact(path, x, t0, t1):
    """The PF-ODE of Gaussian data N(m, s²I) keeps z = (x − α·m)/√(α²s² + σ²) fixed."""
    a0, s0, a1, s1 = (float(f(_t(t))) for t in (t0, t1) for f in (path.alpha, path.sigma))
    a0, s0, a1, s1 = a0, s0, a1, s1
    z = (x - a0 * MEAN) / math.sqrt(a0**2 * STD**2 + s0**2)
    return a1 * MEAN + math.sqrt(a1**2 * STD**2 + s1**2) * z


def _exact_model(path):
    return ModelWrapper(lambda x, t: GAUSS.posterior_mean(x, t, path), path, "x1", t_clamp=0.0)


def _natural_grid(solver, model, n, t0, t1):
    """Uniform in λ for exponential integrators, in σ̄ = σ/α for the σ̄-variable AB family.

    A multistep method of order k ≥ 3 is started on k − 1 steps 1/100 the size of the others,
    so that its lower-order warm-up (first step first order, O(h²) local error) does not mask
    the order of the multistep formula itself (the classical 'accurate starting values')."""
    if solver.needs_schedule:
        u0, u1 = float(model.path.log_snr(_t(t0))), float(model.path.log_snr(_t(t1)))
        to_t = model.path.t_from_log_snr
    else:
        u0, u1 = (float(model.path.sigma(_t(t)) / model.path.alpha(_t(t))) for t in (t0, t1))
        to_t = lambda u: model.path.t_from_log_snr(-torch.log(u))  # noqa: E731
    k = solver.min_steps
    h = (u1 - u0) / n
    warm = [u0 + i * 0.01 * h for i in range(k - 1)] if k >= 3 else []
    start = warm[-1] + 0.01 * h if warm else u0
    us = torch.tensor(warm + torch.linspace(start, u1, n + 1).tolist(), dtype=torch.float64)
    ts = to_t(us)
    ts[0], ts[-1] = t0, t1
    return ts


def _slope(ns, errs):
    lh = torch.tensor([-math.log(n) for n in ns])
    le = torch.tensor([math.log(e) for e in errs])
    return float(((lh - lh.mean()) * (le - le.mean())).sum() / ((lh - lh.mean()) ** 2).sum())


@pytest.mark.parametrize("name", SCHEDULED)
def test_order_in_the_solvers_own_variable(name):
    """Regress log-error on log-step (VP-cosine, t ∈ [0.2, 0.8], λ ∈ [−1.1, 1.1]); slope ≈ the
    declared order (band order − 0.3 to order + 1, as for the Runge–Kutta methods)."""
    path, t0, t1 = PATHS.build("vp-cosine"), 0.2, 0.8
    model = _exact_model(path)
    exact = _exact(path, X, t0, t1)
    ns = [32, 64, 128, 256]
    errs = []
    for n in ns:
        solver = make_solver(name)
        if hasattr(solver, "lower_order_final"):
            solver.lower_order_final = False
        res = integrate(model, X, solver, grid=_natural_grid(solver, model, n, t0, t1))
        errs.append(float((res.x - exact).abs().max()))
    slope = _slope(ns, errs)
    assert solver.order - 0.3 < slope < solver.order + 1.0, (errs, slope)


@pytest.mark.parametrize("q", [1.5, 2.5])
def test_ghvb_order_lies_between_floor_and_ceil(q):
    path, t0, t1 = PATHS.build("vp-cosine"), 0.05, 0.95
    model = _exact_model(path)
    exact = _exact(path, X, t0, t1)
    ns = [64, 128, 256, 512]
    errs = [float((integrate(model, X, make_solver("ghvb", q=q),
                             grid=_natural_grid(make_solver("ghvb", q=q), model, n, t0, t1)).x
                   - exact).abs().max()) for n in ns]
    assert math.floor(q) - 0.2 < _slope(ns, errs) < math.ceil(q) + 0.2, errs


def test_identities_between_methods():
    """DDIM = AB1 in (x̄, σ̄) on VP = DPM-Solver++ of order 1; DDIM = Euler on a linear path."""
    vp = VPPath("cosine")
    model = _exact_model(vp)
    grid = make_grid("logsnr", 12, 0.05, 0.95, model=model)
    ddim = integrate(model, X, DDIM(), grid=grid).x
    torch.testing.assert_close(integrate(model, X, make_solver("ab1"), grid=grid).x, ddim)
    torch.testing.assert_close(integrate(model, X, make_solver("dpmpp-2m", solver_order=1),
                                         grid=grid).x, ddim)
    lin = _exact_model(LinearPath())
    torch.testing.assert_close(integrate(lin, X, DDIM(), steps=9).x,
                               integrate(lin, X, Euler(), steps=9).x)


def test_adams_weights_reduce_to_the_classical_coefficients():
    for k, coef in UNIFORM_AB.items():
        nodes = [-float(i) for i in range(k)]       # s_n = 0, s_{n−1} = −1, ...
        assert adams_weights(nodes, 0.0, 1.0) == pytest.approx(coef, abs=1e-12)
        assert ghvb_coefficients(k, 1.0) == pytest.approx(coef, abs=1e-12)
    # variable steps: the AB2 weights for a step twice the previous one, h_n = 2, h_{n−1} = 1
    assert adams_weights([0.0, -1.0], 0.0, 2.0) == pytest.approx([4.0, -2.0])


@pytest.mark.parametrize("path_name", ["linear", "vp", "vp-cosine", "ve", "edm", "interpolant",
                                       "pfgmpp"])
@pytest.mark.parametrize("name", ["ddim", "dpmpp-2m", "dpmpp-3m", "unipc", "ab2", "hb",
                                  "ghvb"])
def test_every_sampler_on_every_path(path_name, name):
    """On each path the exact Gaussian model sampled with 40 log-SNR steps lands within 2e-2
    (first-order methods: 8e-2) of a tight dopri5 solve (the interpolant through its
    Gaussian-marginal view)."""
    path = PATHS.build(path_name)
    view = path.marginal_schedule()
    if path_name == "interpolant":  # a velocity-only model: the marginal view's exact field
        model = ModelWrapper(lambda x, t: GAUSS.velocity(x, t, view), path, "velocity")
    else:
        model = _exact_model(path)
    t0, t1 = (0.0, 0.98) if path_name in ("vp", "vp-cosine", "interpolant") else (0.0, 1.0)
    if path_name == "linear":
        t1 = 0.999
    x0 = view.initial_state(X) if hasattr(view, "initial_state") else X
    ref = integrate(model, x0, Dopri5(), t0=t0, t1=t1,
                    controller=PIController(rtol=1e-9, atol=1e-9))
    grid = make_grid("logsnr", 40, t0, t1, model=model)
    solver = make_solver(name)
    res = integrate(model, x0, solver, grid=grid)
    assert res.converged and res.nfe == 40
    scale = float(view.sigma(_t(t1)) + view.alpha(_t(t1)))
    tol = 8e-2 if solver.order == 1 else 2e-2
    assert float((res.x - ref.x).abs().max()) < tol * scale


def test_sde_sampler_is_seeded_and_matches_the_gaussian_marginal():
    path = VPPath("cosine")
    model = _exact_model(path)
    x0 = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = make_grid("logsnr", 80, 0.0, 1.0, model=model)
    a = integrate(model, x0, DPMSolverPP2MSDE(generator=3), grid=grid).x
    b = integrate(model, x0, DPMSolverPP2MSDE(generator=3), grid=grid).x
    assert torch.equal(a, b)
    assert float((a.mean(0) - MEAN[0]).abs().max()) < 0.02
    assert float((a.std(0) - STD).abs().max()) < 0.02
    c = integrate(model, x0, DPMSolverPP2MSDE(generator=4), grid=grid).x
    assert not torch.equal(a, c)


def test_bad_input():
    with pytest.raises(InputError, match="model wrapper"):
        integrate(lambda x, t: -x, X, DDIM(), steps=4)
    with pytest.raises(InputError, match="at least 3 steps"):
        integrate(_exact_model(VPPath()), X, make_solver("dpmpp-3m"), steps=2)
    with pytest.raises(InputError, match="order must be 1-4"):
        AdamsBashforth(5)
    with pytest.raises(InputError, match="q must lie"):
        make_solver("ghvb", q=0)
    with pytest.raises(InputError, match="base must be"):
        make_solver("hb", base="rk4")
    with pytest.raises(InputError, match="variable 'sigma'"):
        integrate(_exact_model(LinearPath()), X, AdamsBashforth(2, variable="sigma"), steps=4)
    with pytest.raises(InputError, match="unknown name"):
        make_solver("dpm-banana")
