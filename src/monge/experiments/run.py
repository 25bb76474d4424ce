"""The main job: train a transport model between two distributions, evaluate it, write a report.

``run_experiment(cfg)`` builds data, model, path, coupling and loss from a
:class:`~monge.experiments.config.RunConfig`, trains with the :class:`~monge.train.Trainer`
(checkpoints, resume), samples with every configured solver and NFE budget, measures W2 and energy
distance against held-out target samples (plus a classifier Fréchet distance for digits), and
writes ``metrics.json``, ``report.md`` and PNG figures to the output folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import monge
from monge.couplings import make_coupling
from monge.data import Dataset, load_dataset
from monge.errors import ConfigError, DataError, InputError
from monge.experiments import plots
from monge.experiments.config import RunConfig, SolverSpec, parse_config
from monge.experiments.methods import Method, build_method
from monge.metrics import (
    class_histogram_entropy,
    classifier_frechet_distance,
    energy_distance,
    kinetic_energy,
    straightness,
    transport_cost,
    wasserstein2,
)
from monge.models import build_model, count_parameters
from monge.solvers import PIController, SolveResult, integrate, make_solver
from monge.train import CHECKPOINT_NAME, LOG_NAME, Trainer, TrainerConfig, distributed
from monge.train import load_checkpoint as _load_ckpt


@dataclass
class Components:
    """Everything built from a config before training."""

    source: Dataset
    target: Dataset
    method: Method
    model: nn.Module
    loss: nn.Module
    num_classes: int | None


def _model_kwargs(cfg: RunConfig, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    kind = cfg.model.kind
    if kind == "auto":
        kind = "unet" if len(shape) == 3 else "mlp"
    if kind == "mlp":
        return kind, {"hidden": cfg.model.hidden, "depth": cfg.model.depth,
                      "time_dim": cfg.model.time_dim}
    return kind, {"base_channels": cfg.model.base_channels,
                  "channel_mults": tuple(cfg.model.channel_mults)}


def _coupling(cfg: RunConfig):
    try:
        return make_coupling(cfg.coupling, **cfg.coupling_options)
    except InputError as exc:
        raise ConfigError(f"coupling_options: {exc}") from None


def build_components(cfg: RunConfig, device: str | torch.device = "cpu") -> Components:
    """Load the data sets and build model, path, coupling and loss from ``cfg``."""
    target = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    source = load_dataset(cfg.source, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed + 1, test_fraction=cfg.data.test_fraction,
                          shape=target.shape if cfg.source == "gaussian" else None)
    if source.shape != target.shape:
        raise ConfigError(f"source {cfg.source!r} has samples of shape {source.shape} but target "
                          f"{cfg.target!r} has {target.shape}")
    num_classes = None
    if cfg.model.conditional:
        if target.num_classes is None:
            raise ConfigError(f"model.conditional: target {cfg.target!r} has no labels")
        num_classes = target.num_classes
    torch.manual_seed(cfg.seed)
    method = build_method(cfg, target)
    kind, kwargs = _model_kwargs(cfg, target.shape)
    net = build_model(kind, target.shape, num_classes=num_classes, **kwargs)
    model = method.wrap_model(net).to(device)
    loss = method.loss(cfg, _coupling(cfg), num_classes)
    return Components(source, target, method, model, loss, num_classes)


def _batch_sampler(comp: Components, device: torch.device | str):
    source, target = comp.source, comp.target
    labels = target.train_labels
    scale = comp.method.data_scale
    # Keep data on the training device once, so each step only indexes. Labels travel with the
    # batch whenever the target has them: the loss gives them to a conditional model, and
    # label-aware couplings use them either way.
    src = Dataset(source.name, source.train.to(device), source.test, None, None, None)
    tgt = Dataset(target.name, (target.train * scale).to(device), target.test,
                  None if labels is None else labels.to(device), None, target.num_classes)

    def sample_batch(n: int, g: torch.Generator):
        x1, y1 = tgt.sample(n, g)
        x0, _ = src.sample(n, g)
        return x0, x1, y1
    return sample_batch


# --- sampling and evaluation ------------------------------------------------------------------

def steps_for_budget(solver: str, nfe: int) -> int:
    """Number of steps a fixed-step solver can take within an NFE budget (0 if none)."""
    return nfe // make_solver(solver).nfe_per_step


def solve(field: nn.Module, x_init: Tensor, solver: str, *, nfe: int | None = None,
          rtol: float = 1e-5, atol: float = 1e-5, cond: dict[str, Any] | None = None,
          return_trajectory: bool = False) -> SolveResult:
    """Integrate the model's velocity from t = 0 to 1 with a named solver and NFE budget."""
    s = make_solver(solver)
    if s.adaptive and nfe is None:
        return integrate(field, x_init, s, controller=PIController(rtol=rtol, atol=atol),
                         cond=cond, return_trajectory=return_trajectory)
    if nfe is None:
        raise ConfigError(f"solver {solver!r}: give an NFE budget")
    steps = steps_for_budget(solver, nfe)
    if steps < 1:
        raise ConfigError(f"solver {solver!r} needs at least {s.nfe_per_step} NFE per step; "
                          f"budget {nfe} is too small")
    return integrate(field, x_init, s, steps=steps, cond=cond,
                     return_trajectory=return_trajectory)


def evaluate(field: nn.Module, x_init: Tensor, reference: Tensor, specs: list[SolverSpec], *,
             cond: dict[str, Any] | None = None, frechet: bool = False,
             progress: bool = False, data_scale: float = 1.0
             ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], Tensor]]:
    """One record per (solver, NFE): W2, energy distance (and digits Fréchet distance).

    Returns the records and the generated samples keyed by (solver, NFE). Samples are divided
    by ``data_scale`` (a path trained on rescaled data) before they are measured.
    """
    records, samples = [], {}
    jobs = [(s, n) for s in specs for n in (s.nfe or [None])]
    for spec, budget in jobs:
        if budget is not None and steps_for_budget(spec.solver, budget) < 1:
            continue
        t0 = time.perf_counter()
        res = solve(field, x_init, spec.solver, nfe=budget, rtol=spec.rtol, atol=spec.atol,
                    cond=cond)
        seconds = time.perf_counter() - t0
        x = res.x.float().cpu() / data_scale
        samples[(spec.solver, res.nfe)] = x
        rec: dict[str, Any] = {"solver": spec.solver, "nfe": res.nfe,
                               "w2": wasserstein2(x, reference),
                               "energy_distance": energy_distance(x, reference),
                               "seconds": seconds}
        if make_solver(spec.solver).adaptive:
            rec.update(rtol=spec.rtol, atol=spec.atol, converged=res.converged,
                       rejected=res.n_rejected)
        if frechet:
            rec["frechet"] = classifier_frechet_distance(x, reference)
            rec["class_entropy"] = class_histogram_entropy(x)
        if not all(math.isfinite(v) for v in (rec["w2"], rec["energy_distance"])):
            rec["note"] = "non-finite samples"
        records.append(rec)
        if progress:
            extra = f"  FD {rec['frechet']:.3f}" if frechet else ""
            print(f"  {spec.solver:>8} NFE {res.nfe:>4}: W2 {rec['w2']:.4f}  "
                  f"energy {rec['energy_distance']:.4f}{extra}")
    return records, samples


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
    kind, kwargs = _model_kwargs(cfg, shape)
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


# --- the main job -----------------------------------------------------------------------------

def _train(cfg: RunConfig, out: Path, *, resume: bool, progress: bool,
           device: str | torch.device) -> tuple[Components, Trainer, Any]:
    """Build the components of ``cfg`` and train them, checkpointing into ``out`` (data-parallel
    over the processes of a torchrun launch)."""
    info = distributed.current()
    comp = build_components(cfg, device)
    tc = cfg.train
    trainer_cfg = TrainerConfig(
        steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
        warmup_steps=tc.warmup_steps, schedule=tc.schedule, grad_clip=tc.grad_clip,
        ema_decay=tc.ema_decay, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
        seed=cfg.seed)
    metadata = {"monge_version": monge.__version__, "run_config": cfg.model_dump(mode="json"),
                "shape": list(comp.target.shape), "num_classes": comp.num_classes}
    trainer = Trainer(distributed.wrap(comp.model, info), comp.loss,
                      _batch_sampler(comp, device), trainer_cfg, out_dir=out, metadata=metadata,
                      progress=progress and info.is_main, device=device)
    if progress and info.is_main:
        print(f"monge run: {cfg.source} -> {cfg.target}, {type(comp.model).__name__} "
              f"({count_parameters(comp.model):,} parameters), path {cfg.path.name}, coupling "
              f"{cfg.coupling}, {tc.steps} steps"
              + (f" × {info.world_size} processes" if info.enabled else "") + f", output {out}")
    return comp, trainer, trainer.fit(resume=resume)


def _check_resumable(cfg: RunConfig, ckpt: Path) -> None:
    _, state = _load_ckpt(ckpt)
    stored = parse_config(state.get("run_config"), origin=f"{ckpt} (stored config)")
    if stored.model_dump(exclude={"out"}) != cfg.model_dump(exclude={"out"}):
        raise ConfigError(f"--resume: the config differs from the one stored in {ckpt}; "
                          "use the same options or another --out")


@dataclass
class _EvalSet:
    """Held-out target halves, source starts and conditioning for evaluation."""

    ref_a: Tensor
    ref_b: Tensor
    x0: Tensor
    cond: dict[str, Any] | None


def _eval_set(cfg: RunConfig, comp: Components, device) -> _EvalSet:
    tgt = comp.target
    m = min(cfg.eval.n_samples, tgt.test.shape[0] // 2)
    if m < 8:
        raise DataError(f"{cfg.target}: only {tgt.test.shape[0]} held-out samples; need at "
                        "least 16 for evaluation (use more data or a larger test_fraction)")
    x0 = comp.source.test
    if x0.shape[0] < m:
        x0, _ = comp.source.sample(m, torch.Generator().manual_seed(cfg.seed + 2))
    cond = None
    if comp.num_classes is not None:
        cond = {"y": tgt.test_labels[:m].to(device)}
    return _EvalSet(tgt.test[:m], tgt.test[m:2 * m], x0[:m].to(device), cond)


def _path_statistics(field: nn.Module, x_init: Tensor, steps: int, cond,
                     data_scale: float = 1.0) -> tuple[dict, Any]:
    """Straightness, kinetic energy and transport cost from a fine Euler trajectory (in data
    units: a trajectory in a rescaled space is divided by ``data_scale``)."""
    fine = solve(field, x_init, "euler", nfe=steps, cond=cond, return_trajectory=True)
    traj = fine.trajectory.float().cpu() / data_scale
    stats = {"straightness": straightness(traj, fine.times),
             "kinetic_energy": kinetic_energy(traj, fine.times),
             "transport_cost": transport_cost(traj[0], traj[-1])}
    return stats, traj


def _compare_couplings(cfg: RunConfig, main_row: dict[str, Any], out: Path, *, resume: bool,
                       progress: bool, device) -> list[dict[str, Any]]:
    """Train one model per coupling in ``cfg.compare`` and tabulate few-step W2 and straightness."""
    rows = [main_row]
    for name in cfg.compare.couplings:
        if name == cfg.coupling:
            continue
        sub = cfg.model_copy(update={"coupling": name, "coupling_options": {},
                                     "out": str(out / "compare" / name)})
        if progress:
            print(f"coupling comparison: training with coupling {name!r}")
        comp, trainer, result = _train(sub, Path(sub.out), resume=resume, progress=progress,
                                       device=device)
        ev = _eval_set(sub, comp, device)
        scale = comp.method.data_scale
        field = comp.method.velocity_field(trainer.sampling_model.eval())
        x_init = comp.method.initial_state(ev.x0, sub.seed + 4)
        records, _ = evaluate(field, x_init, ev.ref_a,
                              [SolverSpec(solver="euler", nfe=cfg.compare.nfe)], cond=ev.cond,
                              data_scale=scale)
        stats, _ = _path_statistics(field, x_init, cfg.eval.straightness_steps, ev.cond, scale)
        rows.append(_comparison_row(name, records, stats, result.seconds, result.steps))
    return rows


def _comparison_row(name: str, records: list[dict], stats: dict, seconds: float,
                    steps: int) -> dict[str, Any]:
    return {"coupling": name, "w2": {str(r["nfe"]): r["w2"] for r in records
                                     if r["solver"] == "euler"},
            "straightness": stats["straightness"], "transport_cost": stats["transport_cost"],
            "train_seconds_per_1k": 1000 * seconds / max(steps, 1)}


def run_experiment(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train, evaluate and report. Returns the metrics written to ``metrics.json``.

    Under ``torchrun`` every process trains (DDP); process 0 alone evaluates and writes the
    report, and the others return an empty dict.
    """
    info = distributed.init_from_env(device)
    if info.enabled and torch.device(device).type == "cuda":
        device = f"cuda:{info.local_rank}"
    out = Path(cfg.out)
    if resume and (out / CHECKPOINT_NAME).exists():
        _check_resumable(cfg, out / CHECKPOINT_NAME)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    comp, trainer, result = _train(cfg, out, resume=resume, progress=progress, device=device)
    tc = cfg.train
    if not info.is_main:
        return {}

    # ---- evaluation on held-out data -------------------------------------------------------
    ev = _eval_set(cfg, comp, device)
    m = ev.ref_a.shape[0]
    scale = comp.method.data_scale
    field = comp.method.velocity_field(trainer.sampling_model.eval())
    x_init = comp.method.initial_state(ev.x0, cfg.seed + 4)
    frechet = cfg.eval.frechet if cfg.eval.frechet is not None else comp.target.shape == (1, 8, 8)
    if progress:
        print(f"evaluating on {m} held-out target samples")
    evaluations, samples = evaluate(field, x_init, ev.ref_a, cfg.eval.solvers, cond=ev.cond,
                                    frechet=frechet, progress=progress, data_scale=scale)
    reference = {"reference_w2": wasserstein2(ev.ref_a, ev.ref_b),
                 "reference_energy_distance": energy_distance(ev.ref_a, ev.ref_b)}
    if frechet:
        reference["reference_frechet"] = classifier_frechet_distance(ev.ref_a, ev.ref_b)
        reference["reference_class_entropy"] = class_histogram_entropy(ev.ref_a)
    path_stats, traj = _path_statistics(field, x_init, cfg.eval.straightness_steps, ev.cond,
                                        scale)

    metrics: dict[str, Any] = {
        "source": cfg.source, "target": cfg.target, "path": cfg.path.name,
        "coupling": cfg.coupling, "prediction": tc.prediction, "steps": result.steps,
        "final_loss": result.final_loss, "train_seconds": result.seconds,
        "resumed_from": result.resumed_from, "n_eval": m, **reference, **path_stats,
        "evaluations": evaluations,
    }
    if cfg.compare.couplings and info.enabled:
        print("coupling comparison skipped: it trains single-process models (run without "
              "torchrun to get it)")
    elif cfg.compare.couplings:
        compare_nfe = cfg.compare.nfe
        main_records = [e for e in evaluations if e["solver"] == "euler"
                        and e["nfe"] in compare_nfe]
        missing = sorted(set(compare_nfe) - {e["nfe"] for e in main_records})
        if missing:
            extra, _ = evaluate(field, x_init, ev.ref_a,
                                [SolverSpec(solver="euler", nfe=missing)], cond=ev.cond,
                                data_scale=scale)
            main_records += extra
        main_row = _comparison_row(cfg.coupling, main_records, path_stats, result.seconds,
                                   result.steps)
        metrics["coupling_comparison"] = _compare_couplings(cfg, main_row, out, resume=resume,
                                                            progress=progress, device=device)
    metrics["total_seconds"] = time.perf_counter() - t_start

    # ---- figures and report ----------------------------------------------------------------
    euler = [key for key in samples if key[0] == "euler"]
    shown = max(euler, key=lambda key: key[1]) if euler else ("euler", traj.shape[0] - 1)
    gen = samples.get(shown, traj[-1])
    labels = ev.cond["y"].cpu() if ev.cond else None
    plots.plot_samples(out / "samples.png", gen, ev.ref_a,
                       f"{cfg.source} → {cfg.target}: generated (Euler, NFE {shown[1]}) vs "
                       "held-out", labels=labels,
                       source=None if len(comp.target.shape) == 3 else x_init.cpu() / scale)
    k = min(cfg.eval.trajectories, m)
    if k > 0:
        plots.plot_trajectories(out / "trajectories.png", traj[:, :k],
                                f"trajectories (Euler, {cfg.eval.straightness_steps} steps); "
                                f"straightness {path_stats['straightness']:.3g}")
    plots.plot_loss(out / "loss.png", out / LOG_NAME)
    if evaluations:
        plots.plot_quality_vs_nfe(out / "quality_vs_nfe.png", evaluations,
                                  reference["reference_w2"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(render_report(cfg, metrics))
    return metrics


def _comparison_section(metrics: dict[str, Any]) -> list[str]:
    rows = metrics.get("coupling_comparison")
    if not rows:
        return []
    nfes = list(rows[0]["w2"])
    head = ("| coupling | " + " | ".join(f"W2 NFE {n}" for n in nfes)
            + " | straightness | transport cost | train s / 1k steps |")
    sep = "|---|" + "---:|" * (len(nfes) + 3)
    body = [f"| {r['coupling']} | " + " | ".join(f"{r['w2'][n]:.4f}" for n in nfes)
            + f" | {r['straightness']:.4f} | {r['transport_cost']:.4f} | "
            f"{r['train_seconds_per_1k']:.2f} |" for r in rows]
    return ["## Couplings compared (Euler; same model, steps and data)", "", head, sep, *body,
            "", f"Held-out floor W2 {metrics['reference_w2']:.4f}. Lower straightness means "
            "straighter paths (1-step sampling is exact at 0). The first row's training time "
            "includes one-off start-up costs (imports, first optimiser step).", ""]


def render_report(cfg: RunConfig, metrics: dict[str, Any]) -> str:
    """The Markdown report: set-up, quality-vs-NFE table, path statistics, figures."""
    ev = metrics["evaluations"]
    has_fd = any("frechet" in e for e in ev)
    ref = metrics["reference_w2"]
    head = "| solver | NFE | W2 | W2 / floor | energy distance |" + (
        " Fréchet (classifier) | class entropy |" if has_fd else "")
    sep = "|---|---:|---:|---:|---:|" + ("---:|---:|" if has_fd else "")
    rows = []
    for e in ev:
        row = (f"| {e['solver']} | {e['nfe']} | {e['w2']:.4f} | {e['w2'] / ref:.2f} | "
               f"{e['energy_distance']:.4f} |")
        if has_fd:
            row += f" {e['frechet']:.3f} | {e['class_entropy']:.3f} |"
        rows.append(row)
    floor = (f"- held-out floor: W2 {ref:.4f}, energy distance "
             f"{metrics['reference_energy_distance']:.4f}")
    if has_fd:
        floor += (f", Fréchet {metrics['reference_frechet']:.3f}, class entropy "
                  f"{metrics['reference_class_entropy']:.3f} (log 10 = {math.log(10):.3f})")
    lines = [
        f"# monge run: {cfg.source} → {cfg.target}",
        "",
        f"- path `{cfg.path.name}`, coupling `{cfg.coupling}`, prediction "
        f"`{cfg.train.prediction}`, {metrics['steps']} steps of batch {cfg.train.batch_size} "
        f"({metrics['train_seconds']:.1f} s training, {metrics['total_seconds']:.1f} s total)",
        f"- evaluation: {metrics['n_eval']} generated samples vs {metrics['n_eval']} held-out "
        "target samples (exact W2 by network simplex)",
        floor + " (two independent held-out samples of the same size)",
        "",
        "## Quality vs NFE",
        "",
        head, sep, *rows,
        "",
        "## Paths (Euler, fine grid)",
        "",
        "| straightness | kinetic energy | transport cost E‖x1 − x0‖² |",
        "|---:|---:|---:|",
        f"| {metrics['straightness']:.4f} | {metrics['kinetic_energy']:.4f} | "
        f"{metrics['transport_cost']:.4f} |",
        "",
        *_comparison_section(metrics),
        "## Figures",
        "",
        "![samples](samples.png)",
        "",
        "![trajectories](trajectories.png)",
        "",
        "![quality vs NFE](quality_vs_nfe.png)",
        "",
        "![loss](loss.png)",
        "",
    ]
    return "\n".join(lines)
