"""The ``monge`` command: run (train + evaluate + report), sample, eval, ot.

Every user error (bad data, bad config, missing file) is a :class:`~monge.errors.MongeError`;
the commands print its one-line message and exit with code 1, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from monge.cli.classifier_cmd import train_classifier_command
from monge.cli.distill_cmd import distill_command
from monge.cli.dynamics_cmd import dynamics_app
from monge.cli.edit_cmd import edit_app
from monge.cli.errors import OneLineUsageErrors, friendly_errors
from monge.cli.inverse_cmd import diagnose_command, invert_command, steer_command
from monge.cli.likelihood_cmd import likelihood_command
from monge.cli.ot_cmd import ot_command
from monge.cli.pde_cmd import pde_app
from monge.core.devices import resolve_device
from monge.core.io import atomic_path, atomic_write_bytes, ensure_writable_dir
from monge.couplings import RUN_COUPLINGS
from monge.paths import PATHS
from monge.solvers import GRIDS, SOLVERS, parse_grid

GRID_HELP = (f"time grid: {GRIDS.help_text()}; with an argument: karras:RHO, shift:S, "
             "shift:res (S from the data dimension)")

app = typer.Typer(cls=OneLineUsageErrors, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="monge: learn, sample and measure transport between distributions.")


def _threads() -> None:
    import torch
    # Small models on a 2-core machine: one thread per core, and never more than 4 by default.
    torch.set_num_threads(int(os.environ.get("MONGE_THREADS", min(4, os.cpu_count() or 1))))


@app.command()
@friendly_errors
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML config (default: built-in job)")]
    = None,
    source: Annotated[str | None, typer.Option(help="source: built-in name or data file")]
    = None,
    target: Annotated[str | None, typer.Option(help="target: built-in name or data file")]
    = None,
    steps: Annotated[int | None, typer.Option(help="training steps")] = None,
    out: Annotated[str | None, typer.Option(help="output folder")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    coupling: Annotated[str | None, typer.Option(help=" | ".join(RUN_COUPLINGS))] = None,
    path: Annotated[str | None, typer.Option(
        help=f"{PATHS.help_text()} (all but linear and interpolant need --source gaussian)")]
    = None,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoint in --out")]
    = False,
    overwrite: Annotated[bool, typer.Option(
        help="replace what --out holds (by default a non-empty --out is refused)")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Train a transport model, evaluate it across solvers and NFE, and write a report folder."""
    from monge.experiments.config import load_config
    from monge.experiments.run import run_experiment

    _threads()
    overrides: dict[str, Any] = {}
    for key, value in (("source", source), ("target", target), ("train.steps", steps),
                       ("out", out), ("seed", seed), ("coupling", coupling),
                       ("path.name", path)):
        if value is not None:
            overrides[key] = value
    cfg = load_config(config, overrides)
    metrics = run_experiment(cfg, resume=resume, progress=not quiet,
                             device=resolve_device(device), overwrite=overwrite)
    if not quiet and metrics:  # under torchrun only process 0 returns metrics
        _print_evaluations(metrics)
        typer.echo(f"report: {Path(cfg.out) / 'report.md'}")


def _print_evaluations(metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['source']} → {metrics['target']} (held-out floor W2 "
                        f"{metrics['reference_w2']:.4f})")
    for col in ("solver", "NFE", "W2", "W2/floor", "energy"):
        table.add_column(col, justify="right")
    from monge.experiments.report import ratio, solver_label

    for e in metrics["evaluations"]:
        table.add_row(solver_label(e), str(e["nfe"]), f"{e['w2']:.4f}",
                      ratio(e["w2"], metrics["reference_w2"]), f"{e['energy_distance']:.4f}")
    Console().print(table)


def _check_grid_for(grid: str, solvers: list[str]) -> None:
    """A grid must parse, and applies to fixed-step solvers only."""
    from monge.errors import InputError

    parse_grid(grid)
    for name in solvers:
        if grid != "uniform" and SOLVERS.entry(name).factory.adaptive:
            raise InputError(f"--grid: {name} is adaptive and chooses its own steps; a grid "
                             "applies to fixed-step solvers")


@app.command()
@friendly_errors
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    solver: Annotated[str | None, typer.Option(
        help=f"{SOLVERS.help_text()} (default heun; a flow-map student uses its own sampler)")]
    = None,
    nfe: Annotated[int | None, typer.Option(
        help="NFE budget (default 8 for fixed-step solvers, 1 for a flow-map student; dopri5 "
             "is adaptive without it)")]
    = None,
    n: Annotated[int, typer.Option(help="number of samples")] = 1000,
    out: Annotated[Path, typer.Option(help="output .npy file (.npy is added if missing)")]
    = Path("samples.npy"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    source: Annotated[Path | None, typer.Option(
        help="data file of source samples to transport (models trained from a data source; "
             "default: the source the model was trained on, if readable)")] = None,
    label: Annotated[int | None, typer.Option(help="class label (conditional models)")] = None,
    guidance: Annotated[float | None, typer.Option(
        help="classifier-free guidance weight w (1 = conditional, 0 = unconditional; needs "
             "--label and a model trained with train.cond_dropout > 0)")] = None,
    classifier: Annotated[Path | None, typer.Option(
        help="classifier guidance: a file from monge train-classifier (--guidance is then its "
             "scale w >= 0)")] = None,
    grid: Annotated[str, typer.Option(help=GRID_HELP)] = "uniform",
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Draw samples from a trained model and save them as a .npy array."""
    import numpy as np
    import torch

    from monge.errors import InputError
    from monge.experiments.evaluate import check_budget
    from monge.experiments.load import load_trained

    _threads()
    if n < 1:
        raise InputError(f"--n: must be positive, got {n}")
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")  # what np.save writes; say the real name
    ensure_writable_dir(out.parent, "--out")
    if solver is not None:
        adaptive = SOLVERS.entry(solver).factory.adaptive
        check_budget(solver, nfe if nfe is not None or adaptive else 8, "--nfe")
        _check_grid_for(grid, [solver])
    if guidance is not None and label is None:
        raise InputError("--guidance: give --label too (guidance steers toward a class)")
    trained = load_trained(checkpoint, resolve_device(device))
    if trained.flow_map is not None:
        if solver is not None or grid != "uniform" or classifier:
            raise InputError("--solver/--grid/--classifier: this checkpoint is a flow-map "
                             f"student ({trained.student_sampler}) and samples with its own "
                             "sampler; give only --nfe (and --guidance for an lcm student)")
        if guidance is not None and trained.student_guidance is None:
            raise InputError("--guidance: this student has no guidance-weight input (it was "
                             "distilled at a fixed guidance); sample it without --guidance")
        nfe = 1 if nfe is None else nfe
        if nfe < 1:
            raise InputError(f"--nfe: must be a positive integer, got {nfe}")
        solver = trained.student_sampler
    else:
        solver = solver or "heun"
        if nfe is None and not SOLVERS.entry(solver).factory.adaptive:
            nfe = 8
        check_budget(solver, nfe, "--nfe")
    labels = None
    clf = None
    if classifier is not None:
        from monge.guidance import load_classifier

        if label is None or guidance is None:
            raise InputError("--classifier: give --label and --guidance too")
        clf, _ = load_classifier(classifier)
        if not 0 <= label < clf.num_classes:
            raise InputError(f"--label: must be in 0..{clf.num_classes - 1}, got {label}")
        labels = torch.full((n,), label, dtype=torch.long)
    elif label is not None:
        if trained.num_classes is None:
            raise InputError("--label: this model is not class-conditional")
        if not 0 <= label < trained.num_classes:
            raise InputError(f"--label: must be in 0..{trained.num_classes - 1}, got {label}")
        labels = torch.full((n,), label, dtype=torch.long)
    x0 = None
    if source is not None:
        from monge.data import load_dataset

        if trained.cfg.source == "gaussian":
            raise InputError("--source: this model transports Gaussian noise; drop --source")
        ds = load_dataset(source, shape=trained.shape, test_fraction=0.5)
        rows = torch.cat([ds.train, ds.test])
        g = torch.Generator().manual_seed(seed)
        x0 = trained.maps.encode_source(rows[torch.randint(0, rows.shape[0], (n,),
                                                           generator=g)])
    res = trained.sample(n, solver=solver, nfe=nfe, seed=seed, labels=labels, grid=grid,
                         guidance=guidance, classifier=clf, source=x0)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, res.x.float().cpu().numpy())
    calls = (f", {res.network_calls} network calls" if res.network_calls is not None
             and res.network_calls != res.nfe else "")
    extra = f", grid {grid}" if grid != "uniform" else ""
    extra += f", guidance w={guidance:g}" if guidance is not None else ""
    typer.echo(f"wrote {n} samples of shape {tuple(res.x.shape[1:])} to {out} "
               f"({solver}, NFE {res.nfe}{calls}{extra})")


@app.command("eval")
@friendly_errors
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    solver: Annotated[list[str] | None, typer.Option(
        help=f"solver(s) to evaluate: {SOLVERS.help_text()}")] = None,
    nfe: Annotated[list[int] | None, typer.Option(help="NFE budget(s)")] = None,
    n: Annotated[int | None, typer.Option(help="evaluation samples")] = None,
    out: Annotated[Path | None, typer.Option(help="write the records as JSON")] = None,
    grid: Annotated[str, typer.Option(help=GRID_HELP)] = "uniform",
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Evaluate a trained model against held-out target data (W2, energy distance)."""
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.config import SolverSpec
    from monge.experiments.evaluate import check_budget, evaluate
    from monge.experiments.load import data_fingerprint, load_trained
    from monge.metrics import wasserstein2

    _threads()
    if n is not None and n < 2:
        raise InputError(f"--n: need at least 2 evaluation samples, got {n}")
    for s in solver or []:
        SOLVERS.canonical(s)
        for budget in nfe or [8]:
            check_budget(s, None if SOLVERS.entry(s).factory.adaptive else budget, "--nfe")
    if grid != "uniform" and not solver:
        raise InputError("--grid: give --solver too (the grid applies to the solvers named)")
    _check_grid_for(grid, solver or [])
    if out is not None:
        ensure_writable_dir(out.parent, "--out")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    if nfe and not solver and trained.flow_map is None:
        raise InputError("--nfe: give --solver too (the budgets apply to the solvers named)")
    cfg = trained.cfg
    specs = cfg.eval.solvers
    if solver:
        budgets = nfe or [8]
        specs = [SolverSpec(solver=s, nfe=[] if SOLVERS.entry(s).factory.adaptive else budgets,
                            grid=grid) for s in solver]
    tgt = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                       seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    if trained.data_fingerprint and data_fingerprint(tgt) != trained.data_fingerprint:
        typer.echo(f"warning: the target data {cfg.target!r} differs from the data this model "
                   "was trained and split on; the scores below are against the new data",
                   err=True)
    m = min(n or cfg.eval.n_samples, tgt.test.shape[0] // 2)
    g = torch.Generator().manual_seed(cfg.seed + 3)
    if cfg.source == "gaussian":
        x0 = torch.randn(m, *trained.shape, generator=g)
    else:
        src = load_dataset(cfg.source, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                           seed=cfg.seed + 1, test_fraction=cfg.data.test_fraction)
        x0 = src.test[:m] if src.test.shape[0] >= m else src.sample(m, g)[0]
        x0 = trained.maps.encode_source(x0)
    cond = ({"y": tgt.test_labels[:m].to(dev)} if trained.num_classes is not None else None)
    frechet = (cfg.eval.frechet if cfg.eval.frechet is not None
               else trained.data_shape == (1, 8, 8))
    if trained.flow_map is not None:
        records = _evaluate_student(trained, x0.to(dev), tgt.test[:m], solver, nfe, frechet)
    else:
        records, _ = evaluate(trained.field, trained.method.initial_state(x0.to(dev),
                                                                          cfg.seed),
                              tgt.test[:m], specs, cond=cond, frechet=frechet, progress=True,
                              decode=trained.maps.decode, model=trained.model_label)
    floor = wasserstein2(tgt.test[:m], tgt.test[m:2 * m])
    typer.echo(f"held-out floor W2 {floor:.4f} ({m} vs {m} samples)")
    unconverged = [r for r in records if r.get("converged") is False]
    for r in unconverged:
        typer.echo(f"warning: {r['solver']} stopped before its tolerance (NFE {r['nfe']}); its "
                   "scores are flagged converged=false", err=True)
    if out is not None:
        atomic_write_bytes(out, json.dumps({"reference_w2": floor, "evaluations": records},
                                           indent=2).encode())


def _evaluate_student(trained: Any, x0: Any, reference: Any, solver: list[str] | None,
                      nfe: list[int] | None, frechet: bool) -> list[dict[str, Any]]:
    """Records of a flow-map student sampled by its own sampler at each NFE (default 1, 2, 4)."""
    from monge.errors import InputError
    from monge.metrics import classifier_frechet_distance, energy_distance, wasserstein2

    if solver:
        raise InputError("--solver: this checkpoint is a flow-map student "
                         f"({trained.student_sampler}) and samples with its own sampler; give "
                         "only --nfe")
    records = []
    for k in nfe or [1, 2, 4]:
        if k < 1:
            raise InputError(f"--nfe: must be a positive integer, got {k}")
        x = trained.sample(x0.shape[0], nfe=k, source=x0).x.float().cpu()
        rec = {"model": trained.model_label, "solver": trained.student_sampler, "nfe": k,
               "w2": wasserstein2(x, reference), "energy_distance": energy_distance(x,
                                                                                    reference)}
        if frechet:
            rec["frechet"] = classifier_frechet_distance(x, reference)
        records.append(rec)
        typer.echo(f"  {trained.student_sampler:>12} NFE {k:>4}: W2 {rec['w2']:.4f}  energy "
                   f"{rec['energy_distance']:.4f}")
    return records


app.command("ot")(friendly_errors(ot_command))
app.command("likelihood")(friendly_errors(likelihood_command))
app.command("train-classifier")(friendly_errors(train_classifier_command))
app.command("distill")(friendly_errors(distill_command))
app.command("invert")(friendly_errors(invert_command))
app.command("diagnose")(friendly_errors(diagnose_command))
app.command("steer")(friendly_errors(steer_command))
app.add_typer(pde_app, name="pde")
app.add_typer(dynamics_app, name="dynamics")
app.add_typer(edit_app, name="edit")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
