"""Distil a trained monge model into a few-step student (shared by ``monge distill`` and the
``distill:`` section of ``monge run``).

Methods (papers in :mod:`monge.distill`): ``reflow`` and ``onestep`` retrain the teacher's own
network on its ODE pairs (Liu et al. 2023); ``meanflow`` (Geng et al. 2025) and ``shortcut``
(Frans et al. 2024) train a two-time flow map u(x, t, s); ``consistency`` (Song et al. 2023),
``lcm`` and ``lcm-lora`` (Luo et al. 2023) and ``mdt`` (MDT-dist, Zhou et al. 2025) train an
endpoint student (the jump to the data end) in the teacher's own architecture, started from its
weights. A student is stored as an ordinary run checkpoint: the teacher's metadata, the
student's weights, and ``state["student"]`` naming its sampler.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from monge.distill import (
    ConsistencyDistillationLoss,
    EndpointNetwork,
    FlowMap,
    MeanFlowLoss,
    OneStepLoss,
    PairSet,
    ShortcutLoss,
    TwoTimeMLP,
    consistency_sample,
    flow_map_sample,
    generate_pairs,
)
from monge.errors import InputError
from monge.experiments.build import model_kwargs
from monge.experiments.config import DISTILL_METHODS
from monge.experiments.load import Trained
from monge.models import build_model
from monge.paths import LinearPath, ModelWrapper
from monge.solvers import Euler, SolveResult, integrate
from monge.train import Trainer, TrainerConfig, TrainResult, load_checkpoint
from monge.train.losses import FlowMatchingLoss

METHODS = DISTILL_METHODS
TWO_TIME = ("meanflow", "shortcut")                  # u(x, t, s): the flow-map sampler
ENDPOINT = ("consistency", "lcm", "lcm-lora", "mdt")  # jump to the end: consistency sampler
FLOW_MAP = {**{m: "flow-map" for m in TWO_TIME}, **{m: "consistency" for m in ENDPOINT}}


@dataclass
class Student:
    """A trained student: its network, how it samples, and what it cost."""

    method: str
    label: str
    network: nn.Module
    """The velocity model (reflow, onestep) or the flow map's network."""
    record: dict[str, Any]
    """``state["student"]`` for a flow-map student (empty for reflow/onestep)."""
    result: TrainResult
    teacher_nfe: int
    seconds: float
    """Pairs and training, in seconds."""
    pairs: PairSet | None = None
    adapter: nn.Module | None = None
    """lcm-lora: the peft-adapted network (its adapter alone is saved by the caller)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sampler(self) -> str:
        """``euler`` for a velocity student, else its flow-map sampler."""
        return FLOW_MAP.get(self.method, "euler")

    def sample(self, teacher: Trained, z: Tensor, nfe: int, cond: dict[str, Tensor] | None,
               seed: int = 0) -> SolveResult:
        """Samples in model units from source points z (Euler for a velocity student, the
        student's own sampler otherwise); NFE = ``nfe``."""
        cond = dict(cond or {})
        with torch.no_grad():
            if self.method not in FLOW_MAP:
                return integrate(ModelWrapper(self.network, teacher.method.path, "velocity"),
                                 z, Euler(), steps=nfe, cond=cond)
            if "guidance" in self.record:
                cond["w"] = torch.full((z.shape[0],), float(self.record["guidance"]),
                                       device=z.device)
            fm = FlowMap(self.network)
            if self.method in TWO_TIME:
                return flow_map_sample(fm, z, nfe, cond=cond)
            draw, g = teacher.source_sampler(z.device), torch.Generator().manual_seed(seed + nfe)
            return consistency_sample(fm, z, nfe, source=lambda k: draw(k, g), cond=cond)


def parse_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` → (LO, HI) with 0 ≤ LO ≤ HI (the LCM guidance range)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--guidance-range: expected LO,HI (e.g. 1,3), got {text!r}") from None
    if not 0 <= lo <= hi:
        raise InputError(f"--guidance-range: expected 0 <= LO <= HI, got {text!r}")
    return lo, hi


def _lora_network(teacher: Trained, rank: int) -> nn.Module:
    from monge.distill.lora import add_lora, target_names

    # every Linear/Conv2d layer whose weight (as a matrix) has rank ≥ the LoRA rank: the
    # narrow output layers (2 rows for 2-D data, 1 channel for digits) are left out
    model = copy.deepcopy(teacher.model)
    layers = target_names(model, "all")
    weight = {n: model.get_submodule(n).weight for n in layers}
    limit = {n: min(w.shape[0], w[0].numel()) for n, w in weight.items()}
    chosen = [n for n in layers if limit[n] >= rank]
    if not chosen:
        raise InputError(f"--rank: {rank} exceeds the rank of every layer of the teacher "
                         f"(largest {max(limit.values())})")
    return add_lora(model, rank=rank, targets=chosen, name="lcm")


def _flow_map_parts(method: str, teacher: Trained, field_t: nn.Module, rank: int,
                    guidance_range: tuple[float, float], source: Any
                    ) -> tuple[nn.Module, nn.Module, dict[str, Any], nn.Module | None]:
    """(network, loss, student record, peft adapter) of a flow-map method."""
    n_cls = teacher.num_classes
    if method in TWO_TIME:
        net: nn.Module = TwoTimeMLP(teacher.shape, hidden=256, depth=3, time_dim=64,
                                    num_classes=n_cls)
        loss: nn.Module = (MeanFlowLoss(teacher=field_t) if method == "meanflow"
                           else ShortcutLoss(teacher=field_t))
        return net, loss, {"network": "two-time", "config": net.config}, None
    if method == "lcm":
        if n_cls is None or not teacher.cfg.train.cond_dropout > 0:
            raise InputError("distill: lcm distils a guided teacher, which needs a class-"
                             "conditional teacher trained with label dropout "
                             "(train.cond_dropout > 0); use consistency for this one")
        kind, kwargs = model_kwargs(teacher.cfg, teacher.shape)
        base = build_model(kind, teacher.shape, num_classes=n_cls, guidance_embedding=True,
                           **kwargs)
        # the teacher's weights; only the (zero-initialised) guidance embedding is new
        base.load_state_dict({**base.state_dict(), **teacher.model.state_dict()})
        net = EndpointNetwork(base)
        loss = ConsistencyDistillationLoss(teacher.guided(1.0), solver="euler", intervals=18,
                                           ema=0.95, guidance=guidance_range)
        return net, loss, {"network": "endpoint", "config": net.config,
                           "guidance": guidance_range[0]}, None
    if method == "lcm-lora":
        adapted = _lora_network(teacher, rank)
        net = EndpointNetwork(adapted)
        loss = ConsistencyDistillationLoss(field_t, solver="euler", intervals=18, ema=None)
        return net, loss, {"network": "endpoint", "config": net.config,
                           "lora_rank": rank}, adapted
    net = EndpointNetwork(copy.deepcopy(teacher.model))
    if method == "mdt":
        from monge.distill import MDTLoss

        # VM + VD with the paper's D normalisation (c = 0.1): stable at the CLI's learning
        # rate (without it a 400-step student diverged); benchmarks/mdt_dist.py measures both
        loss = MDTLoss(field_t, vm="discrete", vd_weight=1.0, source=source)
    else:
        loss = ConsistencyDistillationLoss(field_t, solver="heun")
    return net, loss, {"network": "endpoint", "config": net.config}, None


def distill(teacher: Trained, method: str, *, steps: int = 2000, batch_size: int = 256,
            lr: float = 5e-4, pairs: int = 20000, teacher_solver: str = "dopri5",
            guidance: float | None = None, guidance_range: tuple[float, float] = (1.0, 3.0),
            rank: int = 8, seed: int = 0, pair_folder: Path | None = None,
            previous: list[dict[str, Any]] | None = None,
            progress: bool = False) -> Student:
    """Train a ``method`` student of ``teacher`` (a linear-path velocity model).

    Args:
        teacher: the restored teacher (:func:`~monge.experiments.load.load_trained`).
        method: one of :data:`METHODS`.
        steps, batch_size, lr: the student's training.
        pairs, teacher_solver, pair_folder: reflow/onestep: coupled pairs drawn from the
            teacher with this solver, stored (and resumed) in ``pair_folder``.
        guidance: distil the teacher under classifier-free guidance of this weight.
        guidance_range: lcm: the weights w the student learns (an input of the student).
        rank: lcm-lora: LoRA rank.
        previous: the teacher's own distillation history (labels reflow-k).
    """
    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    for name, value in (("--pairs", pairs), ("--steps", steps), ("--batch-size", batch_size),
                        ("--rank", rank)):
        if value < 1:
            raise InputError(f"{name}: must be positive, got {value}")
    if not lr > 0:
        raise InputError(f"--lr: must be positive, got {lr}")
    cfg = teacher.cfg
    if cfg.path.name != "linear" or cfg.train.prediction != "velocity":
        raise InputError(f"distill: {method} needs a teacher on the linear path with velocity "
                         f"prediction; this one has path {cfg.path.name!r}, prediction "
                         f"{cfg.train.prediction!r}")
    if teacher.flow_map is not None:
        raise InputError(f"distill: this checkpoint is a flow-map student "
                         f"({teacher.model_label}); distil a velocity model (a teacher, or a "
                         "reflow/onestep student)")
    if guidance is not None and method == "lcm":
        raise InputError("--guidance: lcm learns every w in --guidance-range; drop --guidance")
    dev = next(teacher.model.parameters()).device
    n_cls = teacher.num_classes
    field_t = teacher.field if guidance is None else teacher.guided(guidance)
    source = teacher.source_sampler(dev)
    tcfg = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps),
                         ema_decay=0.0, checkpoint_every=10**9, log_every=max(1, steps // 20),
                         seed=seed)
    data, adapter, record = None, None, {}
    pair_seconds = 0.0
    if method in FLOW_MAP:
        from monge.data import load_dataset

        net, loss, record, adapter = _flow_map_parts(method, teacher, field_t, rank,
                                                     guidance_range, source)
        tgt = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                           seed=cfg.seed, test_fraction=cfg.data.test_fraction)
        data_x1 = teacher.maps.encode_target(tgt.train).to(dev)
        data_y = tgt.train_labels.to(dev) if n_cls else None

        def batches(k, g):
            idx = torch.randint(0, data_x1.shape[0], (k,), generator=g).to(dev)
            return source(k, g), data_x1[idx], None if data_y is None else data_y[idx]
        trainer = Trainer(net.to(dev), loss, batches, tcfg, progress=progress)
    else:
        labels = ((lambda k, g: torch.randint(0, n_cls, (k,), generator=g).to(dev))
                  if n_cls else None)
        if progress:
            print(f"drawing {pairs} pairs from the teacher ({teacher_solver})")
        t0 = time.perf_counter()
        data = generate_pairs(field_t, source, pairs, solver=teacher_solver, seed=seed,
                              folder=pair_folder, labels=labels)
        pair_seconds = time.perf_counter() - t0
        loss = (FlowMatchingLoss(LinearPath(), num_classes=n_cls) if method == "reflow"
                else OneStepLoss(num_classes=n_cls))
        trainer = Trainer(copy.deepcopy(teacher.model).train(), loss, data.sampler(), tcfg,
                          progress=progress)
    result = trainer.fit()
    network = trainer.sampling_model.eval()
    if adapter is not None:                   # lcm-lora: fold the adapter in for sampling
        from monge.distill.lora import adapter_fraction, merged_copy

        record["adapter_fraction"] = adapter_fraction(adapter, name="lcm")
        network = EndpointNetwork(merged_copy(adapter)).eval()
    teacher_nfe = data.teacher_nfe if data is not None else int(
        getattr(loss, "teacher_nfe", 0) or steps)
    n_reflow = sum(1 for d in previous or [] if isinstance(d, dict)
                   and d.get("method") == "reflow")
    label = f"reflow-{n_reflow + 2}" if method == "reflow" else method
    return Student(method, label, network, record, result, teacher_nfe,
                   pair_seconds + result.seconds, data, adapter,
                   {"guidance": guidance, "pairs": pairs if data is not None else 0})


def save_student(student: Student, teacher: Trained, checkpoint: str | Path,
                 out: Path) -> Path:
    """Write the student as a run checkpoint in ``out`` (the teacher's metadata, the student's
    weights, its distillation history) and, for lcm-lora, its adapter alone."""
    from monge.train import save_checkpoint

    _, state = load_checkpoint(checkpoint)
    state = {k: v for k, v in state.items() if k not in ("optimizer",)}
    latent = state.get("latent")
    if isinstance(latent, dict) and latent.get("autoencoder"):   # keep the teacher's AE file
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        file = Path(latent["autoencoder"])
        state["latent"] = {**latent, "autoencoder": str(
            file if file.is_absolute() else (folder / file).resolve())}
    previous = state.get("distill", [])
    state["distill"] = [*previous, {"method": student.method, "label": student.label,
                                    "pairs": student.extra["pairs"],
                                    "steps": student.result.steps,
                                    "teacher_nfe": student.teacher_nfe,
                                    "seconds": student.seconds,
                                    "guidance": student.extra["guidance"],
                                    "teacher": str(checkpoint)}]
    if student.method in FLOW_MAP:
        state["student"] = {"kind": "flow-map", "method": student.method,
                            "sampler": FLOW_MAP[student.method], **student.record}
        tensors = {f"model.{k}": v for k, v in teacher.model.state_dict().items()}
        tensors.update({f"flowmap.{k}": v for k, v in student.network.state_dict().items()})
    else:
        state.pop("student", None)
        tensors = {f"model.{k}": v for k, v in student.network.state_dict().items()}
    if student.adapter is not None:
        from monge.distill.lora import save_adapter

        save_adapter(student.adapter, out / "lcm_adapter.safetensors", name="lcm")
    return save_checkpoint(out / "checkpoint.safetensors", tensors, state)


def teacher_training(checkpoint: Path, cfg: Any) -> tuple[int, float | None]:
    """The teacher's training steps and seconds (from its run folder's metrics.json)."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    try:
        seconds = float(json.loads((folder / "metrics.json").read_text())["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        seconds = None
    return cfg.train.steps, seconds
