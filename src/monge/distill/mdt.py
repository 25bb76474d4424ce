"""MDT-dist: velocity matching and velocity distillation of a flow teacher into a few-step map.

Zhou, Yi, Fang, Yang, Xie, Wang, Shen & Tian (2025), "MDT-dist: Few-step Flow for 3D Generation
via Marginal-Data Transport Distillation" (arXiv 2509.04406). The paper runs time from data
(t = 0) to noise (t = 1); here everything is in monge's convention, τ = 1 − t_paper: τ = 0 is
the source (noise), τ = 1 the data, x_τ = (1 − τ)·x0 + τ·x1, and every velocity changes sign
(u_monge = −u_paper, v_monge = −v_paper).

**Marginal-data transport.** The student is a flow map to the data end,
X(x_τ, τ → 1) = x_τ + (1 − τ)·u_θ(x_τ, τ, 1). Its exact target is the teacher's average
velocity u*(x_τ, τ) = (1/(1 − τ))∫_τ^1 v_T(x_s, s) ds along the teacher ODE. Differentiating
(1 − τ)·u* = ∫_τ^1 v_T in τ gives (MeanFlow's identity with s = 1)

    u*(x_τ, τ) = v_T(x_τ, τ) + (1 − τ)·(d/dτ) u*(x_τ, τ),     d/dτ = ∂_τ + v_T·∇_x.

**Velocity matching (VM)** regresses u_θ on the stop-gradient right-hand side, with the
derivative D of the *current* student along the teacher's velocity:

    L_VM = ‖u_θ(x_τ, τ) − sg[v_T(x_τ, τ) + (1 − τ)·D̂]‖²,
    continuous  D = JVP of u_θ at (x_τ, τ) along (v_T, 1)                (one forward-mode JVP),
    discrete    D = (u_θ(x_τ + δ·v_T, τ + δ) − u_θ(x_τ, τ)) / δ,  δ = 0.01  (one extra forward),
    D̂ = D / (‖D‖ + c) per sample, c = 0.1 (``d_norm``; ``None`` uses D itself).

The paper's discrete D, (u(x_t) − u(x_t − δ·v, t − δ))/δ, steps toward the data: in monge time
that is the *forward* step τ → τ + δ, so τ is drawn on [0, 1 − δ] (the paper's t ∈ [δ, 1]).
The whole target is detached: teacher, D and u_θ at τ + δ; only u_θ(x_τ, τ) gets gradients. With
``d_norm=None`` the exact average velocity is a fixed point (the discrete target to O(δ)); with
the normalisation the target is biased toward v_T where D is large (the paper's "VM is stable
but biased"): ‖D̂‖ < 1, so the target's jump x_τ + (1 − τ)·u_tgt stays within (1 − τ)² of the
teacher's one Euler jump. The correction is bounded in absolute units, not relative ones: in low
dimension, where the teacher's 1-step error is large, VM alone cannot close it
(``benchmarks/mdt_dist.py``); ``d_norm=None`` removes the bound.

**Velocity distillation (VD)** moves the student's own one-step samples along the transport
residual measured on them. With fresh source draws n′, n and a fresh time τ:

    u1 = u_θ(n′, 0, 1),  x̂1 = n′ + u1                       (one-step sample, with gradient)
    x_τ = (1 − τ)·n + τ·sg(x̂1);  with no grad: r = u_pred − u_tgt, the VM pair at (x_τ, τ)
    L_VD = ‖r + u1 − sg(u1)‖²,  value ‖r‖², gradient 2·r·∂u1/∂θ.

The paper's expression keeps its form in monge time because r and u1 both change sign: a
gradient step moves x̂1 along −r = u_tgt − u_pred, toward the teacher-corrected jump (in paper
time the sample x0_fake = n′ − u1 moves along +r_paper, the same direction in space). VD uses
no data (the student's samples only); it has no anchor to the teacher's coupling.

Total: λ_VM·L_VM + λ_VD·L_VD (‖·‖² averaged over the dimensions, then over the batch, as in
:class:`~monge.train.losses.FlowMatchingLoss`). Times are logit-normal, τ = τ_max·sigmoid(m +
s·z): the paper's t ~ sigmoid(1 + z) (mostly near noise) is m = −1, s = 1 in monge time.

**Cost per training step** (forward passes; one backward pass through the gradient-carrying
student calls): VM discrete 1 teacher + 2 student; VM continuous 1 teacher + 1 student + one JVP
(about 2–3 forwards); VD adds 1 teacher + 1 student (with gradient) + the VM pair (discrete: 2
student forwards; continuous: 1 + a JVP), all without gradient except u1. ``teacher_nfe``
counts the batched teacher calls (1 per term; a CFG wrapper's own ``nfe`` counts its 2
evaluations). Classifier-free guidance (the paper's v_T^w) is a wrapped teacher field, e.g.
:class:`~monge.guidance.ClassifierFreeGuidance`; ``vd_teacher`` may carry a different weight
(the paper uses a larger one for VD). The paper's multiphase students (m > 1 segments) are not
implemented: the student jumps to τ = 1 and few-step sampling re-noises
(:func:`~monge.distill.consistency.consistency_sample`).

Example:
    >>> import copy, torch
    >>> from monge.distill.flow_map import EndpointNetwork, FlowMap
    >>> from monge.models import MLP
    >>> teacher_net = MLP(2, hidden=32, depth=2)
    >>> teacher = lambda x, t: teacher_net(x, t)
    >>> loss = MDTLoss(teacher, vm="discrete", vd_weight=1.0)
    >>> student = EndpointNetwork(copy.deepcopy(teacher_net))
    >>> out = loss(student, torch.randn(8, 2), torch.randn(8, 2), None, None)
    >>> out.loss.backward(); loss.teacher_nfe
    2
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from monge.distill.jvp import jvp
from monge.errors import InputError
from monge.train.losses import LossOutput
from monge.train.time_samplers import LogitNormalTime

Field = Callable[..., Tensor]
Source = Callable[[int, "torch.Generator | None"], Tensor]

VM_KINDS = ("discrete", "continuous")
_T_EDGE = 1e-5  # the paper's σ_min: τ stays this far below 1


def _per_sample(t: Tensor, x: Tensor) -> Tensor:
    return t.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))


def _check_weight(value: float, name: str) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and value >= 0)
    if not ok:
        raise InputError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


class MDTLoss(nn.Module):
    """MDT-dist's velocity matching (VM) and velocity distillation (VD) for a student u(x, t, s)
    used at s = 1 (an :class:`~monge.distill.flow_map.EndpointNetwork` started from the
    teacher's weights, or any two-time network).

    Args:
        teacher: the teacher's velocity field v_T(x, t, **cond) in monge time (a ModelWrapper,
            possibly guided).
        vm: ``discrete`` or ``continuous`` estimator of D for the VM target, or None (no VM
            term). VD measures its residual with the same estimator (``discrete`` when None).
        vd_weight: λ_VD (0: no VD term).
        vm_weight: λ_VM (0 with ``vm`` set: VD only, with that estimator).
        delta: δ of the discrete estimator (0 < δ < 0.5).
        d_norm: c of the normalisation D / (‖D‖ + c), or None for the raw D.
        jvp_method: ``auto``, ``forward`` or ``fd`` (see :func:`monge.distill.jvp.jvp`).
        time_mean, time_std: logit-normal parameters of τ in monge time (default −1, 1: the
            paper's mean +1 in its reversed time).
        vd_teacher: teacher field for the VD term (default ``teacher``), e.g. another CFG weight.
        source: ``source(n, generator)`` drawing VD's fresh source samples (default N(0, I) of
            the batch's shape); a model with a non-Gaussian source needs its own here.

    ``forward(network, x0, x1, y1, generator)`` returns a
    :class:`~monge.train.losses.LossOutput`; ``y1`` (when not None) is passed to the teacher and
    the student as ``y=``. ``terms`` holds the last step's unweighted L_VM and L_VD.
    """

    def __init__(self, teacher: Field, vm: str | None = "discrete", vd_weight: float = 0.0,
                 vm_weight: float = 1.0, delta: float = 0.01, d_norm: float | None = 0.1,
                 jvp_method: str = "auto", time_mean: float = -1.0, time_std: float = 1.0,
                 vd_teacher: Field | None = None, source: Source | None = None):
        super().__init__()
        if not callable(teacher):
            raise InputError(f"teacher: expected a velocity field v(x, t), got {teacher!r}")
        if vd_teacher is not None and not callable(vd_teacher):
            raise InputError(f"vd_teacher: expected a velocity field or None, got "
                             f"{vd_teacher!r}")
        if vm is not None and vm not in VM_KINDS:
            raise InputError(f"vm: expected one of {VM_KINDS} or None, got {vm!r}")
        self.vm_weight = _check_weight(vm_weight, "vm_weight")
        self.vd_weight = _check_weight(vd_weight, "vd_weight")
        if (vm is None or self.vm_weight == 0.0) and self.vd_weight == 0.0:
            raise InputError("MDTLoss: no term is on (set vm with vm_weight > 0, or "
                             "vd_weight > 0)")
        if (isinstance(delta, bool) or not isinstance(delta, int | float)
                or not 0.0 < delta < 0.5):
            raise InputError(f"delta: must lie in (0, 0.5), got {delta!r}")
        if d_norm is not None and (isinstance(d_norm, bool)
                                   or not isinstance(d_norm, int | float)
                                   or not math.isfinite(d_norm) or d_norm <= 0):
            raise InputError(f"d_norm: must be a positive number or None, got {d_norm!r}")
        if jvp_method not in ("auto", "forward", "fd"):
            raise InputError(f"jvp_method: must be auto, forward or fd, got {jvp_method!r}")
        if not math.isfinite(time_mean):
            raise InputError(f"time_mean: must be finite, got {time_mean!r}")
        if not (math.isfinite(time_std) and time_std > 0):
            raise InputError(f"time_std: must be a positive number, got {time_std!r}")
        if source is not None and not callable(source):
            raise InputError(f"source: expected source(n, generator) or None, got {source!r}")
        self.teacher, self.vd_teacher = teacher, vd_teacher or teacher
        self.vm = vm
        self.estimator = vm or "discrete"
        self.delta = float(delta)
        self.d_norm = None if d_norm is None else float(d_norm)
        self.jvp_method = jvp_method
        self.time_sampler = LogitNormalTime(time_mean, time_std)
        self.t_max = 1.0 - _T_EDGE - (self.delta if self.estimator == "discrete" else 0.0)
        self.source = source
        self.teacher_nfe = 0
        self.terms: dict[str, float] = {}

    # --- the pieces ---------------------------------------------------------------------------
    def sample_time(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """τ = τ_max·sigmoid(m + s·z) in [0, τ_max] (τ_max = 1 − δ − 1e-5 for the discrete
        estimator, so that τ + δ stays below the data end)."""
        g_dev = generator.device if generator is not None else like.device
        t = self.time_sampler.sample(n, generator=generator, dtype=like.dtype, device=g_dev)
        return (self.t_max * t).to(like.device)

    def _normalise(self, d: Tensor) -> Tensor:
        if self.d_norm is None:
            return d
        norm = torch.linalg.vector_norm(d.flatten(1), dim=1)
        return d / (norm + self.d_norm).reshape(-1, *[1] * (d.ndim - 1))

    def derivative(self, network: Field, x: Tensor, t: Tensor, v: Tensor,
                   u: Tensor | None = None, **cond: Any) -> Tensor:
        """D ≈ (d/dτ) u_θ(x, τ, 1) along the teacher velocity v (not normalised, no gradient).
        ``u``: u_θ(x, τ, 1) if already computed (the discrete estimator reuses it)."""
        with torch.no_grad():
            if self.estimator == "continuous":
                def u_of(xx: Tensor, tt: Tensor) -> Tensor:
                    return network(xx, tt, torch.ones_like(tt), **cond)
                _, d = jvp(u_of, (x, t), (v, torch.ones_like(t)), method=self.jvp_method)
                return d
            if u is None:
                u = network(x, t, torch.ones_like(t), **cond)
            tn = t + self.delta
            u_next = network(x + self.delta * v, tn, torch.ones_like(tn), **cond)
            return (u_next - u) / self.delta

    def target(self, network: Field, x: Tensor, t: Tensor, v: Tensor,
               u: Tensor | None = None, **cond: Any) -> Tensor:
        """The stop-gradient VM target v + (1 − τ)·D̂ at (x, τ) (monge time)."""
        d = self._normalise(self.derivative(network, x, t, v, u=u, **cond))
        return (v + _per_sample(1.0 - t, x) * d).detach()

    def velocity_pair(self, network: Field, teacher: Field, x: Tensor, t: Tensor,
                      **cond: Any) -> tuple[Tensor, Tensor]:
        """(u_θ(x, τ, 1), sg target): one teacher call (counted) and the student's calls."""
        with torch.no_grad():
            v = teacher(x, t, **cond)
        self.teacher_nfe += 1
        u = network(x, t, torch.ones_like(t), **cond)
        return u, self.target(network, x, t, v.to(x.dtype), u=u.detach(), **cond)

    def vm_loss(self, network: Field, x0: Tensor, x1: Tensor, t: Tensor,
                **cond: Any) -> Tensor:
        """Per-example L_VM at x_τ = (1 − τ)·x0 + τ·x1."""
        tb = _per_sample(t, x1)
        pred, tgt = self.velocity_pair(network, self.teacher, (1 - tb) * x0 + tb * x1, t,
                                       **cond)
        return ((pred - tgt) ** 2).flatten(1).mean(1)

    def vd_loss(self, network: Field, noise_fake: Tensor, noise: Tensor, t: Tensor,
                **cond: Any) -> Tensor:
        """Per-example L_VD from the one-step sample x̂1 = n′ + u_θ(n′, 0, 1), re-noised with
        ``noise`` at ``t`` (value ‖r‖², gradient 2·r·∂u1/∂θ)."""
        zero = torch.zeros_like(t)
        u1 = network(noise_fake, zero, torch.ones_like(zero), **cond)
        with torch.no_grad():
            x1_fake = noise_fake + u1
            tb = _per_sample(t, x1_fake)
            pred, tgt = self.velocity_pair(network, self.vd_teacher,
                                           (1 - tb) * noise + tb * x1_fake, t, **cond)
            residual = pred - tgt
        return ((residual + u1 - u1.detach()) ** 2).flatten(1).mean(1)

    def _draw_source(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.source is not None:
            out = self.source(like.shape[0], generator).to(like)
            if out.shape != like.shape:
                raise InputError(f"source: drew shape {tuple(out.shape)}, the batch has "
                                 f"{tuple(like.shape)}")
            return out
        g_dev = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, dtype=like.dtype,
                           device=g_dev).to(like.device)

    # --- the objective ------------------------------------------------------------------------
    def forward(self, network: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None, **_: Any) -> LossOutput:
        if x0.shape != x1.shape:
            raise InputError(f"x0 and x1: shapes differ, {tuple(x0.shape)} vs "
                             f"{tuple(x1.shape)}")
        cond = {"y": y1} if y1 is not None else {}
        b = x1.shape[0]
        per = torch.zeros(b, dtype=x1.dtype, device=x1.device)
        t_out = None
        self.terms = {}
        if self.vm is not None and self.vm_weight > 0:
            t = self.sample_time(b, generator, x1)
            vm = self.vm_loss(network, x0, x1, t, **cond)
            per = per + self.vm_weight * vm
            self.terms["vm"] = float(vm.detach().mean())
            t_out = t
        if self.vd_weight > 0:
            t = self.sample_time(b, generator, x1)
            noise_fake = self._draw_source(x1, generator)
            noise = self._draw_source(x1, generator)
            vd = self.vd_loss(network, noise_fake, noise, t, **cond)
            per = per + self.vd_weight * vd
            self.terms["vd"] = float(vd.detach().mean())
            t_out = t if t_out is None else t_out
        return LossOutput(loss=per.mean(), per_example=per.detach(), t=t_out)


__all__ = ["MDTLoss", "VM_KINDS"]
