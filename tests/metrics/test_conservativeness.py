"""Conservativeness diagnostics (Vuong et al. 2025, wgf-score.md): Jacobian asymmetry exact and
by Hutchinson probes, loop circulation against closed forms, the report, and the harmless-error
test (a rotated score keeps the marginals, a conservative error of the same size does not)."""

import math

import pytest
import torch

from monge.errors import InputError
from monge.metrics.conservativeness import (
    antisymmetric_matrix,
    conservativeness_report,
    field_jacobian,
    harmless_error_test,
    harmless_perturbations,
    jacobian_asymmetry,
    loop_circulation,
    random_potential,
)
from monge.models.energy import EnergyMLP
from monge.paths import GaussianMixture, LinearPath
from monge.solvers import RK4, integrate

torch.set_num_threads(1)
F64 = torch.float64
PATH = LinearPath()
GMM = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=F64),
                      torch.tensor([[0.3, 0.5], [0.4, 0.4], [0.6, 0.2]], dtype=F64),
                      torch.tensor([0.5, 0.3, 0.2], dtype=F64))
R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)


def _linear(m):
    return lambda x, t, **_: x @ m.T


def _nonconservative(dim, seed=0):
    """A smooth non-gradient field tanh(x W1ᵀ + t) W2ᵀ with random weights."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(24, dim, generator=g, dtype=F64) / math.sqrt(dim)
    w2 = torch.randn(dim, 24, generator=g, dtype=F64) / math.sqrt(24)
    return lambda x, t, **_: torch.tanh(x @ w1.T + t[:, None]) @ w2.T


def _points(n, dim=2, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---------------------------------------------------------------------------------------------
# Jacobian asymmetry
# ---------------------------------------------------------------------------------------------
def test_jacobian_matches_the_linear_map_and_the_closed_form_asymmetry():
    m = torch.tensor([[1.0, 2.0, 0.0], [-0.5, 3.0, 1.0], [0.2, 0.0, -1.0]], dtype=F64)
    x = _points(7, 3)
    jac = field_jacobian(_linear(m), x, 0.3)
    torch.testing.assert_close(jac, m.expand(7, 3, 3), atol=1e-14, rtol=0)
    est = jacobian_asymmetry(_linear(m), x, 0.3)
    closed = float(torch.linalg.norm(m - m.T) / torch.linalg.norm(m))
    assert est.method == "exact" and closed > 0.5
    torch.testing.assert_close(est.per_point, torch.full((7,), closed, dtype=F64), atol=1e-14,
                               rtol=0)
    assert abs(est.pooled - closed) < 1e-14
    assert abs(est.antisymmetric_rms - float(torch.linalg.norm(m - m.T))) < 1e-12
    # a pure rotation is maximally asymmetric; the 2-D curl is the off-diagonal difference
    rot = jacobian_asymmetry(_linear(3.0 * R), _points(5), 0.5)
    assert abs(rot.mean - 2.0) < 1e-14
    torch.testing.assert_close(rot.curl, torch.full((5,), 6.0, dtype=F64))


def test_analytic_mixture_field_score_and_energy_model_are_symmetric():
    for t in (0.05, 0.5, 0.95):
        x = GMM.marginal_sample(300, t, PATH, generator=torch.Generator().manual_seed(2))
        vel = jacobian_asymmetry(GMM.field(PATH), x, t)
        score = jacobian_asymmetry(lambda x, t: GMM.score(x, t, PATH), x, t)
        assert vel.per_point.max() < 1e-10 and score.per_point.max() < 1e-10, t
        assert vel.jacobian_sq.min() > 1e-3       # a real Jacobian, not a vanishing one
    torch.manual_seed(0)
    net = EnergyMLP(2, hidden=32, depth=2).double()
    x = _points(200)
    exact = jacobian_asymmetry(net, x, torch.rand(200, dtype=F64))
    assert exact.per_point.max() < 1e-10 and exact.jacobian_sq.min() > 0
    net64 = EnergyMLP(64, hidden=32, depth=2).double()
    hutch = jacobian_asymmetry(net64, _points(20, 64).reshape(20, 1, 8, 8), 0.5, probes=4,
                               generator=0)
    assert hutch.method == "hutchinson" and hutch.per_point.max() < 1e-10
    # ... while an unconstrained field is not
    assert jacobian_asymmetry(_nonconservative(2), x, 0.5).mean > 0.1


def test_hutchinson_estimate_is_unbiased_for_the_exact_value():
    field = _nonconservative(6)
    x, t = _points(20, 6), torch.full((20,), 0.4, dtype=F64)
    exact = jacobian_asymmetry(field, x, t, method="exact")
    for distribution in ("rademacher", "gaussian"):
        est = jacobian_asymmetry(field, x, t, method="hutchinson", probes=400,
                                 distribution=distribution, generator=3)
        z = (est.antisymmetric_sq - exact.antisymmetric_sq) / est.antisymmetric_sq_std_error
        assert z.abs().max() < 5.0, (distribution, z)
        assert abs(est.pooled - exact.pooled) < 0.05 * exact.pooled
        torch.testing.assert_close(est.jacobian_sq, exact.jacobian_sq, rtol=0.15, atol=0)
    # high dimension, closed form: a linear field in 40-D
    m = torch.randn(40, 40, generator=torch.Generator().manual_seed(4), dtype=F64)
    m = m + 0.3 * m.T
    est = jacobian_asymmetry(_linear(m), _points(64, 40), 0.5, probes=8, generator=5)
    assert est.method == "hutchinson"
    assert abs(est.pooled - float(torch.linalg.norm(m - m.T) / torch.linalg.norm(m))) < 0.03


# ---------------------------------------------------------------------------------------------
# loop circulation
# ---------------------------------------------------------------------------------------------
def test_circulation_of_rotations_matches_stokes_and_gradients_have_none():
    omega = 1.7
    centre = torch.zeros(6, 2, dtype=F64)
    circ = loop_circulation(_linear(omega * R), centre, 0.5, radius=0.3, loops=2, generator=0)
    orient = torch.linalg.det(circ.planes)                     # ±1: orientation of (e1, e2)
    torch.testing.assert_close(circ.normalized, orient, atol=1e-14, rtol=0)
    torch.testing.assert_close(circ.planar_curl, 2 * omega * orient, atol=1e-12, rtol=0)
    # any linear field, off-centre loops, 3-D random planes: ∮ v·dl = πρ² e2ᵀ(M − Mᵀ)e1
    m = torch.randn(3, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    circ = loop_circulation(_linear(m), _points(10, 3), 0.5, radius=0.7, points=5, generator=1)
    e1, e2 = circ.planes[:, 0, 0], circ.planes[:, 0, 1]
    closed = ((e2 @ (m - m.T)) * e1).sum(1)
    torch.testing.assert_close(circ.planar_curl[:, 0], closed, atol=1e-12, rtol=0)
    # the analytic mixture velocity and score are gradients: no circulation
    for t in (0.2, 0.9):
        x = GMM.marginal_sample(200, t, PATH, generator=torch.Generator().manual_seed(3))
        assert loop_circulation(GMM.field(PATH), x, t, radius=0.1, generator=2).mean_abs < 1e-12
    assert loop_circulation(_nonconservative(2), _points(50), 0.5, radius=0.1,
                            generator=2).mean_abs > 1e-3


def test_circulation_quadrature_converges_on_a_nonlinear_rotational_field():
    """v = R∇ψ with ψ = exp(−|x|²/2) has curl v = Δψ = (|x|² − 2)exp(−|x|²/2), so by Stokes
    the circulation around a circle is the area integral of Δψ over its disk (computed here
    with scipy's 2-D quadrature, an independent method)."""
    from scipy.integrate import dblquad

    def swirl(x, t, **_):
        grad_psi = -x * torch.exp(-0.5 * x.pow(2).sum(1, keepdim=True))
        return grad_psi @ R.T

    centre, rho = (0.5, -0.3), 0.8

    def laplacian(r, theta):
        q = (centre[0] + r * math.cos(theta)) ** 2 + (centre[1] + r * math.sin(theta)) ** 2
        return (q - 2.0) * math.exp(-0.5 * q) * r

    closed, _ = dblquad(laplacian, 0.0, 2 * math.pi, 0.0, rho, epsabs=1e-13, epsrel=1e-13)
    x = torch.tensor([centre] * 4, dtype=F64)
    errors = {}
    for n in (4, 8, 16, 64):
        c = loop_circulation(swirl, x, 0.5, radius=rho, points=n, generator=0)
        errors[n] = float((c.circulation[:, 0] - closed * torch.linalg.det(c.planes[:, 0]))
                          .abs().max())
    # spectral convergence of the periodic trapezoid rule: machine precision by n = 16
    assert errors[4] > 1e3 * errors[8] and errors[8] > 1e3 * errors[16], errors
    assert errors[16] < 1e-12 and errors[64] < 1e-12, errors
    # small loops about the origin: the planar curl tends to the curl there, Δψ(0) = −2
    c = loop_circulation(swirl, torch.zeros(4, 2, dtype=F64), 0.5, radius=1e-3, generator=0)
    torch.testing.assert_close(c.planar_curl[:, 0] * torch.linalg.det(c.planes[:, 0]),
                               torch.full((4,), -2.0, dtype=F64), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def test_report_per_time_with_all_sample_forms():
    times = [0.2, 0.8]
    per_t = [GMM.marginal_sample(100, t, PATH, generator=torch.Generator().manual_seed(4))
             for t in times]
    rep = conservativeness_report(GMM.field(PATH), per_t, times, generator=0)
    assert [r.t for r in rep] == times and len(rep) == 2 and rep[0].method == "exact"
    assert all(r.asymmetry < 1e-10 and r.circulation < 1e-12 and r.curl < 1e-10 for r in rep)
    assert all(r.radius > 0 and r.points == 100 for r in rep)
    bad = conservativeness_report(_nonconservative(2), lambda t: _points(64), times,
                                  generator=0, loops=2)
    assert all(r.asymmetry > 0.1 and r.circulation > 1e-3 for r in bad)
    assert bad[0].pooled_asymmetry > 0 and set(bad.rows()[0]) >= {"t", "asymmetry"}
    m = torch.randn(20, 20, generator=torch.Generator().manual_seed(0), dtype=F64)
    hutch = conservativeness_report(_linear(m), _points(32, 20), 0.5, probes=4, generator=0,
                                    radius=0.05)
    assert hutch[0].method == "hutchinson" and hutch[0].probes == 4 and hutch[0].curl is None


# ---------------------------------------------------------------------------------------------
# the harmless-error test
# ---------------------------------------------------------------------------------------------
MEAN, STD = torch.tensor([1.0, -0.5], dtype=F64), 0.5
GAUSS = GaussianMixture(MEAN[None], torch.tensor([STD], dtype=F64))


def _gauss_sampler(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda n, t: GAUSS.marginal_sample(n, t, PATH, generator=g)


def _gauss_score(x, t):
    return GAUSS.score(x, t, PATH)


def test_rotated_score_on_a_gaussian_is_the_closed_form_rotation_and_keeps_the_law():
    """N(0, I) → N(m, s²I) on the linear path with s = 0.5: σ_t² = t²/4 + (1 − t)², and the
    rotated score turns the samples about the mean by the angle −c∫σ_t⁻² dt = −cπ."""
    c = 1.5
    pert = harmless_perturbations(GAUSS.field(PATH), _gauss_score, _gauss_sampler(0), c,
                                  calibration_points=500, generator=0)
    torch.testing.assert_close(pert.rotation, R)
    x, t = _points(50), torch.rand(50, dtype=F64)
    mu = t[:, None] * MEAN
    var = (t**2 * STD**2 + (1 - t) ** 2)[:, None]
    v = GAUSS.field(PATH)(x, t)
    torch.testing.assert_close(pert.rotated(x, t) - v, -c * (x - mu) @ R.T / var,
                               atol=1e-12, rtol=1e-12)
    # the conservative error is a gradient and of the same RMS size under p_t
    assert jacobian_asymmetry(pert.conservative, x, t).per_point.max() < 1e-10
    for tt in (0.3, 0.75):
        xs = _gauss_sampler(5)(4000, tt)
        ts = torch.full((4000,), tt, dtype=F64)
        v = GAUSS.field(PATH)(xs, ts)
        rms_r = (pert.rotated(xs, ts) - v).pow(2).sum(1).mean().sqrt()
        rms_c = (pert.conservative(xs, ts) - v).pow(2).sum(1).mean().sqrt()
        assert abs(float(rms_c / rms_r) - 1) < 0.1, tt
    # with one source batch, the rotated flow rotates the samples about the mean: every
    # distance to the mean (the whole isotropic law) is unchanged; the conservative one is not
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    base, rot, con = (integrate(f, x0, RK4(), steps=100).x
                      for f in (GAUSS.field(PATH), pert.rotated, pert.conservative))
    angle = -c * math.pi
    turn = torch.tensor([[math.cos(angle), -math.sin(angle)],
                         [math.sin(angle), math.cos(angle)]], dtype=F64)
    torch.testing.assert_close(rot - MEAN, (base - MEAN) @ turn.T, atol=1e-6, rtol=0)
    assert (rot - base).norm(dim=1).mean() > 0.3          # the samples did move
    r_base, r_con = ((y - MEAN).norm(dim=1) for y in (base, con))
    assert (r_con - r_base).abs().mean() > 0.05


def test_harmless_error_test_w2_stays_at_noise_for_rotations_and_rises_for_gradients():
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    res = harmless_error_test(GAUSS.field(PATH), _gauss_score, _gauss_sampler(9),
                              lambda f: integrate(f, x0, RK4(), steps=40).x, scales=(0.0, 1.5),
                              n_reference=1000, probe_points=128, calibration_points=500,
                              generator=0)
    base, pert = res.rows
    floor = res.noise_floor
    assert base.scale == 0.0 and base.w2_rotated == base.w2_conservative
    assert base.w2_rotated < 2 * floor and base.asymmetry_rotated < 1e-10
    assert abs(pert.w2_rotated - base.w2_rotated) < 0.5 * floor, (pert, base, floor)
    assert pert.w2_conservative > base.w2_rotated + 4 * floor, (pert, base, floor)
    assert pert.asymmetry_rotated > 1.0 and pert.asymmetry_conservative < 1e-10
    assert pert.antisymmetric_rms_rotated > 1.0 and pert.perturbation_rms > 0.5


def test_random_potential_and_rotation_helpers():
    grad = random_potential(3, features=8, length_scale=0.5, generator=0)
    x = _points(6, 3)
    assert jacobian_asymmetry(lambda x, t: grad(x), x, 0.5).per_point.max() < 1e-10
    a = antisymmetric_matrix(5, generator=1)
    torch.testing.assert_close(a, -a.T)
    assert abs(float(torch.linalg.matrix_norm(a, ord=2)) - 1) < 1e-12


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises_input_error():
    f, x = GMM.field(PATH), _points(4)
    cases = [
        (lambda: jacobian_asymmetry(f, torch.tensor([[float("nan"), 0.0]]), 0.5), "NaN"),
        (lambda: jacobian_asymmetry(f, torch.zeros(3), 0.5), "shape"),
        (lambda: jacobian_asymmetry(f, x, 1.5), r"\[0, 1\]"),
        (lambda: jacobian_asymmetry(f, x, torch.zeros(3)), "t:"),
        (lambda: jacobian_asymmetry(f, x, 0.5, method="fd"), "method"),
        (lambda: jacobian_asymmetry(f, x, 0.5, method="hutchinson", probes=0), "probes"),
        (lambda: jacobian_asymmetry(f, x, 0.5, method="hutchinson", distribution="u"),
         "distribution"),
        (lambda: jacobian_asymmetry("f", x, 0.5), "callable"),
        (lambda: jacobian_asymmetry(lambda x, t: x[:, :1], x, 0.5), "x's shape"),
        (lambda: jacobian_asymmetry(lambda x, t: x.detach() * 2, x, 0.5), "no gradient"),
        (lambda: loop_circulation(f, x, 0.5, radius=0.0), "radius"),
        (lambda: loop_circulation(f, x, 0.5, radius=0.1, points=2), "points"),
        (lambda: loop_circulation(f, torch.zeros(4, 1), 0.5, radius=0.1), "2 dimensions"),
        (lambda: loop_circulation(f, x, 0.5, radius=0.1, planes=torch.zeros(4, 1, 2, 3)),
         "planes"),
        (lambda: conservativeness_report(f, [x], [0.2, 0.5]), "one tensor per time"),
        (lambda: conservativeness_report(f, x, []), "times"),
        (lambda: conservativeness_report(f, x, [0.5], cond=[1]), "cond"),
        (lambda: harmless_perturbations(f, _gauss_score, _gauss_sampler(0), -1.0), "scale"),
        (lambda: harmless_perturbations(f, _gauss_score, _gauss_sampler(0), 1.0,
                                        rotation=torch.eye(2, dtype=F64),
                                        calibration_points=10), "antisymmetric"),
        (lambda: antisymmetric_matrix(1), "dim"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
