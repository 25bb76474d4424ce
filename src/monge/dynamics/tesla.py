"""Trajectory-matching dataset distillation (MTT / TESLA) with a constant-memory exact gradient.

Paper: J. Cui, R. Wang, S. Si & C.-J. Hsieh, "Scaling Up Dataset Distillation to ImageNet-1K with
Constant Memory", ICML 2023 (arXiv:2211.10586); base method MTT: G. Cazenavette et al.,
"Dataset Distillation by Matching Training Trajectories", CVPR 2022.

A student starts at an expert checkpoint θ*_s, takes N SGD steps with a learnable step α on
minibatches of the synthetic set (X, labels), θ_{i+1} = θ_i − α g_i, g_i = ∇_θ ℓ(θ_i; X_{b_i}),
and the loss L = ||θ_N − θ*_{s+M}||² / ||θ*_s − θ*_{s+M}||² is minimised over X, the labels and α.

Gradient modes (:func:`trajectory_matching_grad`):

- ``unroll`` (MTT): autograd through all N steps (create_graph); O(N) step graphs; exact.
- ``exact``: a reverse pass over the stored θ_i, λ_i = λ_{i+1} − α H_i λ_{i+1} (an HVP), one
  step graph at a time; O(1) step graph + N·|θ| snapshots; exact.
- ``tesla`` (the paper's code): the adjoint is frozen at λ_N = ∂L/∂θ_N, i.e.
  dL/dX_i = −α (∂g_i/∂X_i)^T λ_N (the Hessian terms through θ_j, j > i, are dropped); O(1) step
  graph + snapshots; first-order only.

The ``exact`` mode is our constant-memory *exact* gradient (reverse-mode with per-step
recomputation, as in reversible/checkpointed hypergradients, Maclaurin et al. 2015): each step
needs one backward of ⟨g_i, λ_{i+1}⟩ with respect to (θ_i, X_i, labels), exactly the VJP TESLA
already computes, so the cost equals TESLA's. Soft labels: ``hard`` (one-hot), ``expert`` (TESLA's
soft label assignment: softmax of the target expert on X, not learned) or ``learned`` (label
logits optimised with X). No augmentation is used (8×8 digits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from monge.core.checks import make_generator
from monge.dynamics.memory import GraphMemoryMeter
from monge.errors import InputError

__all__ = ["DistillConfig", "DistillResult", "GraphMemoryMeter", "MatchGrad", "MLPSpec",
           "distill", "evaluate_synthetic", "train_experts", "trajectory_matching_grad",
           "train_student"]

MODES = ("unroll", "exact", "tesla")
LABEL_MODES = ("hard", "expert", "learned")


# --------------------------------------------------------------------------------------------
# a functional MLP on a flat parameter vector
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLPSpec:
    """A ReLU MLP with layer sizes ``sizes`` (e.g. (64, 128, 10)) on a flat parameter vector,
    laid out as ``nn.Sequential(Linear, ReLU, ..., Linear)``'s ``parameters()``."""

    sizes: tuple[int, ...] = (64, 128, 10)

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def module(self) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(self.sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def init(self, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
        """PyTorch's default Linear initialisation (uniform ±1/√fan_in), seeded."""
        parts = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            bound = 1 / math.sqrt(a)
            parts.append((torch.rand(b * a, generator=generator, dtype=dtype) * 2 - 1) * bound)
            parts.append((torch.rand(b, generator=generator, dtype=dtype) * 2 - 1) * bound)
        return torch.cat(parts)

    def forward(self, theta: Tensor, x: Tensor) -> Tensor:
        i, h = 0, x.reshape(x.shape[0], -1)
        n_layers = len(self.sizes) - 1
        for k, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            w = theta[i:i + a * b].view(b, a)
            i += a * b
            bias = theta[i:i + b]
            i += b
            h = h @ w.T + bias
            if k < n_layers - 1:
                h = torch.relu(h)
        return h


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean of −Σ_c y_c log softmax(logits)_c (targets: probabilities [B, C])."""
    return -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()


# --------------------------------------------------------------------------------------------
# experts from the project's trainer
# --------------------------------------------------------------------------------------------
class _ClassifierLoss(nn.Module):
    """Cross-entropy in the trainer's loss protocol ``loss(model, x0, x1, y1, generator)``."""

    def forward(self, model, x0, x1, y1, generator):
        from monge.train.losses import LossOutput

        per = nn.functional.cross_entropy(model(x1), y1, reduction="none")
        return LossOutput(per.mean(), per.detach(), torch.zeros_like(per))


def train_experts(x: Tensor, y: Tensor, spec: MLPSpec = MLPSpec(), *, n_experts: int = 5,
                  epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                  seed: int = 0) -> list[Tensor]:
    """Expert trajectories: per-epoch flat parameters [epochs + 1, d] of ``n_experts`` runs.

    Trained with the project's :class:`monge.train.Trainer` (AdamW, constant lr, no EMA, no
    clipping) on real data; one "epoch" is ⌈n / batch_size⌉ steps with batches drawn with
    replacement. Parameters are returned in float64.
    """
    from monge.train import Trainer, TrainerConfig

    n = x.shape[0]
    spe = max(1, math.ceil(n / batch_size))
    out = []
    for e in range(n_experts):
        torch.manual_seed(seed * 1000 + e)
        model = spec.module().to(x.dtype)

        def sample_batch(b: int, generator: torch.Generator):
            idx = torch.randint(0, n, (b,), generator=generator)
            return None, x[idx], y[idx]

        cfg = TrainerConfig(steps=epochs * spe, batch_size=batch_size, lr=lr, warmup_steps=0,
                            schedule="constant", grad_clip=None, ema_decay=0.0,
                            checkpoint_every=10 ** 9, log_every=10 ** 9, seed=seed * 1000 + e)
        trainer = Trainer(model, _ClassifierLoss(), sample_batch, cfg, progress=False)
        snaps = [nn.utils.parameters_to_vector(model.parameters()).detach().double().clone()]
        for ep in range(1, epochs + 1):
            trainer.fit(stop_at=ep * spe)
            snaps.append(nn.utils.parameters_to_vector(model.parameters()).detach().double()
                         .clone())
        out.append(torch.stack(snaps))
    return out


# --------------------------------------------------------------------------------------------
# the matching gradient
# --------------------------------------------------------------------------------------------
@dataclass
class MatchGrad:
    """Loss and gradients of one trajectory-matching iteration.

    Attributes:
        loss: L = ||θ_N − θ*_target||² / ||θ*_start − θ*_target||².
        grad_x: dL/dX (shape of X).
        grad_labels: dL/d(label logits) (None unless labels are learned).
        grad_lr: dL/dα.
        graph_bytes: peak autograd-graph bytes during the gradient computation.
        snapshot_bytes: bytes of stored parameter snapshots (0 for ``unroll``).
    """

    loss: float
    grad_x: Tensor
    grad_labels: Tensor | None
    grad_lr: Tensor
    graph_bytes: int
    snapshot_bytes: int


def trajectory_matching_grad(spec: MLPSpec, x_syn: Tensor, label_logits: Tensor, lr: Tensor,
                             theta_start: Tensor, theta_target: Tensor,
                             batches: Sequence[Tensor], *, mode: str = "exact",
                             labels_learned: bool = False) -> MatchGrad:
    """Gradient of the trajectory-matching loss with respect to X, the labels and α.

    Method: see the module table; ``unroll`` and ``exact`` agree to rounding (tested in
    float64), ``tesla`` is the paper's first-order variant. Cost: N gradient evaluations forward
    and N VJPs backward for every mode; memory: N step graphs (``unroll``) or one (others) plus
    N·|θ| snapshots. Paper: Cui et al., ICML 2023 (arXiv:2211.10586).

    Args:
        spec: student network.
        x_syn: synthetic inputs [n, ...].
        label_logits: synthetic label logits [n, C] (targets are their softmax; pass one-hot ×
            a large scale, or expert logits, for fixed labels).
        lr: learnable student step α (0-d tensor).
        theta_start, theta_target: expert parameters θ*_s and θ*_{s+M}.
        batches: N index tensors into the synthetic set, one per student step.
        mode: ``unroll``, ``exact`` or ``tesla``.
        labels_learned: return dL/d(label logits).

    Returns:
        :class:`MatchGrad`.
    """
    if mode not in MODES:
        raise InputError(f"mode: expected one of {MODES}, got {mode!r}")
    if float(lr) <= 0:
        raise InputError(f"lr: learning rate must be > 0, got {float(lr)}")
    denom = (theta_start - theta_target).pow(2).sum()
    meter = GraphMemoryMeter()
    X = x_syn.detach().requires_grad_(True)
    Yl = label_logits.detach().requires_grad_(labels_learned)
    a = lr.detach().clone().requires_grad_(True)

    def step_grad(theta: Tensor, idx: Tensor, create_graph: bool) -> Tensor:
        targets = torch.softmax(Yl[idx], -1)
        loss = soft_cross_entropy(spec.forward(theta, X[idx]), targets)
        return torch.autograd.grad(loss, theta, create_graph=create_graph)[0]

    if mode == "unroll":
        with meter.track():
            theta = theta_start.detach().clone().requires_grad_(True)
            for idx in batches:
                theta = theta - a * step_grad(theta, idx, True)
            loss = (theta - theta_target).pow(2).sum() / denom
            inputs = [X, a] + ([Yl] if labels_learned else [])
            grads = torch.autograd.grad(loss, inputs)
        gx, ga = grads[0], grads[1]
        gy = grads[2] if labels_learned else None
        return MatchGrad(float(loss.detach()), gx, gy, ga, meter.peak, 0)

    # pass 1: no graph kept across steps; store θ_i and g_i
    thetas, gs = [theta_start.detach().clone()], []
    for idx in batches:
        th = thetas[-1].detach().requires_grad_(True)
        with meter.track():
            g = step_grad(th, idx, False).detach()
        gs.append(g)
        thetas.append((thetas[-1] - a.detach() * g).detach())
    theta_n = thetas[-1]
    lam = 2 * (theta_n - theta_target) / denom  # ∂L/∂θ_N
    loss = float((theta_n - theta_target).pow(2).sum() / denom)
    gx = torch.zeros_like(X)
    gy = torch.zeros_like(Yl) if labels_learned else None
    ga = torch.zeros_like(a)
    lam_fixed = lam.clone()
    order = range(len(batches) - 1, -1, -1)
    for i in order:
        idx = batches[i]
        th = thetas[i].detach().requires_grad_(True)
        adj = lam if mode == "exact" else lam_fixed
        with meter.track():
            g = step_grad(th, idx, True)
            # θ_{i+1} = θ_i − α g_i: dL/dα += −⟨g_i, λ_{i+1}⟩; VJP of −α⟨g_i, λ_{i+1}⟩
            s = (g * adj).sum()
            wrt = [X, th] + ([Yl] if labels_learned else [])
            parts = torch.autograd.grad(s, wrt, allow_unused=True)
        ga = ga - s.detach()
        scale = -a.detach()
        if parts[0] is not None:
            gx = gx + scale * parts[0]
        if labels_learned and parts[2] is not None:
            gy = gy + scale * parts[2]
        if mode == "exact":
            lam = lam + scale * parts[1]  # λ_i = λ_{i+1} − α H_i λ_{i+1}
        del g, s, parts
    snap = sum(t.numel() * t.element_size() for t in thetas[1:])
    return MatchGrad(loss, gx, gy, ga, meter.peak, snap)


# --------------------------------------------------------------------------------------------
# distillation loop and evaluation
# --------------------------------------------------------------------------------------------
@dataclass
class DistillConfig:
    """Distillation settings (defaults sized for digits on a CPU).

    Attributes:
        ipc: synthetic images per class.
        syn_steps: student steps N per iteration.
        expert_epochs: M (target = start + M epochs).
        max_start_epoch: start epochs are drawn from [0, max_start_epoch).
        iterations: distillation iterations.
        batch_syn: synthetic minibatch per student step (None: the whole set).
        lr_x, lr_lr, lr_labels: SGD (momentum 0.5) learning rates of X, α, label logits.
        init_lr: initial student step α.
        labels: ``hard``, ``expert`` (TESLA's soft label assignment) or ``learned``.
        mode: gradient mode (``exact``, ``tesla`` or ``unroll``).
        seed: seed of the initial real images, starts and batches.
    """

    ipc: int = 1
    syn_steps: int = 20
    expert_epochs: int = 2
    max_start_epoch: int = 10
    iterations: int = 200
    batch_syn: int | None = None
    lr_x: float = 100.0
    lr_lr: float = 1e-4
    lr_labels: float = 10.0
    init_lr: float = 0.01
    labels: str = "learned"
    mode: str = "exact"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MODES:
            raise InputError(f"labels: expected one of {LABEL_MODES}, got {self.labels!r}")
        if self.mode not in MODES:
            raise InputError(f"mode: expected one of {MODES}, got {self.mode!r}")
        for name in ("lr_x", "lr_lr", "lr_labels", "init_lr"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise InputError(f"{name}: learning rate must be a finite number > 0, got {v}")


@dataclass
class DistillResult:
    """A distilled set: inputs [n, ...], label targets (probabilities [n, C]), learned α, and
    the matching loss per iteration."""

    x: Tensor
    labels: Tensor
    lr: float
    losses: list[float] = field(default_factory=list)


def distill(x_real: Tensor, y_real: Tensor, experts: Sequence[Tensor], num_classes: int,
            spec: MLPSpec = MLPSpec(), config: DistillConfig | None = None) -> DistillResult:
    """Distil (x_real, y_real) into ``ipc`` images per class by trajectory matching.

    Method: MTT's loop with the chosen gradient mode (module docstring); X initialised from
    random real images of each class; α learnable; labels per ``config.labels``. Paper: Cui et
    al., ICML 2023; Cazenavette et al., CVPR 2022.
    """
    cfg = config if config is not None else DistillConfig()
    gen = make_generator(cfg.seed)
    dtype = torch.float64
    xs, ys = [], []
    for c in range(num_classes):
        pool = torch.nonzero(y_real == c).reshape(-1)
        if pool.numel() < cfg.ipc:
            raise InputError(f"y_real: class {c} has {pool.numel()} samples < ipc={cfg.ipc}")
        pick = pool[torch.randperm(pool.numel(), generator=gen)[: cfg.ipc]]
        xs.append(x_real[pick].reshape(cfg.ipc, -1).to(dtype))
        ys.append(torch.full((cfg.ipc,), c, dtype=torch.long))
    X = torch.cat(xs)
    y_hard = torch.cat(ys)
    n = X.shape[0]
    logits = nn.functional.one_hot(y_hard, num_classes).to(dtype) * 10.0
    lr = torch.tensor(cfg.init_lr, dtype=dtype)
    mom = {"x": torch.zeros_like(X), "y": torch.zeros_like(logits), "a": torch.zeros(())}
    n_ep = min(e.shape[0] for e in experts)
    max_start = max(1, min(cfg.max_start_epoch, n_ep - cfg.expert_epochs))
    losses = []
    for _ in range(cfg.iterations):
        ex = experts[int(torch.randint(0, len(experts), (1,), generator=gen))]
        s = int(torch.randint(0, max_start, (1,), generator=gen))
        th0, th1 = ex[s].to(dtype), ex[s + cfg.expert_epochs].to(dtype)
        bs = n if cfg.batch_syn is None else min(cfg.batch_syn, n)
        batches = [torch.randperm(n, generator=gen)[:bs] for _ in range(cfg.syn_steps)]
        if cfg.labels == "expert":
            with torch.no_grad():
                lab = spec.forward(th1, X)
        else:
            lab = logits
        out = trajectory_matching_grad(spec, X, lab, lr, th0, th1, batches, mode=cfg.mode,
                                       labels_learned=cfg.labels == "learned")
        losses.append(out.loss)
        mom["x"] = 0.5 * mom["x"] + out.grad_x
        X = X - cfg.lr_x * mom["x"]
        mom["a"] = 0.5 * mom["a"] + out.grad_lr
        lr = (lr - cfg.lr_lr * mom["a"]).clamp_min(1e-5)
        if out.grad_labels is not None:
            mom["y"] = 0.5 * mom["y"] + out.grad_labels
            logits = logits - cfg.lr_labels * mom["y"]
    if cfg.labels == "expert":
        # a final assignment from the last sampled target expert (train-free SLA)
        with torch.no_grad():
            targets = torch.softmax(spec.forward(th1, X), -1)
    else:
        targets = torch.softmax(logits, -1)
    return DistillResult(X.detach(), targets.detach(), float(lr), losses)


def train_student(spec: MLPSpec, x: Tensor, targets: Tensor, lr: float, steps: int, *,
                  seed: int = 0, batch_size: int | None = None) -> Tensor:
    """Train a fresh student (seeded init) with SGD on (x, soft targets); returns θ."""
    if not math.isfinite(lr) or lr <= 0:
        raise InputError(f"lr: learning rate must be a finite number > 0, got {lr}")
    gen = make_generator(seed)
    theta = spec.init(gen, x.dtype)
    n = x.shape[0]
    for _ in range(steps):
        idx = (torch.randperm(n, generator=gen)[:batch_size] if batch_size and batch_size < n
               else slice(None))
        th = theta.requires_grad_(True)
        loss = soft_cross_entropy(spec.forward(th, x[idx]), targets[idx])
        g = torch.autograd.grad(loss, th)[0]
        theta = (theta - lr * g).detach()
    return theta


def evaluate_synthetic(spec: MLPSpec, x: Tensor, targets: Tensor, lr: float,
                       x_test: Tensor, y_test: Tensor, *, steps: int = 300,
                       seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> tuple[float, float]:
    """Test accuracy (mean, std over ``seeds``) of fresh students trained on (x, targets)."""
    accs = []
    xt = x_test.reshape(x_test.shape[0], -1).to(x.dtype)
    for s in seeds:
        th = train_student(spec, x, targets, lr, steps, seed=s)
        with torch.no_grad():
            accs.append(float((spec.forward(th, xt).argmax(-1) == y_test).double().mean()))
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / max(1, len(accs) - 1)) ** 0.5
    return mean, std
