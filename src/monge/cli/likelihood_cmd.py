"""``monge likelihood``: log-likelihood of data under a trained flow (nats and bits/dim)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from monge.core.devices import resolve_device
from monge.core.io import atomic_path, ensure_writable_dir
from monge.solvers import SOLVERS


def likelihood_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    data: Annotated[str, typer.Argument(
        help="data: the run's target name (its held-out rows are used), another built-in name "
             "or a data file (all rows)")],
    divergence: Annotated[str, typer.Option(help="exact | hutchinson")] = "exact",
    probes: Annotated[int, typer.Option(help="Hutchinson probes K (fixed within the solve)")]
    = 8,
    solver: Annotated[str, typer.Option(help=SOLVERS.help_text())] = "dopri5",
    nfe: Annotated[int | None, typer.Option(help="NFE budget of a fixed-step solver")] = None,
    rtol: Annotated[float, typer.Option(help="adaptive tolerance (rtol = atol)")] = 1e-5,
    n: Annotated[int, typer.Option(help="rows to evaluate (the first n)")] = 1000,
    out: Annotated[Path | None, typer.Option(help="write log p per row (nats) as .npy")] = None,
    seed: Annotated[int, typer.Option(help="seed of the Hutchinson probes")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Mean log-likelihood (nats) and bits/dim of data under a trained flow, by integrating the
    reverse ODE with the divergence (exact, or Hutchinson with a standard error).

    Values are densities in data units: the standardisation stored in the checkpoint is undone
    through its log-Jacobian. Needs a model with a Gaussian source (``source: gaussian``).
    """
    import numpy as np
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.evaluate import check_budget, steps_for_budget
    from monge.experiments.load import load_trained
    from monge.paths import log_likelihood

    if divergence not in ("exact", "hutchinson"):
        raise InputError(f"--divergence: expected exact or hutchinson, got {divergence!r}")
    if probes < 1:
        raise InputError(f"--probes: must be positive, got {probes}")
    if n < 1:
        raise InputError(f"--n: must be positive, got {n}")
    if not 0 < rtol < 1:
        raise InputError(f"--rtol: must lie in (0, 1), got {rtol}")
    s = SOLVERS.entry(solver).factory
    if s.stochastic or getattr(s, "needs_schedule", False):
        raise InputError(f"--solver: {solver} cannot integrate the augmented likelihood ODE "
                         "(it needs a plain velocity field); use dopri5, rk4, heun or euler")
    check_budget(solver, None if s.adaptive and nfe is None else nfe, "--nfe")
    if out is not None:
        if out.suffix != ".npy":
            out = out.with_name(out.name + ".npy")
        ensure_writable_dir(out.parent, "--out")
    dev = resolve_device(device)
    trained = load_trained(checkpoint, dev)
    cfg = trained.cfg
    if trained.is_latent:
        raise InputError("likelihood: this is a latent model; its ODE gives the density of the "
                         "autoencoder's latents, not of the images")
    if cfg.source != "gaussian":
        raise InputError(f"likelihood: this model transports {cfg.source!r}, whose density is "
                         "unknown; the likelihood needs a model trained from source: gaussian")
    ds = load_dataset(data, n_train=cfg.data.n_train, n_test=cfg.data.n_test, seed=cfg.seed,
                      test_fraction=cfg.data.test_fraction, shape=trained.shape)
    held_out = data == cfg.target
    x = ds.test if held_out else torch.cat([ds.train, ds.test])
    labels = ds.test_labels if held_out else (
        None if ds.train_labels is None else torch.cat([ds.train_labels, ds.test_labels]))
    x = x[:n].double()
    cond = None
    if trained.num_classes is not None:
        if labels is None:
            raise InputError(f"likelihood: the model is class-conditional but {data!r} has no "
                             "labels")
        cond = {"y": labels[:n].to(dev)}
    z = trained.maps.encode_target(x)
    scale = trained.maps.target.scale
    log_det = x[0].numel() * math.log(trained.maps.data_scale)
    if scale is not None:
        log_det -= float(torch.log(scale.double().expand(x.shape[1:])).sum())
    model = trained.field.double()
    res = log_likelihood(model, z.to(dev), divergence=divergence, probes=probes,
                         solver=solver, steps=None if nfe is None else steps_for_budget(solver,
                                                                                         nfe),
                         rtol=rtol, atol=rtol, generator=seed, cond=cond)
    logp = res.log_prob.cpu() + log_det
    d = x[0].numel()
    bpd = -float(logp.mean()) / (d * math.log(2.0))
    se = ""
    if res.std_error is not None:
        se = (f" ± {float(res.std_error.pow(2).mean().sqrt() / math.sqrt(len(logp))):.4f} "
              f"(Hutchinson, {probes} probes; per-row standard error "
              f"{float(res.std_error.mean()):.4f})")
    flag = "" if res.converged else " — the solver did NOT converge; values unreliable"
    typer.echo(f"log-likelihood: {float(logp.mean()):.4f} nats per sample{se}, "
               f"{bpd:.4f} bits/dim ({len(logp)} rows of {data}"
               f"{', held out' if held_out else ''}; {divergence} divergence, {solver}, "
               f"NFE {res.nfe}){flag}")
    if out is not None:
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, logp.numpy())
        typer.echo(f"wrote {len(logp)} values to {out}")
