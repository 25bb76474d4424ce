"""``monge distill``: a few-step student from a trained flow, written as a run folder with a
report (the methods are in :mod:`monge.experiments.distill`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from monge.core.devices import resolve_device
from monge.core.io import atomic_write_bytes, ensure_writable_dir
from monge.experiments.distill import FLOW_MAP, METHODS


def distill_command(
    checkpoint: Annotated[Path, typer.Argument(help="teacher: checkpoint.safetensors or its "
                                                    "run folder (linear path, velocity)")],
    method: Annotated[str, typer.Option(
        help=" | ".join(METHODS) + " (all but reflow/onestep: a flow-map student)")]
    = "reflow",
    out: Annotated[Path, typer.Option(help="student run folder (refused if non-empty)")]
    = Path("runs/student"),
    pairs: Annotated[int, typer.Option(help="reflow/onestep: coupled pairs drawn from the "
                                            "teacher")] = 20000,
    steps: Annotated[int, typer.Option(help="student training steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 256,
    lr: Annotated[float, typer.Option(help="learning rate")] = 5e-4,
    teacher_solver: Annotated[str, typer.Option(help="teacher's solver for the pairs")]
    = "dopri5",
    guidance: Annotated[float | None, typer.Option(
        help="class-conditional teacher: distil it under classifier-free guidance of this "
             "weight (1 = conditional; not for lcm, which draws w)")] = None,
    guidance_range: Annotated[str, typer.Option(
        help="lcm: the guidance weights w ~ U[LO, HI] the student learns (input to it)")]
    = "1,3",
    rank: Annotated[int, typer.Option(help="lcm-lora: LoRA rank of the adapters")] = 8,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Distil a trained flow into a straighter or few-step student and write it as an
    ordinary run folder with a report. ``reflow``: retrain on the teacher's ODE pairs (Liu et
    al. 2023), rerun on the student for k-rectified flow; ``onestep``: fit z + v(z, 0) to the
    pairs (both sampled with ``monge sample STUDENT --solver euler --nfe 1``; pairs are stored
    in ``OUT/pairs`` and reused on a rerun). Flow-map students, sampled with ``monge sample
    STUDENT --nfe K`` by their own sampler: ``meanflow`` (Geng et al. 2025), ``shortcut``
    (Frans et al. 2024), ``consistency`` (Song et al. 2023), ``lcm`` (Luo et al. 2023: guided
    teacher, the weight w an input of the student), ``lcm-lora`` (LoRA adapters only, saved
    alone in ``OUT/lcm_adapter.safetensors``; needs peft) and ``mdt`` (MDT-dist, Zhou et al.
    2025: velocity matching + velocity distillation)."""
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.distill import distill, parse_range, save_student, teacher_training
    from monge.experiments.load import load_trained
    from monge.metrics import straightness, wasserstein2
    from monge.paths import ModelWrapper
    from monge.solvers import Euler, integrate
    from monge.train import load_checkpoint

    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    w_range = parse_range(guidance_range)
    dev = resolve_device(device)
    teacher = load_trained(checkpoint, dev)
    cfg = teacher.cfg
    if out.exists() and any(out.iterdir()) and not (out / "pairs").exists():
        raise InputError(f"--out: {out} is not empty; choose another folder")
    ensure_writable_dir(out, "--out")
    say = (lambda *a: None) if quiet else typer.echo
    n_cls = teacher.num_classes
    student = distill(teacher, method, steps=steps, batch_size=batch_size, lr=lr, pairs=pairs,
                      teacher_solver=teacher_solver, guidance=guidance, guidance_range=w_range,
                      rank=rank, seed=seed, pair_folder=out / "pairs",
                      previous=load_checkpoint(checkpoint)[1].get("distill", []),
                      progress=not quiet)
    field_t = teacher.field if guidance is None else teacher.guided(guidance)
    tgt = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                       seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    source = teacher.source_sampler(dev)

    # ---- measure teacher and student on held-out data ----------------------------------------
    m = min(1000, tgt.test.shape[0])
    z = source(m, torch.Generator().manual_seed(seed + 7))
    cond = {"y": tgt.test_labels[:m].to(dev)} if n_cls else None
    rows: list[tuple[str, Any, float]] = []
    fields: dict[str, Any] = {"teacher": field_t}
    if method not in FLOW_MAP:
        fields[student.label] = ModelWrapper(student.network, teacher.method.path, "velocity")
    with torch.no_grad():
        for name, fld in fields.items():
            for nfe in (1, 2, 4):
                x = teacher.maps.decode(integrate(fld, z, Euler(), steps=nfe, cond=cond).x)
                rows.append((name, nfe, wasserstein2(x.float().cpu(), tgt.test[:m])))
            traj = integrate(fld, z, Euler(), steps=50, cond=cond, return_trajectory=True)
            rows.append((name, "straightness", straightness(traj.trajectory.float().cpu(),
                                                            traj.times)))
        x100 = teacher.maps.decode(integrate(field_t, z, Euler(), steps=100, cond=cond).x)
        w_teacher100 = wasserstein2(x100.float().cpu(), tgt.test[:m])
    if method in FLOW_MAP:
        for nfe in (1, 2, 4):
            x = teacher.maps.decode(student.sample(teacher, z, nfe, cond, seed).x)
            rows.append((method, nfe, wasserstein2(x.float().cpu(), tgt.test[:m])))
        rows.append((method, "straightness", float("nan")))
        fields[method] = None
    data = student.pairs
    pair_cost = (float(((data.x1 - data.x0) ** 2).flatten(1).sum(1).mean())
                 if data is not None else float("nan"))
    save_student(student, teacher, checkpoint, out)
    label, result, teacher_nfe = student.label, student.result, student.teacher_nfe
    t_steps, t_seconds = teacher_training(checkpoint, cfg)
    seconds = student.seconds
    pair_seconds = seconds - result.seconds
    frac = student.record.get("adapter_fraction")
    adapter_note = (f"- LoRA adapter (rank {rank}) saved alone in lcm_adapter.safetensors: "
                    f"{100 * frac:.2f}% of the model's parameters" if frac is not None else "")
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
                   f"batches against the teacher's velocity ({teacher_nfe} teacher network "
                   f"calls)")
    ratio = (f", {seconds / t_seconds:.2f}× the teacher's {t_seconds:.1f} s" if t_seconds
             else "")
    report = "\n".join([
        f"# monge distill: {label} from {checkpoint}", "",
        source_line,
        f"- student: {result.steps} steps of batch {batch_size} from the teacher's weights "
        f"({result.seconds:.1f} s), final loss {result.final_loss:.4g}",
        f"- training cost: {steps / max(t_steps, 1):.2f}× the teacher's {t_steps} steps, "
        f"{seconds:.1f} s{ratio}",
        *([adapter_note] if adapter_note else []),
        f"- W2 on {m} held-out samples; teacher at 100 NFE (Euler) {w_teacher100:.4f}; "
        f"held-out floor at half that size {floor:.4f}",
        "", *table, ""])
    (out / "report.md").write_text(report)
    metrics = {"method": label, "pairs": pairs if data else 0, "teacher_nfe": teacher_nfe,
               "pair_cost": pair_cost, "train_seconds": result.seconds, "seconds": seconds,
               "teacher_train_steps": t_steps, "teacher_train_seconds": t_seconds,
               "teacher_w2_nfe100": w_teacher100, "floor_w2": floor,
               "evaluations": [{"model": r[0], "nfe": r[1], "w2": r[2]} for r in rows
                               if r[1] != "straightness"],
               "straightness": {r[0]: r[2] for r in rows if r[1] == "straightness"}}
    if frac is not None:
        metrics["adapter_fraction"] = frac
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    say("\n".join(table))
    how = "--nfe 1" if method in FLOW_MAP else "--solver euler --nfe 1"
    typer.echo(f"student ({label}) written to {out / 'checkpoint.safetensors'}; sample it with "
               f"monge sample {out} {how}")
