"""The main job: train a transport model between two distributions, evaluate it, write a report.

The parts live in their own modules: :mod:`~monge.experiments.build` (data, path, network,
loss), :mod:`~monge.experiments.evaluate` (solve and measure), :mod:`~monge.experiments.load`
(restore a checkpoint), :mod:`~monge.experiments.report` (Markdown) and
:mod:`~monge.experiments.plots`; this module runs them in order.

``run_experiment(cfg)`` builds data, model, path, coupling and loss from a
:class:`~monge.experiments.config.RunConfig`, trains with the :class:`~monge.train.Trainer`
(checkpoints, resume), samples with every configured solver and NFE budget, measures W2 and energy
distance against held-out target samples (plus a classifier Fréchet distance for digits), and
writes ``metrics.json``, ``report.md`` and PNG figures to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

import monge
from monge.core.io import ensure_writable_dir, remove_stale_temporaries
from monge.errors import ConfigError
from monge.experiments import plots
from monge.experiments.build import Components, batch_sampler, build_components
from monge.experiments.config import RunConfig, SolverSpec
from monge.experiments.evaluate import eval_set, evaluate, path_statistics, solver_sweep
from monge.experiments.latent import prepare_autoencoder
from monge.experiments.load import check_resumable, data_fingerprint
from monge.experiments.report import render_report
from monge.metrics import (
    class_histogram_entropy,
    classifier_frechet_distance,
    energy_distance,
    wasserstein2,
)
from monge.models import count_parameters
from monge.solvers import SOLVERS
from monge.train import CHECKPOINT_NAME, LOG_NAME, Trainer, TrainerConfig, distributed
from monge.train.checkpoint import refresh_json_copy


def _train(cfg: RunConfig, out: Path, *, resume: bool, progress: bool,
           device: str | torch.device, latent: tuple[Any, str | None] = (None, None)
           ) -> tuple[Components, Trainer, Any]:
    """Build the components of ``cfg`` and train them, checkpointing into ``out`` (data-parallel
    over the processes of a torchrun launch); ``latent`` = (autoencoder, its stored file)."""
    info = distributed.current()
    comp = build_components(cfg, device, autoencoder=latent[0])
    eval_set(cfg, comp, device)  # too few held-out rows is an error now, not after training
    tc = cfg.train
    trainer_cfg = TrainerConfig(
        steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
        warmup_steps=tc.warmup_steps, schedule=tc.schedule, grad_clip=tc.grad_clip,
        ema_decay=tc.ema_decay, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
        seed=cfg.seed)
    metadata = {"monge_version": monge.__version__, "run_config": cfg.model_dump(mode="json"),
                "shape": list(comp.model_shape), "num_classes": comp.num_classes,
                "path_state": comp.method.path.export_state(),
                "data_fingerprint": data_fingerprint(comp.target),
                "data_maps": comp.maps.to_json()}
    if latent[0] is not None:
        metadata["latent"] = {"autoencoder": latent[1],
                              "data_shape": list(comp.target.shape)}
    trainer = Trainer(distributed.wrap(comp.model, info), comp.loss,
                      batch_sampler(comp, device), trainer_cfg, out_dir=out, metadata=metadata,
                      progress=progress and info.is_main, device=device)
    if progress and info.is_main:
        print(f"monge run: {cfg.source} -> {cfg.target}, {type(comp.model).__name__} "
              f"({count_parameters(comp.model):,} parameters), path {cfg.path.name}, coupling "
              f"{cfg.coupling}, {tc.steps} steps"
              + (f" × {info.world_size} processes" if info.enabled else "") + f", output {out}")
    return comp, trainer, trainer.fit(resume=resume)


def _latent_floor(latent: tuple[Any, str | None], comp: Components, ev: Any,
                  frechet: bool) -> dict[str, Any]:
    """The autoencoder's floor: held-out reconstructions measured like generated samples (no
    latent flow can beat its decoder's reconstructions)."""
    from monge.experiments.evaluate import measure
    from monge.latent import reconstruction_score

    ae, file = latent
    score = reconstruction_score(ae, comp.target.test)
    with torch.no_grad():
        recon = comp.maps.latent.decode(ae.encode(ev.ref_a.to(next(ae.parameters()).device)))
    floor = measure(recon.float().cpu(), ev.ref_b, frechet)
    return {"autoencoder": file, "latent_shape": list(comp.model_shape),
            "reconstruction_psnr": score.psnr, "reconstruction_mse": score.mse,
            "mean_image_mse": score.baseline_mse, "reconstruction_floor": floor}


def _distill_students(cfg: RunConfig, out: Path, x_init: torch.Tensor, ev: Any,
                      frechet: bool, decode: Any, progress: bool, device: str | torch.device
                      ) -> dict[str, Any]:
    """Distil the ``distill:`` students from the main model, save each in OUT/students/LABEL,
    and measure them on the evaluation set (records with ``model`` = the student's label)."""
    dc = cfg.distill
    if not dc.methods:
        return {}
    if cfg.path.name != "linear" or cfg.train.prediction != "velocity":
        print(f"distill: skipped (students need the linear path with velocity prediction; "
              f"this run has {cfg.path.name!r}, {cfg.train.prediction!r})")
        return {}
    from monge.experiments.distill import distill, parse_range, save_student
    from monge.experiments.evaluate import measure
    from monge.experiments.load import load_trained
    from monge.solvers import Euler, integrate

    teacher = load_trained(out / CHECKPOINT_NAME, device)
    records: list[dict[str, Any]] = []
    summary, best = [], None
    with torch.no_grad():
        one_euler = decode(integrate(teacher.field, x_init, Euler(), steps=1,
                                     cond=ev.cond).x.float().cpu())
    for method in dc.methods:
        if progress:
            print(f"distilling a {method} student ({dc.steps} steps)")
        student = distill(teacher, method, steps=dc.steps, batch_size=dc.batch_size, lr=dc.lr,
                          pairs=dc.pairs, guidance_range=parse_range(dc.guidance_range),
                          rank=dc.rank, seed=cfg.seed, pair_folder=out / "students" / "pairs",
                          progress=False)
        folder = out / "students" / student.label
        ensure_writable_dir(folder, "distill")
        save_student(student, teacher, out / CHECKPOINT_NAME, folder)
        for nfe in dc.nfe:
            res = student.sample(teacher, x_init, nfe, ev.cond, cfg.seed)
            x = decode(res.x.float().cpu())
            rec = {"model": student.label, "solver": student.sampler, "nfe": nfe,
                   **measure(x, ev.ref_a, frechet)}
            records.append(rec)
            if nfe == 1 and (best is None or rec["w2"] < best["w2"]):
                best = {"label": student.label, "w2": rec["w2"], "samples": x,
                        "teacher": one_euler}
            if progress:
                print(f"  {student.label:>12} NFE {nfe}: W2 {rec['w2']:.4f}")
        summary.append({"label": student.label, "steps": student.result.steps,
                        "seconds": student.seconds, "teacher_nfe": student.teacher_nfe,
                        "folder": str(folder)})
    return {"records": records, "summary": summary, "best": best}


def _compare_couplings(cfg: RunConfig, main_row: dict[str, Any], out: Path, *, resume: bool,
                       progress: bool, device, latent: tuple[Any, str | None] = (None, None)
                       ) -> list[dict[str, Any]]:
    """Train one model per coupling in ``cfg.compare`` and tabulate few-step W2 and straightness."""
    rows = [main_row]
    for name in cfg.compare.couplings:
        if name == cfg.coupling:
            continue
        sub = cfg.model_copy(update={"coupling": name, "coupling_options": {},
                                     "out": str(out / "compare" / name)})
        if progress:
            print(f"coupling comparison: training with coupling {name!r}")
        ae, file = latent       # the same autoencoder for every coupling (a fair comparison)
        stored = file if file is None or Path(file).is_absolute() else str(
            (out / file).resolve())
        comp, trainer, result = _train(sub, Path(sub.out), resume=resume, progress=progress,
                                       device=device, latent=(ae, stored))
        ev = eval_set(sub, comp, device)
        decode = comp.maps.decode
        field = comp.method.velocity_field(trainer.sampling_model.eval())
        x_init = comp.method.initial_state(ev.x0, sub.seed + 4)
        records, _ = evaluate(field, x_init, ev.ref_a,
                              [SolverSpec(solver="euler", nfe=cfg.compare.nfe)], cond=ev.cond,
                              decode=decode)
        stats, _ = path_statistics(field, x_init, cfg.eval.straightness_steps, ev.cond, decode)
        rows.append(_comparison_row(name, records, stats, result.seconds, result.steps))
    return rows


def _comparison_row(name: str, records: list[dict], stats: dict, seconds: float,
                    steps: int) -> dict[str, Any]:
    return {"coupling": name, "w2": {str(r["nfe"]): r["w2"] for r in records
                                     if r["solver"] == "euler"},
            "straightness": stats["straightness"], "transport_cost": stats["transport_cost"],
            "train_seconds_per_1k": 1000 * seconds / max(steps, 1)}


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check the output folder before any work: never overwrite a run or unrelated files by
    accident, prove the folder writable with free space, and clear temporaries a killed run left.

    Raises:
        ConfigError: the folder holds a run (without ``resume``/``overwrite``) or other files
            (without ``overwrite``); InputError: it cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file, not a folder")
    if out.is_dir() and not (resume or overwrite):
        entries = [p for p in out.iterdir() if not p.name.startswith(".monge-write-probe.")]
        if (out / CHECKPOINT_NAME).exists():
            raise ConfigError(f"--out: {out} already holds a run; pass --resume to continue it "
                              "or --overwrite to replace it")
        if entries:
            raise ConfigError(f"--out: {out} is not empty ({len(entries)} entries); choose a new "
                              "folder or pass --overwrite")
    ensure_writable_dir(out, "--out")
    remove_stale_temporaries(out)


def run_experiment(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
                   device: str | torch.device = "cpu", overwrite: bool = False
                   ) -> dict[str, Any]:
    """Train, evaluate and report. Returns the metrics written to ``metrics.json``.

    Under ``torchrun`` every process trains (DDP); process 0 alone evaluates and writes the
    report, and the others return an empty dict. The output folder is checked first
    (:func:`prepare_run_folder`), and the data's evaluation split before training starts.
    """
    info = distributed.init_from_env(device)
    if info.enabled and torch.device(device).type == "cuda":
        device = f"cuda:{info.local_rank}"
    out = Path(cfg.out)
    if resume and (out / CHECKPOINT_NAME).exists():
        check_resumable(cfg, out / CHECKPOINT_NAME)
    prepare_run_folder(out, resume=resume, overwrite=overwrite)
    if resume and (out / CHECKPOINT_NAME).exists() and info.is_main:
        refresh_json_copy(out / CHECKPOINT_NAME)
    t_start = time.perf_counter()
    latent = prepare_autoencoder(cfg, out, resume=resume, progress=progress and info.is_main,
                                 device=device)
    comp, trainer, result = _train(cfg, out, resume=resume, progress=progress, device=device,
                                   latent=latent)
    tc = cfg.train
    if not info.is_main:
        return {}

    # ---- evaluation on held-out data -------------------------------------------------------
    ev = eval_set(cfg, comp, device)
    m = ev.ref_a.shape[0]
    decode = comp.maps.decode
    field = comp.method.velocity_field(trainer.sampling_model.eval())
    x_init = comp.method.initial_state(ev.x0, cfg.seed + 4)
    frechet = cfg.eval.frechet if cfg.eval.frechet is not None else comp.target.shape == (1, 8, 8)
    if progress:
        print(f"evaluating on {m} held-out target samples")
    evaluations, samples = evaluate(field, x_init, ev.ref_a, cfg.eval.solvers, cond=ev.cond,
                                    frechet=frechet, progress=progress, decode=decode)
    reference = {"reference_w2": wasserstein2(ev.ref_a, ev.ref_b),
                 "reference_energy_distance": energy_distance(ev.ref_a, ev.ref_b)}
    if frechet:
        reference["reference_frechet"] = classifier_frechet_distance(ev.ref_a, ev.ref_b)
        reference["reference_class_entropy"] = class_histogram_entropy(ev.ref_a)
    path_stats, traj = path_statistics(field, x_init, cfg.eval.straightness_steps, ev.cond,
                                       decode)
    sweep: list[dict[str, Any]] = []
    if cfg.eval.sweep_nfe:
        k = min(cfg.eval.sweep_samples, m)
        names = [n for n in SOLVERS.names() if not SOLVERS.entry(n).factory.adaptive
                 and (cfg.source == "gaussian" or not SOLVERS.entry(n).factory.stochastic)]
        if progress:
            print(f"every-solver table: {len(names)} solvers at NFE {cfg.eval.sweep_nfe}, "
                  f"{k} samples")
        sweep = solver_sweep(field, x_init[:k], ev.ref_a[:k], cfg.eval.sweep_nfe, names,
                             grid=cfg.eval.sweep_grid,
                             cond={kk: v[:k] for kk, v in ev.cond.items()} if ev.cond else None,
                             frechet=frechet, decode=decode)

    metrics: dict[str, Any] = {
        "source": cfg.source, "target": cfg.target, "path": cfg.path.name,
        "coupling": cfg.coupling, "prediction": tc.prediction, "steps": result.steps,
        "final_loss": result.final_loss, "train_seconds": result.seconds,
        "resumed_from": result.resumed_from, "n_eval": m, **reference, **path_stats,
        "evaluations": evaluations,
    }
    if sweep:
        metrics.update(solver_sweep=sweep, sweep_samples=min(cfg.eval.sweep_samples, m),
                       sweep_grid=cfg.eval.sweep_grid)
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
                                decode=decode)
            main_records += extra
        main_row = _comparison_row(cfg.coupling, main_records, path_stats, result.seconds,
                                   result.steps)
        metrics["coupling_comparison"] = _compare_couplings(cfg, main_row, out, resume=resume,
                                                            progress=progress, device=device,
                                                            latent=latent)
    if latent[0] is not None:
        metrics["latent"] = _latent_floor(latent, comp, ev, frechet)
    students = _distill_students(cfg, out, x_init, ev, frechet, decode, progress, device)
    if students:
        metrics["evaluations"] = evaluations = evaluations + students["records"]
        metrics["students"] = students["summary"]
    metrics["total_seconds"] = time.perf_counter() - t_start

    # ---- figures and report ----------------------------------------------------------------
    euler = [key for key in samples if key[0] == "euler"]
    shown = max(euler, key=lambda key: key[1]) if euler else ("euler", traj.shape[0] - 1)
    gen = samples.get(shown, traj[-1])
    labels = ev.cond["y"].cpu() if ev.cond else None
    plots.plot_samples(out / "samples.png", gen, ev.ref_a,
                       f"{cfg.source} → {cfg.target}: generated (Euler, NFE {shown[1]}) vs "
                       "held-out", labels=labels,
                       source=None if len(comp.target.shape) == 3 else
                       comp.maps.source.decode(x_init.cpu() / comp.maps.data_scale))
    k = min(cfg.eval.trajectories, m)
    if k > 0:
        plots.plot_trajectories(out / "trajectories.png", traj[:, :k],
                                f"trajectories (Euler, {cfg.eval.straightness_steps} steps); "
                                f"straightness {path_stats['straightness']:.3g}")
    plots.plot_loss(out / "loss.png", out / LOG_NAME)
    if students:
        best = students["best"]
        plots.plot_student(out / "student.png", best["samples"], best["teacher"], ev.ref_a,
                           best["label"], labels=labels)
    if evaluations:
        plots.plot_quality_vs_nfe(out / "quality_vs_nfe.png", evaluations,
                                  reference["reference_w2"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(render_report(cfg, metrics))
    return metrics


