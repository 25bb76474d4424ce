"""Adams–Bashforth (PLMS), heavy-ball and generalized-heavy-ball multistep solvers.

Each works in a *natural variable* s with slope f: for a model on a path with a noise schedule
(α > 0 along the solve) it is the DDIM coordinates x̄ = x/α, s = σ̄ = σ/α, f = ε̂ (so
dx̄/dσ̄ = ε̂ and AB1 is DDIM); otherwise (a linear/rectified-flow path from its source, or a
plain field) s = t and f = the velocity. ``variable="t"`` or ``"sigma"`` forces one.

- **AB_k** (k = 1..4; PLMS = AB4): the slope is replaced by the polynomial through the last k
  slopes, integrated exactly over the step. With ``variable_step=True`` (default) the weights are
  those of the actual, possibly non-uniform steps (Lagrange weights by Gauss–Legendre
  quadrature); with False they are the classical uniform-step coefficients (3/2, −1/2), ...,
  as in PLMS (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds").
  Order k, 1 NFE per step, warm-up at order min(k, slopes available).
- **HB** (heavy ball on AB_k or DPM-Solver++(2M)): m_n = (1 − β)m_{n−1} + β·e_n, m_0 = e_0,
  applied *after* the Adams combination e_n (Wizadwongsa et al. 2024, "Diffusion Sampling with
  Momentum for Mitigating Divergence Artifacts", §3). First order for β < 1 with a larger
  stability region; β = 1 is the base solver.
- **GHVB(q)** (generalized heavy ball, fractional order q): k = ⌈q⌉, β = q − ⌊q⌋ (1 for integer
  q); the momentum m_n = (1 − β)m_{n−1} + β·f_n acts on the raw slope *before* the β-dependent
  Adams-like combination e_n = C_k^β(m_n, ..., m_{n−k+1})/β (same paper, eq. 14; the
  coefficients are the uniform-step ones of the paper). It interpolates between orders ⌊q⌋ and
  ⌈q⌉, trading accuracy for stability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np
from torch import Tensor

from monge.errors import InputError
from monge.solvers.base import Field, Solver, StepOutput, velocity_and_denoised
from monge.solvers.schedule import Schedule

UNIFORM_AB: dict[int, tuple[float, ...]] = {
    1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
"""Uniform-step Adams–Bashforth weights, newest slope first."""


def ghvb_coefficients(k: int, beta: float) -> tuple[float, ...]:
    """GHVB weights C_k^β / β on (m_n, m_{n−1}, ...) (Wizadwongsa et al. 2024, eq. 14).

    At β = 1 they are the Adams–Bashforth weights of order k.
    """
    table = {1: (beta,), 2: ((2 + beta) / 2, -(2 - beta) / 2),
             3: ((18 + 5 * beta) / 12, -(24 - 8 * beta) / 12, (6 - beta) / 12),
             4: ((46 + 9 * beta) / 24, -(78 - 19 * beta) / 24, (42 - 5 * beta) / 24,
                 -(10 - beta) / 24)}
    return tuple(c / beta for c in table[k])


def adams_weights(nodes: list[float], s: float, s_next: float) -> list[float]:
    """∫_s^s_next of the Lagrange basis on ``nodes`` (newest first, nodes[0] = s).

    Exact for the interpolating polynomial (Gauss–Legendre with len(nodes) points); cost O(k²).
    """
    k = len(nodes)
    g, w = np.polynomial.legendre.leggauss(k)
    h = s_next - s
    q = s + 0.5 * h * (g + 1.0)
    out = []
    for j in range(k):
        lj = np.ones_like(q)
        for m in range(k):
            if m != j:
                lj *= (q - nodes[m]) / (nodes[j] - nodes[m])
        out.append(float(0.5 * h * np.dot(w, lj)))
    return out


@dataclass
class _Slopes:
    """Per-solve state: the natural variable, recent slopes/momenta and their nodes."""

    schedule: Schedule | None
    variable: str
    slopes: list[Tensor] = dc_field(default_factory=list)   # newest first
    nodes: list[float] = dc_field(default_factory=list)
    momentum: Tensor | None = None
    momenta: list[Tensor] = dc_field(default_factory=list)  # GHVB, newest first


def _natural_variable(field: Field, grid: Tensor, variable: str, solver: str
                      ) -> tuple[Schedule | None, str]:
    if variable not in ("auto", "t", "sigma"):
        raise InputError(f"{solver}: variable must be 'auto', 't' or 'sigma', got {variable!r}")
    if variable == "t":
        return None, "t"
    try:
        sched = Schedule(field, solver)
    except InputError:
        if variable == "sigma":
            raise
        return None, "t"
    ends_ok = all(sched.alpha_sigma(float(t))[0] > 0.0 for t in (grid[0], grid[-1]))
    if not ends_ok:
        if variable == "sigma":
            raise InputError(f"{solver}: variable 'sigma' needs α > 0 over the solve (σ̄ = σ/α is "
                             "infinite at the source of this path); use variable='t'")
        return None, "t"
    return sched, "sigma"


class AdamsBashforth(Solver):
    """Adams–Bashforth of order k in the natural variable (see the module docstring).

    Args:
        steps_back: the order k (1–4).
        variable: ``auto``, ``t`` or ``sigma``.
        variable_step: exact weights for the actual step sizes (True) or the uniform-step ones.
        momentum: heavy-ball β ∈ (0, 1] on the Adams combination; None = off.
    """

    name, order, nfe_per_step = "ab", 2, 1

    def __init__(self, steps_back: int | None = None, variable: str = "auto",
                 variable_step: bool = True, momentum: float | None = None):
        k = type(self).order if steps_back is None else steps_back
        if k not in UNIFORM_AB:
            raise InputError(f"{self.name}: order must be 1-4, got {k!r}")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise InputError(f"{self.name}: momentum β must lie in (0, 1], got {momentum}")
        self.k, self.variable, self.variable_step, self.beta = k, variable, variable_step, momentum
        self.order = 1 if momentum is not None and momentum < 1.0 else k
        self.min_steps = k

    def init(self, field: Field, x: Tensor, grid: Tensor, cond: dict[str, Any]
             ) -> tuple[Any, int]:
        sched, var = _natural_variable(field, grid, self.variable, self.name)
        return _Slopes(sched, var), 0

    def _slope(self, st: _Slopes, field: Field, x: Tensor, t: float, cond: dict[str, Any]
               ) -> tuple[Tensor, Tensor | None]:
        if st.variable == "t":
            return velocity_and_denoised(field, x, t, cond)
        eps, x1 = st.schedule.predict(field, ("epsilon", "x1"), x, t, cond)
        return eps, x1

    def _position(self, st: _Slopes, t: float) -> float:
        return t if st.variable == "t" else st.schedule.sigma_bar(t)

    def _combine(self, st: _Slopes, s: float, s_next: float) -> Tensor:
        k = min(self.k, len(st.slopes))
        if self.variable_step:
            w = adams_weights(st.nodes[:k], s, s_next)
            return sum(wi / (s_next - s) * f for wi, f in zip(w, st.slopes[:k], strict=True))
        return sum(c * f for c, f in zip(UNIFORM_AB[k], st.slopes[:k], strict=True))

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        st: _Slopes = state
        f, x1 = self._slope(st, field, x, t, cond)
        s, s_next = self._position(st, t), self._position(st, t_next)
        st.slopes = [f, *st.slopes][:self.k]
        st.nodes = [s, *st.nodes][:self.k]
        e = self._direction(st, s, s_next)
        return StepOutput(self._advance(st, x, t, t_next, s_next - s, e), 1, state=st,
                          denoised=x1)

    def _direction(self, st: _Slopes, s: float, s_next: float) -> Tensor:
        e = self._combine(st, s, s_next)
        if self.beta is not None:
            st.momentum = e if st.momentum is None else (
                (1.0 - self.beta) * st.momentum + self.beta * e)
            e = st.momentum
        return e

    @staticmethod
    def _advance(st: _Slopes, x: Tensor, t: float, t_next: float, ds: float, e: Tensor
                 ) -> Tensor:
        if st.variable == "t":
            return x + ds * e
        a, _ = st.schedule.alpha_sigma(t)
        a2, _ = st.schedule.alpha_sigma(t_next)
        return a2 * (x / a + ds * e)


class AB1(AdamsBashforth):
    """Adams–Bashforth order 1 in the natural variable (DDIM in σ̄, Euler in t)."""

    name, order = "ab1", 1


class AB2(AdamsBashforth):
    """Adams–Bashforth order 2 in the natural variable."""

    name, order = "ab2", 2


class AB3(AdamsBashforth):
    """Adams–Bashforth order 3 in the natural variable."""

    name, order = "ab3", 3


class AB4(AdamsBashforth):
    """Adams–Bashforth order 4 in the natural variable (PLMS)."""

    name, order = "ab4", 4


class HeavyBall(Solver):
    """Heavy-ball momentum (damping β) on a multistep solver: AB1–AB4 or DPM-Solver++(2M).

    Wizadwongsa et al. (2024), "Diffusion Sampling with Momentum for Mitigating Divergence
    Artifacts": m_n = (1 − β)m_{n−1} + β·e_n after the base method's combination e_n. First
    order for β < 1 (the base order at β = 1), 1 NFE per step.

    Args:
        base: ``ab1``–``ab4`` or ``dpmpp-2m``.
        beta: damping β ∈ (0, 1].
        variable: the natural variable for an AB base (see :class:`AdamsBashforth`).
    """

    name, order, nfe_per_step = "hb", 1, 1

    def __init__(self, base: str = "ab2", beta: float = 0.8, variable: str = "auto"):
        from monge.solvers.exponential import DPMSolverPP2M

        bases = {"ab1": 1, "ab2": 2, "ab3": 3, "ab4": 4}
        if base == "dpmpp-2m":
            self.inner: Solver = DPMSolverPP2M(momentum=beta)
        elif base in bases:
            self.inner = AdamsBashforth(bases[base], variable=variable, momentum=beta)
        else:
            raise InputError(f"hb: base must be one of {[*bases, 'dpmpp-2m']}, got {base!r}")
        self.base, self.beta = base, beta
        self.order, self.min_steps = self.inner.order, getattr(self.inner, "min_steps", 1)

    def init(self, field: Field, x: Tensor, grid: Tensor, cond: dict[str, Any]
             ) -> tuple[Any, int]:
        return self.inner.init(field, x, grid, cond)

    def step(self, field: Field, x: Tensor, t: float, t_next: float, state: Any,
             cond: dict[str, Any]) -> StepOutput:
        return self.inner.step(field, x, t, t_next, state, cond)

    def __repr__(self) -> str:
        return f"HeavyBall(base={self.base!r}, beta={self.beta})"


class GHVB(AdamsBashforth):
    """Generalized heavy ball GHVB(q): momentum on the slope before a β-dependent Adams
    combination (see the module docstring). Orders between ⌊q⌋ and ⌈q⌉ (declared ⌊q⌋, at least
    1), 1 NFE per step.

    Args:
        q: fractional order in (0, 4].
        variable: the natural variable (see :class:`AdamsBashforth`).
    """

    name, order, nfe_per_step = "ghvb", 1, 1

    def __init__(self, q: float = 1.5, variable: str = "auto"):
        if not (isinstance(q, int | float) and 0.0 < q <= 4.0):
            raise InputError(f"ghvb: q must lie in (0, 4], got {q!r}")
        k = math.ceil(q)
        super().__init__(k, variable=variable, variable_step=False)
        self.q, self.ghvb_beta = float(q), (q - math.floor(q)) or 1.0
        self.order = max(1, math.floor(q))

    def _direction(self, st: _Slopes, s: float, s_next: float) -> Tensor:
        b, f = self.ghvb_beta, st.slopes[0]
        st.momentum = f if st.momentum is None else (1.0 - b) * st.momentum + b * f
        st.momenta = [st.momentum, *st.momenta][:self.k]
        k = len(st.momenta)
        return sum(c * m for c, m in zip(ghvb_coefficients(k, b), st.momenta, strict=True))

    def __repr__(self) -> str:
        return f"GHVB(q={self.q})"

