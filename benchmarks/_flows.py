"""Shared benchmark arm: train a 2-D flow-matching MLP with the monge Trainer and measure it."""

from __future__ import annotations

import time

import torch

from monge.couplings import make_coupling
from monge.metrics import straightness, wasserstein2
from monge.models import MLP
from monge.paths import LinearPath
from monge.solvers import Euler, integrate
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig


def train_flow(loss: torch.nn.Module, src, tgt, *, steps: int, seed: int, hidden: int = 256,
               depth: int = 3, time_dim: int = 32, batch_size: int = 256) -> tuple[Trainer, float]:
    """Train an MLP on ``loss`` with batches from datasets ``src`` → ``tgt``.

    Returns the trainer (EMA weights in ``trainer.sampling_model``) and the wall seconds.
    """
    torch.manual_seed(seed)
    model = MLP(src.shape[0], hidden=hidden, depth=depth, time_dim=time_dim)
    cfg = TrainerConfig(steps=steps, batch_size=batch_size, lr=1e-3, warmup_steps=100,
                        log_every=max(1, steps // 10), checkpoint_every=10**9, seed=seed)

    def sample_batch(n, g):
        return src.sample(n, g)[0], tgt.sample(n, g)[0], None

    trainer = Trainer(model, loss, sample_batch, cfg, progress=False)
    t0 = time.perf_counter()
    trainer.fit()
    return trainer, time.perf_counter() - t0


def euler_w2(field, x0: torch.Tensor, reference: torch.Tensor, nfes) -> dict[int, float]:
    """Exact W2 between Euler samples at each NFE and ``reference``."""
    return {n: wasserstein2(integrate(field, x0, Euler(), steps=n).x, reference) for n in nfes}


def euler_straightness(field, x0: torch.Tensor, steps: int = 100) -> float:
    """Straightness (Liu et al. 2023) of the Euler trajectories from ``x0``."""
    res = integrate(field, x0, Euler(), steps=steps, return_trajectory=True)
    return straightness(res.trajectory, res.times)


def coupling_arm(coupling: str, options: dict, src, tgt, *, steps: int, seed: int,
                 nfes) -> dict:
    """Flow matching on the linear path with a named coupling: few-step W2, straightness and
    milliseconds per training step."""
    loss = FlowMatchingLoss(LinearPath(), coupling=make_coupling(coupling, **options))
    trainer, seconds = train_flow(loss, src, tgt, steps=steps, seed=seed)
    field = trainer.sampling_model.eval()
    x0 = src.test[:2000]
    return {"w2": euler_w2(field, x0, tgt.test[:2000], nfes),
            "straight": euler_straightness(field, x0[:1000]), "ms": 1000 * seconds / steps}
