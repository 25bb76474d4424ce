"""``monge invert``: data → source (plain ODE inversion or RF-Inversion), the reconstruction
error, and editing by re-generating under another class (the methods are in
:mod:`monge.inverse.inversion`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from monge.core.devices import resolve_device
from monge.core.io import atomic_path, atomic_write_bytes, ensure_writable_dir


def _save_npy(path: Path, array: Any) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _npy(path: Path, what: str) -> Path:
    path = path if path.suffix == ".npy" else path.with_name(path.name + ".npy")
    ensure_writable_dir(path.parent, what)
    return path


def invert_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    data: Annotated[str, typer.Argument(
        help="data: the run's target name (its held-out rows), another built-in name or a data "
             "file (all rows)")],
    out: Annotated[Path, typer.Option(help="inverted points z (model units) as .npy")]
    = Path("z.npy"),
    n: Annotated[int, typer.Option(help="rows to invert (the first n)")] = 256,
    steps: Annotated[int, typer.Option(help="steps of the inversion and of the re-generation "
                                            "(one network call each)")] = 28,
    gamma: Annotated[float, typer.Option(
        help="RF-Inversion's pull toward a fixed noise draw (0 = plain ODE inversion)")] = 0.0,
    solver: Annotated[str, typer.Option(help="plain inversion's fixed-step solver")] = "euler",
    edit_label: Annotated[int | None, typer.Option(
        help="re-generate the inverted points under this class (a class-conditional model)")]
    = None,
    eta: Annotated[float, typer.Option(help="editing: pull toward the original on the first "
                                            "--stop fraction of the steps (RF-Inversion)")]
    = 0.0,
    stop: Annotated[float, typer.Option(help="editing: where the eta pull ends (fraction)")]
    = 0.25,
    transport: Annotated[float, typer.Option(
        help="editing: strength s of the transport-guided pull (OTIP; 0 = off)")] = 0.0,
    edited: Annotated[Path | None, typer.Option(help="edited samples (data units) as .npy")]
    = None,
    seed: Annotated[int, typer.Option(help="seed of RF-Inversion's noise draw")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Invert data to the model's source and report the reconstruction error (re-generating
    from the inverted points with the same steps); with ``--edit-label K``, re-generate under
    class K (pulled toward the original by ``--eta``/``--transport``) and report the distance
    to the original and, for digits, the share classified as K by the held-out classifier."""
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.inverse.inversion import TransportPull, edit, invert

    if n < 1:
        raise InputError(f"--n: must be positive, got {n}")
    out = _npy(out, "--out")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    if trained.flow_map is not None:
        raise InputError("invert: a flow-map student has no velocity field to invert; use its "
                         "teacher")
    cfg = trained.cfg
    if edit_label is not None and trained.num_classes is None:
        raise InputError("--edit-label: the model is not class-conditional")
    if edit_label is not None and not 0 <= edit_label < trained.num_classes:
        raise InputError(f"--edit-label: must be in 0..{trained.num_classes - 1}, got "
                         f"{edit_label}")
    if (eta > 0 or transport > 0) and edit_label is None:
        raise InputError("--eta/--transport: they steer an edit; give --edit-label too")
    pull = TransportPull(strength=transport) if transport > 0 else None
    ds = load_dataset(data, n_train=cfg.data.n_train, n_test=cfg.data.n_test, seed=cfg.seed,
                      test_fraction=cfg.data.test_fraction, shape=trained.shape)
    held_out = data == cfg.target
    x = (ds.test if held_out else torch.cat([ds.train, ds.test]))[:n]
    labels = ds.test_labels if held_out else (
        None if ds.train_labels is None else torch.cat([ds.train_labels, ds.test_labels]))
    cond = None
    if trained.num_classes is not None:
        if labels is None:
            raise InputError(f"invert: the model is class-conditional but {data!r} has no "
                             "labels")
        cond = {"y": labels[:x.shape[0]].to(dev)}
    x1 = trained.maps.encode_target(x).to(dev)
    field = trained.field
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        inv = invert(field, x1, steps, gamma=gamma, solver=solver, cond=cond, generator=g)
        back = trained.maps.decode(edit(field, inv.x, steps=steps, cond=cond).x).cpu()
    err = (back - x).flatten(1)
    rmse = float(err.pow(2).mean().sqrt())
    per = err.pow(2).mean(1).sqrt()
    record: dict[str, Any] = {"rows": x.shape[0], "steps": steps, "gamma": gamma,
                              "solver": solver if gamma == 0 else "euler",
                              "nfe": inv.nfe + steps, "reconstruction_rmse": rmse,
                              "reconstruction_rmse_max": float(per.max())}
    _save_npy(out, inv.x.cpu().numpy())
    method = "plain ODE inversion" if gamma == 0 else f"RF-Inversion (gamma {gamma})"
    typer.echo(f"inverted {x.shape[0]} rows of {data} ({method}, {steps} steps) to {out}; "
               f"reconstruction RMSE {rmse:.4g} (max per row {float(per.max()):.4g}), "
               f"{inv.nfe + steps} network calls")
    if edit_label is not None:
        target = {"y": torch.full((x.shape[0],), edit_label, dtype=torch.long, device=dev)}
        with torch.no_grad():
            xe = trained.maps.decode(edit(field, inv.x, x1, steps, eta=eta, stop=stop,
                                          transport=pull, cond=target).x).cpu()
        dist = float((xe - x).flatten(1).pow(2).mean(1).sqrt().mean())
        record.update(edit_label=edit_label, eta=eta, stop=stop, transport=transport,
                      edit_distance_rms=dist)
        line = f"edited to class {edit_label}: RMS distance to the original {dist:.4g}"
        if trained.shape == (1, 8, 8) and cfg.target == "digits":
            from monge.metrics import predict_digits

            acc = float((predict_digits(xe) == edit_label).float().mean())
            record["edit_accuracy"] = acc
            line += f", classified as {edit_label}: {100 * acc:.1f}%"
        edited = _npy(edited or out.with_name(out.stem + "_edit.npy"), "--edited")
        _save_npy(edited, xe.numpy())
        typer.echo(f"{line}; written to {edited}")
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
