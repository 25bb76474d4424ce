"""Hessian trace / sharpness / density of small models against exact computations."""

import pytest
import torch
from torch import nn

from monge.dynamics.hessian import (
    hessian_frobenius_sq,
    hessian_matrix,
    hessian_spectral_density,
    hessian_trace,
    top_hessian_eigenvalue,
)
from monge.errors import InputError

torch.set_num_threads(1)


def _mlp_problem(seed: int = 0, dtype=torch.float64, hidden: int = 8):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, hidden), nn.Tanh(), nn.Linear(hidden, 3)).to(dtype)
    x = torch.randn(32, 5, generator=g, dtype=dtype)
    y = torch.randn(32, 3, generator=g, dtype=dtype)
    return model, (x, y)


def mse(model, batch):
    x, y = batch
    return 0.5 * ((model(x) - y) ** 2).sum(1).mean()


def ce(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y.argmax(1))


def _flat_grad(model, loss_fn, batch):
    loss = loss_fn(model, batch)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def test_exact_hessian_matches_finite_differences_of_gradients():
    model, batch = _mlp_problem(hidden=3)
    h = hessian_matrix(model, mse, batch)
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    assert h.shape == (d, d)
    eps = 1e-5
    diag_fd = torch.empty(d, dtype=torch.float64)
    flat = torch.nn.utils.parameters_to_vector(params).detach()
    for i in range(d):
        for sgn, store in ((1, "p"), (-1, "m")):
            v = flat.clone()
            v[i] += sgn * eps
            torch.nn.utils.vector_to_parameters(v, params)
            gi = _flat_grad(model, mse, batch)[i]
            if store == "p":
                gp = gi
            else:
                gm = gi
        diag_fd[i] = (gp - gm) / (2 * eps)
    torch.nn.utils.vector_to_parameters(flat, params)
    assert torch.allclose(torch.diagonal(h), diag_fd, atol=1e-7, rtol=1e-6)
    tr = hessian_trace(model, mse, batch, "exact")
    assert tr.value == pytest.approx(float(diag_fd.sum()), rel=1e-7)
    assert torch.allclose(h, h.T, atol=1e-10)


@pytest.mark.parametrize("loss_fn", [mse, ce])
def test_hutchinson_within_three_standard_errors_of_exact(loss_fn):
    model, batch = _mlp_problem(1)
    exact = hessian_trace(model, loss_fn, batch, "exact").value
    est = hessian_trace(model, loss_fn, batch, "hutchinson", probes=300, generator=3)
    assert abs(est.value - exact) <= 3 * est.std_error
    assert est.std_error > 0 and est.probes == 300


def test_gauss_newton_trace_is_mean_squared_jacobian_norm():
    model, (x, y) = _mlp_problem(2)
    gn = hessian_trace(model, mse, (x, y), "gauss-newton").value
    params = list(model.parameters())
    total = 0.0
    for i in range(x.shape[0]):
        out = model(x[i:i + 1])[0]
        for k in range(out.numel()):
            g = torch.autograd.grad(out[k], params, retain_graph=True)
            total += sum(float((gi ** 2).sum()) for gi in g)
    assert gn == pytest.approx(total / x.shape[0], rel=1e-9)
    # cross-entropy: GN = J^T H_L J with H_L = diag(p) - p p^T per sample, PSD
    gn_ce = hessian_trace(model, ce, (x, y), "gauss-newton").value
    assert gn_ce > 0


def test_gauss_newton_equals_hessian_at_interpolating_linear_model():
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 2).double()
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    gn = hessian_trace(model, mse, (x, y), "gauss-newton").value
    ex = hessian_trace(model, mse, (x, y), "exact").value
    assert gn == pytest.approx(ex, rel=1e-10)


def test_top_eigenvalue_and_density_against_dense_hessian():
    model, batch = _mlp_problem(3)
    evals = torch.linalg.eigvalsh(hessian_matrix(model, mse, batch))
    top = top_hessian_eigenvalue(model, mse, batch, iters=40, generator=0)
    assert top.value == pytest.approx(float(evals[-1]), rel=1e-6)
    dens = hessian_spectral_density(model, mse, batch, iters=20, probes=4, generator=0)
    assert torch.allclose(dens.weights.sum(1), torch.ones(4, dtype=torch.float64))
    assert float(torch.nan_to_num(dens.nodes, nan=0).max()) <= float(evals[-1]) + 1e-8
    fro = hessian_frobenius_sq(model, mse, batch, probes=200, generator=1)
    assert abs(fro.value - float((evals ** 2).sum())) <= 3 * fro.std_error


def test_loss_not_scalar_is_one_clear_error():
    model, batch = _mlp_problem()

    def bad(model, batch):
        x, y = batch
        return (model(x) - y) ** 2

    for method in ("exact", "hutchinson", "gauss-newton"):
        with pytest.raises(InputError, match="loss_fn: must return a scalar"):
            hessian_trace(model, bad, batch, method)
    with pytest.raises(InputError, match="loss_fn: must return a scalar"):
        top_hessian_eigenvalue(model, bad, batch)
    with pytest.raises(InputError, match="method"):
        hessian_trace(model, mse, batch, "diag")
