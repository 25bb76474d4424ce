"""Deep Conjugate Direction Method (DCDM) and the classical Krylov baselines it is measured against.

DCDM (Kaneda, Akar, Chen, Kala, Hyde, Teran, "A Deep Conjugate Direction Method for Iteratively
Solving Linear Systems", ICML 2023) solves ``A x = b`` for a sparse SPD ``A`` with search
directions proposed by a CNN ``f_w`` that approximates ``A⁻¹`` up to scale, A-orthogonalised
against the last two directions, with an exact line search in the A-norm. The network is trained
without solutions, with the scale-invariant loss ``||b - α*(q) A q||²``, ``α* = qᵀb / qᵀAq``,
on right-hand sides built from Ritz vectors of ``A`` weighted towards the low end of the spectrum.

Pieces:

- :func:`as_spd_matrix` (scipy.sparse or torch.sparse input, checked), :func:`poisson_2d`
  (5-point Dirichlet Poisson, optional obstacle mask with Neumann walls);
- :func:`lanczos`, :func:`ritz_rhs` (training data), :class:`PoissonCNN`, :func:`dcdm_loss`,
  :func:`train_poisson_cnn`, :class:`NetworkDirection`;
- :func:`dcdm_solve` (the solver), :func:`pcg` (CG / PCG with any preconditioner),
  :func:`scipy_cg` (scipy's CG, the reference count), :class:`IC0` (incomplete Cholesky, written
  here: neither scipy nor the project's dependencies ship one), :func:`amg_preconditioner`
  (pyamg, optional extra ``monge[amg]``).

All solvers return :class:`KrylovResult` and stop at ``||b - A x|| <= rel_tol ||b||``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, splu
from torch import nn

from monge.core.checks import make_generator
from monge.errors import ConvergenceWarning, InputError, MongeError

__all__ = [
    "MissingExtraError", "KrylovResult", "PoissonSystem", "as_spd_matrix", "poisson_2d",
    "lanczos", "ritz_rhs", "PoissonCNN", "dcdm_loss", "TrainResult", "train_poisson_cnn",
    "NetworkDirection", "dcdm_solve", "pcg", "scipy_cg", "IC0", "amg_preconditioner",
    "torch_csr",
]


class MissingExtraError(MongeError, ImportError):
    """An optional dependency (an extra such as ``monge[amg]``) is not installed."""


@dataclass
class KrylovResult:
    """Result of an iterative linear solve.

    Attributes:
        x: solution (float64 numpy ``[N]``).
        iterations: iterations taken (one search direction each).
        residuals: relative residual ``||b - A x_k|| / ||b||`` after each iteration (index 0 is
            the start).
        converged: whether ``rel_tol`` was met.
        seconds: wall time of the solve (set-up such as a factorisation excluded, network
            inference included).
        method: solver name.
    """

    x: np.ndarray
    iterations: int
    residuals: list[float]
    converged: bool
    seconds: float
    method: str


# ---------------------------------------------------------------------------- matrices


def as_spd_matrix(A, name: str = "A", *, check_symmetric: bool = True) -> sparse.csr_matrix:
    """Convert ``A`` (scipy.sparse, torch sparse/dense tensor or numpy array) to float64 CSR.

    Checks that it is square, finite, symmetric (to 1e-10 relative) and has a positive diagonal
    (a necessary condition for SPD). Indefiniteness that these checks miss is caught by the
    solvers, which raise :class:`InputError` on a non-positive curvature ``pᵀAp <= 0``.
    """
    if isinstance(A, torch.Tensor):
        t = A.detach().cpu()
        if t.layout != torch.strided:
            t = t.to_sparse_coo().coalesce()
            idx, val = t.indices().numpy(), t.values().double().numpy()
            M = sparse.csr_matrix((val, (idx[0], idx[1])), shape=tuple(t.shape))
        else:
            M = sparse.csr_matrix(t.double().numpy())
    elif sparse.issparse(A):
        M = sparse.csr_matrix(A, dtype=np.float64)
    elif isinstance(A, np.ndarray):
        M = sparse.csr_matrix(A.astype(np.float64))
    else:
        raise InputError(f"{name}: expected a scipy.sparse matrix, a torch tensor or an array, "
                         f"got {type(A).__name__}")
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise InputError(f"{name}: expected a square matrix, got shape {M.shape}")
    if not np.isfinite(M.data).all():
        raise InputError(f"{name}: contains NaN or Inf entries")
    scale = float(abs(M).max()) if M.nnz else 0.0
    if scale == 0.0:
        raise InputError(f"{name}: the matrix is zero")
    if check_symmetric:
        asym = abs(M - M.T).max() if M.nnz else 0.0
        if float(asym) > 1e-10 * scale:
            raise InputError(f"{name}: not symmetric (max |A - Aᵀ| = {float(asym):.3g}); these "
                             "solvers need a symmetric positive definite matrix")
    if (M.diagonal() <= 0).any():
        raise InputError(f"{name}: not positive definite (a diagonal entry is <= 0)")
    return M


def torch_csr(A: sparse.spmatrix, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """scipy sparse -> coalesced ``torch.sparse_coo_tensor`` (batched matvecs in training)."""
    A = sparse.coo_matrix(A)
    idx = torch.from_numpy(np.vstack([A.row, A.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(A.data).to(dtype), size=A.shape,
                                   device=device, check_invariants=False).coalesce()


@dataclass
class PoissonSystem:
    """A 2-D Poisson matrix on an ``n × n`` grid of cells.

    Attributes:
        A: ``[n², n²]`` CSR matrix (row-major cell order).
        n: cells per side.
        fluid: boolean ``[n, n]``, False on solid (obstacle) cells.
    """

    A: sparse.csr_matrix
    n: int
    fluid: np.ndarray

    def random_rhs(self, seed: int | None = 0, smooth: bool = False) -> np.ndarray:
        """N(0, 1) right-hand side on fluid cells (zero on solid ones); ``smooth`` adds a
        low-frequency field instead."""
        rng = np.random.default_rng(seed)
        if smooth:
            g = (np.arange(self.n) + 0.5) / self.n
            X, Y = np.meshgrid(g, g, indexing="ij")
            a = rng.normal(size=4)
            b = (a[0] * np.sin(np.pi * X) * np.sin(np.pi * Y)
                 + a[1] * np.sin(2 * np.pi * X) * np.sin(np.pi * Y)
                 + a[2] * np.sin(np.pi * X) * np.sin(3 * np.pi * Y) + a[3] * X * Y)
        else:
            b = rng.normal(size=(self.n, self.n))
        return (b * self.fluid).reshape(-1)


def poisson_2d(n: int, obstacle: np.ndarray | None = None) -> PoissonSystem:
    """5-point Poisson matrix (unscaled: 4 on the diagonal, -1 off it) on ``n × n`` cells.

    The domain boundary is Dirichlet (u = 0 outside). With ``obstacle`` (boolean ``[n, n]``,
    True = solid), faces between a fluid and a solid cell are Neumann walls (the fluid cell's
    diagonal drops by one per solid neighbour, as in a pressure projection) and solid cells get
    identity rows, decoupled from the fluid (keep ``b = 0`` there). Every connected fluid region
    must touch the domain boundary, otherwise the matrix is singular and an error is raised.

    Args:
        n: cells per side (>= 2).
        obstacle: optional boolean mask of solid cells.

    Returns:
        :class:`PoissonSystem`.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise InputError(f"grid: expected an integer >= 2, got {n!r}")
    n = int(n)
    if obstacle is None:
        solid = np.zeros((n, n), dtype=bool)
    else:
        solid = np.asarray(obstacle)
        if solid.dtype != np.bool_:
            raise InputError(f"obstacle: expected a boolean mask, got dtype {solid.dtype}")
        if solid.shape != (n, n):
            raise InputError(f"obstacle: expected shape ({n}, {n}) for a {n}² grid, got "
                             f"{solid.shape}")
        if solid.all():
            raise InputError("obstacle: every cell is solid")
    fluid = ~solid
    if solid.any():
        from scipy.ndimage import label
        labels, count = label(fluid)
        edge = np.zeros_like(fluid)
        edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
        touching = set(np.unique(labels[edge & fluid]).tolist())
        enclosed = [i for i in range(1, count + 1) if i not in touching]
        if enclosed:
            raise InputError(f"obstacle: {len(enclosed)} fluid region(s) are enclosed by solid "
                             "cells and do not touch the domain boundary (singular Poisson "
                             "matrix)")
    idx = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    diag = np.where(fluid, 4.0, 1.0)
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        sl_src = (slice(max(0, -di), n - max(0, di)), slice(max(0, -dj), n - max(0, dj)))
        sl_dst = (slice(max(0, di), n - max(0, -di)), slice(max(0, dj), n - max(0, -dj)))
        both = fluid[sl_src] & fluid[sl_dst]
        rows.append(idx[sl_src][both])
        cols.append(idx[sl_dst][both])
        vals.append(-np.ones(int(both.sum())))
        # fluid cell next to a solid cell inside the domain: Neumann wall
        wall = fluid[sl_src] & ~fluid[sl_dst]
        d = diag[sl_src]
        d[wall] -= 1.0
        diag[sl_src] = d
    rows.append(idx.reshape(-1))
    cols.append(idx.reshape(-1))
    vals.append(diag.reshape(-1))
    A = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n * n, n * n))
    return PoissonSystem(A, n, fluid)


# ---------------------------------------------------------------------------- training data


def lanczos(A, m: int, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """``m`` steps of Lanczos with full re-orthogonalisation, started from ``A·(Gaussian)``.

    Method: the three-term recurrence plus two Gram–Schmidt passes against all previous
    vectors, then the eigen-decomposition of the ``m × m`` tridiagonal matrix (DCDM spec §4).
    Cost O(m·nnz + m² N).

    Returns:
        ``(ritz_values [m'], ritz_vectors [m', N])`` in ascending order (m' <= m if the
        Krylov space is exhausted).
    """
    A = as_spd_matrix(A)
    N = A.shape[0]
    m = min(int(m), N)
    rng = np.random.default_rng(seed)
    q = A @ rng.normal(size=N)
    q /= np.linalg.norm(q)
    Q = np.zeros((m, N))
    alpha, beta = np.zeros(m), np.zeros(m)
    k_used = m
    for k in range(m):
        Q[k] = q
        w = A @ q
        alpha[k] = q @ w
        w -= alpha[k] * q + (beta[k - 1] * Q[k - 1] if k > 0 else 0.0)
        for _ in range(2):
            w -= Q[: k + 1].T @ (Q[: k + 1] @ w)
        beta[k] = np.linalg.norm(w)
        if beta[k] < 1e-10:
            k_used = k + 1
            break
        q = w / beta[k]
    T = np.diag(alpha[:k_used]) + np.diag(beta[: k_used - 1], 1) + np.diag(beta[: k_used - 1], -1)
    vals, W = np.linalg.eigh(T)
    return vals, W.T @ Q[:k_used]


def ritz_rhs(A, n_samples: int, m: int = 200, theta: int | None = None, boost: float = 9.0,
             seed: int | None = 0, ritz: tuple[np.ndarray, np.ndarray] | None = None
             ) -> np.ndarray:
    """Training right-hand sides of DCDM: random combinations of Ritz vectors of ``A``.

    Method (DCDM spec §4): Ritz pairs from :func:`lanczos`; drop eigenvalues < 1e-8; draw
    ``c_i ~ N(0, 1)``, multiply the coefficients of the lowest ``m/2 + θ`` modes by ``boost``
    (9 in the paper), ``b = Σ c_i v_i`` normalised to unit norm.

    Args:
        A: SPD matrix.
        n_samples: number of right-hand sides.
        m: Lanczos steps.
        theta: extra low modes boosted (default ``m // 20``; the paper uses 500 of 10 000).
        boost: weight of the low modes.
        seed: random seed.
        ritz: precomputed ``(values, vectors)`` to skip the Lanczos run.

    Returns:
        ``[n_samples, N]`` float64 array of unit-norm right-hand sides.
    """
    vals, V = ritz if ritz is not None else lanczos(A, m, seed)
    keep = vals >= 1e-8
    V = V[keep]
    mm = V.shape[0]
    theta = max(1, mm // 20) if theta is None else theta
    rng = np.random.default_rng(None if seed is None else seed + 1)
    c = rng.normal(size=(n_samples, mm))
    c[:, : min(mm, mm // 2 + theta)] *= boost
    b = c @ V
    return b / np.linalg.norm(b, axis=1, keepdims=True)


# ---------------------------------------------------------------------------- network


class _ResPair(nn.Module):
    def __init__(self, f: int) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(f, f, 3, padding=1)
        self.c2 = torch.nn.Conv2d(f, f, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.c2(torch.relu(self.c1(x))))


class PoissonCNN(nn.Module):
    """DCDM's 2-D network ``r -> q ≈ c·A⁻¹ r`` (a two-level convolutional net).

    Method (a 2-D port of the paper's ``train.py``): all 3×3 convolutions with ``filters``
    channels and zero ("same") padding. Fine level: one linear conv, then 4 ReLU convs (2
    residual pairs); coarse level: 2×2 average pooling, 6 ReLU convs (3 residual pairs);
    nearest upsampling added to the pre-pool features; 4 ReLU convs (2 residual pairs); a 1×1
    linear conv to one channel. Translation-equivariant, so one set of weights runs on any even
    grid size. Cost O(n² filters² · 9 · 15) per call.

    Args:
        filters: channels F (16 in the paper's default, 32 in its "FN32" models).
        generator: seed or ``torch.Generator`` for the initialisation.
    """

    def __init__(self, filters: int = 16, generator: int | torch.Generator | None = None) -> None:
        super().__init__()
        if filters < 1:
            raise InputError(f"filters: expected a positive integer, got {filters}")
        g = make_generator(generator if generator is not None else 0)
        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        try:
            f = filters
            self.inp = torch.nn.Conv2d(1, f, 3, padding=1)
            self.fine1 = torch.nn.Sequential(_ResPair(f), _ResPair(f))
            self.coarse = torch.nn.Sequential(_ResPair(f), _ResPair(f), _ResPair(f))
            self.fine2 = torch.nn.Sequential(_ResPair(f), _ResPair(f))
            self.out = torch.nn.Conv2d(f, 1, 1)
        finally:
            torch.random.set_rng_state(state)
        self.filters = filters

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r: [B, n, n]`` (n even) -> ``[B, n, n]``."""
        if r.ndim != 3 or r.shape[1] != r.shape[2]:
            raise InputError(f"r: expected [B, n, n], got shape {tuple(r.shape)}")
        if r.shape[1] % 2:
            raise InputError(f"grid: PoissonCNN is built for even grid sizes (one 2×2 pooling "
                             f"level); got n = {r.shape[1]}")
        h = self.fine1(self.inp(r[:, None]))
        c = self.coarse(torch.nn.functional.avg_pool2d(h, 2))
        h = h + torch.nn.functional.interpolate(c, scale_factor=2, mode="nearest")
        return self.out(self.fine2(h))[:, 0]


def dcdm_loss(q: torch.Tensor, b: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """DCDM's scale-invariant loss ``mean_b ||b - α*(q) A q||²`` with ``α* = qᵀb / qᵀAq``.

    Args:
        q: network outputs ``[B, N]``.
        b: unit-norm right-hand sides ``[B, N]``.
        A: torch sparse (CSR/COO) or dense ``[N, N]``.

    Returns:
        Scalar loss (gradients flow through α* too).
    """
    Aq = (A @ q.T).T
    alpha = (q * b).sum(1) / (q * Aq).sum(1).clamp_min(1e-30)
    return ((b - alpha[:, None] * Aq) ** 2).sum(1).mean()


@dataclass
class TrainResult:
    """Trained DCDM network, its loss history and training time."""

    net: PoissonCNN
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_poisson_cnn(system: PoissonSystem, *, n_samples: int = 2000, lanczos_steps: int = 200,
                      steps: int = 500, batch: int = 10, lr: float = 1e-3, filters: int = 16,
                      net: PoissonCNN | None = None, seed: int | None = 0,
                      callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train :class:`PoissonCNN` unsupervised on Ritz-vector right-hand sides of ``system.A``.

    Method: :func:`ritz_rhs` data (fluid cells only), Adam on :func:`dcdm_loss` with the
    sparse matvec in float32 (the paper uses lr 1e-4, batch 10; a larger lr suits our short CPU
    budget). Network output is zeroed on solid cells.

    Args:
        system: the Poisson system to train on.
        n_samples: number of training right-hand sides.
        lanczos_steps: Lanczos steps for the Ritz vectors.
        steps: Adam steps.
        batch: right-hand sides per step.
        lr: learning rate.
        filters: network width (ignored when ``net`` is given).
        net: optional network to continue training.
        seed: seed for the data, the initialisation and the batches.
        callback: called as ``callback(step, loss)``.

    Returns:
        :class:`TrainResult`.
    """
    t0 = time.perf_counter()
    n = system.n
    data = torch.from_numpy(ritz_rhs(system.A, n_samples, lanczos_steps, seed=seed)).float()
    data = data * torch.from_numpy(system.fluid.reshape(1, -1)).float()
    data = data / data.norm(dim=1, keepdim=True)
    net = net if net is not None else PoissonCNN(filters, generator=seed)
    A = torch_csr(system.A)
    mask = torch.from_numpy(system.fluid).float()
    g = make_generator(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for k in range(steps):
        idx = torch.randint(0, n_samples, (batch,), generator=g)
        b = data[idx]
        q = (net(b.reshape(-1, n, n)) * mask).reshape(batch, -1)
        loss = dcdm_loss(q, b, A)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(k, losses[-1])
    return TrainResult(net, losses, time.perf_counter() - t0)


class NetworkDirection:
    """Wrap a trained network as DCDM's direction map ``r (float64 [N]) -> q (float64 [N])``.

    Normalises ``r`` to unit norm, runs the network in float32 on the ``n × n`` grid, zeroes
    solid cells and casts back (DCDM spec §8: keep the outer loop in float64).

    Args:
        net: a :class:`PoissonCNN` (or any ``[B, n, n] -> [B, n, n]`` module).
        fluid: boolean ``[n, n]`` mask of fluid cells (or the grid size ``n`` for no obstacle).
    """

    def __init__(self, net: torch.nn.Module, fluid: np.ndarray | int) -> None:
        if isinstance(fluid, int | np.integer):
            fluid = np.ones((int(fluid), int(fluid)), dtype=bool)
        self.net, self.fluid = net, np.asarray(fluid, dtype=bool)
        self.n = self.fluid.shape[0]
        if self.n % 2:
            raise InputError(f"grid: PoissonCNN is built for even grid sizes; got n = {self.n}")
        p = next(net.parameters(), None)
        self.device = p.device if p is not None else torch.device("cpu")
        self._mask = torch.from_numpy(self.fluid).float().to(self.device)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        if r.size != self.n * self.n:
            raise InputError(f"grid: the network was set up for a {self.n}×{self.n} grid "
                             f"({self.n * self.n} unknowns), got a vector of {r.size}")
        nr = np.linalg.norm(r)
        x = torch.from_numpy(r / max(nr, 1e-300)).float().to(self.device).reshape(1, self.n,
                                                                                   self.n)
        with torch.no_grad():
            q = self.net(x)[0] * self._mask
        return q.reshape(-1).double().cpu().numpy()


# ---------------------------------------------------------------------------- solvers


def _check_rhs(A: sparse.csr_matrix, b, name: str = "b") -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if b.size != A.shape[0]:
        raise InputError(f"{name}: expected {A.shape[0]} entries for a {A.shape} matrix, got "
                         f"{b.size}")
    if not np.isfinite(b).all():
        raise InputError(f"{name}: contains NaN or Inf values")
    return b


def _not_pd(curv: float) -> InputError:
    return InputError(f"A: not positive definite (found a direction with pᵀAp = {curv:.3g} <= 0)")


def dcdm_solve(A, b, direction: Callable[[np.ndarray], np.ndarray], *, rel_tol: float = 1e-4,
               max_iter: int = 500, n_directions: int = 2, x0: np.ndarray | None = None,
               true_residual: bool = True) -> KrylovResult:
    """Deep Conjugate Direction Method: network search directions, A-orthogonalised.

    Method (DCDM spec §5): ``q = f(r/||r||)``; Gram–Schmidt in the A-inner product against the
    last ``n_directions`` directions, ``q ← q - Σ_j (qᵀA p_j / p_jᵀA p_j) p_j``; exact line
    search ``x ← x + (qᵀr / qᵀAq) q``; the true residual ``b - A x`` is recomputed when
    ``true_residual`` (as the paper's code does). Cost per iteration: one network call and one
    (two) sparse matvec(s). With an exact inverse for ``f`` it converges in one iteration; with
    the identity it is steepest descent with two-direction conjugation (CG-like, but older
    directions are not A-orthogonal, so monotone decrease is not guaranteed).
    Paper: Kaneda et al., "A Deep Conjugate Direction Method for Iteratively Solving Linear
    Systems", ICML 2023.

    Args:
        A: SPD matrix (scipy.sparse or torch sparse).
        b: right-hand side ``[N]``.
        direction: ``r -> q`` (e.g. :class:`NetworkDirection`).
        rel_tol: stop at ``||r|| <= rel_tol ||b||``.
        max_iter: iteration cap (a :class:`ConvergenceWarning` and ``converged=False`` if hit).
        n_directions: number of previous directions to orthogonalise against (2 in the paper).
        x0: initial guess (zeros).
        true_residual: recompute ``r = b - A x`` each iteration (else ``r -= step A q``).

    Returns:
        :class:`KrylovResult`.
    """
    A = as_spd_matrix(A)
    b = _check_rhs(A, b)
    if n_directions < 0:
        raise InputError(f"n_directions: expected >= 0, got {n_directions}")
    t0 = time.perf_counter()
    x = np.zeros_like(b) if x0 is None else _check_rhs(A, x0, "x0").copy()
    r = b - A @ x
    nb = max(np.linalg.norm(b), 1e-300)
    res = [float(np.linalg.norm(r) / nb)]
    prev: list[tuple[np.ndarray, np.ndarray, float]] = []
    converged = res[0] <= rel_tol
    k = 0
    while not converged and k < max_iter:
        k += 1
        q = np.asarray(direction(r), dtype=np.float64).reshape(-1)
        if q.shape != b.shape or not np.isfinite(q).all():
            raise InputError(f"direction: returned {q.shape} values (or NaN/Inf); expected "
                             f"{b.shape}")
        for p, Ap, a in prev:
            q = q - (q @ Ap) / a * p
        Aq = A @ q
        a = float(q @ Aq)
        if a <= 0:
            if np.linalg.norm(q) == 0:
                break
            raise _not_pd(a)
        step = float(q @ r) / a
        x = x + step * q
        r = b - A @ x if true_residual else r - step * Aq
        res.append(float(np.linalg.norm(r) / nb))
        converged = res[-1] <= rel_tol
        prev = ([(q, Aq, a)] + prev)[:n_directions]
    if not converged:
        warnings.warn(f"dcdm: relative residual {res[-1]:.3g} > {rel_tol} after {k} iterations",
                      ConvergenceWarning, stacklevel=2)
    return KrylovResult(x, k, res, converged, time.perf_counter() - t0, "dcdm")


def pcg(A, b, M: Callable[[np.ndarray], np.ndarray] | LinearOperator | None = None, *,
        rel_tol: float = 1e-4, max_iter: int = 10_000, x0: np.ndarray | None = None,
        method: str | None = None) -> KrylovResult:
    """(Preconditioned) conjugate gradients, stopping at ``||r|| <= rel_tol ||b||``.

    Method: Hestenes–Stiefel CG with ``z = M r`` (M ≈ A⁻¹, SPD), recursive residual.
    Iterations O(√κ(MA)); cost per iteration one matvec and one preconditioner application.

    Args:
        A: SPD matrix.
        b: right-hand side.
        M: preconditioner ``r -> z`` (callable, LinearOperator, :class:`IC0`, AMG) or None.
        rel_tol: relative residual tolerance.
        max_iter: iteration cap (ConvergenceWarning, ``converged=False``).
        x0: initial guess.
        method: name recorded in the result.

    Returns:
        :class:`KrylovResult`.
    """
    A = as_spd_matrix(A)
    b = _check_rhs(A, b)
    apply = (lambda v: v) if M is None else (M.matvec if isinstance(M, LinearOperator) else M)
    t0 = time.perf_counter()
    x = np.zeros_like(b) if x0 is None else _check_rhs(A, x0, "x0").copy()
    r = b - A @ x
    nb = max(np.linalg.norm(b), 1e-300)
    res = [float(np.linalg.norm(r) / nb)]
    z = np.asarray(apply(r)).reshape(-1)
    p = z.copy()
    rz = float(r @ z)
    k = 0
    converged = res[0] <= rel_tol
    while not converged and k < max_iter:
        k += 1
        Ap = A @ p
        curv = float(p @ Ap)
        if curv <= 0:
            raise _not_pd(curv)
        step = rz / curv
        x += step * p
        r -= step * Ap
        res.append(float(np.linalg.norm(r) / nb))
        converged = res[-1] <= rel_tol
        if converged:
            break
        z = np.asarray(apply(r)).reshape(-1)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    name = method or ("cg" if M is None else "pcg")
    if not converged:
        warnings.warn(f"{name}: relative residual {res[-1]:.3g} > {rel_tol} after {k} "
                      "iterations", ConvergenceWarning, stacklevel=2)
    return KrylovResult(x, k, res, converged, time.perf_counter() - t0, name)


def scipy_cg(A, b, M=None, *, rel_tol: float = 1e-4, max_iter: int = 10_000) -> KrylovResult:
    """``scipy.sparse.linalg.cg`` with iteration counting (the reference implementation)."""
    from scipy.sparse.linalg import cg

    A = as_spd_matrix(A)
    b = _check_rhs(A, b)
    if M is not None and not isinstance(M, LinearOperator):
        M = LinearOperator(A.shape, matvec=M, dtype=np.float64)
    count = [0]

    def cb(_xk):
        count[0] += 1

    t0 = time.perf_counter()
    x, info = cg(A, b, rtol=rel_tol, atol=0.0, maxiter=max_iter, M=M, callback=cb)
    sec = time.perf_counter() - t0
    rel = float(np.linalg.norm(b - A @ x) / max(np.linalg.norm(b), 1e-300))
    return KrylovResult(x, count[0], [rel], info == 0, sec, "scipy-cg")


class IC0:
    """Zero fill-in incomplete Cholesky preconditioner ``M = (L Lᵀ)⁻¹``, L on tril(A)'s pattern.

    Written here because neither scipy nor monge's dependencies provide one (scipy's ``spilu``
    is not symmetric and stalls inside CG; ``ilupp`` is not a dependency). Method: row-by-row
    ``L_ik = (A_ik - Σ_{j<k} L_ij L_kj) / L_kk`` over the pattern, ``L_ii = √(A_ii - Σ L_ij²)``;
    application by two sparse triangular solves (scipy SuperLU with natural ordering on L).
    Factorisation is a Python loop, O(N · row_nnz²) (a second or so at 128²).

    Raises :class:`InputError` on a non-positive pivot (not SPD, or IC(0) breakdown).
    """

    def __init__(self, A) -> None:
        A = as_spd_matrix(A)
        lower = sparse.tril(A, format="csr")
        lower.sort_indices()
        N = A.shape[0]
        indptr, indices, data = lower.indptr, lower.indices, lower.data.copy()
        rows: list[dict[int, float]] = []
        for i in range(N):
            start, end = indptr[i], indptr[i + 1]
            row: dict[int, float] = {}
            for pos in range(start, end):
                k = int(indices[pos])
                if k == i:
                    s = data[pos] - sum(v * v for v in row.values())
                    if s <= 0:
                        raise InputError(f"A: IC(0) breakdown at row {i} (pivot {s:.3g} <= 0); "
                                         "the matrix is not positive definite")
                    row[i] = math.sqrt(s)
                else:
                    rk = rows[k]
                    s = data[pos] - sum(v * rk[j] for j, v in row.items() if j in rk)
                    row[k] = s / rk[k]
            rows.append(row)
        r_idx = np.repeat(np.arange(N), [len(r) for r in rows])
        c_idx = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=r_idx.size)
        vals = np.fromiter((v for r in rows for v in r.values()), dtype=np.float64,
                           count=r_idx.size)
        self.L = sparse.csc_matrix((vals, (r_idx, c_idx)), shape=(N, N))
        self._lu = splu(self.L, permc_spec="NATURAL", diag_pivot_thresh=0.0)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._lu.solve(self._lu.solve(np.asarray(r, dtype=np.float64)), trans="T")


def amg_preconditioner(A) -> LinearOperator:
    """Smoothed-aggregation AMG V-cycle as a preconditioner (pyamg; extra ``monge[amg]``).

    Raises :class:`MissingExtraError` with the install command when pyamg is missing.
    """
    try:
        import pyamg
    except ImportError:
        raise MissingExtraError("pyamg is not installed; AMG needs the optional extra: "
                                "pip install 'monge[amg]' (or pip install pyamg)") from None
    A = as_spd_matrix(A)
    return pyamg.smoothed_aggregation_solver(A).aspreconditioner(cycle="V")
