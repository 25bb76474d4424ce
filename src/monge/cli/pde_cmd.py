"""``monge pde ...``: run one neural-PDE case and write a report folder.

Each command writes ``metrics.json`` (every method's ``relative_l2`` error, or for ``poisson``
each solver's ``iterations`` and ``seconds``), ``report.md`` (the same as a table) and PNG plots
into ``--out``. Bad input prints one line ``error: ...`` and exits with code 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from monge.cli.errors import friendly_errors
from monge.core.io import atomic_path
from monge.errors import InputError

pde_app = typer.Typer(help="Neural fields and PDE solvers (INSR, PINN/LPINN, DCDM, "
                           "Text2PDE latent flows) against "
                           "classical grid solvers; each command writes a report folder.",
                      no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", help="Report folder (created).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]


def _methods(spec: str, allowed: tuple[str, ...]) -> list[str]:
    out = [m.strip() for m in spec.split(",") if m.strip()]
    if out == ["all"]:
        return list(allowed)
    bad = [m for m in out if m not in allowed]
    if bad or not out:
        raise InputError(f"--method: unknown {', '.join(bad) or '(empty)'}; choose from "
                         f"{', '.join(allowed)} or 'all' (comma-separated)")
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _field_metrics(results: dict) -> dict[str, dict]:
    """Per method: relative L2 error, stored floats and seconds per step (INSR and grid cases)."""
    return {m: {"relative_l2": r.relative_l2, "floats": r.floats,
                "seconds_per_step": r.seconds_per_step} for m, r in results.items()}


def _write_report(out: Path, case: str, params: dict, metrics: dict[str, dict],
                  columns: tuple[str, ...]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"case": case, "params": params, "methods": metrics}
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))
    lines = [f"# monge pde {case}", "", "Parameters: " + ", ".join(
        f"{k}={v}" for k, v in params.items()), "",
        "| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, m in metrics.items():
        cells = [f"{m[c]:.4g}" if isinstance(m.get(c), float) else str(m.get(c, "—"))
                 for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    for line in lines[4:]:
        typer.echo(line)
    typer.echo(f"report written to {out}")


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)


ADVECT_METHODS = ("insr", "upwind", "lax_wendroff", "semi_lagrangian", "spectral")


@pde_app.command("advect")
@friendly_errors
def advect(
    out: OutOpt = Path("pde-advect"),
    method: Annotated[str, typer.Option(help="Comma-separated: insr, upwind, lax_wendroff, "
                                             "semi_lagrangian, spectral, or all.")] = "all",
    steps: Annotated[int, typer.Option(help="Time steps of --dt.")] = 20,
    dt: Annotated[float, typer.Option(help="INSR (and semi-Lagrangian) time step.")] = 0.05,
    width: Annotated[int, typer.Option(help="SIREN width (2 hidden layers); the grid "
                                            "solvers get as many points as it has "
                                            "parameters.")] = 16,
    iters: Annotated[int, typer.Option(help="Adam iterations per INSR step.")] = 60,
    samples: Annotated[int, typer.Option(help="Random samples per iteration.")] = 800,
    grid_dt: Annotated[float | None, typer.Option(
        help="Time step of the explicit grid schemes (default: CFL 0.9 sub-steps); a step "
             "above the CFL limit is an error.")] = None,
    seed: SeedOpt = 0,
) -> None:
    """1-D advection u_t + 0.25 u_x = 0 of a Gaussian on [-2, 2] (INSR's advect1D case):
    INSR (SIREN, midpoint rule) vs upwind, Lax–Wendroff, semi-Lagrangian and spectral grid
    solvers at equal stored floats."""
    from monge.sciml.fields import Siren, count_parameters
    from monge.sciml.insr import INSRConfig, advection_1d, advection_1d_grid

    chosen = _methods(method, ADVECT_METHODS)
    if steps < 1 or dt <= 0:
        raise InputError("--steps and --dt: expected a positive number of steps and time step")
    floats = count_parameters(Siren(1, 1, width, 2))
    results = {}
    for m in chosen:
        if m == "insr":
            cfg = INSRConfig(iters=iters, lr=3e-4, samples=samples, init_iters=800)
            results[m] = advection_1d(width=width, steps=steps, dt=dt, config=cfg, seed=seed)
        else:
            results[m] = advection_1d_grid(m, floats, steps=steps, dt=dt, explicit_dt=grid_dt)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    r0 = next(iter(results.values()))
    xe = r0.grid
    t_final = steps * dt
    exact = np.exp(-((xe + 1.5 - 0.25 * t_final) ** 2) / (2 * 0.01))
    axes[0].plot(xe, exact, "k--", label="exact")
    for m, r in results.items():
        axes[0].plot(xe, r.snapshots[-1][1], label=m)
    axes[0].set_xlim(-2, 0)
    axes[0].set_title(f"u(x, t={t_final:g})")
    axes[0].legend()
    if "insr" in results:
        for t, u in results["insr"].snapshots:
            axes[1].plot(xe, u, label=f"t={t:g}")
        axes[1].set_xlim(-2, 0)
        axes[1].set_title("INSR field over time")
        axes[1].legend()
    _save(fig, out / "fields.png")
    metrics = _field_metrics(results)
    _write_report(out, "advect", {"steps": steps, "dt": dt, "width": width, "iters": iters,
                                  "seed": seed}, metrics,
                  ("relative_l2", "floats", "seconds_per_step"))


HEAT_METHODS = ("insr_implicit", "insr_explicit", "crank_nicolson")


@pde_app.command("heat")
@friendly_errors
def heat(
    out: OutOpt = Path("pde-heat"),
    method: Annotated[str, typer.Option(help="Comma-separated: insr_implicit, "
                                             "insr_explicit, crank_nicolson, or all.")] = "all",
    steps: Annotated[int, typer.Option(help="Time steps of --dt.")] = 4,
    dt: Annotated[float, typer.Option(help="Time step.")] = 0.02,
    kappa: Annotated[float, typer.Option(help="Diffusivity.")] = 0.1,
    width: Annotated[int, typer.Option(help="SIREN width (2 hidden layers).")] = 24,
    iters: Annotated[int, typer.Option(help="Adam iterations per INSR step.")] = 60,
    samples: Annotated[int, typer.Option(help="Random samples per iteration.")] = 800,
    seed: SeedOpt = 0,
) -> None:
    """2-D heat u_t = κ Δu on [-1, 1]² with u = 0 on the walls (two sine modes, exact solution
    known): INSR with implicit/explicit Euler vs Crank–Nicolson FD at equal stored floats."""
    from monge.sciml.insr import INSRConfig, heat_2d, heat_2d_grid

    chosen = _methods(method, HEAT_METHODS)
    if kappa < 0:
        raise InputError(f"--kappa: expected a non-negative diffusivity, got {kappa}")
    results = {}
    floats = None
    for m in chosen:
        if m.startswith("insr"):
            integ = "implicit_euler" if m == "insr_implicit" else "explicit_euler"
            cfg = INSRConfig(iters=iters, lr=3e-4, samples=samples, init_iters=800)
            results[m] = heat_2d(width=width, steps=steps, dt=dt, kappa=kappa,
                                 integrator=integ, config=cfg, seed=seed)
            floats = results[m].floats
    if "crank_nicolson" in chosen:
        from monge.sciml.fields import Siren, count_parameters
        floats = floats or count_parameters(Siren(2, 1, width, 2))
        results["crank_nicolson"] = heat_2d_grid(int(round(math.sqrt(floats))), steps=steps,
                                                 dt=dt, kappa=kappa)
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (m, r) in zip(axes[0], results.items(), strict=True):
        im = ax.imshow(r.snapshots[-1][1].T, origin="lower", extent=(-1, 1, -1, 1))
        ax.set_title(f"{m}, t={steps * dt:g}")
        fig.colorbar(im, ax=ax)
    _save(fig, out / "fields.png")
    metrics = _field_metrics(results)
    _write_report(out, "heat", {"steps": steps, "dt": dt, "kappa": kappa, "width": width,
                                "seed": seed}, metrics,
                  ("relative_l2", "floats", "seconds_per_step"))


FLUID_METHODS = ("insr", "stable_fluids", "spectral")


@pde_app.command("fluid")
@friendly_errors
def fluid(
    out: OutOpt = Path("pde-fluid"),
    method: Annotated[str, typer.Option(help="Comma-separated: insr, stable_fluids, spectral, "
                                             "or all.")] = "all",
    steps: Annotated[int, typer.Option(help="Time steps of --dt.")] = 3,
    dt: Annotated[float, typer.Option(help="Time step.")] = 0.05,
    width: Annotated[int, typer.Option(help="SIREN width of the velocity and pressure "
                                            "networks.")] = 24,
    iters: Annotated[int, typer.Option(help="Adam iterations per INSR sub-step.")] = 40,
    samples: Annotated[int, typer.Option(help="Random samples per iteration.")] = 800,
    seed: SeedOpt = 0,
) -> None:
    """Inviscid Taylor–Green vortex on [-1, 1]² (exact solution: steady): INSR operator
    splitting (semi-Lagrangian advection + pressure projection) vs stable fluids and a spectral
    solver at equal stored floats; reports the kinetic-energy ratio too."""
    from monge.sciml.fields import Siren, count_parameters
    from monge.sciml.insr import INSRConfig, taylor_green_2d, taylor_green_grid

    chosen = _methods(method, FLUID_METHODS)
    floats = count_parameters(Siren(2, 2, width, 2))
    n = max(4, int(round(math.sqrt(floats / 2))))
    results = {}
    for m in chosen:
        if m == "insr":
            cfg = INSRConfig(iters=iters, lr=3e-4, samples=samples, init_iters=800)
            results[m] = taylor_green_2d(width=width, steps=steps, dt=dt, config=cfg,
                                         seed=seed)
        else:
            results[m] = taylor_green_grid(m, n, steps=steps, dt=dt)
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (m, r) in zip(axes[0], results.items(), strict=True):
        speed = np.sqrt((r.snapshots[-1][1] ** 2).sum(0))
        im = ax.imshow(speed.T, origin="lower", extent=(-1, 1, -1, 1))
        ax.set_title(f"|u| {m}, t={steps * dt:g}")
        fig.colorbar(im, ax=ax)
    _save(fig, out / "fields.png")
    metrics = {m: {"relative_l2": r.relative_l2, "floats": r.floats,
                   "energy_ratio": r.extra["energy_ratio"],
                   "seconds_per_step": r.seconds_per_step} for m, r in results.items()}
    _write_report(out, "fluid", {"steps": steps, "dt": dt, "width": width, "seed": seed},
                  metrics, ("relative_l2", "energy_ratio", "floats", "seconds_per_step"))


PINN_METHODS = ("pinn", "lpinn")


def _pinn_run(out: Path, label: str, case, method: str, params: dict, **kw) -> None:
    from monge.sciml.pinn import train_pinn

    chosen = _methods(method, PINN_METHODS)
    results = {m: train_pinn(m, case, **kw) for m in chosen}
    plt = _plt()
    ref = next(iter(results.values())).reference
    fig, axes = plt.subplots(2, len(results) + 1, figsize=(4 * (len(results) + 1), 6.5),
                             squeeze=False)
    ext = (0, 2 * math.pi, 0, case.t_final)
    axes[0, 0].imshow(ref, origin="lower", aspect="auto", extent=ext)
    axes[0, 0].set_title("reference u(x, t)")
    axes[1, 0].axis("off")
    for j, (m, r) in enumerate(results.items(), start=1):
        axes[0, j].imshow(r.u, origin="lower", aspect="auto", extent=ext)
        axes[0, j].set_title(f"{m} (rel. L2 {r.relative_l2:.2g})")
        im = axes[1, j].imshow(np.abs(r.u - ref), origin="lower", aspect="auto", extent=ext)
        axes[1, j].set_title(f"|{m} - reference|")
        fig.colorbar(im, ax=axes[1, j])
    _save(fig, out / "fields.png")
    metrics = {m: {"relative_l2": r.relative_l2, "parameters": r.parameters,
                   "seconds": r.seconds, "characteristics_monotone": r.monotone}
               for m, r in results.items()}
    _write_report(out, label, params, metrics,
                  ("relative_l2", "parameters", "seconds", "characteristics_monotone"))


@pde_app.command("convection")
@friendly_errors
def convection(
    out: OutOpt = Path("pde-convection"),
    method: Annotated[str, typer.Option(help="Comma-separated: pinn, lpinn, or all.")] = "all",
    beta: Annotated[float, typer.Option(help="Convection speed β.")] = 30.0,
    adam: Annotated[int, typer.Option(help="Adam steps.")] = 300,
    lbfgs: Annotated[int, typer.Option(help="L-BFGS iterations after Adam.")] = 100,
    width: Annotated[int, typer.Option(help="tanh MLP width.")] = 32,
    depth: Annotated[int, typer.Option(help="Hidden layers of the u-network.")] = 3,
    seed: SeedOpt = 0,
) -> None:
    """1-D convection u_t + β u_x = 0, u0 = sin x, periodic on [0, 2π), t in [0, 1]: standard
    PINN vs Lagrangian PINN with the same network and budget, against the exact solution."""
    from monge.sciml.pinn import convection_case

    _pinn_run(out, "convection", convection_case(beta), method,
              {"beta": beta, "adam": adam, "lbfgs": lbfgs, "width": width, "depth": depth,
               "seed": seed},
              width=width, depth=depth, adam_steps=adam, lbfgs_steps=lbfgs, n_x=64, n_t=32,
              seed=seed)


@pde_app.command("burgers")
@friendly_errors
def burgers(
    out: OutOpt = Path("pde-burgers"),
    method: Annotated[str, typer.Option(help="Comma-separated: pinn, lpinn, or all.")] = "all",
    nu: Annotated[float, typer.Option(help="Viscosity.")] = 0.01,
    t_final: Annotated[float, typer.Option(help="Final time (characteristics of sin x + 0.5 "
                                                "cross near t = 1).")] = 0.5,
    adam: Annotated[int, typer.Option(help="Adam steps.")] = 300,
    lbfgs: Annotated[int, typer.Option(help="L-BFGS iterations after Adam.")] = 100,
    width: Annotated[int, typer.Option(help="tanh MLP width.")] = 32,
    depth: Annotated[int, typer.Option(help="Hidden layers of the u-network.")] = 3,
    seed: SeedOpt = 0,
) -> None:
    """Viscous Burgers u_t + u u_x = ν u_xx, u0 = sin x + 0.5, periodic, before the shock: PINN
    vs LPINN against a pseudo-spectral reference (LPINN reports whether its characteristics
    stayed monotone)."""
    from monge.sciml.pinn import burgers_case

    _pinn_run(out, "burgers", burgers_case(nu, 0.5, t_final), method,
              {"nu": nu, "t_final": t_final, "adam": adam, "lbfgs": lbfgs, "width": width,
               "depth": depth, "seed": seed},
              width=width, depth=depth, adam_steps=adam, lbfgs_steps=lbfgs, n_x=64, n_t=32,
              seed=seed)


POISSON_METHODS = ("cg", "ic0", "amg", "dcdm")


def _load_or_train_dcdm(path: Path | None, train_grid: int, steps: int, seed: int):
    from safetensors.torch import load_file, save_file

    from monge.sciml.dcdm import PoissonCNN, poisson_2d, train_poisson_cnn

    if path is not None and path.exists():
        state = load_file(str(path))
        filters = int(state["inp.weight"].shape[0]) if "inp.weight" in state else 16
        net = PoissonCNN(filters)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(f"--network {path}: not a PoissonCNN state ({exc})") from None
        return net, 0.0
    tr = train_poisson_cnn(poisson_2d(train_grid), n_samples=1000, lanczos_steps=150,
                           steps=steps, batch=10, lr=1e-3, filters=16, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in tr.net.state_dict().items()}, str(tmp))
    return tr.net, tr.seconds


@pde_app.command("poisson")
@friendly_errors
def poisson(
    out: OutOpt = Path("pde-poisson"),
    method: Annotated[str, typer.Option(help="Comma-separated: cg, ic0, amg, dcdm, or all "
                                             "(amg needs pyamg: pip install 'monge[amg]').")
                      ] = "all",
    grid: Annotated[int, typer.Option(help="Cells per side (even for dcdm).")] = 64,
    obstacle: Annotated[Path | None, typer.Option(
        help="Boolean .npy mask [grid, grid] of solid cells (Neumann walls).")] = None,
    network: Annotated[Path | None, typer.Option(
        help="DCDM network file (.safetensors): loaded if it exists, else trained and saved "
             "there, so one network is reused across grids and obstacle shapes.")] = None,
    train_grid: Annotated[int, typer.Option(help="Grid of the empty domain DCDM trains "
                                                 "on.")] = 32,
    train_steps: Annotated[int, typer.Option(help="DCDM training steps.")] = 300,
    tol: Annotated[float, typer.Option(help="Relative residual tolerance.")] = 1e-4,
    max_iter: Annotated[int, typer.Option(help="Iteration cap of every solver (a solver that "
                                               "hits it is reported converged=false).")
                        ] = 2000,
    seed: SeedOpt = 0,
) -> None:
    """2-D Poisson (5-point, Dirichlet walls) with an optional obstacle: iterations and wall
    time to ||r||/||b|| <= tol for CG, IC(0)-PCG, AMG-PCG and the Deep Conjugate Direction
    Method (network trained unsupervised on the empty domain; inference time included)."""
    import warnings

    from monge.sciml.dcdm import (
        IC0,
        NetworkDirection,
        amg_preconditioner,
        dcdm_solve,
        pcg,
        poisson_2d,
    )

    chosen = _methods(method, POISSON_METHODS)
    if not 0 < tol < 1:
        raise InputError(f"--tol: expected a number in (0, 1), got {tol}")
    mask = None
    if obstacle is not None:
        if not obstacle.exists():
            raise InputError(f"--obstacle {obstacle}: file not found")
        try:
            mask = np.load(obstacle, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"--obstacle {obstacle}: not a readable .npy array ({exc})") from None
    system = poisson_2d(grid, mask)
    if "dcdm" in chosen and grid % 2:
        raise InputError(f"--grid: the DCDM network is built for even grid sizes, got {grid}")
    b = system.random_rhs(seed)
    results = {}
    extra: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in chosen:
            if m == "cg":
                results[m] = pcg(system.A, b, rel_tol=tol, max_iter=max_iter)
            elif m == "ic0":
                results[m] = pcg(system.A, b, IC0(system.A), rel_tol=tol, max_iter=max_iter,
                                 method="ic0-pcg")
            elif m == "amg":
                results[m] = pcg(system.A, b, amg_preconditioner(system.A), rel_tol=tol,
                                 max_iter=max_iter, method="amg-pcg")
            else:
                torch.manual_seed(seed)
                net, train_s = _load_or_train_dcdm(network, train_grid, train_steps, seed)
                extra["dcdm_training_seconds"] = train_s
                results[m] = dcdm_solve(system.A, b, NetworkDirection(net, system.fluid),
                                        rel_tol=tol, max_iter=max_iter)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m, r in results.items():
        axes[0].semilogy(r.residuals, label=f"{m} ({r.iterations})")
    axes[0].axhline(tol, color="k", ls=":")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("||r|| / ||b||")
    axes[0].legend()
    sol = next(iter(results.values())).x.reshape(grid, grid)
    im = axes[1].imshow(np.where(system.fluid, sol, np.nan).T, origin="lower")
    axes[1].set_title("solution (solid cells blank)")
    fig.colorbar(im, ax=axes[1])
    _save(fig, out / "residuals.png")
    metrics = {m: {"iterations": r.iterations, "seconds": r.seconds, "converged": r.converged,
                   "final_relative_residual": r.residuals[-1]} for m, r in results.items()}
    _write_report(out, "poisson", {"grid": grid, "obstacle": str(obstacle) if obstacle else
                                   None, "tol": tol, "seed": seed, **extra}, metrics,
                  ("iterations", "seconds", "converged"))


TEXT2PDE_METHODS = ("latent_flow", "latent_flow_text", "rollout", "ae_floor", "spectral")


@pde_app.command("text2pde")
@friendly_errors
def text2pde(
    out: OutOpt = Path("pde-text2pde"),
    method: Annotated[str, typer.Option(help="Comma-separated: latent_flow (conditioned on u0 "
                                             "and ν), latent_flow_text (on the descriptor), "
                                             "rollout, ae_floor, spectral, or all.")] = "all",
    train: Annotated[int, typer.Option(help="Training trajectories.")] = 256,
    test: Annotated[int, typer.Option(help="Test trajectories.")] = 32,
    ae_steps: Annotated[int, typer.Option(help="Autoencoder training steps.")] = 250,
    flow_steps: Annotated[int, typer.Option(help="Training steps of each latent flow.")] = 250,
    rollout_steps: Annotated[int, typer.Option(help="Rollout baseline training steps.")] = 250,
    batch: Annotated[int, typer.Option(help="Batch size of every network.")] = 32,
    sample_steps: Annotated[int, typer.Option(help="Solver steps when sampling the "
                                                   "flow.")] = 10,
    solver: Annotated[str, typer.Option(help="Sampling solver: heun or euler.")] = "heun",
    t_final: Annotated[float, typer.Option(help="Time of the last of the 32 frames.")] = 0.25,
    descriptor: Annotated[list[str] | None, typer.Option(
        help="Text descriptor to generate from, e.g. 'viscosity 0.01, 2 waves, amplitude "
             "1.0' (repeatable; plotted in generated.png).")] = None,
    seed: SeedOpt = 0,
) -> None:
    """Text2PDE-style latent flow on 1-D viscous Burgers (64 points × 32 frames, periodic):
    whole trajectories generated in one shot from u0 (+ ν) or from a text descriptor, against
    an autoregressive neural rollout, the autoencoder floor and the spectral reference."""
    from monge.sciml.text2pde import (
        Text2PDEConfig,
        evaluate_text2pde,
        generate_from_text,
        train_text2pde,
    )
    from monge.sciml.text2pde_data import estimate_viscosity, make_burgers_trajectories

    chosen = _methods(method, TEXT2PDE_METHODS)
    if train < 2 or test < 1:
        raise InputError(f"--train, --test: expected at least 2 and 1 trajectories, got "
                         f"{train} and {test}")
    conditions = tuple(c for m, c in (("latent_flow", "initial"), ("latent_flow_text", "text"))
                       if m in chosen or (c == "text" and descriptor))
    tok = None
    if descriptor:
        from monge.sciml.text2pde_nets import DescriptorTokenizer
        tok = DescriptorTokenizer()
        for d in descriptor:  # fail on a bad word before any training
            tok.tokens(d)
    cfg = Text2PDEConfig(conditions=conditions, ae_steps=ae_steps, flow_steps=flow_steps,
                         rollout_steps=rollout_steps if "rollout" in chosen else 0,
                         batch_size=batch, sample_steps=sample_steps, solver=solver, seed=seed)
    torch.manual_seed(seed)
    data = make_burgers_trajectories(train + test, seed=seed, t_final=t_final)
    models = train_text2pde(data.subset(slice(0, train)), cfg)
    result = evaluate_text2pde(models, data.subset(slice(train, train + test)), cfg)
    ref = data.u[train]
    shown = [m for m in chosen if m in result.methods]
    plt = _plt()
    fig, axes = plt.subplots(2, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 6),
                             squeeze=False)
    ext = (0, 1, 0, t_final)
    lim = float(np.abs(ref).max())
    axes[0, 0].imshow(ref, origin="lower", aspect="auto", extent=ext, cmap="RdBu_r",
                      vmin=-lim, vmax=lim)
    axes[0, 0].set_title("reference u(x, t)", fontsize=9)
    axes[0, 0].set_xlabel(data.descriptors[train], fontsize=7)
    axes[1, 0].axis("off")
    for j, m in enumerate(shown, start=1):
        r = result.methods[m]
        axes[0, j].imshow(r.samples[0], origin="lower", aspect="auto", extent=ext,
                          cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, j].set_title(f"{m} (rel. L2 {r.relative_l2:.2g})", fontsize=9)
        im = axes[1, j].imshow(np.abs(r.samples[0] - ref), origin="lower", aspect="auto",
                               extent=ext)
        axes[1, j].set_title(f"|{m} - reference|", fontsize=9)
        fig.colorbar(im, ax=axes[1, j])
    _save(fig, out / "fields.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in shown:
        ax.semilogy(np.maximum(result.methods[m].error_vs_time, 1e-8), label=m)
    ax.set_xlabel("frame")
    ax.set_ylabel("relative L2 per frame (test mean)")
    ax.legend()
    _save(fig, out / "error_vs_time.png")
    metrics: dict[str, dict] = {}
    for m in shown:
        r = result.methods[m]
        metrics[m] = {"relative_l2": r.relative_l2, "seconds_per_sample": r.seconds_per_sample,
                      "train_seconds": r.train_seconds, "parameters": r.parameters,
                      "error_vs_time": r.error_vs_time}
    check = result.text_check
    if check is not None and "latent_flow_text" in metrics:
        metrics["latent_flow_text"].update(
            viscosity_relative_error=check.viscosity_relative_error,
            viscosity_log_correlation=check.viscosity_log_correlation,
            viscosity_within_20pct=check.viscosity_within_20pct,
            reference_viscosity_error=check.reference_viscosity_error,
            waves_accuracy=check.waves_accuracy, amplitude_error=check.amplitude_error)
    if descriptor:
        gen = generate_from_text(models, descriptor, steps=sample_steps, solver=solver,
                                 seed=seed)
        nu_hat = estimate_viscosity(gen, data.times)
        fig, axes = plt.subplots(1, len(descriptor), figsize=(3.6 * len(descriptor), 3.4),
                                 squeeze=False)
        for ax, d, g, nh in zip(axes[0], descriptor, gen, nu_hat, strict=True):
            ax.imshow(g, origin="lower", aspect="auto", extent=ext, cmap="RdBu_r")
            ax.set_title(f"{d}\nν from energy decay: {nh:.2g}", fontsize=7)
        _save(fig, out / "generated.png")
        metrics["generated"] = {d: {"viscosity_estimated": float(nh)}
                                for d, nh in zip(descriptor, nu_hat, strict=True)}
    columns = ("relative_l2", "seconds_per_sample", "train_seconds", "parameters")
    if "latent_flow_text" in metrics:
        columns += ("viscosity_relative_error", "waves_accuracy")
    table = {m: v for m, v in metrics.items() if m != "generated"}
    _write_report(out, "text2pde", {"train": train, "test": test, "ae_steps": ae_steps,
                                    "flow_steps": flow_steps, "rollout_steps": rollout_steps,
                                    "sample_steps": sample_steps, "solver": solver,
                                    "t_final": t_final, "nfe": result.nfe, "seed": seed},
                  table, columns)
    if "generated" in metrics:
        with atomic_path(out / "generated.json") as tmp:
            tmp.write_text(json.dumps(metrics["generated"], indent=2))


__all__ = ["pde_app"]
