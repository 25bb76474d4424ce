"""Restore a ``monge run`` checkpoint as a model ready to sample (never unpickles)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from monge.data import Dataset, load_dataset
from monge.errors import ConfigError, DataError, InputError
from monge.experiments.build import DataMaps, model_kwargs
from monge.experiments.config import RunConfig, parse_config
from monge.experiments.evaluate import solve
from monge.experiments.methods import Method, build_method
from monge.models import build_model
from monge.paths import PATHS
from monge.solvers import SOLVERS, SolveResult
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
    maps: DataMaps
    data_fingerprint: str | None = None
    flow_map: nn.Module | None = None
    """A flow-map student (``monge distill --method meanflow|consistency``), else None."""
    student_sampler: str | None = None
    """Its sampler: ``flow-map`` (jumps t → s) or ``consistency`` (jump to 1, re-noise)."""
    student_method: str | None = None
    """The distillation method that produced the student (``meanflow``, ``consistency``)."""
    student_guidance: float | None = None
    """For a student that takes the guidance weight as input (LCM): its default w."""
    model_label: str = "teacher"
    """What evaluation records call this model: ``teacher`` or the last distillation step's
    label (``reflow-2``, ``onestep``, ``meanflow``, ...)."""

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one data sample (an image for a latent model, else :attr:`shape`)."""
        ae = self.maps.latent
        return tuple(ae.image_shape) if ae is not None else self.shape

    @property
    def is_latent(self) -> bool:
        """True for a latent model (the flow transports an autoencoder's latents)."""
        return self.maps.latent is not None

    def guided(self, weight: float, interval: tuple[float, float] = (0.0, 1.0)) -> nn.Module:
        """The velocity field under classifier-free guidance of weight w (1 = conditional)."""
        from monge.guidance import ClassifierFreeGuidance

        if self.num_classes is None:
            raise InputError("--guidance: this model is not class-conditional")
        if not self.cfg.train.cond_dropout > 0:
            raise InputError("--guidance: this model was trained without label dropout "
                             "(train.cond_dropout: 0), so it has no unconditional prediction")
        return ClassifierFreeGuidance(self.field, weight, interval, null_class=self.num_classes)

    def sample(self, n: int, solver: str = "heun", nfe: int | None = 8, seed: int = 0,
               labels: Tensor | None = None, source: Tensor | None = None,
               grid: str = "uniform", guidance: float | None = None,
               classifier: nn.Module | None = None) -> SolveResult:
        """Draw n samples; the source is N(0, I) for a Gaussian source, else ``source``.

        ``grid`` names the time grid; ``guidance`` = w samples with classifier-free guidance
        (w = 1 conditional, 0 unconditional); ``result.network_calls`` counts network
        evaluations (2 per guided evaluation). With ``classifier`` (a noisy classifier),
        ``guidance`` is the classifier-guidance scale instead."""
        device = next(self.model.parameters()).device
        if self.flow_map is not None:
            if classifier is not None:
                raise InputError("--classifier: classifier guidance needs the velocity field; "
                                 "a flow-map student jumps without one")
            return self._sample_student(n, nfe or 1, seed, source, device, labels, guidance)
        if SOLVERS.entry(solver).factory.stochastic and self.cfg.source != "gaussian":
            raise InputError(f"--solver: {solver} simulates the reverse diffusion SDE, which "
                             f"needs a Gaussian source; this model transports "
                             f"{self.cfg.source!r} (use an ODE solver)")
        if source is None:
            source = self.source_samples(n, seed)
        cond = None
        if self.num_classes is not None or classifier is not None:
            if labels is None:
                labels = torch.arange(n) % (self.num_classes or classifier.num_classes)
            cond = {"y": labels.to(device)}
        if classifier is not None:
            from monge.guidance import ClassifierGuidance

            field = ClassifierGuidance(self.field, classifier.to(device), guidance or 0.0)
        else:
            field = self.field if guidance is None else self.guided(guidance)
        with torch.no_grad():
            res = solve(field, self.method.initial_state(source.to(device), seed), solver,
                        nfe=nfe, cond=cond, grid=grid, seed=seed)
        res.x = self.maps.decode(res.x)
        bad = int((~torch.isfinite(res.x)).any(dim=tuple(range(1, res.x.ndim))).sum())
        if bad:
            raise DataError(f"sampling produced {bad} of {n} samples with NaN/Inf values "
                            f"({solver}, NFE {res.nfe}); the model or its checkpoint is broken")
        return res


    def source_samples(self, n: int, seed: int) -> Tensor:
        """n source samples in model units (N(0, I) or the training source)."""
        g = torch.Generator().manual_seed(seed)
        if self.cfg.source == "gaussian":
            return torch.randn(n, *self.shape, generator=g)
        try:
            ds = load_dataset(self.cfg.source, n_train=max(n, 16), n_test=8, seed=seed,
                              test_fraction=self.cfg.data.test_fraction)
        except DataError as exc:
            raise DataError(f"this model transports samples of its source {self.cfg.source!r}"
                            f", which cannot be read from here ({exc})") from None
        return self.maps.encode_source(ds.sample(n, g)[0])

    def source_sampler(self, device: torch.device | str = "cpu"
                       ) -> Callable[[int, torch.Generator], Tensor]:
        """``draw(k, generator)`` → k source samples in model units on ``device``: N(0, I), or
        rows of the training source's split, read once (for loops that draw many batches)."""
        if self.cfg.source == "gaussian":
            return lambda k, g: torch.randn(k, *self.shape, generator=g).to(device)
        try:
            src = load_dataset(self.cfg.source, n_train=self.cfg.data.n_train,
                               n_test=self.cfg.data.n_test, seed=self.cfg.seed + 1,
                               test_fraction=self.cfg.data.test_fraction)
        except DataError as exc:
            raise DataError(f"this model transports samples of its source {self.cfg.source!r}"
                            f", which cannot be read from here ({exc})") from None
        pool = self.maps.encode_source(src.train).to(device)
        return lambda k, g: pool[torch.randint(0, pool.shape[0], (k,), generator=g).to(device)]

    def _sample_student(self, n: int, steps: int, seed: int, source: Tensor | None,
                        device: torch.device, labels: Tensor | None = None,
                        guidance: float | None = None) -> SolveResult:
        from monge.distill import consistency_sample, flow_map_sample

        x = (self.source_samples(n, seed) if source is None else source).to(device)
        cond: dict[str, Tensor] = {}
        if self.num_classes is not None:
            cond["y"] = (torch.arange(n) % self.num_classes if labels is None else labels
                         ).to(device)
        if guidance is not None and self.student_guidance is None:
            raise InputError("--guidance: this student has no guidance-weight input (it was "
                             "distilled at a fixed guidance); sample it without --guidance")
        if self.student_guidance is not None:
            w = self.student_guidance if guidance is None else guidance
            cond["w"] = torch.full((n,), float(w), device=device)
        with torch.no_grad():
            if self.student_sampler == "consistency":
                draw, g = self.source_sampler(device), torch.Generator().manual_seed(seed + 1)
                res = consistency_sample(self.flow_map, x, steps, source=lambda k: draw(k, g),
                                         cond=cond)
            else:
                res = flow_map_sample(self.flow_map, x, steps, cond=cond)
        res.network_calls = res.nfe
        res.x = self.maps.decode(res.x)
        if not bool(torch.isfinite(res.x).all()):
            raise DataError("sampling produced NaN/Inf values; the student checkpoint is "
                            "broken")
        return res


def data_fingerprint(ds: Dataset) -> str:
    """A short SHA-256 of a data set's train and held-out tensors (stored in checkpoints, so
    ``monge eval`` can say when the data behind a run has changed)."""
    h = hashlib.sha256()
    for t in (ds.train, ds.test):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _weights(tensors: dict[str, Tensor], checkpoint: str | Path) -> dict[str, Tensor]:
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in tensors) else "model."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not weights:
        raise DataError(f"{checkpoint}: holds no model weights (no 'model.*' or 'ema.*' tensors)")
    for name, value in weights.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise DataError(f"{checkpoint}: weight {prefix}{name} holds {bad} NaN/Inf values; "
                            "the checkpoint is corrupt (resume from an earlier run or retrain)")
    return weights


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu") -> Trained:
    """Rebuild the model (EMA weights) and path of a ``monge run`` checkpoint.

    Needs only the checkpoint: the stored config, shape and path state (e.g. a kinetic-optimal
    schedule) rebuild the model without reading the training data. Every inconsistency (missing
    keys, weights that do not fit the stored config, non-finite weights) is one ``DataError``.
    """
    tensors, state = _load_ckpt(checkpoint, device="cpu")
    for key in ("run_config", "shape"):
        if key not in state:
            raise DataError(f"{checkpoint}: not a monge run checkpoint (no '{key}' in its "
                            "metadata)")
    cfg = parse_config(state["run_config"], origin=f"{checkpoint} (stored config)")
    shape = state["shape"]
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0
                                                      for d in shape)):
        raise DataError(f"{checkpoint}: stored shape {shape!r} is not a list of positive sizes")
    shape = tuple(shape)
    kind, kwargs = model_kwargs(cfg, shape)
    path_state = state.get("path_state")
    target = None
    if PATHS.entry(cfg.path.name).info.get("needs_data") and not path_state:
        target = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                              seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    method = build_method(cfg, target, path_state=path_state)
    model = method.wrap_model(build_model(kind, shape, num_classes=state.get("num_classes"),
                                          **kwargs))
    try:
        model.load_state_dict(_weights(tensors, checkpoint))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise DataError(f"{checkpoint}: the weights do not fit the stored config ({detail})"
                        ) from None
    model.to(device).eval()
    maps = DataMaps.from_json(state.get("data_maps"), method.data_scale)
    latent = state.get("latent")
    if isinstance(latent, dict) and latent.get("autoencoder"):
        from monge.latent import load_autoencoder

        file = Path(latent["autoencoder"])
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        maps.latent = load_autoencoder(file if file.is_absolute() else folder / file,
                                       device).eval()
        if tuple(maps.latent.latent_shape) != tuple(shape):
            raise DataError(
                f"{checkpoint}: its autoencoder {file} makes latents of shape "
                f"{list(maps.latent.latent_shape)}, but the flow was trained on latents of shape "
                f"{list(shape)}; restore the run's own autoencoder file")
    trained = Trained(cfg, model, method.velocity_field(model), method, shape,
                      state.get("num_classes"), maps, state.get("data_fingerprint"))
    steps = state.get("distill")
    if isinstance(steps, list) and steps and isinstance(steps[-1], dict):
        trained.model_label = str(steps[-1].get("label", steps[-1].get("method", "student")))
    student = state.get("student")
    if isinstance(student, dict) and student.get("kind") == "flow-map":
        try:
            net = _student_network(student, kind, kwargs, shape, state.get("num_classes"))
            net.load_state_dict({k[len("flowmap."):]: v for k, v in tensors.items()
                                 if k.startswith("flowmap.")})
        except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
            raise DataError(f"{checkpoint}: its flow-map student does not load ({exc})"[:300]
                            ) from None
        from monge.distill import FlowMap

        trained.flow_map = FlowMap(net).to(device).eval()
        trained.student_sampler = student.get("sampler", "flow-map")
        trained.student_method = student.get("method")
        w = student.get("guidance")
        trained.student_guidance = float(w) if isinstance(w, int | float) else None
    return trained


def _student_network(student: dict[str, Any], kind: str, kwargs: dict[str, Any],
                     shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """The flow-map student's network: a two-time MLP u(x, t, s), or an endpoint network in
    the teacher's own architecture (with a guidance-weight input for LCM students)."""
    from monge.distill import EndpointNetwork, TwoTimeMLP

    c = student["config"]
    if student.get("network", "two-time") == "endpoint":
        extra = {"guidance_embedding": True} if c.get("guidance_embedding") else {}
        return EndpointNetwork(build_model(kind, shape, num_classes=num_classes, **kwargs,
                                           **extra))
    return TwoTimeMLP(tuple(c["shape"]), hidden=c["hidden"], depth=c["depth"],
                      time_dim=c["time_dim"], num_classes=c.get("num_classes"))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(cfg: RunConfig, ckpt: Path) -> None:
    """Refuse to resume with a config other than the stored one, naming the keys that differ."""
    _, state = _load_ckpt(ckpt)
    stored = parse_config(state.get("run_config"), origin=f"{ckpt} (stored config)")
    old = _flatten(stored.model_dump(mode="json", exclude={"out"}))
    new = _flatten(cfg.model_dump(mode="json", exclude={"out"}))
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(f"{k} ({old.get(k)!r} stored, {new.get(k)!r} now)" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(f"--resume: the config differs from the one stored in {ckpt}: "
                          f"{shown}{more}; use the same options or another --out")
