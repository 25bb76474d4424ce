"""Restore a ``monge run`` checkpoint as a model ready to sample (never unpickles)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from monge.data import load_dataset
from monge.errors import ConfigError, DataError
from monge.experiments.build import model_kwargs
from monge.experiments.config import RunConfig, parse_config
from monge.experiments.evaluate import solve
from monge.experiments.methods import Method, build_method
from monge.models import build_model
from monge.solvers import SolveResult
from monge.train import load_checkpoint as _load_ckpt


@dataclass
class Trained:
    """A model restored from a checkpoint, ready to sample."""

    cfg: RunConfig
    model: nn.Module
    field: nn.Module
    method: Method
    shape: tuple[int, ...]
    num_classes: int | None

    def sample(self, n: int, solver: str = "heun", nfe: int | None = 8, seed: int = 0,
               labels: Tensor | None = None, source: Tensor | None = None) -> SolveResult:
        """Draw n samples; the source is N(0, I) for a Gaussian source, else ``source``."""
        device = next(self.model.parameters()).device
        if source is None:
            if self.cfg.source != "gaussian":
                ds = load_dataset(self.cfg.source, n_train=max(n, 16), n_test=8, seed=seed,
                                  test_fraction=self.cfg.data.test_fraction)
                g = torch.Generator().manual_seed(seed)
                source, _ = ds.sample(n, g)
            else:
                g = torch.Generator().manual_seed(seed)
                source = torch.randn(n, *self.shape, generator=g)
        cond = None
        if self.num_classes is not None:
            if labels is None:
                labels = torch.arange(n) % self.num_classes
            cond = {"y": labels.to(device)}
        with torch.no_grad():
            res = solve(self.field, self.method.initial_state(source.to(device), seed), solver,
                        nfe=nfe, cond=cond)
        if self.method.data_scale != 1.0:
            res.x = res.x / self.method.data_scale
        return res


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu") -> Trained:
    """Rebuild the model (EMA weights) and path of a ``monge run`` checkpoint."""
    tensors, state = _load_ckpt(checkpoint, device="cpu")
    if "run_config" not in state:
        raise DataError(f"{checkpoint}: not a monge run checkpoint (no run_config)")
    cfg = parse_config(state["run_config"], origin=f"{checkpoint} (stored config)")
    shape = tuple(state["shape"])
    kind, kwargs = model_kwargs(cfg, shape)
    target = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    method = build_method(cfg, target)
    model = method.wrap_model(build_model(kind, shape, num_classes=state.get("num_classes"),
                                          **kwargs))
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in tensors) else "model."
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                           if k.startswith(prefix)})
    model.to(device).eval()
    return Trained(cfg, model, method.velocity_field(model), method, shape,
                   state.get("num_classes"))


def check_resumable(cfg: RunConfig, ckpt: Path) -> None:
    _, state = _load_ckpt(ckpt)
    stored = parse_config(state.get("run_config"), origin=f"{ckpt} (stored config)")
    if stored.model_dump(exclude={"out"}) != cfg.model_dump(exclude={"out"}):
        raise ConfigError(f"--resume: the config differs from the one stored in {ckpt}; "
                          "use the same options or another --out")
