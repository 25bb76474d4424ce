"""DCDM and the Krylov baselines: iteration counts vs scipy, exact-inverse DCDM, bad input."""

import sys
import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

from monge.errors import InputError
from monge.sciml.dcdm import (
    IC0,
    MissingExtraError,
    NetworkDirection,
    PoissonCNN,
    amg_preconditioner,
    as_spd_matrix,
    dcdm_loss,
    dcdm_solve,
    lanczos,
    pcg,
    poisson_2d,
    ritz_rhs,
    scipy_cg,
    torch_csr,
    train_poisson_cnn,
)

torch.set_num_threads(1)


def _random_spd(n=60, seed=0):
    rng = np.random.default_rng(seed)
    B = sparse.random(n, n, density=0.08, random_state=rng)
    return (B @ B.T + sparse.identity(n) * 0.5).tocsr()


def test_poisson_matches_kron_laplacian():
    n = 8
    T = sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    ref = sparse.kron(sparse.identity(n), T) + sparse.kron(T, sparse.identity(n))
    assert abs(poisson_2d(n).A - ref).max() < 1e-14


def test_poisson_obstacle_is_spd_with_neumann_walls():
    mask = np.zeros((12, 12), dtype=bool)
    mask[4:8, 4:8] = True
    s = poisson_2d(12, mask)
    A = s.A.toarray()
    assert np.allclose(A, A.T)
    assert np.linalg.eigvalsh(A).min() > 0
    fluid = np.flatnonzero(s.fluid.reshape(-1))
    # interior fluid rows sum to zero except where they touch the domain boundary (Dirichlet)
    assert np.isclose(A[3 * 12 + 5].sum(), 0.0)  # cell (3, 5): above the obstacle
    assert len(fluid) == 144 - 16


@pytest.mark.parametrize("n", [16, 32])
def test_cg_and_ic0_iterations_match_scipy(n):
    s = poisson_2d(n)
    b = s.random_rhs(0)
    ours, ref = pcg(s.A, b), scipy_cg(s.A, b)
    assert ours.converged and abs(ours.iterations - ref.iterations) <= 1
    ic = IC0(s.A)
    ours_ic, ref_ic = pcg(s.A, b, ic), scipy_cg(s.A, b, ic)
    assert abs(ours_ic.iterations - ref_ic.iterations) <= 1
    assert ours_ic.iterations < 0.5 * ours.iterations
    assert np.linalg.norm(b - s.A @ ours_ic.x) <= 1e-4 * np.linalg.norm(b) * (1 + 1e-9)


def test_ic0_reproduces_a_on_its_pattern():
    A = poisson_2d(10).A
    L = IC0(A).L
    LLt = (L @ L.T).toarray()
    rows, cols = A.nonzero()
    assert np.allclose(LLt[rows, cols], A.toarray()[rows, cols])


def test_issue_reference_counts_at_32():
    """The issue measured CG 68 and IC(0)-PCG 21 at 32² (N(0,1) rhs, seed 0)."""
    s = poisson_2d(32)
    b = s.random_rhs(0)
    assert pcg(s.A, b).iterations == 68
    assert pcg(s.A, b, IC0(s.A)).iterations == 21


def test_amg_or_clear_error(monkeypatch):
    s = poisson_2d(32)
    try:
        import pyamg  # noqa: F401
        res = pcg(s.A, s.random_rhs(0), amg_preconditioner(s.A))
        assert res.converged and res.iterations <= 8
    except ImportError:
        pass
    monkeypatch.setitem(sys.modules, "pyamg", None)
    with pytest.raises(MissingExtraError, match="monge\\[amg\\]"):
        amg_preconditioner(s.A)


def test_dcdm_exact_inverse_one_iteration():
    A = _random_spd()
    b = np.random.default_rng(1).normal(size=A.shape[0])
    lu = splu(A.tocsc())
    res = dcdm_solve(A, b, lambda r: 3.7 * lu.solve(r))   # any scale
    assert res.iterations == 1 and res.residuals[-1] < 1e-10


def test_dcdm_reaches_tolerance_on_generic_spd_and_torch_sparse():
    A = _random_spd()
    b = np.random.default_rng(2).normal(size=A.shape[0])
    At = torch_csr(A, dtype=torch.float64)
    res = dcdm_solve(At, b, lambda r: r, rel_tol=1e-4, max_iter=2000)
    assert res.converged and res.residuals[-1] <= 1e-4
    assert np.linalg.norm(b - A @ res.x) <= 1.01e-4 * np.linalg.norm(b)


def test_lanczos_ritz_values_bracket_spectrum():
    A = poisson_2d(8).A
    vals, V = lanczos(A, 64, seed=0)
    ev = np.linalg.eigvalsh(A.toarray())
    # the Krylov space is exhausted (repeated eigenvalues): every Ritz value is an eigenvalue
    assert 40 <= vals.size <= 64
    assert np.abs(vals[:, None] - ev[None]).min(axis=1).max() < 1e-8
    assert np.isclose(vals.min(), ev.min()) and np.isclose(vals.max(), ev.max())
    assert np.allclose(V @ V.T, np.eye(vals.size), atol=1e-8)
    b = ritz_rhs(A, 5, 64, seed=0)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0)


def test_loss_is_scale_invariant_and_zero_at_inverse():
    A = poisson_2d(6).A
    At = torch_csr(A, dtype=torch.float64)
    b = torch.randn(3, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q = torch.randn(3, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(dcdm_loss(q, b, At), dcdm_loss(-5.0 * q, b, At))
    exact = torch.linalg.solve(torch.from_numpy(A.toarray()), b.T).T
    assert float(dcdm_loss(exact, b, At)) < 1e-20


def test_trained_network_beats_identity_directions():
    s = poisson_2d(16)
    tr = train_poisson_cnn(s, n_samples=200, lanczos_steps=60, steps=80, batch=8, lr=3e-3,
                           filters=8, seed=0)
    assert np.mean(tr.losses[-10:]) < 0.5 * tr.losses[0]
    b = s.random_rhs(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = dcdm_solve(s.A, b, NetworkDirection(tr.net, 16), max_iter=200)
        ident = dcdm_solve(s.A, b, lambda r: r, max_iter=200)
    assert net.converged and net.iterations < ident.iterations


def test_bad_matrices_and_grids():
    with pytest.raises(InputError, match="square"):
        as_spd_matrix(sparse.random(4, 5, density=0.5, random_state=0))
    with pytest.raises(InputError, match="symmetric"):
        dcdm_solve(sparse.csr_matrix(np.array([[2.0, 1.0], [0.0, 2.0]])), [1.0, 1.0],
                   lambda r: r)
    indefinite = sparse.csr_matrix(np.array([[1.0, 3.0], [3.0, 1.0]]))
    with pytest.raises(InputError, match="positive definite"):
        pcg(indefinite, [1.0, -1.0])
    with pytest.raises(InputError, match="positive definite"):
        IC0(indefinite)
    with pytest.raises(InputError, match="even"):
        NetworkDirection(PoissonCNN(4), 15)
    with pytest.raises(InputError, match="grid"):
        NetworkDirection(PoissonCNN(4), 16)(np.ones(64))
    with pytest.raises(InputError, match="boolean"):
        poisson_2d(8, np.zeros((8, 8)))
    ring = np.zeros((8, 8), dtype=bool)
    ring[2:6, 2] = ring[2:6, 5] = ring[2, 2:6] = ring[5, 2:6] = True
    with pytest.raises(InputError, match="enclosed"):
        poisson_2d(8, ring)
    with pytest.raises(InputError, match="b"):
        pcg(poisson_2d(4).A, np.ones(3))
