"""The training loop: AdamW, warm-up + cosine learning rate, clipping, EMA, logs and checkpoints.

One loop serves every objective: it needs a model, a loss module ``loss(model, x0, x1, y1,
generator) -> LossOutput`` and a batch sampler ``sample_batch(n, generator) -> (x0, x1, y1)``.
Every random draw (batches, times, label dropout) comes from one ``torch.Generator`` whose state is
checkpointed, so ``fit(resume=True)`` continues bit-for-bit: N steps + resume + N steps gives the
same weights as 2N steps.

Under torch.distributed (see :mod:`monge.train.distributed`) every process runs this same loop on
a DDP-wrapped model with its own generator (seed + rank); process 0 writes logs and checkpoints,
which hold every rank's generator state so that a multi-process resume is exact too.

Minibatch-OT couplings (exact, Sinkhorn, label OT, immiscible assignment: the couplings in
:data:`monge.couplings.prefetch.PREFETCH_COUPLINGS`, which read neither the model nor the step)
are computed ahead: batches and their pairing come from a second generator, the data stream,
in a background thread (:class:`~monge.couplings.prefetch.PrefetchedPairs`) while the current
step trains (Tong et al. 2024 for OT-CFM; the overlap is what makes minibatch OT nearly free).
The data stream's state after the last batch trained on is checkpointed as well, so pairs,
weights and resumes are identical with ``prefetch=True`` and ``prefetch=False`` (the same stream
computed inline).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from monge.core.checks import make_generator
from monge.couplings.base import IndependentCoupling
from monge.couplings.prefetch import PrefetchedPairs, prefetchable
from monge.errors import DataError, InputError
from monge.train import distributed
from monge.train.checkpoint import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)

BatchSampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor, Tensor | None]]

CHECKPOINT_NAME = "checkpoint.safetensors"
LOG_NAME = "log.jsonl"
#: the data stream of a prefetched coupling is seeded with ``seed + rank + DATA_SEED_OFFSET``
DATA_SEED_OFFSET = 0x5EED


@dataclass
class TrainerConfig:
    """Optimisation settings.

    Attributes:
        steps: total optimisation steps.
        batch_size: examples per step (per process under DDP).
        lr: peak learning rate (AdamW).
        weight_decay, betas: AdamW settings.
        warmup_steps: linear warm-up length.
        schedule: ``cosine`` (decay to ``lr·min_lr_ratio`` at the last step) or ``constant``.
        grad_clip: max global gradient norm (None: no clipping).
        ema_decay: EMA decay of the weights used for sampling (0 disables EMA).
        checkpoint_every: write a checkpoint every N steps (and at the end).
        log_every: write a JSONL log row every N steps.
        seed: seed of the training generator.
    """

    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    log_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise InputError("trainer: steps and batch_size must be positive")
        if self.lr <= 0:
            raise InputError(f"trainer: lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"trainer: schedule must be 'cosine' or 'constant', got "
                             f"{self.schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"trainer: ema_decay must be in [0, 1), got {self.ema_decay}")

    def lr_at(self, step: int) -> float:
        """Learning rate used for optimisation step ``step`` (0-based)."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (self.lr - floor) * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """Summary of a ``fit`` call."""

    steps: int
    final_loss: float
    seconds: float
    resumed_from: int | None
    losses: list[tuple[int, float]] = field(default_factory=list)


def ema_with_warmup(decay: float):
    """EMA update for ``AveragedModel`` whose decay ramps up as min(decay, (1 + n)/(10 + n)).

    With a fixed decay of 0.999 a short run's EMA would still carry much of the random
    initialisation; the warm-up (as in common diffusion codebases) lets the average track the
    weights early on.
    """
    def update(ema_params: list[Tensor], params: list[Tensor], n_averaged: Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        floats = [(e, p) for e, p in zip(ema_params, params, strict=True)
                  if e.is_floating_point() or e.is_complex()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], 1.0 - d)
        for e, p in zip(ema_params, params, strict=True):
            if not (e.is_floating_point() or e.is_complex()):
                e.copy_(p)               # integer buffers (counters, lookup tables) are copied
    return update


def _is_main() -> bool:
    return distributed.current().is_main


class Trainer:
    """Train ``model`` on ``loss`` with batches from ``sample_batch``.

    Args:
        model: the network (``forward(x, t, **cond)``); may be DDP-wrapped.
        loss: objective module, e.g. :class:`~monge.train.losses.FlowMatchingLoss`.
        sample_batch: ``(n, generator) -> (x0, x1, y1)`` drawing independent minibatches.
        config: :class:`TrainerConfig`.
        out_dir: folder for ``checkpoint.safetensors`` and ``log.jsonl`` (None: keep nothing).
        metadata: JSON-serialisable description stored in the checkpoint (model and data specs,
            path, target...) so that the checkpoint can be rebuilt and sampled on its own.
        progress: show a rich progress bar (loss, it/s, ETA).
        device: device of the training generator (default: the model's).
        prefetch: for a prefetchable coupling (``loss.coupling`` in
            :data:`~monge.couplings.prefetch.PREFETCH_COUPLINGS`), compute the next batches'
            pairing in a background thread (``None``/``True``, the default) or inline
            (``False``); both draw batches and pairs from the data stream, so they train
            identical weights. Other couplings are paired inside the loss, from the training
            generator, as before (``prefetch=True`` with them is an error). ``sample_batch``
            must then draw only from the generator it is given.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, sample_batch: BatchSampler,
                 config: TrainerConfig, out_dir: str | Path | None = None,
                 metadata: dict[str, Any] | None = None, progress: bool = True,
                 device: torch.device | str | None = None, prefetch: bool | None = None):
        self.model, self.loss, self.sample_batch, self.config = model, loss, sample_batch, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = metadata or {}
        self.progress = progress
        params = list(model.parameters())
        self.device = torch.device(device) if device is not None else params[0].device
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay)
        self.ema = (AveragedModel(self.base_model, multi_avg_fn=ema_with_warmup(
            config.ema_decay), use_buffers=True) if config.ema_decay > 0 else None)
        self.dist = distributed.current()
        self.generator = make_generator(config.seed + self.dist.rank, self.device)
        self.step = 0
        coupling = getattr(loss, "coupling", None)
        if prefetch and not prefetchable(coupling):
            raise InputError(f"prefetch: the loss's coupling {coupling!r} cannot be computed "
                             "ahead (it is not a model-independent OT coupling)")
        self.pairs_ahead = prefetchable(coupling)
        self.prefetch = self.pairs_ahead and prefetch is not False
        self.data_generator = (make_generator(config.seed + self.dist.rank + DATA_SEED_OFFSET,
                                              self.device) if self.pairs_ahead else None)
        self._pairs: PrefetchedPairs | None = None

    @property
    def base_model(self) -> nn.Module:
        """The model without a DDP wrapper."""
        return getattr(self.model, "module", self.model)

    @property
    def sampling_model(self) -> nn.Module:
        """EMA weights when EMA is on, else the live model."""
        return self.ema.module if self.ema is not None else self.base_model

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.base_model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt_t, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors.update(opt_t)
        states = distributed.gather_tensor(self.generator.get_state().to(self.device),
                                           self.dist)
        tensors.update({f"rng.train.{r}": st.cpu() for r, st in enumerate(states)})
        if self.data_generator is not None:
            data = (self._pairs.state() if self._pairs is not None
                    else self.data_generator.get_state())
            states = distributed.gather_tensor(data.to(self.device), self.dist)
            tensors.update({f"rng.data.{r}": st.cpu() for r, st in enumerate(states)})
        tensors["rng.torch"] = torch.get_rng_state()
        if isinstance(self.loss, torch.nn.Module):   # a loss's running statistics
            tensors.update({f"loss.{k}": v.detach().cpu().clone()
                            for k, v in self.loss.named_buffers()})
        state = {"step": self.step, "trainer": asdict(self.config), "optimizer": opt_meta,
                 **self.metadata}
        return tensors, state

    def save(self) -> Path | None:
        """Write the checkpoint now (process 0 only)."""
        if self.checkpoint_path is None:
            return None
        tensors, state = self.state_tensors()  # collective under DDP: every rank takes part
        path = save_checkpoint(self.checkpoint_path, tensors, state) if _is_main() else None
        distributed.barrier(self.dist)
        return path

    def load(self, path: str | Path) -> int:
        """Restore model, EMA, optimizer, RNG and step from a checkpoint; return the step."""
        tensors, state = load_checkpoint(path, device="cpu")
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.base_model.load_state_dict(model_sd)
        if self.ema is not None:
            ema_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            if ema_sd:
                self.ema.load_state_dict(ema_sd)
        optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        key = f"rng.train.{self.dist.rank}"
        if key not in tensors:
            raise DataError(f"{path}: no generator state for rank {self.dist.rank} (checkpoint "
                            "written with fewer processes)")
        self.generator.set_state(tensors[key].to(self.generator.get_state().device))
        if self.data_generator is not None:
            key = f"rng.data.{self.dist.rank}"
            if key not in tensors:
                raise DataError(f"{path}: no data-stream generator state for rank "
                                f"{self.dist.rank} (written without a prefetched OT coupling?)")
            self.data_generator.set_state(
                tensors[key].to(self.data_generator.get_state().device))
        torch.set_rng_state(tensors["rng.torch"])
        if isinstance(self.loss, torch.nn.Module):
            with torch.no_grad():
                for k, buf in self.loss.named_buffers():
                    if f"loss.{k}" in tensors:
                        buf.copy_(tensors[f"loss.{k}"])
        self.step = int(state["step"])
        return self.step

    # --- loop ----------------------------------------------------------------------------------
    def _open_pairs(self) -> PrefetchedPairs:
        """The data stream for this ``fit``: a copy of the data generator owned by the producer
        (the trainer's copy is brought up to date in :meth:`_close_pairs`)."""
        gen = torch.Generator(device=self.data_generator.device)
        gen.set_state(self.data_generator.get_state())
        return PrefetchedPairs(self.sample_batch, self.loss.coupling, self.config.batch_size,
                               seed=gen, depth=2, background=self.prefetch)

    def _close_pairs(self) -> None:
        if self._pairs is not None:
            self._pairs.close()
            self.data_generator.set_state(self._pairs.state())
            self._pairs = None

    def _log_rows_after(self, step: int) -> None:
        """Drop log rows written after ``step`` by a run that was killed (resume appends)."""
        log = self.out_dir / LOG_NAME if self.out_dir else None
        if log is None or not log.exists():
            return
        rows = [r for r in log.read_text().splitlines() if r.strip()]
        kept = [r for r in rows if json.loads(r)["step"] <= step]
        log.write_text("".join(r + "\n" for r in kept))

    def fit(self, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Run the loop to ``config.steps`` (continuing from the checkpoint if ``resume``).

        ``stop_at`` ends the call early after that step (with a checkpoint), leaving the schedule
        unchanged, as an interrupted run would; a later ``fit(resume=True)`` finishes it.
        """
        cfg = self.config
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        resumed_from = None
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            resumed_from = self.load(self.checkpoint_path)
            if _is_main():
                self._log_rows_after(resumed_from)
        elif self.out_dir is not None and _is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / LOG_NAME).write_text("")
        log_fh = (open(self.out_dir / LOG_NAME, "a", encoding="utf-8")
                  if self.out_dir is not None and _is_main() else None)
        self.model.train()
        losses: list[tuple[int, float]] = []
        t_start = time.perf_counter()
        t_last, step_last = t_start, self.step
        last_loss = float("nan")
        bar = _ProgressBar(cfg.steps, self.step, enabled=self.progress and _is_main())
        coupling = None
        if self.pairs_ahead:
            # the pairs arrive already coupled: the loss pairs them as drawn during this fit
            self._pairs = self._open_pairs()
            coupling, self.loss.coupling = self.loss.coupling, IndependentCoupling()
        try:
            with bar:
                while self.step < end:
                    lr = cfg.lr_at(self.step)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    if self._pairs is not None:
                        x0, x1, y1 = self._pairs.sample_batch(cfg.batch_size)
                    else:
                        x0, x1, y1 = self.sample_batch(cfg.batch_size, self.generator)
                    out = self.loss(self.model, x0, x1, y1, self.generator)
                    self.optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    grad_norm = (torch.nn.utils.clip_grad_norm_(
                        self.model.parameters(), cfg.grad_clip) if cfg.grad_clip else None)
                    self.optimizer.step()
                    if self.ema is not None:
                        self.ema.update_parameters(self.base_model)
                    self.step += 1
                    last_loss = float(out.loss.detach())
                    if not math.isfinite(last_loss):
                        raise FloatingPointError(
                            f"training diverged: loss is {last_loss} at step {self.step} "
                            f"(lr {lr:.3g}); lower the learning rate or check the data")
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        now = time.perf_counter()
                        ips = (self.step - step_last) / max(now - t_last, 1e-9)
                        t_last, step_last = now, self.step
                        losses.append((self.step, last_loss))
                        if log_fh is not None:
                            row = {"step": self.step, "loss": last_loss, "lr": lr,
                                   "it_per_s": ips, "grad_norm": None if grad_norm is None
                                   else float(grad_norm)}
                            log_fh.write(json.dumps(row) + "\n")
                            log_fh.flush()
                    bar.update(self.step, last_loss)
                    if self.step % cfg.checkpoint_every == 0 and self.step < end:
                        self.save()
            self.save()
        finally:
            self._close_pairs()
            if coupling is not None:
                self.loss.coupling = coupling
            if log_fh is not None:
                log_fh.close()
        return TrainResult(self.step, last_loss, time.perf_counter() - t_start, resumed_from,
                           losses)


class _ProgressBar:
    """A rich progress bar with loss, it/s and ETA (no-op when disabled)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self._p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("loss {task.fields[loss]:.4f}"),
                               TextColumn("{task.fields[ips]:.0f} it/s"), TimeElapsedColumn(),
                               TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self._task = self._p.add_task("train", total=total, completed=start,
                                          loss=float("nan"), ips=0.0)
            self._t0, self._s0 = time.perf_counter(), start

    def __enter__(self):
        if self.enabled:
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._p.__exit__(*exc)
        return False

    def update(self, step: int, loss: float) -> None:
        if self.enabled:
            ips = (step - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
            self._p.update(self._task, completed=step, loss=loss, ips=ips)
