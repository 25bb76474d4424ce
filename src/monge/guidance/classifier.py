"""Classifier guidance: a time-conditioned classifier p_φ(y | x_t, t) trained on noisy data, and
the guided model that adds w·∇ₓ log p_φ(y | x_t) to the score.

Dhariwal & Nichol (2021), "Diffusion Models Beat GANs on Image Synthesis", §4: the guided score
is ∇log p_t(x) + w·∇ₓ log p_φ(y | x, t). On an affine path the score is −ε/σ, so the guided
noise prediction is ε̃ = ε̂ − w·σ(t)·∇ₓ log p_φ(y | x, t); the wrapper converts the network's
output to ε, applies this, and converts back, so every solver samples the guided model.

Cost per evaluation: one network call of the flow (counted in ``nfe``) plus one forward and one
backward pass of the small classifier (counted in ``classifier_calls``). Training:
``steps`` Adam steps of cross-entropy on x_t = α·x1 + σ·ε at t ~ U[t_min, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from monge.core.checks import check_finite
from monge.errors import DataError, InputError
from monge.guidance.cfg import check_interval, check_weight, interval_weight
from monge.models.embeddings import SinusoidalTimeEmbedding, as_batch_time
from monge.paths import ModelWrapper
from monge.train.checkpoint import load_checkpoint, save_checkpoint


class NoisyClassifier(nn.Module):
    """An MLP classifier of noisy samples: logits = f([x, emb(t)]) (images are flattened).

    Args:
        shape: per-sample shape of x.
        num_classes: number of classes.
        hidden, depth: width and number of hidden layers.
        time_dim: size of the sinusoidal time embedding.
    """

    def __init__(self, shape: tuple[int, ...], num_classes: int, hidden: int = 128,
                 depth: int = 2, time_dim: int = 32):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise InputError(f"num_classes: a classifier needs at least 2 classes, got "
                             f"{num_classes!r}")
        self.shape, self.num_classes = tuple(shape), num_classes
        self.config = {"shape": list(shape), "num_classes": num_classes, "hidden": hidden,
                       "depth": depth, "time_dim": time_dim}
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        dim = math.prod(shape)
        layers: list[nn.Module] = []
        width = dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Logits [B, num_classes] of x_t at times t [B]."""
        if tuple(x.shape[1:]) != self.shape:
            raise InputError(f"x: the classifier was built for samples of shape {self.shape}, "
                             f"got {tuple(x.shape[1:])}")
        t = as_batch_time(t, x.shape[0], x.device)
        emb = self.time_embedding(t).to(x.dtype)
        return self.net(torch.cat([x.flatten(1), emb], dim=1))


@dataclass
class ClassifierTraining:
    """The outcome of :func:`train_noisy_classifier`.

    Attributes:
        classifier: the trained network (eval mode).
        final_loss: mean cross-entropy over the last 10% of steps.
        clean_accuracy: accuracy on the given data at t = 1 (clean), a sanity figure.
    """

    classifier: NoisyClassifier
    final_loss: float
    clean_accuracy: float


def train_noisy_classifier(path: Any, x1: Tensor, labels: Tensor, num_classes: int, *,
                           steps: int = 2000, batch_size: int = 256, lr: float = 2e-3,
                           t_min: float = 0.0, seed: int = 0, hidden: int = 128,
                           depth: int = 2) -> ClassifierTraining:
    """Train p_φ(y | x_t, t) on x_t drawn from ``path`` with a standard Gaussian source.

    Args:
        path: an affine path (``sample_xt``, Gaussian source).
        x1: data [N, ...] in the model's units; labels: int64 [N] in 0..num_classes-1.
        steps, batch_size, lr: Adam training budget.
        t_min: smallest time drawn (t ~ U[t_min, 1]).
        seed: seed of batches, times and noise.
    """
    check_finite(x1, "x1")
    if labels.shape != (x1.shape[0],) or labels.dtype not in (torch.int64, torch.int32):
        raise InputError(f"labels: expected int labels of shape [{x1.shape[0]}]")
    if bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise InputError(f"labels: must lie in 0..{num_classes - 1}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: must be a positive integer, got {steps!r}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = NoisyClassifier(tuple(x1.shape[1:]), num_classes, hidden=hidden, depth=depth)
    clf = clf.to(device=x1.device, dtype=x1.dtype)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x1.shape[0], (batch_size,), generator=g)
        xb, yb = x1[idx], labels[idx].long()
        t = t_min + (1.0 - t_min) * torch.rand(batch_size, generator=g, dtype=torch.float64)
        noise = torch.randn(xb.shape, generator=g, dtype=xb.dtype)
        xt = path.sample_xt(noise.to(xb.device), xb, t.to(xb.device))
        loss = nn.functional.cross_entropy(clf(xt, t.to(xb)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    clf.eval()
    with torch.no_grad():
        acc = float((clf(x1, torch.ones(x1.shape[0], dtype=x1.dtype)).argmax(1)
                     == labels).double().mean())
    tail = losses[-max(1, steps // 10):]
    return ClassifierTraining(clf, sum(tail) / len(tail), acc)


def save_classifier(path: str | Path, classifier: NoisyClassifier, info: dict[str, Any]) -> Path:
    """Write the classifier's weights and config (plus ``info``) to one safetensors file."""
    tensors = {k: v for k, v in classifier.state_dict().items()}
    return save_checkpoint(path, tensors, {"kind": "noisy-classifier",
                                           "config": classifier.config, **info})


def load_classifier(path: str | Path) -> tuple[NoisyClassifier, dict[str, Any]]:
    """Read a classifier written by :func:`save_classifier` (no unpickling)."""
    tensors, state = load_checkpoint(path)
    if state.get("kind") != "noisy-classifier":
        raise DataError(f"{path}: not a monge noisy-classifier file (monge train-classifier)")
    cfg = state["config"]
    clf = NoisyClassifier(tuple(cfg["shape"]), cfg["num_classes"], hidden=cfg["hidden"],
                          depth=cfg["depth"], time_dim=cfg["time_dim"])
    try:
        clf.load_state_dict(tensors)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not match the classifier's config ({exc})"[:300]
                        ) from None
    return clf.eval(), state


class ClassifierGuidance(ModelWrapper):
    """A model guided toward class y by a noisy classifier: ε̃ = ε̂ − w·σ·∇ₓ log p_φ(y | x, t).

    Args:
        model: the flow model (conditional or not) on an affine path.
        classifier: p_φ(y | x_t, t) (e.g. from :func:`train_noisy_classifier`).
        weight: guidance scale w ≥ 0 (0: the model itself).
        interval: (t_lo, t_hi) where guidance is applied. The default starts at t = 0.05:
            the score-to-velocity conversion multiplies the guidance term by α̇σ²/α − σσ̇,
            which grows as 1/t near the source of a path with α(0) = 0 (linear, cosine), and a
            learned classifier's gradient does not vanish there as the exact one does.

    The labels to steer toward are passed as ``y`` in the conditioning; for an unconditional
    model they reach only the classifier.
    """

    def __init__(self, model: ModelWrapper, classifier: nn.Module, weight: float,
                 interval: tuple[float, float] = (0.05, 1.0)):
        if not isinstance(model, ModelWrapper) or not hasattr(model.path, "sigma"):
            raise InputError("classifier guidance: wrap a monge ModelWrapper on an affine path")
        weight = check_weight(weight, "classifier guidance", nonnegative=True)
        lo, hi = check_interval(interval, "classifier guidance")
        super().__init__(model, model.path, model.prediction, t_clamp=max(model.t_clamp, 1e-3))
        self.classifier, self.weight, self.interval = classifier, weight, (lo, hi)
        self.classifier_calls = 0
        self._conditional = getattr(getattr(model, "network", None), "null_class",
                                    None) is not None

    @property
    def inner(self) -> ModelWrapper:
        """The guided model."""
        return self.network

    def network_output(self, x: Tensor, t: Tensor, y: Tensor | None = None, **cond: Any
                       ) -> Tensor:
        if y is None:
            raise InputError("classifier guidance: needs class labels y (monge sample --label)")
        self.nfe += 1
        extra = {"y": y} if self._conditional else {}
        out = self.inner.network_output(x, t, **extra, **cond)
        inside = (t >= self.interval[0]) & (t <= self.interval[1])
        if self.weight == 0.0 or not bool(inside.any()):
            return out
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logp = torch.log_softmax(self.classifier(xg, t), dim=1)
            (grad,) = torch.autograd.grad(logp.gather(1, y.long()[:, None]).sum(), xg)
        self.classifier_calls += 1
        path = self.path
        eps = path.convert(out, self.prediction, "epsilon", x, t)
        sigma = path.coefficients(t, x)[1]
        w = interval_weight(t, self.interval, self.weight, 0.0, x)
        eps = eps - w * sigma * grad.to(x.dtype)
        return path.convert(eps, "epsilon", self.prediction, x, t)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, interval={self.interval}"
