"""Physics-informed networks for 1-D periodic convection and viscous Burgers: PINN and LPINN.

- :class:`PINN`: the standard Eulerian PINN ``u(x, t)`` trained on the PDE residual
  ``u_t + a(u) u_x - ν u_xx`` and the initial condition (Raissi et al. 2019; the failure mode at
  large convection speed is Krishnapriyan et al. 2021).
- :class:`LagrangianPINN`: Mojgani, Balajewicz, Hassanzadeh, "Lagrangian PINNs: A
  causality-conforming solution to failure modes of physics-informed neural networks"
  (arXiv:2205.02902): two branches give the characteristic ``X(ξ, t)`` and the state
  ``U(ξ, t)`` along it, trained on ``X_t = a(U)``, ``U_t = ν u_xx`` and the initial conditions,
  with the paper's un-squared 2-norm loss.

Both use the periodic embedding ``(cos x, sin x, t)`` (domain [0, 2π)), so no boundary loss is
needed, and the same tanh MLP for ``u``/``U``. References come from
:mod:`monge.sciml.references` (exact Fourier multiplier for convection, pseudo-spectral Burgers).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from monge.core.checks import make_generator
from monge.errors import ConfigError, InputError
from monge.sciml.references import relative_l2, spectral_advection, spectral_burgers

__all__ = ["PDECase", "convection_case", "burgers_case", "PINN", "LagrangianPINN",
           "pinn_residual", "PINNResult", "train_pinn", "solve_case", "reference_solution"]

TWO_PI = 2 * math.pi


@dataclass(frozen=True)
class PDECase:
    """A 1-D periodic problem ``u_t + a(u) u_x = ν u_xx`` on ``[0, 2π) × [0, t_final]``.

    Attributes:
        name: ``"convection"`` (``a = beta``) or ``"burgers"`` (``a = u``).
        beta: convection speed (convection only).
        nu: viscosity.
        offset: the initial condition is ``sin x + offset``.
        t_final: final time.
    """

    name: str
    beta: float = 0.0
    nu: float = 0.0
    offset: float = 0.0
    t_final: float = 1.0

    def u0(self, x: Tensor) -> Tensor:
        return torch.sin(x) + self.offset

    def speed(self, u: Tensor) -> Tensor | float:
        return self.beta if self.name == "convection" else u


def convection_case(beta: float, nu: float = 0.0, t_final: float = 1.0) -> PDECase:
    """``u_t + β u_x = ν u_xx``, ``u0 = sin x`` (LPINN spec §5)."""
    if not math.isfinite(beta):
        raise InputError(f"beta: expected a finite speed, got {beta}")
    if nu < 0:
        raise InputError(f"nu: expected a non-negative viscosity, got {nu}")
    return PDECase("convection", beta=float(beta), nu=float(nu), t_final=float(t_final))


def burgers_case(nu: float = 0.01, offset: float = 0.5, t_final: float = 0.5) -> PDECase:
    """Viscous Burgers ``u_t + u u_x = ν u_xx``, ``u0 = sin x + offset``, before the shock.

    Characteristics of the inviscid problem cross at ``t = 1`` (``max -u0' = 1``); the default
    ``t_final = 0.5`` stays well before that.
    """
    if nu <= 0:
        raise InputError(f"nu: expected a positive viscosity, got {nu}")
    if t_final <= 0:
        raise InputError(f"t_final: expected a positive time, got {t_final}")
    return PDECase("burgers", nu=float(nu), offset=float(offset), t_final=float(t_final))


def reference_solution(case: PDECase, n_x: int = 256, n_t: int = 100) -> np.ndarray:
    """Reference ``[n_t, n_x]`` on ``x_j = 2π j / n_x``, ``t_k = t_final k / (n_t - 1)``.

    Convection: exact Fourier multiplier; Burgers: pseudo-spectral on a 4× finer grid.
    """
    x = TWO_PI * np.arange(n_x) / n_x
    ts = np.linspace(0.0, case.t_final, n_t)
    if case.name == "convection":
        u0 = np.sin(x) + case.offset
        return np.stack([spectral_advection(u0, case.beta, TWO_PI, t, nu=case.nu) for t in ts])
    fine = 4 * n_x
    xf = TWO_PI * np.arange(fine) / fine
    return spectral_burgers(np.sin(xf) + case.offset, case.nu, TWO_PI, ts)[:, ::4]


def _tanh_mlp(in_dim: int, out_dim: int, width: int, depth: int) -> nn.Sequential:
    """tanh MLP with Glorot-normal weights and zero biases (the usual PINN initialisation)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    layers.append(nn.Linear(width, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def _embed(x: Tensor, t: Tensor) -> Tensor:
    return torch.stack([torch.cos(x), torch.sin(x), t], dim=-1)


class _Seeded:
    def __init__(self, generator) -> None:
        self.g = make_generator(generator if generator is not None else 0)

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.g)))

    def __exit__(self, *exc) -> None:
        torch.random.set_rng_state(self.state)


class PINN(nn.Module):
    """Eulerian PINN ``u(x, t) = MLP(cos x, sin x, t)`` (tanh, ``depth`` hidden layers).

    Args:
        width: hidden width (50 in LPINN's code).
        depth: hidden layers (5 in LPINN's code for the u-branch).
        generator: seed or ``torch.Generator`` for the initialisation.
    """

    def __init__(self, width: int = 50, depth: int = 4,
                 generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        with _Seeded(generator):
            self.net = _tanh_mlp(3, 1, width, depth)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(_embed(x, t))[..., 0]


class LagrangianPINN(nn.Module):
    """LPINN: ``U(ξ, t)`` (state along characteristics) and ``X(ξ, t)`` (characteristic).

    Method: separate tanh branches on ``(cos ξ, sin ξ, t)`` (the paper's code shares layers; we
    keep them separate, spec §2 [D]). The x-branch predicts a periodic displacement ``D``, and
    ``X = ξ + D``: a periodic network cannot output the non-periodic ``X(ξ, 0) = ξ`` itself
    [D]. We write ``X = ξ + s·t·D(ξ, t)``, so ``X(ξ, 0) = ξ`` holds exactly (the loss term
    ``||X(·, 0) - ξ||`` of the paper is kept but is then zero) [D], with
    an output scale ``s`` (default in :func:`train_pinn`: the largest initial characteristic
    speed, ``|β|`` or ``max|u0|``), so that an O(1) network output reaches displacements of
    ``β t`` [D, an output normalisation]. The initial condition of ``U`` stays a soft penalty
    as in the paper.

    Args:
        width: width of both branches.
        depth_u: hidden layers of the U-branch.
        depth_x: hidden layers of the X-branch (2 in the paper's code).
        x_scale: output scale ``s`` of the displacement.
        generator: seed or ``torch.Generator`` for the initialisation.
    """

    def __init__(self, width: int = 50, depth_u: int = 4, depth_x: int = 2,
                 x_scale: float = 1.0,
                 generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        with _Seeded(generator):
            self.u_net = _tanh_mlp(3, 1, width, depth_u)
            self.x_net = _tanh_mlp(3, 1, width, depth_x)
        self.x_scale = float(x_scale)

    def forward(self, xi: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(U, X)`` at labels ``xi`` and times ``t``."""
        e = _embed(xi, t)
        return self.u_net(e)[..., 0], xi + self.x_scale * t * self.x_net(e)[..., 0]


def _grad(y: Tensor, x: Tensor) -> Tensor:
    return torch.autograd.grad(y.sum(), x, create_graph=True)[0]


def pinn_residual(model: PINN, x: Tensor, t: Tensor, case: PDECase) -> Tensor:
    """PDE residual ``u_t + a(u) u_x - ν u_xx`` of an Eulerian PINN by autograd.

    ``x`` and ``t`` need ``requires_grad=True``.
    """
    u = model(x, t)
    u_t, u_x = _grad(u, t), _grad(u, x)
    r = u_t + case.speed(u) * u_x
    if case.nu:
        r = r - case.nu * _grad(u_x, x)
    return r


def lpinn_residuals(model: LagrangianPINN, xi: Tensor, t: Tensor, case: PDECase,
                    diffusion: str = "physical") -> tuple[Tensor, Tensor, Tensor]:
    """LPINN residuals ``(R_x, R_u, X_ξ)``: ``R_x = X_t - a(U)``, ``R_u = U_t - ν u_xx``.

    ``diffusion="physical"`` takes ``u_xx = (1/X_ξ) ∂_ξ(U_ξ / X_ξ)`` (exact chain rule);
    ``"label"`` takes ``U_ξξ`` as the paper's code does (exact only when ``X_ξ = 1``).
    """
    U, X = model(xi, t)
    X_t, U_t = _grad(X, t), _grad(U, t)
    R_x = X_t - case.speed(U)
    X_xi = _grad(X, xi)
    if case.nu:
        U_xi = _grad(U, xi)
        if diffusion == "physical":
            u_xx = _grad(U_xi / X_xi, xi) / X_xi
        elif diffusion == "label":
            u_xx = _grad(U_xi, xi)
        else:
            raise ConfigError(f"diffusion: expected 'physical' or 'label', got {diffusion!r}")
        R_u = U_t - case.nu * u_xx
    else:
        R_u = U_t
    return R_x, R_u, X_xi


@dataclass
class PINNResult:
    """Outcome of training one PINN/LPINN.

    Attributes:
        method: ``"pinn"`` or ``"lpinn"``.
        relative_l2: relative L2 error vs the reference on the evaluation grid.
        u: prediction ``[n_t, n_x]`` on the evaluation grid.
        reference: reference ``[n_t, n_x]``.
        seconds: training time.
        losses: loss history.
        monotone: for LPINN, whether ``X(·, t)`` stayed increasing (characteristics did not
            cross); always True for the PINN.
        parameters: number of network parameters.
    """

    method: str
    relative_l2: float
    u: np.ndarray
    reference: np.ndarray
    seconds: float
    losses: list[float] = field(default_factory=list)
    monotone: bool = True
    parameters: int = 0


def _loss(model, method: str, case: PDECase, xi: Tensor, tt: Tensor, x0: Tensor,
          weights: tuple[float, float, float], diffusion: str) -> Tensor:
    if method == "pinn":
        r = pinn_residual(model, xi, tt, case)
        u0 = model(x0, torch.zeros_like(x0))
        return (r ** 2).mean() + weights[2] * ((u0 - case.u0(x0)) ** 2).mean()
    g_x, g_u, g_ic = weights
    R_x, R_u, _ = lpinn_residuals(model, xi, tt, case, diffusion)
    U0, X0 = model(x0, torch.zeros_like(x0))
    return (g_x * torch.linalg.vector_norm(R_x) + g_u * torch.linalg.vector_norm(R_u)
            + g_ic * (torch.linalg.vector_norm(X0 - x0)
                      + torch.linalg.vector_norm(U0 - case.u0(x0))))


def evaluate(model, method: str, case: PDECase, n_x: int = 256, n_t: int = 100
             ) -> tuple[np.ndarray, bool]:
    """Prediction ``[n_t, n_x]`` on the evaluation grid (LPINN: periodic interpolation of
    ``(X mod 2π, U)`` back to the grid) and the characteristic-monotonicity flag."""
    x = torch.arange(n_x, dtype=torch.float64) * TWO_PI / n_x
    ts = torch.linspace(0.0, case.t_final, n_t, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        if method == "pinn":
            X, T = torch.meshgrid(x, ts, indexing="xy")
            return model(X, T).numpy(), True
        n_label = 4 * n_x
        xi = torch.arange(n_label, dtype=torch.float64) * TWO_PI / n_label
        XI, T = torch.meshgrid(xi, ts, indexing="xy")
        U, Xc = model(XI, T)
    U, Xc = U.numpy(), Xc.numpy()
    monotone = bool((np.diff(Xc, axis=1) > 0).all())
    out = np.stack([np.interp(x.numpy(), np.mod(Xc[k], TWO_PI), U[k], period=TWO_PI)
                    for k in range(n_t)])
    return out, monotone


def train_pinn(method: str, case: PDECase, *, width: int = 50, depth: int = 4,
               adam_steps: int = 2000, lbfgs_steps: int = 100, lr: float | None = None,
               n_x: int = 128, n_t: int = 50, weights: tuple[float, float, float] | None = None,
               diffusion: str = "physical", seed: int | torch.Generator | None = 0,
               eval_grid: tuple[int, int] = (256, 100),
               device: torch.device | str = "cpu") -> PINNResult:
    """Train a PINN or LPINN on ``case`` and measure its relative L2 error.

    Method: collocation on the tensor grid of ``n_x`` labels/positions in [0, 2π) and ``n_t``
    times in [0, t_final]; Adam (amsgrad) for ``adam_steps`` then L-BFGS (strong Wolfe) for
    ``lbfgs_steps``, in float32. PINN loss: mean squared residual + ``w_ic`` × mean squared IC
    error (``weights = (-, -, w_ic)``, default 100). LPINN loss: the paper's
    ``g_x ||R_x|| + g_u ||R_u|| + g_ic (||X0 - ξ|| + ||U0 - u0||)`` with un-squared norms
    (defaults 10, 1, 1000 as in the paper's code). Cost per step O(n_x n_t width² depth) with
    up to third-order autograd for the viscous LPINN.

    Args:
        method: ``"pinn"`` or ``"lpinn"``.
        case: :func:`convection_case` or :func:`burgers_case`.
        width, depth: network size (LPINN: the U-branch; its X-branch has depth 2).
        adam_steps, lbfgs_steps: optimiser budget.
        lr: Adam learning rate (default 1e-3 for the PINN, 1e-2 for LPINN as in the paper).
        n_x, n_t: collocation grid.
        weights: loss weights (see above).
        diffusion: LPINN's diffusion term, see :func:`lpinn_residuals`.
        seed: seed or generator for the initialisation.
        eval_grid: ``(n_x, n_t)`` of the evaluation grid.
        device: where to train (evaluation runs on the CPU in float64).

    Returns:
        :class:`PINNResult`.
    """
    if method not in ("pinn", "lpinn"):
        raise ConfigError(f"method: expected 'pinn' or 'lpinn', got {method!r}")
    for name, v in (("adam_steps", adam_steps), ("lbfgs_steps", lbfgs_steps)):
        if v < 0:
            raise ConfigError(f"{name}: expected >= 0, got {v}")
    t_start = time.perf_counter()
    if method == "pinn":
        model: nn.Module = PINN(width, depth, generator=seed)
        weights = weights or (1.0, 1.0, 100.0)
        lr = 1e-3 if lr is None else lr
    else:
        scale = abs(case.beta) if case.name == "convection" else 1.0 + abs(case.offset)
        model = LagrangianPINN(width, depth, 2, x_scale=max(scale, 1.0), generator=seed)
        weights = weights or (10.0, 1.0, 1000.0)
        lr = 1e-2 if lr is None else lr
    model = model.to(device)
    x = torch.arange(n_x, dtype=torch.float32, device=device) * TWO_PI / n_x
    ts = torch.linspace(0.0, case.t_final, n_t, device=device)
    XI, TT = torch.meshgrid(x, ts, indexing="xy")
    xi, tt = XI.reshape(-1).requires_grad_(True), TT.reshape(-1).requires_grad_(True)
    losses: list[float] = []

    def closure_loss() -> Tensor:
        return _loss(model, method, case, xi, tt, x, weights, diffusion)

    opt = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)
    for _ in range(adam_steps):
        loss = closure_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if lbfgs_steps:
        lb = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=lbfgs_steps,
                               line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                               tolerance_change=1e-12)

        def closure() -> Tensor:
            lb.zero_grad()
            loss = closure_loss()
            loss.backward()
            losses.append(float(loss.detach()))
            return loss

        lb.step(closure)
    seconds = time.perf_counter() - t_start
    ref = reference_solution(case, *eval_grid)
    pred, monotone = evaluate(model.cpu(), method, case, *eval_grid)
    if not np.isfinite(pred).all():
        err = float("inf")
    else:
        err = relative_l2(pred, ref)
    n_par = sum(p.numel() for p in model.parameters())
    return PINNResult(method, err, pred, ref, seconds, losses, monotone, n_par)


def solve_case(case: PDECase, methods: tuple[str, ...] = ("pinn", "lpinn"), **kwargs
               ) -> dict[str, PINNResult]:
    """Train each method on ``case`` with the same budget (``kwargs`` of :func:`train_pinn`)."""
    return {m: train_pinn(m, case, **kwargs) for m in methods}
