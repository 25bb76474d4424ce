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
                      test_fraction=cfg.data.test_fraction, shape=trained.data_shape)
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
        if trained.data_shape == (1, 8, 8) and cfg.target == "digits":
            from monge.metrics import predict_digits

            acc = float((predict_digits(xe) == edit_label).float().mean())
            record["edit_accuracy"] = acc
            line += f", classified as {edit_label}: {100 * acc:.1f}%"
        edited = _npy(edited or out.with_name(out.stem + "_edit.npy"), "--edited")
        _save_npy(edited, xe.numpy())
        typer.echo(f"{line}; written to {edited}")
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())


def diagnose_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    out: Annotated[Path, typer.Option(help="report folder (report.md, metrics.json, "
                                           "conservativeness.png)")] = Path("runs/diagnose"),
    n: Annotated[int, typer.Option(help="points per time (held-out data on the path)")] = 256,
    times: Annotated[str, typer.Option(help="times, comma-separated (t = 1 is data)")]
    = "0.2,0.5,0.8,0.95",
    probes: Annotated[int, typer.Option(help="Hutchinson probes per point (dimension > 16)")]
    = 16,
    seed: Annotated[int, typer.Option(help="seed of the points, probes and loops")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """How conservative a trained field is (Vuong et al. 2025, "what does a trained score
    learn"): the Jacobian asymmetry ‖J − Jᵀ‖/‖J‖ (exact up to dimension 16, Hutchinson above)
    and the normalised loop circulation of the model's score (and velocity) at each time, on
    points x_t of the path between source draws and held-out data. A gradient field (an
    analytic score, ``model.kind: energy``) gives ≈ 0."""
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.metrics import conservativeness_report

    try:
        ts = [float(v) for v in times.split(",")]
    except ValueError:
        raise InputError(f"--times: expected numbers separated by commas, got {times!r}"
                         ) from None
    if not ts or any(not 0.0 < t < 1.0 for t in ts):
        raise InputError(f"--times: every time must lie in (0, 1), got {times!r}")
    if n < 2 or probes < 1:
        raise InputError(f"--n and --probes: must be at least 2 and 1, got {n}, {probes}")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    if trained.flow_map is not None:
        raise InputError("diagnose: a flow-map student has no instantaneous field; use its "
                         "teacher")
    ensure_writable_dir(out, "--out")
    cfg = trained.cfg
    ds = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                      seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    x1 = trained.maps.encode_target(ds.test[:n]).double().to(dev)
    x0 = trained.source_samples(x1.shape[0], seed).double().to(dev)
    cond = ({"y": ds.test_labels[:x1.shape[0]].to(dev)} if trained.num_classes is not None
            else None)
    model = trained.field.double()
    path = trained.method.path.marginal_schedule()

    def points(t: float):
        tt = torch.full((x1.shape[0],), t, dtype=torch.float64, device=dev)
        shape = (-1, *[1] * (x1.ndim - 1))
        return (path.alpha(tt).reshape(shape) * x1 + path.sigma(tt).reshape(shape) * x0)

    samples = [points(t) for t in ts]
    fields = {"velocity": model}
    if cfg.source == "gaussian":
        fields["score"] = model.as_field("score")
    reports = {name: conservativeness_report(fld, samples, ts, probes=probes, generator=seed,
                                             cond=cond) for name, fld in fields.items()}
    rows, record = [], {}
    for name, rep in reports.items():
        record[name] = [{"t": r.t, "asymmetry": r.asymmetry,
                         "asymmetry_std_error": r.asymmetry_std_error,
                         "pooled_asymmetry": r.pooled_asymmetry, "circulation": r.circulation,
                         "planar_curl": r.planar_curl, "radius": r.radius, "method": r.method}
                        for r in rep]
        rows += [f"| {name} | {r.t:g} | {r.asymmetry:.4g} ± {r.asymmetry_std_error:.2g} | "
                 f"{r.pooled_asymmetry:.4g} | {r.circulation:.4g} | {r.method} |" for r in rep]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, rec in record.items():
        axes[0].plot([r["t"] for r in rec], [r["asymmetry"] for r in rec], "o-", label=name)
        axes[1].plot([r["t"] for r in rec], [r["circulation"] for r in rec], "o-", label=name)
    for ax, what in zip(axes, ("Jacobian asymmetry ‖J − Jᵀ‖/‖J‖", "normalised circulation"),
                        strict=True):
        ax.set_xlabel("t (1 = data)")
        ax.set_title(what)
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.legend()
    fig.suptitle(f"conservativeness of {checkpoint}")
    fig.tight_layout()
    fig.savefig(out / "conservativeness.png", dpi=110)
    plt.close(fig)
    kind = cfg.model.kind
    report = "\n".join([
        f"# monge diagnose: {checkpoint}", "",
        f"- model kind `{kind}`, path `{cfg.path.name}`, {x1.shape[0]} points per time on the "
        f"path between source draws and held-out {cfg.target}", "",
        "| field | t | asymmetry (mean ± s.e.) | pooled | circulation | method |",
        "|---|---:|---:|---:|---:|---|", *rows, "",
        "A gradient field gives 0 up to round-off (about 1e-16 in float64). The score of an "
        "affine path is a gradient field exactly when the model is; a non-zero value measures "
        "the rotational part the network learned, which the probability-flow ODE may or may "
        "not feel (see `harmless_error_test`).", "", "![conservativeness](conservativeness.png)",
        ""])
    (out / "report.md").write_text(report)
    atomic_write_bytes(out / "metrics.json", json.dumps(record, indent=2).encode())
    typer.echo("\n".join(rows))
    typer.echo(f"report written to {out / 'report.md'}")


TASKS = ("inpaint", "superres", "deblur", "project", "classify")


def _operator(task: str, shape: tuple[int, ...], mask: Path | None, matrix: Path | None,
              factor: int, blur: float) -> Any:
    """The degradation operator of a task, on one sample's shape (data units)."""
    import numpy as np
    import torch

    from monge.errors import DataError, InputError
    from monge.inverse import AvgPool, GaussianBlur, Mask, Projection, box_mask

    def load(path: Path, what: str) -> Any:
        try:
            return torch.as_tensor(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"{what}: cannot read {path} as a .npy array ({exc})"[:200]
                            ) from None
    if task == "inpaint":
        if mask is not None:
            m = load(mask, "--mask")
            if tuple(m.shape) != shape and not (len(shape) == 3 and tuple(m.shape) ==
                                                (1, *shape[1:])):
                raise InputError(f"--mask: shape {tuple(m.shape)} does not match a sample's "
                                 f"shape {shape}")
            return Mask(m, shape=shape)
        if len(shape) != 3:
            raise InputError("--mask: give the mask of vector data (1 = observed)")
        h, w = shape[1:]
        return box_mask(shape, (h // 4, w // 4, h // 2, w // 2))
    if task == "project":
        if matrix is None:
            raise InputError("--matrix: the project task needs the linear map A (rows × "
                             "data dimension) as .npy")
        a = load(matrix, "--matrix")
        d = int(np.prod(shape))
        if a.ndim != 2 or a.shape[1] != d:
            raise InputError(f"--matrix: expected shape [rows, {d}], got {tuple(a.shape)}")
        return Projection(a, shape=shape)
    if len(shape) != 3:
        raise InputError(f"--task: {task} acts on images; this model's data has shape {shape}")
    return AvgPool(factor, shape=shape) if task == "superres" else GaussianBlur(blur,
                                                                                 shape=shape)


def steer_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    task: Annotated[str, typer.Option(help=" | ".join(TASKS))] = "inpaint",
    method: Annotated[str, typer.Option(
        help="dps | pigdm | flowchef | dflow | flair | replace")] = "flowchef",
    observation: Annotated[Path | None, typer.Option(
        help="observations y (.npy, one row per posterior sample, data units)")] = None,
    mask: Annotated[Path | None, typer.Option(help="inpaint: 0/1 mask of a sample's shape "
                                                   "(default: a centred box hidden)")] = None,
    matrix: Annotated[Path | None, typer.Option(help="project: A, rows × data dimension")]
    = None,
    factor: Annotated[int, typer.Option(help="superres: average-pool factor")] = 2,
    blur: Annotated[float, typer.Option(help="deblur: Gaussian blur σ (pixels)")] = 1.0,
    noise: Annotated[float, typer.Option(help="observation noise σ_y (data units)")] = 0.05,
    label: Annotated[int | None, typer.Option(
        help="class label (a class-conditional model; classify: the target class)")] = None,
    classifier: Annotated[Path | None, typer.Option(
        help="classify: a monge train-classifier file, used on x̂1 at t = 1 (default for "
             "digits: the held-out digits classifier)")] = None,
    n: Annotated[int, typer.Option(help="classify: samples to draw")] = 16,
    step_size: Annotated[float | None, typer.Option(
        help="classify: steering step ζ (default 0.05)")] = None,
    steps: Annotated[int, typer.Option(help="sampler steps")] = 50,
    out: Annotated[Path, typer.Option(help="posterior samples (data units) as .npy")]
    = Path("x.npy"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """One posterior sample per observation row of y = A x + σ_y·n under the model as prior
    (FlowChef, DPS, ΠGDM, D-Flow, FLAIR or hard replacement; :mod:`monge.inverse.posterior`),
    with the data consistency ‖A x − y‖ and the cost. Without ``--observation`` the held-out
    target rows are degraded here (a demo) and the PSNR/RMSE to them is reported too."""
    import numpy as np
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.inverse import (
        POSTERIOR_METHODS,
        Projection,
        check_sigma_y,
        observe,
        posterior_sample,
    )

    if task not in TASKS:
        raise InputError(f"--task: expected one of {', '.join(TASKS)}, got {task!r}")
    if task == "classify":
        _classify(checkpoint, method, label, classifier, n, steps, step_size, out, seed,
                  device)
        return
    if method not in POSTERIOR_METHODS.names():
        raise InputError(f"--method: expected one of {', '.join(POSTERIOR_METHODS.names())}, "
                         f"got {method!r}")
    sigma_y = check_sigma_y(noise, "--noise")
    out = _npy(out, "--out")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    if trained.flow_map is not None:
        raise InputError("steer: a flow-map student has no velocity field; use its teacher")
    if trained.is_latent:
        raise InputError("steer: this is a latent model; A∘decode is not linear, so the linear "
                         "posterior samplers do not apply (the classify task does)")
    shape = trained.shape
    op = _operator(task, shape, mask, matrix, factor, blur)
    truth = None
    if observation is None:
        cfg = trained.cfg
        ds = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                          seed=cfg.seed, test_fraction=cfg.data.test_fraction)
        truth = ds.test[:16].double()
        y = observe(op, truth, sigma_y, torch.Generator().manual_seed(seed))
        labels = ds.test_labels[:16] if ds.test_labels is not None else None
    else:
        try:
            y = torch.as_tensor(np.load(observation, allow_pickle=False)).double()
        except (OSError, ValueError) as exc:
            raise InputError(f"--observation: cannot read {observation} as .npy ({exc})"[:200]
                             ) from None
        if tuple(y.shape[1:]) != tuple(op.output_shape):
            raise InputError(f"--observation: rows of shape {tuple(y.shape[1:])} do not match "
                             f"the {task} operator's output {tuple(op.output_shape)}")
        if not bool(torch.isfinite(y).all()):
            raise InputError("--observation: contains NaN or Inf values")
        labels = None
    cond = None
    if trained.num_classes is not None:
        if label is not None:
            labels = torch.full((y.shape[0],), label, dtype=torch.long)
        if labels is None:
            raise InputError("--label: the model is class-conditional; give the class")
        cond = {"y": labels.to(dev)}
    elif label is not None:
        raise InputError("--label: the model is not class-conditional")
    # the operator on model units: x_data = decode(z) is affine, so A∘decode = A'·z + A·decode(0)
    maps = trained.maps
    if maps.target.is_identity and maps.data_scale == 1.0:
        op_m, y_m = op, y
    else:
        d = int(np.prod(shape))
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        zero = torch.zeros(1, *shape, dtype=torch.float64)
        offset = op.forward(maps.decode(zero)).flatten(1)
        cols = op.forward(maps.decode(basis)).flatten(1) - offset
        op_m = Projection(cols.T.contiguous(), shape=shape)
        y_m = y.flatten(1) - offset
    model = trained.field.double()
    # ΠGDM's guidance factor σ²λ̇ ≈ 2/t amplifies a learned network's Jacobian near t = 0
    # (PSNR 5 dB on digits from t = 0, 18.6 dB from t = 0.01: benchmarks/inverse_digits.py), so
    # it starts at t = 0.01 here; the other methods start at 0
    grid = (torch.linspace(0.01, 1.0, steps + 1, dtype=torch.float64) if method == "pigdm"
            else None)
    res = posterior_sample(model, op_m, y_m.to(dev), sigma_y, method,
                           steps=None if grid is not None else steps, grid=grid, cond=cond,
                           generator=seed)
    x = maps.decode(res.x).cpu()
    _save_npy(out, x.float().numpy())
    resid = (op.forward(x) - y).flatten(1).norm(dim=1)
    record: dict[str, Any] = {"task": task, "method": method, "rows": x.shape[0],
                              "sigma_y": sigma_y, "nfe": res.nfe,
                              "gradient_calls": res.gradient_calls, "seconds": res.seconds,
                              "consistency": float(resid.mean()),
                              "consistency_expected": sigma_y * float(
                                  np.sqrt(np.prod(op.output_shape)))}
    line = (f"{x.shape[0]} posterior samples ({method}, {task}) written to {out}; "
            f"‖Ax − y‖ {record['consistency']:.4g} (σ_y·√m = "
            f"{record['consistency_expected']:.4g}); NFE {res.nfe}, {res.gradient_calls} "
            f"gradient calls, {res.seconds:.2f} s")
    if truth is not None:
        mse = (x - truth).flatten(1).pow(2).mean(1)
        peak = float(truth.max() - truth.min())
        psnr = float((10 * torch.log10(peak ** 2 / mse.clamp_min(1e-12))).mean())
        record.update(rmse=float(mse.mean().sqrt()), psnr=psnr)
        line += f"; against the held-out truth: RMSE {record['rmse']:.4g}, PSNR {psnr:.2f} dB"
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
    typer.echo(line)


def _classify(checkpoint: Path, method: str, label: int | None, classifier: Path | None,
              n: int, steps: int, step_size: float | None, out: Path, seed: int,
              device: str) -> None:
    """``monge steer --task classify``: classifier steering (:mod:`monge.inverse.steering`)."""
    import torch

    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.inverse.steering import STEERING_METHODS, classifier_steer

    if method not in STEERING_METHODS:
        raise InputError(f"--method: the classify task steers with {' or '.join(STEERING_METHODS)}"
                         f", got {method!r}")
    if label is None:
        raise InputError("--label: the classify task needs the target class")
    if n < 1:
        raise InputError(f"--n: must be positive, got {n}")
    out = _npy(out, "--out")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    if trained.flow_map is not None:
        raise InputError("steer: a flow-map student has no velocity field; use its teacher")
    digits = trained.data_shape == (1, 8, 8) and trained.cfg.target == "digits"
    if classifier is not None:
        from monge.guidance import load_classifier

        clf, _ = load_classifier(classifier)
        clf = clf.to(dev).double().eval()
        n_cls = clf.num_classes
        logits = lambda x1: clf(x1, torch.ones(x1.shape[0], dtype=x1.dtype,  # noqa: E731
                                               device=x1.device))
        judge = "the steering classifier"
    elif digits:
        from monge.metrics import load_digits_classifier

        clf = load_digits_classifier().to(dev).double().eval()
        n_cls = 10
        maps = trained.maps
        logits = lambda x1: clf(maps.decode(x1).reshape(-1, 1, 8, 8))  # noqa: E731
        judge = "the held-out digits classifier (the one that steers: circular)"
    else:
        raise InputError("--classifier: the classify task needs a classifier (monge "
                         "train-classifier CKPT); only digits have a built-in one")
    if not 0 <= label < n_cls:
        raise InputError(f"--label: must be in 0..{n_cls - 1}, got {label}")
    cond = None
    if trained.num_classes is not None:       # steer the unconditional model (null class)
        cond = {"y": torch.full((n,), trained.num_classes, dtype=torch.long, device=dev)}
    x0 = trained.method.initial_state(trained.source_samples(n, seed).to(dev), seed).double()
    res = classifier_steer(trained.field.double(), logits, label, x0, method=method,
                           steps=steps, step_size=0.05 if step_size is None else step_size,
                           cond=cond)
    with torch.no_grad():
        hit = float((logits(res.x).argmax(1) == label).double().mean())
    x = trained.maps.decode(res.x).cpu()
    _save_npy(out, x.float().numpy())
    record = {"task": "classify", "method": method, "label": label, "rows": n,
              "nfe": res.nfe, "gradient_calls": res.gradient_calls, "seconds": res.seconds,
              "accuracy": hit, "judged_by": judge}
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
    typer.echo(f"{n} samples steered toward class {label} ({method}) written to {out}; "
               f"classified as {label} by {judge}: {100 * hit:.1f}%; NFE {res.nfe}, "
               f"{res.gradient_calls} gradient calls, {res.seconds:.2f} s")
