"""Hutchinson, Lanczos, top eigenvalue and SLQ against dense linear algebra."""

import math

import pytest
import torch

from monge.core.estimators import (
    hutchinson_trace,
    lanczos,
    spectral_density_slq,
    top_eigenvalue,
)
from monge.errors import InputError

torch.set_num_threads(1)


def _spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    return m @ m.T / n + 0.1 * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_hutchinson_within_three_standard_errors(dist):
    a = _spd(40)
    est = hutchinson_trace(lambda v: a @ v, a[0], probes=400, generator=1, distribution=dist)
    exact = float(torch.trace(a))
    assert est.samples.shape == (400,)
    assert abs(float(est.estimate) - exact) <= 3 * float(est.std_error)
    assert 0 < float(est.std_error) < 0.1 * exact


def test_hutchinson_rademacher_exact_for_diagonal():
    d = torch.arange(1.0, 11.0, dtype=torch.float64)
    est = hutchinson_trace(lambda v: d * v, 10, probes=3, generator=0, dtype=torch.float64)
    assert float(est.estimate) == pytest.approx(55.0)
    assert float(est.std_error) == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_batch_dims_gives_per_sample_traces():
    mats = torch.stack([_spd(6, s) for s in range(3)])  # [3, 6, 6]
    like = torch.zeros(3, 6, dtype=torch.float64)
    est = hutchinson_trace(lambda v: torch.einsum("bij,bj->bi", mats, v), like, probes=300,
                           generator=2, batch_dims=1)
    exact = torch.diagonal(mats, dim1=1, dim2=2).sum(1)
    assert est.estimate.shape == (3,)
    assert bool(((est.estimate - exact).abs() <= 3 * est.std_error + 1e-12).all())


def test_hutchinson_seeded_is_reproducible_and_checks_input():
    a = _spd(10)
    e1 = hutchinson_trace(lambda v: a @ v, a[0], probes=5, generator=3)
    e2 = hutchinson_trace(lambda v: a @ v, a[0], probes=5, generator=3)
    assert torch.equal(e1.samples, e2.samples)
    with pytest.raises(InputError, match="probes"):
        hutchinson_trace(lambda v: a @ v, a[0], probes=0)
    with pytest.raises(InputError, match="matvec"):
        hutchinson_trace(lambda v: v[:3], a[0], probes=2)


def test_lanczos_orthonormal_basis_and_tridiagonal_projection():
    a = _spd(30, 4)
    v0 = torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = lanczos(lambda v: a @ v, v0, 12)
    q = res.basis
    assert torch.allclose(q @ q.T, torch.eye(12, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(q @ a @ q.T, res.tridiagonal(), atol=1e-10)


def test_lanczos_full_run_recovers_spectrum_and_breakdown():
    a = _spd(20, 5)
    v0 = torch.ones(20, dtype=torch.float64)
    theta, tau2 = lanczos(lambda v: a @ v, v0, 20).ritz()
    assert torch.allclose(theta, torch.linalg.eigvalsh(a), atol=1e-8)
    assert float(tau2.sum()) == pytest.approx(1.0)
    # an operator with 3 distinct eigenvalues: Krylov space of dimension 3 -> early stop
    d = torch.tensor([1.0, 1.0, 2.0, 2.0, 5.0, 5.0], dtype=torch.float64)
    res = lanczos(lambda v: d * v, torch.ones(6, dtype=torch.float64), 6)
    assert res.alpha.numel() == 3
    assert torch.allclose(torch.linalg.eigvalsh(res.tridiagonal()),
                          torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalue_matches_eigvalsh(method):
    a = _spd(50, 6)
    lam = float(torch.linalg.eigvalsh(a)[-1])
    res = top_eigenvalue(lambda v: a @ v, a[0], iters=30 if method == "lanczos" else 2000,
                         method=method, tol=1e-10, generator=0)
    assert res.value == pytest.approx(lam, rel=1e-6 if method == "lanczos" else 1e-3)
    assert res.residual < 1e-2 * lam


def test_top_eigenvalue_lanczos_is_algebraic_max_for_indefinite():
    d = torch.tensor([-10.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    res = top_eigenvalue(lambda v: d * v, 4, iters=4, generator=0, dtype=torch.float64)
    assert res.value == pytest.approx(3.0)
    pw = top_eigenvalue(lambda v: d * v, 4, iters=500, method="power", tol=1e-12, generator=0,
                        dtype=torch.float64)
    assert pw.value == pytest.approx(-10.0, rel=1e-6)


def test_slq_weights_and_moments():
    a = _spd(40, 7)
    n = 40
    dens = spectral_density_slq(lambda v: a @ v, a[0], iters=10, probes=200, generator=1)
    assert torch.allclose(dens.weights.sum(1), torch.ones(200, dtype=torch.float64))
    # per-probe Gauss quadrature is exact for degree <= 2m-1: check on one fresh probe
    v = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(9)).double() * 2 - 1
    theta, tau2 = lanczos(lambda u: a @ u, v, 10).ritz()
    for k in (1, 2, 3, 5):
        quad = float((tau2 * theta ** k).sum())
        exact = float(v @ torch.linalg.matrix_power(a, k) @ v) / n
        assert quad == pytest.approx(exact, rel=1e-8)
    # averaged over probes, the moments estimate tr(A^k)/n (Monte-Carlo tolerance)
    evals = torch.linalg.eigvalsh(a)
    for k in (0, 1, 2, 3):
        target = float((evals ** k).mean())
        per_probe = (dens.weights * dens.nodes ** k).sum(1)
        se = float(per_probe.std()) / math.sqrt(200)
        assert abs(dens.moment(k) - target) <= 4 * se + 1e-10
    grid = torch.linspace(float(evals.min()) - 1, float(evals.max()) + 1, 2001,
                          dtype=torch.float64)
    rho = dens.density(grid, sigma=0.05)
    assert float(torch.trapezoid(rho, grid)) == pytest.approx(1.0, abs=1e-3)
