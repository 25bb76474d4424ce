"""PINN / LPINN: autograd residuals vs finite differences, references, a tiny β = 30 run."""

import math

import numpy as np
import pytest
import torch

from monge.errors import ConfigError, InputError
from monge.sciml.pinn import (
    PINN,
    LagrangianPINN,
    burgers_case,
    convection_case,
    lpinn_residuals,
    pinn_residual,
    reference_solution,
    train_pinn,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("case", [convection_case(30.0, nu=0.05), burgers_case(0.1)])
def test_pinn_residual_matches_finite_differences(case):
    model = PINN(16, 2, generator=0).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20, generator=g, dtype=torch.float64) * 2 * math.pi).requires_grad_(True)
    t = torch.rand(20, generator=g, dtype=torch.float64).requires_grad_(True)
    r = pinn_residual(model, x, t, case).detach()
    h = 1e-4
    with torch.no_grad():
        xd, td = x.detach(), t.detach()
        u = model(xd, td)
        u_t = (model(xd, td + h) - model(xd, td - h)) / (2 * h)
        u_x = (model(xd + h, td) - model(xd - h, td)) / (2 * h)
        u_xx = (model(xd + h, td) - 2 * u + model(xd - h, td)) / h**2
        a = case.beta if case.name == "convection" else u
        fd = u_t + a * u_x - case.nu * u_xx
    assert torch.allclose(r, fd, atol=1e-5 * (1 + fd.abs().max()))


def test_lpinn_physical_diffusion_matches_eulerian_second_derivative():
    """u_xx via the chain rule equals the FD second derivative of u(X(ξ)) = U(ξ) in x."""
    model = LagrangianPINN(16, 2, 2, x_scale=0.3, generator=2).double()
    case = burgers_case(1.0)
    xi = torch.linspace(0.5, 5.5, 11, dtype=torch.float64).requires_grad_(True)
    t = torch.full((11,), 0.7, dtype=torch.float64).requires_grad_(True)
    _, R_u, X_xi = lpinn_residuals(model, xi, t, case, "physical")
    assert (X_xi > 0).all()
    U, X = model(xi, t)
    U_t = torch.autograd.grad(U.sum(), t, retain_graph=True)[0]
    u_xx_chain = (U_t - R_u) / case.nu
    h = 1e-3
    with torch.no_grad():
        d = xi.detach()
        Um, Xm = model(d - h, t.detach())
        U0, X0 = model(d, t.detach())
        Up, Xp = model(d + h, t.detach())
        # second derivative on the non-uniform points X(ξ-h), X(ξ), X(ξ+h)
        hl, hr = X0 - Xm, Xp - X0
        fd = 2 * (hl * Up - (hl + hr) * U0 + hr * Um) / (hl * hr * (hl + hr))
    assert torch.allclose(u_xx_chain.detach(), fd, rtol=1e-3, atol=1e-4)


def test_convection_reference_is_exact():
    ref = reference_solution(convection_case(30.0), 64, 5)
    x = 2 * np.pi * np.arange(64) / 64
    t = np.linspace(0, 1, 5)
    assert np.allclose(ref, np.sin(x[None] - 30 * t[:, None]), atol=1e-12)


def test_lpinn_beats_pinn_at_beta_30_tiny_budget():
    case = convection_case(30.0)
    kw = dict(width=20, depth=2, adam_steps=150, lbfgs_steps=40, n_x=32, n_t=12,
              eval_grid=(64, 20), seed=0)
    lp = train_pinn("lpinn", case, **kw)
    pi = train_pinn("pinn", case, **kw)
    assert lp.relative_l2 < 0.1 and lp.monotone
    assert pi.relative_l2 > 0.3
    assert lp.relative_l2 < 0.3 * pi.relative_l2


def test_bad_input():
    with pytest.raises(ConfigError, match="method"):
        train_pinn("xpinn", convection_case(10.0), adam_steps=0, lbfgs_steps=0)
    with pytest.raises(InputError, match="nu"):
        burgers_case(nu=0.0)
    with pytest.raises(InputError, match="beta"):
        convection_case(float("nan"))
