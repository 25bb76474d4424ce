"""Latent traversals as potential flows: learned wave-equation potentials and their metrics.

Paper: Y. Song, T. A. Keller, N. Sebe & M. Welling, "Latent Traversals in Generative Models as
Potential Flows", ICML 2023 (arXiv:2304.12944). Implemented from the paper and the mathematics.

Instead of a linear edit ``z + α·d_k``, each semantic direction ``k`` is a learned, time-varying
scalar potential ``u_k(z, t)`` and a traversal is the discretised gradient flow

    z_{t+1} = z_t + ∇_z u_k(z_t, t),    t = 0, 1, ..., H − 1   (unit step, H the half-horizon)

run backwards by reflection, ``z_{t+1} = 2·z_t − (z_t + ∇_z u_k(z_t, t))``. With a frozen
generator ``G`` (any callable ``G(z) -> images``, e.g. a VAE decoder) the potentials and a
"reconstructor" ``R`` (a small conv classifier over an image pair) are trained jointly on

    L = λ_cls·CE(R(G(z_{t*+1}), G(z_{t*+2})), k) + λ_pde·(L_ic + L_pde − w_jvp·L_jvp)

- ``L_pde = mean ‖∂²u/∂t² − c_k²·Δ_z u‖²`` over the points ``z_0, ..., z_{H−1}`` of each sample's
  own flow (the wave equation with a learned speed ``c_k``);
- ``L_ic = mean ‖∇_z u_k(z_0, 0)‖²`` (initial condition);
- ``L_jvp = mean min(‖J_G(z_{t*+1})·∇_z u_k(z_{t*+1}, t*+1)‖², jvp_clip)`` (the
  maximal-variation term through a Jacobian–vector product of ``G``, squared norm over all
  image elements, *subtracted*; it is unbounded below, so it is clipped per sample and weighted
  by ``w_jvp``, the spec's pitfall). The clip also sets the size of a step: the reward grows the
  step until its linearised image change reaches ``√jvp_clip``, where its gradient vanishes.

Choices made here (documented, each an option where it matters):

- **K networks, one batch**: ``u_k(z, t) = s·tanh(MLP_k([z, e_t(t)]))`` with a sinusoidal
  time embedding ``e_t`` of the step index; the ``K`` MLPs' weights are stacked and run as
  batched matmuls, so every sample of a batch carries its own ``k`` (and ``t*``, and
  reflection flag) with one batched Laplacian;
  ``PotentialFlowConfig(k_per_sample=False)`` gives the paper's one ``k`` per batch.
- **The true Laplacian** ``Δ_z u = tr ∇²_z u``: exact, the Hessian diagonal from one backward
  pass per latent coordinate, vmapped into one call (``laplacian="exact"``, fine for latent
  dims ≤ 16), or Hutchinson's unbiased estimate
  ``E[vᵀ ∇²u v]`` with Rademacher probes (``"hutchinson"``, one pass per probe). The official
  code's ``grad(sum(∇u), z)`` is the Hessian times a ones vector, *not* the trace; it is not
  used. ``∂²u/∂t²`` is exact autograd through the time embedding.
- The PDE points are the sample's flow with the trajectory detached (the residual is asked to
  vanish *at* the visited points, not to move them), and the classifier pair starts from the
  detached ``z_{t*}``; gradients reach the potential through the two steps of the pair and the
  residual. The JVP term is computed on the first ``jvp_batch`` samples of a batch only.

Baselines with the same classifier and JVP objective: :class:`LinearDirections` (learned
``z + d_k``, optionally normalised to a fixed step) and :func:`random_directions` (frozen random
unit directions; only ``R`` trains).

Metrics: :func:`traversal_accuracy` (accuracy of ``R`` on held-out traversal pairs, the paper's
variation-predictability idea) and :func:`factor_specificity` (with a :class:`FactorRegressor`
from images to known factors: per direction the share of the induced factor change taken by its
top factor, plus a MIG-like gap score).

Cost per training step (batch ``B``, latent dim ``D``, half-horizon ``H``): the flow is ``H``
first-order gradient passes; the exact residual is one batched evaluation on the ``H·B`` points
(or ``pde_points`` of them) with ``D + 2`` second-order passes (the ``D`` vmapped),
differentiated once more by the optimiser (third-order autograd through the potential
networks); plus two decoder calls and one JVP through ``G``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> G = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)), nn.Tanh())
    >>> potentials = Potentials(4, 3, hidden=16)
    >>> z = torch.randn(5, 4)
    >>> path = traverse(potentials, z, k=1, steps=3)      # [steps + 1, B, D]
    >>> path.shape, G(path[-1]).shape
    (torch.Size([4, 5, 4]), torch.Size([5, 3, 8, 8]))
    >>> potentials.residual(z, 0, 2.0).shape              # ∂²u/∂t² − c²·Δu per sample
    torch.Size([5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from monge.core import hutchinson_trace, make_generator
from monge.errors import InputError
from monge.models import SinusoidalTimeEmbedding, as_batch_time
from monge.train import LossOutput, Trainer, TrainerConfig, TrainResult

__all__ = [
    "FactorRegressor",
    "FactorSpecificity",
    "LinearDirections",
    "PotentialFlowConfig",
    "PotentialFlowLoss",
    "PotentialFlowModel",
    "PotentialFlowTerms",
    "PotentialFlowTraining",
    "Potentials",
    "Reconstructor",
    "TraversalAccuracy",
    "TraversalField",
    "factor_specificity",
    "laplacian",
    "random_directions",
    "train_factor_regressor",
    "train_potentials",
    "traversal_accuracy",
    "traverse",
    "wave_residual",
]

Generator = Callable[[Tensor], Tensor]
LatentSampler = Callable[[int, torch.Generator], Tensor]
LAPLACIANS = ("exact", "hutchinson")


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _non_negative(value: object, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0):
        raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _check_latents(z: object, dim: int | None = None, name: str = "z") -> Tensor:
    if not isinstance(z, Tensor):
        raise InputError(f"{name}: expected a tensor [B, D], got {type(z).__name__}")
    if z.ndim != 2 or z.shape[0] < 1 or (dim is not None and z.shape[1] != dim):
        want = f"[B, {dim}]" if dim is not None else "[B, D]"
        raise InputError(f"{name}: expected latents of shape {want}, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise InputError(f"{name}: expected a floating-point tensor, got {z.dtype}")
    if not bool(torch.isfinite(z).all()):
        raise InputError(f"{name}: holds NaN or Inf")
    return z


def _directions(k: int | Tensor, batch: int, num: int, device: torch.device,
                name: str = "k") -> Tensor:
    """``k`` (an int or int64 ``[B]``) as int64 ``[B]`` indices in ``0..num-1``."""
    if isinstance(k, bool):
        raise InputError(f"{name}: expected an integer or an integer tensor [B], got {k!r}")
    if isinstance(k, int):
        if not 0 <= k < num:
            raise InputError(f"{name}: expected a direction in 0..{num - 1}, got {k}")
        return torch.full((batch,), k, dtype=torch.long, device=device)
    if not isinstance(k, Tensor) or k.dtype.is_floating_point or k.dtype == torch.bool:
        raise InputError(f"{name}: expected an integer or an integer tensor [B], got "
                         f"{k!r:.60}")
    if k.ndim == 0:
        k = k.reshape(1).expand(batch)
    if k.shape != (batch,):
        raise InputError(f"{name}: expected shape [{batch}], got {tuple(k.shape)}")
    if bool((k < 0).any()) or bool((k >= num).any()):
        raise InputError(f"{name}: expected directions in 0..{num - 1}, got "
                         f"{int(k.min())}..{int(k.max())}")
    return k.to(device=device, dtype=torch.long)


def _times(t: float | Tensor, batch: int, like: Tensor) -> Tensor:
    return as_batch_time(t, batch, like.device).to(like.dtype)


def _check_callable(fn: object, name: str) -> None:
    if not callable(fn):
        raise InputError(f"{name}: expected a callable, got {type(fn).__name__}")


# --------------------------------------------------------------------------------------------
# Laplacian and wave residual
# --------------------------------------------------------------------------------------------
def _grad(out: Tensor, inputs: Tensor, create_graph: bool) -> Tensor:
    """``d out.sum() / d inputs`` with zeros where ``out`` does not depend on ``inputs``."""
    if not out.requires_grad:
        return torch.zeros_like(inputs)
    (g,) = torch.autograd.grad(out.sum(), inputs, create_graph=create_graph,
                               retain_graph=True, allow_unused=True)
    return torch.zeros_like(inputs) if g is None else g


def _hessian_trace(grad_z: Tensor, z: Tensor, method: str, probes: int,
                   generator: torch.Generator | int | None, create_graph: bool) -> Tensor:
    """Per-sample ``tr ∇²u`` from ``grad_z = ∇_z u`` (built with a graph) at ``z`` ``[B, D]``."""
    if method == "exact":
        if not grad_z.requires_grad:
            return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        basis = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)[:, None, :]
        try:  # one vmapped backward pass over the D basis vectors
            (rows,) = torch.autograd.grad(grad_z, z, grad_outputs=basis.expand(-1, *z.shape),
                                          is_grads_batched=True, retain_graph=True,
                                          create_graph=create_graph, allow_unused=True)
            if rows is None:
                return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
            return torch.diagonal(rows, dim1=0, dim2=2).sum(dim=1)
        except RuntimeError:  # an op without a batching rule: one pass per coordinate
            diagonal = [_grad(grad_z[:, i], z, create_graph)[:, i] for i in range(z.shape[1])]
            return torch.stack(diagonal, dim=1).sum(dim=1)

    def hvp(v: Tensor) -> Tensor:
        return _grad(grad_z * v, z, create_graph)

    return hutchinson_trace(hvp, z, probes=probes, generator=generator, batch_dims=1).estimate


def _check_method(method: str, probes: int) -> None:
    if method not in LAPLACIANS:
        raise InputError(f"method: expected one of {LAPLACIANS}, got {method!r}")
    _positive_int(probes, "probes")


def laplacian(fn: Callable[[Tensor], Tensor], z: Tensor, *, method: str = "exact",
              probes: int = 8, generator: torch.Generator | int | None = None,
              create_graph: bool = False) -> Tensor:
    """The Laplacian ``Δ_z u = tr ∇²_z u`` of a per-sample scalar function, at each sample.

    ``exact`` takes one backward pass per coordinate of ``z`` (the diagonal of the Hessian, exact
    to rounding; vmapped into one call with ``is_grads_batched``, with a loop as the fallback;
    the right choice for latent dims up to ~16); ``hutchinson`` averages
    ``vᵀ ∇²u v`` over ``probes`` Rademacher probes (unbiased; one Hessian–vector product each,
    through :func:`monge.core.hutchinson_trace`). Not the Hessian times a ones vector.

    Args:
        fn: ``z [B, D] -> u [B]``, each output depending on its own sample only.
        z: points ``[B, D]``.
        method: ``exact`` or ``hutchinson``.
        probes, generator: Hutchinson probes and their randomness.
        create_graph: keep the graph (to differentiate the Laplacian further, e.g. in a loss).

    Returns:
        ``[B]`` Laplacians.

    Example:
        >>> z = torch.randn(3, 4)
        >>> laplacian(lambda z: (z ** 2).sum(1), z)  # Δ‖z‖² = 2·D
        tensor([8., 8., 8.])
    """
    _check_callable(fn, "fn")
    z = _check_latents(z)
    _check_method(method, probes)
    with torch.enable_grad():
        z_ = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
        u = fn(z_)
        if not isinstance(u, Tensor) or u.shape != (z.shape[0],):
            raise InputError(f"fn: expected a [B] = [{z.shape[0]}] tensor, got "
                             f"{tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__}")
        grad_z = _grad(u, z_, create_graph=True)
        lap = _hessian_trace(grad_z, z_, method, probes, generator, create_graph)
    return lap if create_graph else lap.detach()


def _wave_terms(u_fn: Callable[[Tensor, Tensor], Tensor], z: Tensor, t: Tensor, speed: Tensor,
                method: str, probes: int, generator: torch.Generator | int | None,
                create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(u, ∇_z u, ∂²u/∂t² − c²·Δ_z u)`` at ``(z [B, D], t [B])`` from one forward pass."""
    with torch.enable_grad():
        z_ = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
        t_ = t.detach().clone().requires_grad_(True)
        u = u_fn(z_, t_)
        if not isinstance(u, Tensor) or u.shape != (z.shape[0],):
            raise InputError(f"u: expected a [B] = [{z.shape[0]}] tensor, got "
                             f"{tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__}")
        grad_z = _grad(u, z_, create_graph=True)
        u_t = _grad(u, t_, create_graph=True)
        u_tt = _grad(u_t, t_, create_graph)
        lap = _hessian_trace(grad_z, z_, method, probes, generator, create_graph)
        residual = u_tt - speed.pow(2) * lap
    if not create_graph:
        return u.detach(), grad_z.detach(), residual.detach()
    return u, grad_z, residual


def wave_residual(u: Callable[[Tensor, Tensor], Tensor], z: Tensor, t: float | Tensor,
                  speed: float | Tensor, *, method: str = "exact", probes: int = 8,
                  generator: torch.Generator | int | None = None,
                  create_graph: bool = False) -> Tensor:
    """Residual of the wave equation ``∂²u/∂t² − c²·Δ_z u`` at each ``(z_i, t_i)``.

    ``∂²u/∂t²`` is exact (two autograd passes in ``t``); ``Δ_z u`` is the true Laplacian, the
    trace of the Hessian, computed as in :func:`laplacian`.

    Args:
        u: ``(z [B, D], t [B]) -> [B]``, per sample.
        z: points ``[B, D]``.
        t: a time (float) or times ``[B]``.
        speed: the wave speed ``c`` (a number, a 0-d tensor or ``[B]`` per sample).
        method, probes, generator: the Laplacian's estimator (see :func:`laplacian`).
        create_graph: keep the graph (for a loss).

    Returns:
        ``[B]`` residuals.

    Example:
        >>> a = torch.tensor([1.0, 2.0]); z = torch.randn(4, 2)
        >>> r = wave_residual(lambda z, t: torch.sin(z @ a) * torch.cos(3 * t), z, 0.5,
        ...                   3 / a.norm())   # b = c·‖a‖: an exact solution
        >>> bool(r.abs().max() < 1e-5)
        True
    """
    _check_callable(u, "u")
    z = _check_latents(z)
    _check_method(method, probes)
    times = _times(t, z.shape[0], z)
    c = torch.as_tensor(speed, dtype=z.dtype, device=z.device)
    if c.ndim > 1 or (c.ndim == 1 and c.shape[0] not in (1, z.shape[0])):
        raise InputError(f"speed: expected a number or shape [{z.shape[0]}], got "
                         f"{tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()):
        raise InputError("speed: holds NaN or Inf")
    return _wave_terms(u, z, times, c, method, probes, generator, create_graph)[2]


# --------------------------------------------------------------------------------------------
# traversal fields: potentials and linear directions
# --------------------------------------------------------------------------------------------
@runtime_checkable
class TraversalField(Protocol):
    """What :func:`traverse` and :func:`train_potentials` move latents with.

    ``step(z [B, D], k, t, create_graph) -> [B, D]`` is the increment of one forward step from
    ``(z, t)`` along direction ``k`` (an int or int64 ``[B]``); ``dim`` is ``D`` and
    ``num_directions`` is ``K``.
    """

    dim: int
    num_directions: int

    def step(self, z: Tensor, k: int | Tensor, t: float | Tensor,
             create_graph: bool = False) -> Tensor: ...


class _StackedLinear(nn.Module):
    """``K`` independent linear layers applied to every sample: ``[B or K, B, in] -> [K, B,
    out]`` (one batched matmul)."""

    def __init__(self, num: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per layer
        self.weight = nn.Parameter(torch.empty(num, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, fan_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.bmm(x, self.weight) + self.bias[:, None, :]


class Potentials(nn.Module):
    """``K`` scalar potentials ``u_k(z, t)``, each its own small MLP, and learned wave speeds.

    ``u_k(z, t) = output_scale · tanh(MLP_k([z, e_t(t)]))``: ``e_t`` a sinusoidal embedding of
    the step index ``t`` (frequencies from 1 down to ``1/max_period`` radians per step), SiLU
    hidden layers (smooth, so the third-order derivatives the PDE loss needs exist). ``K``
    independent networks, as in the paper (a shared network with a ``k`` embedding starts with
    nearly parallel gradients ``∇_z u_k`` for every ``k``, which the classifier cannot tell
    apart). Their weights are stacked and every network runs on every sample in one batched
    matmul per layer, each sample reading its own ``k``'s output, so one batch may mix
    directions (``K`` times the FLOPs of one network, but few, large kernels: on CPU this is
    about twice as fast as gathering per-sample weights). The speeds ``c_k`` are free
    parameters (initialised to ``init_speed``; the residual uses ``c_k²``). Cost of one
    evaluation: ``O(K·B·((D + time_dim)·hidden + depth·hidden²))``.

    Args:
        dim: latent dimension ``D``.
        num_potentials: ``K``.
        hidden, depth: MLP width and number of hidden layers.
        time_dim: width of the time embedding.
        output_scale: ``s``, the bound of ``|u|``.
        init_speed: initial ``c_k``.
        max_period: longest period (in steps) of the time embedding.
    """

    def __init__(self, dim: int, num_potentials: int, *, hidden: int = 64, depth: int = 2,
                 time_dim: int = 16, output_scale: float = 1.0, init_speed: float = 1.0,
                 max_period: float = 100.0) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_potentials", num_potentials),
                            ("hidden", hidden), ("depth", depth)):
            _positive_int(value, name)
        if isinstance(time_dim, bool) or not isinstance(time_dim, int) or time_dim < 2:
            raise InputError(f"time_dim: expected an integer >= 2, got {time_dim!r}")
        if _non_negative(output_scale, "output_scale") == 0:
            raise InputError("output_scale: expected a positive number, got 0")
        _non_negative(init_speed, "init_speed")
        if _non_negative(max_period, "max_period") <= 1:
            raise InputError(f"max_period: expected a number > 1, got {max_period!r}")
        self.dim, self.num_directions = dim, num_potentials
        self.output_scale = float(output_scale)
        self.time_embedding = SinusoidalTimeEmbedding(time_dim, max_period=max_period,
                                                      scale=1.0)
        widths = [dim + time_dim] + [hidden] * depth + [1]
        self.layers = nn.ModuleList(_StackedLinear(num_potentials, a, b)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.speed = nn.Parameter(torch.full((num_potentials,), float(init_speed)))

    @property
    def num_potentials(self) -> int:
        """``K``."""
        return self.num_directions

    def potential(self, z: Tensor, k: int | Tensor, t: float | Tensor) -> Tensor:
        """``u_k(z, t)``: ``[B]`` for latents ``z [B, D]``, direction(s) ``k``, time(s) ``t``."""
        z = _check_latents(z, self.dim)
        ks = _directions(k, z.shape[0], self.num_directions, z.device)
        times = _times(t, z.shape[0], z)
        h = torch.cat([z, self.time_embedding(times).to(z.dtype)], dim=1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = nn.functional.silu(h)
        out = h[..., 0].gather(0, ks[None, :])[0]          # sample b reads network k_b
        return self.output_scale * torch.tanh(out)

    def speeds(self, k: int | Tensor, batch: int) -> Tensor:
        """``c_k`` per sample, ``[batch]``."""
        return self.speed[_directions(k, batch, self.num_directions, self.speed.device)]

    def gradient(self, z: Tensor, k: int | Tensor, t: float | Tensor,
                 create_graph: bool = False) -> Tensor:
        """``∇_z u_k(z, t)`` ``[B, D]`` (``create_graph`` keeps it differentiable)."""
        z = _check_latents(z, self.dim)
        with torch.enable_grad():
            z_ = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
            g = _grad(self.potential(z_, k, t), z_, create_graph)
        return g if create_graph else g.detach()

    def step(self, z: Tensor, k: int | Tensor, t: float | Tensor,
             create_graph: bool = False) -> Tensor:
        """The forward increment ``∇_z u_k(z, t)`` (unit step)."""
        return self.gradient(z, k, t, create_graph)

    def residual(self, z: Tensor, k: int | Tensor, t: float | Tensor, *,
                 method: str = "exact", probes: int = 8,
                 generator: torch.Generator | int | None = None,
                 create_graph: bool = False) -> Tensor:
        """Wave residual ``∂²u_k/∂t² − c_k²·Δ_z u_k`` ``[B]`` (see :func:`wave_residual`)."""
        z = _check_latents(z, self.dim)
        ks = _directions(k, z.shape[0], self.num_directions, z.device)
        return wave_residual(lambda zz, tt: self.potential(zz, ks, tt), z, t,
                             self.speeds(ks, z.shape[0]).to(z.dtype), method=method,
                             probes=probes, generator=generator, create_graph=create_graph)


class LinearDirections(nn.Module):
    """The linear baseline: ``K`` directions ``d_k``, a step is ``z + d_k`` (time-independent).

    With ``step_size`` set, each step is ``step_size · d_k / ‖d_k‖`` (a fixed step length, the
    usual setting of linear direction finders); otherwise the length of ``d_k`` is learned too,
    like the potentials' step length. ``trainable=False`` freezes the directions (a buffer).

    Args:
        dim: latent dimension ``D``.
        num_directions: ``K``.
        step_size: fixed step length, or ``None`` for a learned one.
        init_norm: initial ``‖d_k‖`` (random directions).
        trainable: learn the directions.
        generator: randomness of the initial directions.
    """

    def __init__(self, dim: int, num_directions: int, *, step_size: float | None = None,
                 init_norm: float = 0.5, trainable: bool = True,
                 generator: torch.Generator | int | None = None) -> None:
        super().__init__()
        _positive_int(dim, "dim")
        _positive_int(num_directions, "num_directions")
        if step_size is not None and _non_negative(step_size, "step_size") == 0:
            raise InputError("step_size: expected a positive number or None, got 0")
        if _non_negative(init_norm, "init_norm") == 0:
            raise InputError("init_norm: expected a positive number, got 0")
        self.dim, self.num_directions = dim, num_directions
        self.step_size = None if step_size is None else float(step_size)
        gen = make_generator(generator)
        d = torch.randn(num_directions, dim, generator=gen)
        d = init_norm * d / d.norm(dim=1, keepdim=True)
        if trainable:
            self.directions = nn.Parameter(d)
        else:
            self.register_buffer("directions", d)

    def vectors(self) -> Tensor:
        """The step vectors ``[K, D]``."""
        d = self.directions
        if self.step_size is None:
            return d
        return self.step_size * d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def step(self, z: Tensor, k: int | Tensor, t: float | Tensor,
             create_graph: bool = False) -> Tensor:
        """The forward increment ``d_k`` at every sample ``[B, D]`` (``z`` and ``t`` unused)."""
        z = _check_latents(z, self.dim)
        ks = _directions(k, z.shape[0], self.num_directions, z.device)
        _times(t, z.shape[0], z)
        out = self.vectors().to(z.dtype)[ks]
        return out if create_graph else out.detach()


def random_directions(dim: int, num_directions: int, step_size: float = 1.0,
                      generator: torch.Generator | int | None = None) -> LinearDirections:
    """Frozen random directions of length ``step_size`` (the random-directions baseline)."""
    return LinearDirections(dim, num_directions, step_size=step_size, trainable=False,
                            generator=generator)


def _check_field(field_: object) -> None:
    if not isinstance(field_, TraversalField):
        raise InputError(f"field: expected Potentials, LinearDirections or another "
                         f"TraversalField (step, dim, num_directions), got "
                         f"{type(field_).__name__}")


def traverse(potentials: TraversalField, z: Tensor, k: int | Tensor, steps: int,
             reverse: bool = False, *, t0: int = 0, create_graph: bool = False) -> Tensor:
    """A traversal: ``steps`` unit steps of the gradient flow from ``z`` along direction ``k``.

    Forward: ``z_{s+1} = z_s + ∇_z u_k(z_s, t0 + s)``. Backward (``reverse=True``), by
    reflection: ``z_{s+1} = 2·z_s − (z_s + ∇_z u_k(z_s, t0 + s))``, i.e. each step is the
    forward step mirrored through its start point. Cost: ``steps`` gradient passes.

    Args:
        potentials: a :class:`Potentials` (or any :class:`TraversalField`).
        z: start latents ``[B, D]``.
        k: direction, an int or int64 ``[B]``.
        steps: number of steps (>= 1).
        reverse: traverse backwards.
        t0: time index of the first step.
        create_graph: keep the trajectory differentiable.

    Returns:
        The trajectory ``[steps + 1, B, D]`` (``[0]`` is ``z``).
    """
    _check_field(potentials)
    z = _check_latents(z, potentials.dim)
    _directions(k, z.shape[0], potentials.num_directions, z.device)
    _positive_int(steps, "steps")
    if isinstance(t0, bool) or not isinstance(t0, int) or t0 < 0:
        raise InputError(f"t0: expected an integer >= 0, got {t0!r}")
    points = [z]
    for s in range(steps):
        current = points[-1]
        forward = current + potentials.step(current, k, float(t0 + s), create_graph)
        points.append(2 * current - forward if reverse else forward)
    out = torch.stack(points)
    return out if create_graph else out.detach()


# --------------------------------------------------------------------------------------------
# reconstructor and the joint model
# --------------------------------------------------------------------------------------------
class Reconstructor(nn.Module):
    """The classifier ``R``: which direction ``k`` turned image ``x1`` into ``x2``?

    Input: the pair concatenated on channels ``[B, 2C, H, W]``; three 3×3 convolutions (two of
    stride 2), SiLU, average-pooled to 4×4, then a linear layer to ``K`` logits.

    Args:
        image_shape: ``(C, H, W)`` of one image.
        num_directions: ``K``.
        width: channels of the first convolution (doubled after it).
    """

    def __init__(self, image_shape: Sequence[int], num_directions: int, width: int = 32) -> None:
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"image_shape: expected (C, H, W), got {image_shape!r}")
        _positive_int(num_directions, "num_directions")
        _positive_int(width, "width")
        self.image_shape, self.num_directions = shape, num_directions
        c = shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(2 * c, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, num_directions))

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Logits ``[B, K]`` for the pair ``(x1, x2)``, each ``[B, C, H, W]``."""
        for name, x in (("x1", x1), ("x2", x2)):
            if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.image_shape:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                dims = ", ".join(map(str, self.image_shape))
                raise InputError(f"{name}: expected images [B, {dims}], got {shape}")
        return self.net(torch.cat([x1, x2], dim=1))


class PotentialFlowModel(nn.Module):
    """The trained pair: a traversal field (potentials or a baseline) and its reconstructor."""

    def __init__(self, field: TraversalField, reconstructor: Reconstructor) -> None:
        super().__init__()
        _check_field(field)
        if not isinstance(reconstructor, Reconstructor):
            raise InputError(f"reconstructor: expected a Reconstructor, got "
                             f"{type(reconstructor).__name__}")
        if reconstructor.num_directions != field.num_directions:
            raise InputError(f"reconstructor: predicts {reconstructor.num_directions} "
                             f"directions, the field has {field.num_directions}")
        self.field = field
        self.reconstructor = reconstructor


# --------------------------------------------------------------------------------------------
# the loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PotentialFlowConfig:
    """Weights and switches of :class:`PotentialFlowLoss`.

    Attributes:
        half_horizon: ``H``, steps of the flow per sample (the paper's ``T/2``; 5 in the
            released MNIST setting); ``t*`` is drawn in ``0..H−2``.
        cls_weight: ``λ_cls``.
        pde_weight: ``λ_pde`` (multiplies ``L_ic + L_pde − w_jvp·L_jvp``).
        jvp_weight: ``w_jvp`` inside that bracket (small: the term is unbounded below).
        jvp_clip: per-sample cap of ``‖J_G v‖²`` (squared norm over the image's elements; no
            gradient above it): about the squared norm of one visible change.
        jvp_batch: samples of each batch on which the JVP is computed (``None``: all).
        pde_points: evaluate the residual on this many of the ``H·B`` flow points, drawn
            uniformly without replacement (an unbiased estimate of the mean; ``None``: all).
        use_pde, use_ic: keep ``L_pde`` / ``L_ic`` (both off: the "no-PDE" ablation; a
            :class:`LinearDirections` field needs both off).
        use_jvp: keep ``L_jvp``.
        k_per_sample: draw ``k``, ``t*`` and the reflection per sample (``False``: one of each
            per batch, as in the paper).
        reflect_prob: probability that the classifier sees the reflected (backward) pair.
        laplacian: ``exact`` or ``hutchinson``; ``probes`` for the latter.
    """

    half_horizon: int = 5
    cls_weight: float = 1.0
    pde_weight: float = 1.0
    jvp_weight: float = 1.0
    jvp_clip: float = 20.0
    jvp_batch: int | None = 32
    pde_points: int | None = None
    use_pde: bool = True
    use_ic: bool = True
    use_jvp: bool = True
    k_per_sample: bool = True
    reflect_prob: float = 0.5
    laplacian: str = "exact"
    probes: int = 4

    def __post_init__(self) -> None:
        if (isinstance(self.half_horizon, bool) or not isinstance(self.half_horizon, int)
                or self.half_horizon < 2):
            raise InputError(f"half_horizon: expected an integer >= 2, got "
                             f"{self.half_horizon!r}")
        for name in ("cls_weight", "pde_weight", "jvp_weight"):
            _non_negative(getattr(self, name), name)
        if _non_negative(self.jvp_clip, "jvp_clip") == 0:
            raise InputError("jvp_clip: expected a positive number, got 0")
        for name in ("jvp_batch", "pde_points"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        if not 0.0 <= _non_negative(self.reflect_prob, "reflect_prob") <= 1.0:
            raise InputError(f"reflect_prob: expected a probability, got {self.reflect_prob!r}")
        _check_method(self.laplacian, self.probes)
        for name in ("use_pde", "use_ic", "use_jvp", "k_per_sample"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name}: expected a bool, got {getattr(self, name)!r}")


@dataclass
class PotentialFlowTerms:
    """The pieces of one evaluation of :class:`PotentialFlowLoss` (tensors keep their graph).

    Attributes:
        loss: the total.
        cls: cross-entropy of ``R`` on the pair (mean).
        pde: ``L_pde`` (0 when switched off or for a linear field).
        ic: ``L_ic`` (0 when switched off).
        jvp: the clipped ``L_jvp`` that enters the loss (0 when switched off).
        jvp_raw: unclipped mean ``‖J_G v‖²`` (detached; NaN when switched off).
        jvp_vector: ``J_G(z1)·v`` on the JVP samples (for tests; ``None`` when off).
        accuracy: accuracy of ``R`` on the pair (detached).
        step_norm: mean ``‖z2 − z1‖`` (detached).
        z_norm: mean ``‖z_H‖`` at the end of the flow (detached; the spec's monitor).
        per_example: per-sample cross-entropy (detached).
        k, t_star, reflect: what was drawn, ``[B]`` each.
        z1, z2, v: the pair's latents and the JVP direction ``∇_z u_k(z1, t*+1)``.
    """

    loss: Tensor
    cls: Tensor
    pde: Tensor
    ic: Tensor
    jvp: Tensor
    jvp_raw: Tensor
    jvp_vector: Tensor | None
    accuracy: Tensor
    step_norm: Tensor
    z_norm: Tensor
    per_example: Tensor
    k: Tensor
    t_star: Tensor
    reflect: Tensor
    z1: Tensor
    z2: Tensor
    v: Tensor

    def floats(self) -> dict[str, float]:
        """The scalar pieces as floats (for logs)."""
        names = ("loss", "cls", "pde", "ic", "jvp", "jvp_raw", "accuracy", "step_norm",
                 "z_norm")
        return {name: float(getattr(self, name).detach()) for name in names}


def _draws(batch: int, num: int, half_horizon: int, reflect_prob: float, per_sample: bool,
           generator: torch.Generator | None, device: torch.device
           ) -> tuple[Tensor, Tensor, Tensor]:
    """``(k, t*, reflect)`` each ``[B]``: directions, pair start times, reflection flags."""
    n = batch if per_sample else 1
    gen_device = generator.device if generator is not None else device
    k = torch.randint(num, (n,), generator=generator, device=gen_device)
    t_star = torch.randint(half_horizon - 1, (n,), generator=generator, device=gen_device)
    reflect = torch.rand(n, generator=generator, device=gen_device) < reflect_prob
    return tuple(x.to(device).expand(batch) for x in (k, t_star, reflect))  # type: ignore


def _flow(field_: TraversalField, z0: Tensor, k: Tensor, steps: int) -> Tensor:
    """Detached forward flow ``[steps + 1, B, D]`` (the points the PDE is asked to hold at)."""
    return traverse(field_, z0, k, steps)


def _pair(field_: TraversalField, z_star: Tensor, g_star: Tensor, k: Tensor, t_star: Tensor,
          reflect: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The classifier pair ``(z1, z2)`` and the JVP direction ``v`` from ``z_{t*}``.

    Forward: ``z1 = z* + g*``, ``v = step(z1, t*+1)``, ``z2 = z1 + v``; reflected samples use
    ``z1 = 2z* − (z* + g*)`` and ``z2 = 2z1 − (z1 + v)`` with ``v = step(z1, t*+1)`` at the
    reflected ``z1`` (each step mirrored, as in :func:`traverse`).
    """
    flip = reflect[:, None]
    forward1 = z_star + g_star
    z1 = torch.where(flip, 2 * z_star - forward1, forward1)
    v = field_.step(z1, k, (t_star + 1).to(z1.dtype), create_graph)
    forward2 = z1 + v
    z2 = torch.where(flip, 2 * z1 - forward2, forward2)
    return z1, z2, v


def _jvp(G: Generator, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``(G(z), J_G(z)·v)`` by forward-mode AD (differentiable in ``v`` and ``z``)."""
    return torch.func.jvp(G, (z,), (v,))


def _images(G: Generator, z: Tensor, name: str = "G") -> Tensor:
    x = G(z)
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[0] != z.shape[0]:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name}: expected images [B, C, H, W] for latents "
                         f"{tuple(z.shape)}, got {shape}")
    return x


class PotentialFlowLoss(nn.Module):
    """The joint objective of potentials (or a baseline field) and reconstructor.

    ``L = λ_cls·CE(R(G(z1), G(z2)), k) + λ_pde·(L_ic + L_pde − w_jvp·L_jvp)`` (see the module
    doc), in the trainer's ``loss(model, x0, x1, y1, generator)`` form: the latents are ``x1``
    (``x0``, ``y1`` unused) and ``model`` is a :class:`PotentialFlowModel`. The frozen
    generator ``G`` is held here; its parameters receive gradients unless the caller freezes
    them (``requires_grad_(False)``), but they are not in the trained model.

    Args:
        G: the generator, ``G(z [B, D]) -> images [B, C, H, W]``.
        config: a :class:`PotentialFlowConfig`.
        record: append :meth:`PotentialFlowTerms.floats` of every call to ``self.history``.
    """

    def __init__(self, G: Generator, config: PotentialFlowConfig | None = None,
                 record: bool = True) -> None:
        super().__init__()
        _check_callable(G, "G")
        config = PotentialFlowConfig() if config is None else config
        if not isinstance(config, PotentialFlowConfig):
            raise InputError(f"config: expected PotentialFlowConfig, got "
                             f"{type(config).__name__}")
        self.G, self.config, self.record = G, config, record
        self.history: list[dict[str, float]] = []

    def terms(self, model: PotentialFlowModel, z0: Tensor,
              generator: torch.Generator | None = None, *, k: Tensor | None = None,
              t_star: Tensor | None = None, reflect: Tensor | None = None
              ) -> PotentialFlowTerms:
        """Evaluate every piece at latents ``z0 [B, D]`` (``k``, ``t_star``, ``reflect``
        fixed if given, else drawn from ``generator``)."""
        if not isinstance(model, PotentialFlowModel):
            raise InputError(f"model: expected a PotentialFlowModel, got "
                             f"{type(model).__name__}")
        cfg, field_ = self.config, model.field
        is_potential = isinstance(field_, Potentials)
        if not is_potential and (cfg.use_pde or cfg.use_ic):
            raise InputError("config: use_pde and use_ic need a Potentials field; set both to "
                             "False for a linear or random baseline")
        z0 = _check_latents(z0, field_.dim, "z0").detach()
        batch, horizon = z0.shape[0], cfg.half_horizon
        dk, dt, dr = _draws(batch, field_.num_directions, horizon, cfg.reflect_prob,
                            cfg.k_per_sample, generator, z0.device)
        k = dk if k is None else _directions(k, batch, field_.num_directions, z0.device)
        t_star = dt if t_star is None else t_star.to(device=z0.device, dtype=torch.long)
        reflect = dr if reflect is None else reflect.to(device=z0.device, dtype=torch.bool)
        if t_star.shape != (batch,) or bool((t_star < 0).any()) or bool(
                (t_star > horizon - 2).any()):
            raise InputError(f"t_star: expected [{batch}] times in 0..{horizon - 2}")
        zero = z0.new_zeros(())
        arange = torch.arange(batch, device=z0.device)

        points = _flow(field_, z0, k, horizon)                         # [H + 1, B, D]
        z_star = points[t_star, arange]
        pde, ic = zero, zero
        n_points = horizon * batch
        if is_potential and cfg.use_pde and (cfg.pde_points or n_points) >= n_points:
            flat = points[:horizon].reshape(n_points, -1)
            times = torch.arange(horizon, device=z0.device, dtype=z0.dtype).repeat_interleave(
                batch)
            ks = k.repeat(horizon)
            _, grads, residual = _wave_terms(
                lambda zz, tt: field_.potential(zz, ks, tt), flat, times,
                field_.speeds(ks, n_points).to(z0.dtype), cfg.laplacian, cfg.probes,
                generator, create_graph=True)
            grads = grads.reshape(horizon, batch, -1)
            pde = residual.pow(2).mean()
            g_star = grads[t_star, arange]
            if cfg.use_ic:
                ic = grads[0].pow(2).sum(dim=1).mean()
        else:
            if is_potential and cfg.use_pde:  # the residual on a random subset of the points
                gen_device = generator.device if generator is not None else z0.device
                chosen = torch.randperm(n_points, generator=generator, device=gen_device)[
                    :cfg.pde_points].to(z0.device)
                flat = points[:horizon].reshape(n_points, -1)[chosen]
                times = (chosen // batch).to(z0.dtype)
                ks = k.repeat(horizon)[chosen]
                residual = _wave_terms(
                    lambda zz, tt: field_.potential(zz, ks, tt), flat, times,
                    field_.speeds(ks, flat.shape[0]).to(z0.dtype), cfg.laplacian, cfg.probes,
                    generator, create_graph=True)[2]
                pde = residual.pow(2).mean()
            g_star = field_.step(z_star, k, t_star.to(z0.dtype), create_graph=True)
            if is_potential and cfg.use_ic:
                g0 = field_.step(z0, k, 0.0, create_graph=True)
                ic = g0.pow(2).sum(dim=1).mean()

        z1, z2, v = _pair(field_, z_star, g_star, k, t_star, reflect, create_graph=True)
        jvp, jvp_raw, jvp_vector = zero, z0.new_tensor(float("nan")), None
        n_jvp = batch if cfg.jvp_batch is None else min(cfg.jvp_batch, batch)
        if cfg.use_jvp:
            # one JVP call on the first n_jvp samples, one plain call on everything else
            x1_head, jvp_vector = _jvp(self.G, z1[:n_jvp], v[:n_jvp])
            rest = _images(self.G, torch.cat([z1[n_jvp:], z2]))
            x1 = torch.cat([x1_head, rest[:batch - n_jvp]])
            x2 = rest[batch - n_jvp:]
            per_sample = jvp_vector.pow(2).flatten(1).sum(dim=1)
            jvp = per_sample.clamp(max=cfg.jvp_clip).mean()
            jvp_raw = per_sample.detach().mean()
        else:
            x1, x2 = _images(self.G, torch.cat([z1, z2])).split(batch)
        logits = model.reconstructor(x1, x2)
        ce = nn.functional.cross_entropy(logits, k, reduction="none")
        cls = ce.mean()
        loss = cfg.cls_weight * cls + cfg.pde_weight * (ic + pde - cfg.jvp_weight * jvp)
        return PotentialFlowTerms(
            loss=loss, cls=cls, pde=pde, ic=ic, jvp=jvp, jvp_raw=jvp_raw,
            jvp_vector=jvp_vector,
            accuracy=(logits.argmax(dim=1) == k).float().mean().detach(),
            step_norm=(z2 - z1).norm(dim=1).mean().detach(),
            z_norm=points[-1].norm(dim=1).mean().detach(), per_example=ce.detach(), k=k,
            t_star=t_star, reflect=reflect, z1=z1, z2=z2, v=v)

    def forward(self, model: nn.Module, x0: Tensor | None, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None) -> LossOutput:
        model = getattr(model, "module", model)  # DDP-wrapped or not
        terms = self.terms(model, x1, generator)  # type: ignore[arg-type]
        if self.record:
            self.history.append(terms.floats())
        return LossOutput(terms.loss, terms.per_example, terms.t_star.to(x1.dtype))


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
@dataclass
class PotentialFlowTraining:
    """What :func:`train_potentials` returns.

    Attributes:
        model: the trained :class:`PotentialFlowModel` (``model.field``,
            ``model.reconstructor``).
        result: the trainer's :class:`~monge.train.TrainResult`.
        history: per-step :meth:`PotentialFlowTerms.floats` (loss pieces, accuracy, norms).
        config: the loss configuration used.
    """

    model: PotentialFlowModel
    result: TrainResult
    history: list[dict[str, float]]
    config: PotentialFlowConfig

    def final(self, last: int = 20) -> dict[str, float]:
        """Mean of each logged piece over the last ``last`` steps."""
        rows = self.history[-last:]
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}


def _sample_latents(latent_sampler: LatentSampler, n: int, generator: torch.Generator,
                    dim: int) -> Tensor:
    return _check_latents(latent_sampler(n, generator), dim, "latent_sampler(n, generator)")


def train_potentials(G: Generator, latent_sampler: LatentSampler, field: TraversalField, *,
                     config: PotentialFlowConfig | None = None, steps: int = 1000,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     reconstructor: Reconstructor | None = None, reconstructor_width: int = 32,
                     progress: bool = False) -> PotentialFlowTraining:
    """Train a traversal field and its reconstructor jointly with :class:`PotentialFlowLoss`.

    Uses :class:`~monge.train.Trainer` (AdamW, linear warm-up over ``min(100, steps // 10)``
    steps then cosine decay, gradient clipping at 1, no EMA). The field may be
    :class:`Potentials` (the method; ``use_pde=use_ic=False`` in ``config`` is the no-PDE
    ablation), :class:`LinearDirections` (learned linear baseline) or
    :func:`random_directions` (frozen; only ``R`` trains) — the last two need
    ``use_pde=use_ic=False``.

    Args:
        G: frozen generator ``G(z [B, D]) -> images [B, C, H, W]`` (e.g. a decoder).
        latent_sampler: ``(n, generator) -> z [n, D]``, where traversals start.
        field: the traversal field to train.
        config: loss weights and switches.
        steps, batch_size, lr, seed: optimisation budget and seed.
        reconstructor: ``R`` (default: a :class:`Reconstructor` of ``reconstructor_width``).
        progress: show a progress bar.

    Returns:
        :class:`PotentialFlowTraining`.

    Raises:
        InputError: a non-callable ``G`` or sampler, latents of the wrong shape, images that
            are not ``[B, C, H, W]``, a baseline field with the PDE terms switched on.
    """
    _check_callable(G, "G")
    _check_callable(latent_sampler, "latent_sampler")
    _check_field(field)
    if not isinstance(field, nn.Module):
        raise InputError(f"field: expected an nn.Module, got {type(field).__name__}")
    config = PotentialFlowConfig() if config is None else config
    if not isinstance(config, PotentialFlowConfig):
        raise InputError(f"config: expected PotentialFlowConfig, got {type(config).__name__}")
    if not isinstance(field, Potentials) and (config.use_pde or config.use_ic):
        raise InputError("config: use_pde and use_ic need a Potentials field; set both to "
                         "False for a linear or random baseline")
    _positive_int(steps, "steps")
    _positive_int(batch_size, "batch_size")
    probe = _sample_latents(latent_sampler, 2, torch.Generator().manual_seed(seed),
                            field.dim)
    with torch.no_grad():
        shape = tuple(_images(G, probe).shape[1:])
    if reconstructor is None:
        reconstructor = Reconstructor(shape, field.num_directions, reconstructor_width)
    elif not isinstance(reconstructor, Reconstructor) or reconstructor.image_shape != shape:
        raise InputError(f"reconstructor: expected a Reconstructor of image shape {shape}")
    device = probe.device
    model = PotentialFlowModel(field, reconstructor).to(device)
    loss = PotentialFlowLoss(G, config)

    def sample_batch(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, None]:
        z = _sample_latents(latent_sampler, n, generator, field.dim)
        return z, z, None

    trainer_config = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr,
                                   warmup_steps=min(100, steps // 10), ema_decay=0.0,
                                   checkpoint_every=10 ** 9, log_every=max(1, steps // 20),
                                   seed=seed)
    result = Trainer(model, loss, sample_batch, trainer_config, progress=progress).fit()
    model.eval()
    return PotentialFlowTraining(model, result, loss.history, config)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
@dataclass
class TraversalAccuracy:
    """Accuracy of the reconstructor on held-out traversal pairs.

    Attributes:
        accuracy: overall accuracy.
        per_direction: accuracy per direction ``[K]`` (NaN where none was drawn).
        chance: ``1 / K``.
        n: pairs scored.
        step_norm: mean latent length ``‖z2 − z1‖`` of the scored steps.
    """

    accuracy: float
    per_direction: Tensor
    chance: float
    n: int
    step_norm: float


def traversal_accuracy(model: PotentialFlowModel, G: Generator, latent_sampler: LatentSampler,
                       *, n: int = 1000, half_horizon: int = 5, reflect_prob: float = 0.5,
                       batch_size: int = 250, seed: int = 0) -> TraversalAccuracy:
    """Score ``R`` on ``n`` fresh traversal pairs built as in training (random ``k``, ``t*``
    and reflection per pair; start latents from ``latent_sampler``, e.g. held-out codes).

    Cost: ``n·(H + 1)`` field steps, ``2n`` generator calls, ``n`` classifier calls.
    """
    if not isinstance(model, PotentialFlowModel):
        raise InputError(f"model: expected a PotentialFlowModel, got {type(model).__name__}")
    _check_callable(G, "G")
    _check_callable(latent_sampler, "latent_sampler")
    _positive_int(n, "n")
    _positive_int(batch_size, "batch_size")
    if isinstance(half_horizon, bool) or not isinstance(half_horizon, int) or half_horizon < 2:
        raise InputError(f"half_horizon: expected an integer >= 2, got {half_horizon!r}")
    if not 0.0 <= _non_negative(reflect_prob, "reflect_prob") <= 1.0:
        raise InputError(f"reflect_prob: expected a probability, got {reflect_prob!r}")
    field_, K = model.field, model.field.num_directions
    gen = torch.Generator().manual_seed(seed)
    correct = torch.zeros(K)
    total = torch.zeros(K)
    step_sum, done = 0.0, 0
    while done < n:
        b = min(batch_size, n - done)
        z0 = _sample_latents(latent_sampler, b, gen, field_.dim).detach()
        k, t_star, reflect = _draws(b, K, half_horizon, reflect_prob, True, gen, z0.device)
        points = _flow(field_, z0, k, half_horizon - 1)
        arange = torch.arange(b, device=z0.device)
        z_star = points[t_star, arange]
        g_star = field_.step(z_star, k, t_star.to(z0.dtype))
        z1, z2, _ = _pair(field_, z_star, g_star, k, t_star, reflect, create_graph=False)
        with torch.no_grad():
            pred = model.reconstructor(_images(G, z1), _images(G, z2)).argmax(dim=1)
        hit = (pred == k).float().cpu()
        correct.index_add_(0, k.cpu(), hit)
        total.index_add_(0, k.cpu(), torch.ones(b))
        step_sum += float((z2 - z1).norm(dim=1).sum())
        done += b
    per = torch.where(total > 0, correct / total.clamp_min(1), torch.full_like(total, math.nan))
    return TraversalAccuracy(float(correct.sum() / total.sum()), per, 1.0 / K, n,
                             step_sum / n)


class FactorRegressor(nn.Module):
    """A small conv regressor from images to known factors (in standardised units).

    Three 3×3 convolutions (two of stride 2), SiLU, average-pooled to 4×4, a hidden linear
    layer and a linear head to ``F`` factors. Targets are standardised with the training
    factors' mean and std (buffers); :meth:`forward` returns standardised predictions, so a
    change of 1 is one data standard deviation of that factor.

    Args:
        image_shape: ``(C, H, W)``.
        num_factors: ``F``.
        width: channels of the first convolution.
    """

    def __init__(self, image_shape: Sequence[int], num_factors: int, width: int = 32) -> None:
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"image_shape: expected (C, H, W), got {image_shape!r}")
        _positive_int(num_factors, "num_factors")
        _positive_int(width, "width")
        self.image_shape, self.num_factors = shape, num_factors
        self.net = nn.Sequential(
            nn.Conv2d(shape[0], width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.SiLU(),
            nn.Linear(128, num_factors))
        self.register_buffer("mean", torch.zeros(num_factors))
        self.register_buffer("std", torch.ones(num_factors))

    def forward(self, images: Tensor) -> Tensor:
        """Standardised factor predictions ``[B, F]``."""
        if not isinstance(images, Tensor) or tuple(images.shape[1:]) != self.image_shape:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise InputError(f"images: expected [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {shape}")
        return self.net(images)

    def standardise(self, factors: Tensor) -> Tensor:
        """Factors in data units ``[B, F]`` → standardised units."""
        return (factors - self.mean) / self.std

    @torch.no_grad()
    def r2(self, images: Tensor, factors: Tensor, batch_size: int = 500) -> Tensor:
        """Coefficient of determination per factor ``[F]`` on ``(images, factors)``."""
        target = self.standardise(_check_factors(factors, images, self.num_factors))
        pred = torch.cat([self(images[i:i + batch_size])
                          for i in range(0, images.shape[0], batch_size)])
        residual = (pred - target).pow(2).mean(dim=0)
        return 1 - residual / target.var(dim=0, unbiased=False).clamp_min(1e-12)


def _check_factors(factors: object, images: Tensor, num: int | None = None) -> Tensor:
    if not isinstance(factors, Tensor) or factors.ndim != 2 or factors.shape[0] != images.shape[0]:
        shape = tuple(factors.shape) if isinstance(factors, Tensor) else type(factors).__name__
        raise InputError(f"factors: expected [N, F] with N = {images.shape[0]} images, got "
                         f"{shape}")
    if num is not None and factors.shape[1] != num:
        raise InputError(f"factors: expected {num} columns, got {factors.shape[1]}")
    if not bool(torch.isfinite(factors).all()):
        raise InputError("factors: holds NaN or Inf")
    return factors.to(images.dtype)


class _RegressionLoss(nn.Module):
    """Trainer objective: MSE of standardised factors; ``x1`` images, ``x0`` the targets."""

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None) -> LossOutput:
        per_example = (model(x1) - x0).pow(2).mean(dim=1)
        return LossOutput(per_example.mean(), per_example.detach(), torch.zeros_like(
            per_example))


def train_factor_regressor(images: Tensor, factors: Tensor, *, steps: int = 1000,
                           batch_size: int = 128, lr: float = 2e-3, width: int = 32,
                           seed: int = 0, progress: bool = False) -> FactorRegressor:
    """Fit a :class:`FactorRegressor` to ``images [N, C, H, W]`` and ``factors [N, F]`` (MSE
    on standardised factors, through :class:`~monge.train.Trainer`; batches drawn with
    replacement). Returns the regressor in eval mode."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"images: expected [N, C, H, W], got {shape}")
    if not bool(torch.isfinite(images).all()):
        raise InputError("images: holds NaN or Inf")
    factors = _check_factors(factors, images)
    _positive_int(steps, "steps")
    regressor = FactorRegressor(images.shape[1:], factors.shape[1], width).to(images.device)
    regressor.mean.copy_(factors.mean(dim=0))
    regressor.std.copy_(factors.std(dim=0).clamp_min(1e-6))
    targets = regressor.standardise(factors)

    def sample_batch(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, None]:
        index = torch.randint(images.shape[0], (n,), generator=generator,
                              device=generator.device).to(images.device)
        return targets[index], images[index], None

    config = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr,
                           warmup_steps=min(100, steps // 10), ema_decay=0.0,
                           checkpoint_every=10 ** 9, log_every=max(1, steps // 10), seed=seed)
    Trainer(regressor, _RegressionLoss(), sample_batch, config, progress=progress).fit()
    regressor.eval()
    return regressor


@dataclass
class FactorSpecificity:
    """How specifically each direction moves the known factors.

    Attributes:
        change: ``[K, G]`` mean induced change of each factor group along each traversal (path
            length of the regressor's standardised prediction, divided by ``√|group|``).
        specificity: ``[K]`` share of each direction's change taken by its top group.
        top_factor: name of each direction's top group.
        mean_specificity: mean of ``specificity`` (``1/G`` for a uniform spread).
        mig: MIG-like score: per group, the gap between the two largest shares of that group's
            change over directions, averaged over groups (1: each group moved by one
            direction only).
        factors_covered: number of distinct top groups over the directions.
        total_change: ``[K]`` total change per direction (a direction that barely moves the
            image has a noisy specificity).
        groups: the group names, in column order.
    """

    change: Tensor
    specificity: Tensor
    top_factor: list[str]
    mean_specificity: float
    mig: float
    factors_covered: int
    total_change: Tensor
    groups: list[str]


def factor_specificity(field: TraversalField, G: Generator, regressor: FactorRegressor,
                       latent_sampler: LatentSampler, groups: Mapping[str, Sequence[int]], *,
                       n: int = 500, steps: int = 5, batch_size: int = 250, seed: int = 0
                       ) -> FactorSpecificity:
    """Per-direction factor specificity of traversals, measured through a factor regressor.

    For each direction ``k``: traverse ``steps`` forward and ``steps`` backward (by reflection)
    from ``n`` start latents, decode every point, predict the standardised factors, and sum the
    absolute per-step changes of each factor group (the L2 norm over a group's columns divided
    by ``√|group|``) along the ``2·steps`` steps; average over the starts to get
    ``change[k, g]``. Specificity of ``k`` is ``max_g change[k, g] / Σ_g change[k, g]``; the
    MIG-like score normalises each group's column over directions and averages the gap between
    its top two shares. Cost: ``2·K·n·steps`` field steps and ``K·n·(2·steps + 1)`` generator
    and regressor calls.

    Args:
        field: the traversal field.
        G: generator.
        regressor: a :class:`FactorRegressor` for ``G``'s images.
        latent_sampler: start latents ``(n, generator) -> [n, D]``.
        groups: group name → regressor columns (e.g. ``{"x": [0], "colour": [5, 6, 7]}``).
        n, steps, batch_size, seed: starts, steps each way, chunking, randomness.

    Returns:
        :class:`FactorSpecificity`.
    """
    _check_field(field)
    _check_callable(G, "G")
    _check_callable(latent_sampler, "latent_sampler")
    if not isinstance(regressor, FactorRegressor):
        raise InputError(f"regressor: expected a FactorRegressor, got {type(regressor).__name__}")
    if not isinstance(groups, Mapping) or not groups:
        raise InputError("groups: expected a non-empty mapping of name -> regressor columns")
    columns: list[list[int]] = []
    for name, cols in groups.items():
        cols = list(cols)
        if not cols or any(isinstance(c, bool) or not isinstance(c, int) or not
                           0 <= c < regressor.num_factors for c in cols):
            raise InputError(f"groups[{name!r}]: expected columns in 0..{regressor.num_factors - 1}"
                             f", got {cols!r}")
        columns.append(cols)
    for name, value in (("n", n), ("steps", steps), ("batch_size", batch_size)):
        _positive_int(value, name)
    gen = torch.Generator().manual_seed(seed)
    starts = torch.cat([_sample_latents(latent_sampler, min(batch_size, n - i), gen, field.dim)
                        for i in range(0, n, batch_size)]).detach()
    K = field.num_directions
    change = torch.zeros(K, len(columns), dtype=torch.float64)
    for k in range(K):
        for i in range(0, n, batch_size):
            z0 = starts[i:i + batch_size]
            back = traverse(field, z0, k, steps, reverse=True).flip(0)
            ahead = traverse(field, z0, k, steps)
            path = torch.cat([back, ahead[1:]])                      # [2·steps + 1, b, D]
            with torch.no_grad():
                flat = path.reshape(-1, field.dim)
                pred = regressor(_images(G, flat)).reshape(path.shape[0], z0.shape[0], -1)
            delta = pred.diff(dim=0)                                  # [2·steps, b, F]
            for g, cols in enumerate(columns):
                step_change = delta[..., cols].norm(dim=-1) / math.sqrt(len(cols))
                change[k, g] += step_change.sum(dim=0).double().sum()
    change /= n
    total = change.sum(dim=1)
    specificity = change.max(dim=1).values / total.clamp_min(1e-12)
    top = change.argmax(dim=1)
    names = list(groups)
    shares = change / change.sum(dim=0, keepdim=True).clamp_min(1e-12)
    if K >= 2:
        ordered = shares.sort(dim=0, descending=True).values
        mig = float((ordered[0] - ordered[1]).mean())
    else:
        mig = float(shares[0].mean())
    return FactorSpecificity(change=change.float(), specificity=specificity.float(),
                             top_factor=[names[int(i)] for i in top],
                             mean_specificity=float(specificity.mean()), mig=mig,
                             factors_covered=len(set(top.tolist())),
                             total_change=total.float(), groups=names)
