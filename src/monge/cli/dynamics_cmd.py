"""``monge dynamics {pg, stability, distill-data, homoode}``: training-dynamics studies.

Each command runs one small study (defaults finish in under two minutes on a 2-core CPU) and
writes a report folder: ``metrics.json`` and PNG plots. Bad input raises
:class:`monge.errors.MongeError`, printed as one line with exit code 1.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from monge.cli.errors import friendly_errors
from monge.errors import InputError

dynamics_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           pretty_exceptions_enable=False,
                           help="Training-dynamics studies: policy gradients, SGD stability, "
                                "dataset distillation, implicit models.")

PG_LR = {"lqr": {"reinforce": 3e-4, "batch-pg": 1e-3, "momentum": 0.03, "n-pg-igt": 0.03,
                 "harpg": 1e-4, "n-harpg": 0.01},
         "pendulum": {"reinforce": 1e-5, "batch-pg": 1e-5, "momentum": 0.1, "n-pg-igt": 0.1,
                      "harpg": 1e-5, "n-harpg": 0.1},
         "cartpole": {"reinforce": 1e-3, "batch-pg": 1e-3, "momentum": 0.1, "n-pg-igt": 0.1,
                      "harpg": 1e-3, "n-harpg": 0.1}}


def _setup(out: Path) -> Path:
    import torch

    torch.set_num_threads(int(os.environ.get("MONGE_THREADS", min(2, os.cpu_count() or 1))))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    from monge.core.io import atomic_write_bytes

    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    typer.echo(f"wrote {out / 'metrics.json'}")


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise InputError(f"{name}: empty list")
    return vals


@dynamics_app.command("pg")
@friendly_errors
def pg_command(
    env: Annotated[str, typer.Option(help="lqr (exact gap), pendulum or cartpole (gymnasium)")]
    = "lqr",
    methods: Annotated[str, typer.Option(
        help="comma list of reinforce, batch-pg, momentum, n-pg-igt, harpg, n-harpg")]
    = "reinforce,n-pg-igt,n-harpg",
    budget: Annotated[int, typer.Option(help="trajectories per method (d_0 counted)")] = 600,
    lr: Annotated[float | None, typer.Option(help="step constant for every method "
                                              "(default: tuned per method and env)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("runs/dynamics-pg"),
) -> None:
    """Policy gradients (Fatkhullin et al. 2023). On the LQR: the exact relative optimality gap
    vs trajectories; on gymnasium tasks: mean return of fresh episodes vs trajectories."""
    import torch

    from monge.dynamics.envs import make_env
    from monge.dynamics.policies import LinearGaussianPolicy, SoftmaxPolicy
    from monge.dynamics.policy_gradient import METHODS, PGConfig, run_policy_gradient

    out = _setup(out)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        if m not in METHODS:
            raise InputError(f"--methods: unknown method {m!r}; expected {', '.join(METHODS)}")
    key = env.lower()
    e = make_env(key, **({} if key == "lqr" else {"horizon": 200}))
    if key == "lqr":
        sigma = 0.3
        pol = LinearGaussianPolicy(e.n_x, e.n_u, sigma)
        ks = e.optimal_gain()
        g = torch.Generator().manual_seed(1000 + seed)
        th0 = pol.theta_from(0.5 * ks + 0.1 * torch.randn(ks.shape, generator=g,
                                                          dtype=torch.float64))
        evaluate = lambda th: e.relative_gap(pol.gain(th), sigma)
        every, label = 25, "relative optimality gap (exact)"
    else:
        pol = (SoftmaxPolicy(e.obs_dim, e.n_actions) if e.discrete
               else LinearGaussianPolicy(e.obs_dim, e.act_shape[0], 0.5, bias=True))
        th0 = torch.zeros(pol.n_params, dtype=torch.float64)
        gen = torch.Generator().manual_seed(10_000 + seed)
        evaluate = lambda th: sum(float(e.rollout(pol, th, gen).rewards.sum())
                                  for _ in range(3)) / 3
        every, label = max(1, budget // 10), "mean return (3 fresh episodes)"
    metrics: dict[str, Any] = {"env": key, "budget": budget, "seed": seed, "methods": {}}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in names:
        cfg = PGConfig(method=m, lr=lr if lr is not None else PG_LR[key][m],
                       **({"t0": 30.0} if m == "n-harpg" and key == "lqr" else {}))
        run = run_policy_gradient(e, pol, th0, cfg, budget=budget, seed=seed,
                                  evaluate=evaluate, eval_every=every)
        row: dict[str, Any] = {"lr": cfg.lr, "trajectories_used": run.trajectories[-1],
                               "iterations": run.iterations}
        if key == "lqr":
            row["start_gap"] = run.values[0]
            row["final_relative_gap"] = run.values[-1]
            row["trajectories_to_gap"] = {str(eps): run.first_below(eps)
                                          for eps in (0.1, 0.03, 0.01)}
        else:
            row["final_return"] = run.values[-1]
        row["curve"] = list(zip(run.trajectories, run.values, strict=True))
        metrics["methods"][m] = row
        typer.echo(f"{m:10s} trajectories {run.trajectories[-1]:6d}  final "
                   f"{'gap' if key == 'lqr' else 'return'} {run.values[-1]:.4g}")
        ax.plot(run.trajectories, run.values, label=m)
    if key == "lqr":
        ax.set_yscale("log")
    ax.set_xlabel("trajectories")
    ax.set_ylabel(label)
    ax.set_title(f"policy gradients on {key}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pg_curves.png", dpi=120)
    plt.close(fig)
    _write_metrics(out, metrics)


def digits_regression(n: int, seed: int):
    """n digits as a scalar square-loss regression: target (label − 4.5)/4.5 (one output, so
    tr(H) at interpolation is (1/n) Σ ||∇f(x_i)||², the setting of Wu & Su's bound)."""
    from monge.data import load_dataset

    d = load_dataset("digits", seed=seed)
    x = d.train[:n].reshape(n, -1).double()
    y = ((d.train_labels[:n].double() - 4.5) / 4.5)[:, None]
    xt = d.test.reshape(len(d.test), -1).double()
    yt = ((d.test_labels.double() - 4.5) / 4.5)[:, None]
    return x, y, xt, yt


def _mse(model, batch):
    x, y = batch
    return 0.5 * ((model(x) - y) ** 2).sum(1).mean()


@dynamics_app.command("stability")
@friendly_errors
def stability_command(
    lrs: Annotated[str, typer.Option(help="comma list of SGD learning rates η")]
    = "0.01,0.03,0.1",
    batch_size: Annotated[int, typer.Option(help="SGD batch B (with replacement)")] = 1,
    n: Annotated[int, typer.Option(help="digits training samples (scalar square loss)")]
    = 50,
    width: Annotated[int, typer.Option(help="hidden width of the 2-layer tanh MLP")] = 64,
    steps: Annotated[int, typer.Option(help="maximum SGD steps per η")] = 10000,
    target_loss: Annotated[float, typer.Option(help="interpolation threshold")] = 1e-5,
    seed: Annotated[int, typer.Option(help="random seed (init and batches)")] = 0,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("runs/dynamics-stability"),
) -> None:
    """SGD stability (Wu & Su 2023): plain SGD on a scalar digits regression to interpolation,
    then tr(H)·η/B and λ_max·η against 2 (exact Gauss–Newton trace, Lanczos λ_max)."""
    import torch
    from torch import nn

    from monge.dynamics.stability import check_lr, run_sgd, stability_report

    out = _setup(out)
    etas = [check_lr(v, "--lrs") for v in _floats(lrs, "--lrs")]
    if batch_size < 1:
        raise InputError(f"--batch-size: expected a positive integer, got {batch_size}")
    x, y, xt, yt = digits_regression(n, seed)
    rows = []
    for eta in etas:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 1)).double()
        run = run_sgd(model, _mse, (x, y), eta, batch_size, steps, seed=seed,
                      target_loss=target_loss, log_every=500)
        row: dict[str, Any] = {"lr": eta, "batch_size": batch_size, "steps": run.steps,
                               "final_loss": run.final_loss, "converged": run.converged,
                               "diverged": run.diverged}
        if not run.diverged:
            rep = stability_report(model, _mse, (x, y), eta, batch_size)
            with torch.no_grad():
                test_mse = float(_mse(model, (xt, yt)))
            row.update(rep.to_dict(), test_loss=test_mse)
        rows.append(row)
        msg = ("unstable (diverged)" if run.diverged else
               f"loss {run.final_loss:.2e}  tr(H)·η/B {row['trace_lr_over_b']:.3f}  "
               f"λmax·η {row['lambda_max_lr']:.3f}")
        typer.echo(f"η={eta:g}: {msg}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ok = [r for r in rows if not r["diverged"]]
    ax.loglog([r["lr"] for r in ok], [r["trace"] for r in ok], "o-", label="tr(H)")
    ax.loglog([r["lr"] for r in ok], [r["lambda_max"] for r in ok], "s-", label="λ_max(H)")
    grid = [min(etas) * 0.8, max(etas) * 1.25]
    ax.loglog(grid, [2 * batch_size / g for g in grid], "k--", label="2B/η")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("curvature at the reached minimum")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sharpness_vs_lr.png", dpi=120)
    plt.close(fig)
    _write_metrics(out, {"n": n, "width": width, "runs": rows})


@dynamics_app.command("distill-data")
@friendly_errors
def distill_command(
    ipc: Annotated[int, typer.Option(help="synthetic images per class")] = 1,
    iterations: Annotated[int, typer.Option(help="distillation iterations")] = 40,
    syn_steps: Annotated[int, typer.Option(help="student steps N per iteration")] = 20,
    mode: Annotated[str, typer.Option(help="exact (constant memory), tesla (first-order) or "
                                           "unroll (MTT)")] = "exact",
    labels: Annotated[str, typer.Option(help="learned, expert (soft labels) or hard")]
    = "learned",
    experts: Annotated[int, typer.Option(help="expert runs (project trainer)")] = 2,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("runs/dynamics-distill"),
) -> None:
    """Trajectory-matching dataset distillation of digits (TESLA, Cui et al. 2023); compares the
    distilled set with random real subsets of the same size."""
    import torch

    from monge.data import load_dataset
    from monge.dynamics.tesla import (
        DistillConfig,
        MLPSpec,
        distill,
        evaluate_synthetic,
        train_experts,
    )

    out = _setup(out)
    if ipc < 1 or iterations < 1 or experts < 1:
        raise InputError("--ipc, --iterations and --experts must be positive integers")
    d = load_dataset("digits", seed=seed)
    x, y = d.train.reshape(len(d.train), -1), d.train_labels
    xt, yt = d.test.reshape(len(d.test), -1).double(), d.test_labels
    spec = MLPSpec((64, 128, 10))
    ex = train_experts(x, y, spec, n_experts=experts, epochs=12, seed=seed)
    cfg = DistillConfig(ipc=ipc, syn_steps=syn_steps, iterations=iterations, mode=mode,
                        labels=labels, expert_epochs=2, max_start_epoch=8, seed=seed)
    res = distill(x, y, ex, 10, spec, cfg)
    acc, std = evaluate_synthetic(spec, res.x, res.labels, res.lr, xt, yt, steps=300,
                                  seeds=(0, 1, 2))
    g = torch.Generator().manual_seed(seed + 1)
    rand = []
    for r in range(3):
        idx = torch.cat([torch.nonzero(y == c).reshape(-1)[torch.randperm(
            int((y == c).sum()), generator=g)[:ipc]] for c in range(10)])
        xr = x[idx].double()
        yr = torch.nn.functional.one_hot(y[idx], 10).double()
        rand.append(evaluate_synthetic(spec, xr, yr, 0.1, xt, yt, steps=300, seeds=(r,))[0])
    metrics = {"ipc": ipc, "mode": mode, "labels": labels, "iterations": iterations,
               "distilled_test_accuracy": acc, "distilled_test_accuracy_std": std,
               "random_real_test_accuracy": sum(rand) / len(rand), "learned_student_lr": res.lr,
               "matching_loss_first": res.losses[0], "matching_loss_last": res.losses[-1]}
    typer.echo(f"distilled {ipc}/class: test accuracy {acc:.3f} ± {std:.3f}; random real "
               f"subsets: {metrics['random_real_test_accuracy']:.3f}")
    plt = _plt()
    n_show = min(res.x.shape[0], 20)
    fig, axes = plt.subplots(2, math.ceil(n_show / 2), figsize=(1.2 * math.ceil(n_show / 2), 3))
    for i, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if i < n_show:
            ax.imshow(res.x[i].reshape(8, 8).numpy(), cmap="gray")
            ax.set_title(str(int(res.labels[i].argmax())), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "distilled_images.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(res.losses)
    ax.set_xlabel("iteration")
    ax.set_ylabel("trajectory-matching loss")
    fig.tight_layout()
    fig.savefig(out / "matching_loss.png", dpi=120)
    plt.close(fig)
    _write_metrics(out, metrics)


@dynamics_app.command("homoode")
@friendly_errors
def homoode_command(
    models: Annotated[str, typer.Option(help="comma list of homoode, homoode-fixed, node, deq")]
    = "homoode,homoode-fixed,node,deq",
    epochs: Annotated[int, typer.Option(help="training epochs")] = 4,
    hidden: Annotated[int, typer.Option(help="state dimension")] = 32,
    width: Annotated[int, typer.Option(help="hidden width of the field")] = 64,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("runs/dynamics-homoode"),
) -> None:
    """HomoODE (Ding et al. 2023) vs neural ODE vs DEQ at (nearly) equal parameters on digits:
    test accuracy, forward NFE (dopri5, rtol = atol = 1e-3) and equilibrium residual."""
    import torch

    from monge.data import load_dataset
    from monge.dynamics.homoode import ImplicitClassifier, make_block, train_classifier

    out = _setup(out)
    names = [m.strip() for m in models.split(",") if m.strip()]
    d = load_dataset("digits", seed=seed, test_fraction=0.3)
    xtr, ytr = d.train.reshape(len(d.train), -1), d.train_labels
    xte, yte = d.test.reshape(len(d.test), -1), d.test_labels
    rows = {}
    for name in names:
        torch.manual_seed(seed)
        model = ImplicitClassifier(make_block(name, 64, hidden, width), hidden, 10)
        rep = train_classifier(model, xtr, ytr, xte, yte, epochs=epochs, seed=seed)
        rows[name] = {"test_accuracy": rep.test_accuracy, "nfe": rep.nfe,
                      "residual": rep.residual, "params": rep.params,
                      "seconds_per_epoch": rep.seconds_per_epoch,
                      "graph_bytes": rep.graph_bytes, "losses": rep.losses}
        typer.echo(f"{name:14s} acc {rep.test_accuracy:.3f}  NFE {rep.nfe:.1f}  residual "
                   f"{rep.residual:.3g}  params {rep.params}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, r in rows.items():
        ax.scatter(r["nfe"], r["test_accuracy"], label=name)
    ax.set_xlabel("forward NFE (DEQ: fixed-point iterations)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_nfe.png", dpi=120)
    plt.close(fig)
    _write_metrics(out, {"epochs": epochs, "models": rows})


__all__ = ["dynamics_app"]
