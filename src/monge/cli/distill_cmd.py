"""``monge distill``: a few-step student from a trained flow (reflow, one-step distillation)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from monge.core.devices import resolve_device
from monge.core.io import atomic_write_bytes, ensure_writable_dir

METHODS = ("reflow", "onestep", "meanflow", "consistency")
FLOW_MAP = {"meanflow": "flow-map", "consistency": "consistency"}


def distill_command(
    checkpoint: Annotated[Path, typer.Argument(help="teacher: checkpoint.safetensors or its "
                                                    "run folder (linear path, velocity)")],
    method: Annotated[str, typer.Option(
        help=" | ".join(METHODS) + " (meanflow, consistency: a flow-map student)")] = "reflow",
    out: Annotated[Path, typer.Option(help="student run folder (refused if non-empty)")]
    = Path("runs/student"),
    pairs: Annotated[int, typer.Option(help="coupled pairs drawn from the teacher")] = 20000,
    steps: Annotated[int, typer.Option(help="student training steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 256,
    lr: Annotated[float, typer.Option(help="learning rate")] = 5e-4,
    teacher_solver: Annotated[str, typer.Option(help="teacher's solver for the pairs")]
    = "dopri5",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Distil a trained flow into a straighter or one-step student, started from the teacher's
    weights, and write it as an ordinary run folder (``monge sample STUDENT --solver euler
    --nfe 1``). ``reflow``: retrain on the teacher's ODE pairs (Liu et al. 2023), repeat on the
    student for k-rectified flow; ``onestep``: fit z + v(z, 0) to the pairs. The pairs are stored
    in ``OUT/pairs`` and reused when the command is rerun (resumable). ``meanflow`` (Geng et al.
    2025) and ``consistency`` (Song et al. 2023) distil the teacher's velocity into a flow-map
    student trained on source/data batches; ``monge sample STUDENT --nfe K`` jumps in K
    steps."""
    import torch

    from monge.data import load_dataset
    from monge.distill import (
        ConsistencyDistillationLoss,
        FlowMap,
        MeanFlowLoss,
        OneStepLoss,
        TwoTimeMLP,
        consistency_sample,
        flow_map_sample,
        generate_pairs,
    )
    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.metrics import straightness, wasserstein2
    from monge.paths import LinearPath, ModelWrapper
    from monge.solvers import Euler, integrate
    from monge.train import Trainer, TrainerConfig, load_checkpoint, save_checkpoint
    from monge.train.losses import FlowMatchingLoss

    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    for name, value in (("--pairs", pairs), ("--steps", steps), ("--batch-size", batch_size)):
        if value < 1:
            raise InputError(f"{name}: must be positive, got {value}")
    if not lr > 0:
        raise InputError(f"--lr: must be positive, got {lr}")
    dev = resolve_device(device)
    teacher = load_trained(checkpoint, dev)
    cfg = teacher.cfg
    if cfg.path.name != "linear" or cfg.train.prediction != "velocity":
        raise InputError(f"distill: {method} needs a teacher on the linear path with velocity "
                         f"prediction; this one has path {cfg.path.name!r}, prediction "
                         f"{cfg.train.prediction!r}")
    if out.exists() and any(out.iterdir()) and not (out / "pairs").exists():
        raise InputError(f"--out: {out} is not empty; choose another folder")
    ensure_writable_dir(out, "--out")
    say = (lambda *a: None) if quiet else typer.echo
    n_cls = teacher.num_classes

    source = teacher.source_sampler(dev)
    labels = (lambda k, g: torch.randint(0, n_cls, (k,), generator=g).to(dev)) if n_cls else None
    tgt = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                       seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    t0 = time.perf_counter()
    tcfg = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps),
                         ema_decay=0.0, checkpoint_every=10**9, log_every=max(1, steps // 20),
                         seed=seed)
    if method in FLOW_MAP:
        if n_cls is not None:
            raise InputError(f"distill: {method} students of class-conditional teachers are not "
                             "supported yet; use reflow or onestep")
        data_x1 = teacher.maps.encode_target(tgt.train).to(dev)

        def batches(k, g):
            idx = torch.randint(0, data_x1.shape[0], (k,), generator=g).to(dev)
            return source(k, g), data_x1[idx], None
        field = teacher.field
        loss = (MeanFlowLoss(teacher=field) if method == "meanflow"
                else ConsistencyDistillationLoss(field, solver="heun"))
        net = TwoTimeMLP(teacher.shape, hidden=256, depth=3, time_dim=64).to(dev)
        trainer = Trainer(net, loss, batches, tcfg, progress=not quiet)
        data = None
        pair_seconds = 0.0
    else:
        say(f"drawing {pairs} pairs from the teacher ({teacher_solver})")
        data = generate_pairs(teacher.field, source, pairs, solver=teacher_solver, seed=seed,
                              folder=out / "pairs", labels=labels)
        pair_seconds = time.perf_counter() - t0
        student = copy.deepcopy(teacher.model).train()
        loss = (FlowMatchingLoss(LinearPath(), num_classes=n_cls) if method == "reflow"
                else OneStepLoss(num_classes=n_cls))
        trainer = Trainer(student, loss, data.sampler(), tcfg, progress=not quiet)
    result = trainer.fit()
    student = trainer.sampling_model.eval()

    # ---- measure teacher and student on held-out data ----------------------------------------
    m = min(1000, tgt.test.shape[0])
    g = torch.Generator().manual_seed(seed + 7)
    z = source(m, g)
    cond = {"y": tgt.test_labels[:m].to(dev)} if n_cls else None
    rows = []
    fields = {"teacher": teacher.field}
    if method not in FLOW_MAP:
        fields[method] = ModelWrapper(student, teacher.method.path, "velocity")
    with torch.no_grad():
        for name, field in fields.items():
            for nfe in (1, 2, 4):
                x = teacher.maps.decode(integrate(field, z, Euler(), steps=nfe, cond=cond).x)
                rows.append((name, nfe, wasserstein2(x.float().cpu(), tgt.test[:m])))
            traj = integrate(field, z, Euler(), steps=50, cond=cond, return_trajectory=True)
            rows.append((name, "straightness", straightness(traj.trajectory.float().cpu(),
                                                            traj.times)))
        if method in FLOW_MAP:
            fm = FlowMap(student)
            for nfe in (1, 2, 4):
                res = (flow_map_sample(fm, z, nfe) if method == "meanflow" else
                       consistency_sample(fm, z, nfe, torch.Generator().manual_seed(seed)))
                x = teacher.maps.decode(res.x)
                rows.append((method, nfe, wasserstein2(x.float().cpu(), tgt.test[:m])))
            rows.append((method, "straightness", float("nan")))
            fields[method] = None
    pair_cost = (float(((data.x1 - data.x0) ** 2).flatten(1).sum(1).mean())
                 if data is not None else float("nan"))

    # ---- the student checkpoint: the teacher's metadata, the student's weights --------------
    _, state = load_checkpoint(checkpoint)
    state = {k: v for k, v in state.items() if k not in ("optimizer",)}
    previous = state.get("distill", [])
    teacher_nfe = data.teacher_nfe if data is not None else int(
        getattr(loss, "teacher_nfe", 0) or steps)  # MeanFlow: one teacher call per step
    n_reflow = sum(1 for d in previous if isinstance(d, dict) and d.get("method") == "reflow")
    label = f"reflow-{n_reflow + 2}" if method == "reflow" else method
    state["distill"] = [*previous, {"method": method, "label": label,
                                    "pairs": pairs if data else 0,
                                    "steps": steps, "teacher_nfe": teacher_nfe,
                                    "teacher": str(checkpoint)}]
    tensors = {f"model.{k}": v for k, v in teacher.model.state_dict().items()}
    if method in FLOW_MAP:
        state["student"] = {"kind": "flow-map", "method": method, "sampler": FLOW_MAP[method],
                            "config": student.config}
        tensors.update({f"flowmap.{k}": v for k, v in student.state_dict().items()})
    else:
        tensors = {f"model.{k}": v for k, v in student.state_dict().items()}
    save_checkpoint(out / "checkpoint.safetensors", tensors, state)
    table = ["| model | NFE 1 | NFE 2 | NFE 4 | straightness |", "|---|---:|---:|---:|---:|"]
    for name in fields:
        vals = {r[1]: r[2] for r in rows if r[0] == name}
        table.append(f"| {name} | {vals[1]:.4f} | {vals[2]:.4f} | {vals[4]:.4f} | "
                     f"{vals['straightness']:.4f} |")
    floor = wasserstein2(tgt.test[:m // 2], tgt.test[m // 2:m])
    source_line = (f"- {pairs} pairs from the teacher ({teacher_solver}, {data.teacher_nfe} "
                   f"teacher NFE, {pair_seconds:.1f} s); pair transport cost E‖Z1 − Z0‖² = "
                   f"{pair_cost:.4f}" if data is not None else
                   f"- flow-map student ({FLOW_MAP[method]} sampler) trained on source/data "
                   f"batches against the teacher's velocity ({teacher_nfe} teacher NFE)")
    report = "\n".join([
        f"# monge distill: {label} from {checkpoint}", "",
        source_line,
        f"- student: {result.steps} steps of batch {batch_size} from the teacher's weights "
        f"({result.seconds:.1f} s), final loss {result.final_loss:.4g}",
        f"- W2 on {m} held-out samples (Euler); held-out floor at half that size {floor:.4f}",
        "", *table, ""])
    (out / "report.md").write_text(report)
    metrics = {"method": label, "pairs": pairs if data else 0, "teacher_nfe": teacher_nfe,
               "pair_cost": pair_cost, "train_seconds": result.seconds,
               "evaluations": [{"model": r[0], "nfe": r[1], "w2": r[2]} for r in rows
                               if r[1] != "straightness"],
               "straightness": {r[0]: r[2] for r in rows if r[1] == "straightness"}}
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    say("\n".join(table))
    how = "--nfe 1" if method in FLOW_MAP else "--solver euler --nfe 1"
    typer.echo(f"student ({label}) written to {out / 'checkpoint.safetensors'}; sample it with "
               f"monge sample {out} {how}")
