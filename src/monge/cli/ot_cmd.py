"""``monge ot SOURCE TARGET``: optimal transport between two point files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table

from monge.core.io import atomic_path, ensure_writable_dir
from monge.errors import InputError
from monge.ot import METHODS, sq_euclidean_cost
from monge.ot.auto import solve_points

#: plans with more entries than this are not written to --out (potentials always are)
MAX_WRITTEN_PLAN = 25_000_000
MAX_EXACT_ENTRIES = 25_000_000
"""Largest n·m for the dense exact and sparse solvers (a float64 cost of 200 MB)."""
CLI_METHODS = (*METHODS, "online")


def _write_plot(path: Path, x: torch.Tensor, y: torch.Tensor, plan, title: str) -> None:
    """Scatter both clouds and draw the heaviest plan entries as segments (first two dims)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    xs, ys = x[:, :2].numpy(), y[:, :2].numpy()
    if xs.shape[1] == 1:
        xs = np.hstack([xs, np.zeros_like(xs)])
        ys = np.hstack([ys, np.ones_like(ys)])
    if isinstance(plan, torch.Tensor):
        P = plan.numpy()
        flat = np.argsort(P, axis=None)[::-1][: min(P.size, 4 * max(P.shape))]
        rows, cols = np.unravel_index(flat, P.shape)
        w = P[rows, cols] / max(float(P.max()), 1e-300)
    else:  # lazy plan: the heaviest partner of at most 500 evenly spaced source points
        rows = np.linspace(0, xs.shape[0] - 1, min(500, xs.shape[0])).astype(np.int64)
        block = plan.rows(torch.as_tensor(rows)).numpy()
        cols = block.argmax(1)
        w = block[np.arange(len(rows)), cols] / max(float(block.max()), 1e-300)
    fig, ax = plt.subplots(figsize=(5, 5))
    segs = np.stack([xs[rows], ys[cols]], axis=1)
    ax.add_collection(LineCollection(segs, colors="0.3", linewidths=0.8, alpha=np.clip(w, 0.05, 1)))
    size = 8 if xs.shape[0] + ys.shape[0] < 20_000 else 0.5
    ax.scatter(xs[:, 0], xs[:, 1], s=size, label="source")
    ax.scatter(ys[:, 0], ys[:, 1], s=size, label="target")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ot_command(
    source: Annotated[Path, typer.Argument(help="Source points [N, D] (.npy, .npz or .csv).")],
    target: Annotated[Path, typer.Argument(help="Target points [M, D] (.npy, .npz or .csv).")],
    method: Annotated[str, typer.Option(
        help="auto (default: picks from eps and size, online above the memory limit), exact, "
             "sinkhorn, sns, sparse or online.")] = "auto",
    eps: Annotated[float, typer.Option(help="Regularisation (gamma for sparse).")] = 1e-3,
    eps_scale: Annotated[str, typer.Option(
        help="max_cost: eps is relative to the largest cost; absolute: in cost units.")
    ] = "max_cost",
    k: Annotated[int, typer.Option(help="Non-zeros per column (method sparse).")] = 2,
    tol: Annotated[float | None, typer.Option(help="Marginal-error tolerance.")] = None,
    max_iter: Annotated[int | None, typer.Option(help="Iteration cap.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write plan and potentials (.npz).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a plot of the plan (.png).")] = None,
    dtype: Annotated[str, typer.Option(
        help="float64, or float32 (half the memory and about twice as fast online).")
    ] = "float64",
    max_dense_gb: Annotated[float, typer.Option(
        help="Memory for a dense problem; above it --method auto solves online.")] = 2.0,
    progress: Annotated[bool, typer.Option(help="Progress bar for online solves.")] = True,
) -> None:
    """Solve OT between two point clouds (uniform weights, squared Euclidean cost).

    Prints cost, iterations, marginal error and time; writes the potentials (and the plan when
    it has at most ``MAX_WRITTEN_PLAN`` entries) with ``numpy.savez`` (keys ``f``, ``g``,
    ``cost``, ``marginal_error``, ``iterations``, ``method``, ``eps``, and ``plan``) and an
    optional plot. ``--method auto`` solves 10^5-point files online (memory O((n + m) d) plus
    one block; the plan is then ``exp((f_i + g_j - |x_i - y_j|^2)/eps)``), with a progress
    bar. Bad input raises :class:`monge.errors.MongeError` (one line, exit code 1 in the app).
    """
    from monge.data.files import load_array

    if method not in CLI_METHODS:
        raise InputError(f"--method: expected one of {', '.join(CLI_METHODS)}, got {method!r}")
    if eps_scale not in ("absolute", "max_cost"):
        raise InputError(f"--eps-scale: expected 'absolute' or 'max_cost', got {eps_scale!r}")
    if dtype not in ("float64", "float32"):
        raise InputError(f"--dtype: expected 'float64' or 'float32', got {dtype!r}")
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    x = load_array(source).to(tdtype)
    y = load_array(target).to(tdtype)
    if x.shape[1] != y.shape[1]:
        raise InputError(f"{source} and {target}: point dimensions differ "
                         f"({x.shape[1]} vs {y.shape[1]})")
    n_entries = x.shape[0] * y.shape[0]
    if method in ("exact", "sparse") and n_entries > MAX_EXACT_ENTRIES:
        raise InputError(f"--method {method}: {x.shape[0]} x {y.shape[0]} points are too many for "
                         f"a dense {method} solve (limit {MAX_EXACT_ENTRIES:.0e} pairs); use "
                         "--method auto or online (entropic, memory O((n + m) d))")
    for option, path in (("--out", out), ("--plot", plot)):
        if path is not None:  # found now, not after a long solve
            ensure_writable_dir(path.parent, option)
    options: dict = {}
    scale = eps_scale
    if method == "sparse":
        options["k"] = k
        if eps_scale == "max_cost":
            eps = eps * float(sq_euclidean_cost(x, y).max())
        scale = "absolute"
    start = time.perf_counter()
    bar = None
    if progress and method in ("auto", "online"):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("online Sinkhorn"), BarColumn(),
                       TextColumn("sweep {task.fields[sweep]}  error {task.fields[err]}"),
                       TimeElapsedColumn(), transient=True)
        target_tol = tol if tol is not None else (1e-8 if tdtype == torch.float64 else 1.2e-5)
        task = bar.add_task("solve", total=1.0, sweep=0, err="-")

        def callback(sweep: int, err: float) -> None:
            # progress on a log scale from error 1 down to the tolerance
            done = 0.0 if not np.isfinite(err) or err <= 0 else min(
                1.0, max(0.0, np.log(max(err, target_tol)) / np.log(target_tol)))
            bar.update(task, completed=done, sweep=sweep, err=f"{err:.2e}")

        options["callback"] = callback
        bar.start()
    try:
        result = solve_points(x, y, method=method, eps=eps, eps_scale=scale,  # type: ignore[arg-type]
                              tol=tol, max_iter=max_iter,
                              dense_max_bytes=int(max_dense_gb * 2**30), **options)
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - start
    used = result.method
    lazy = not isinstance(result.plan, torch.Tensor)
    plan = result.plan if lazy else result.dense_plan()
    title_method = used if method != "auto" else f"auto -> {used}"
    table = Table(title=f"monge ot: {source.name} -> {target.name} ({title_method})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("points", f"{x.shape[0]} -> {y.shape[0]} (dim {x.shape[1]})")
    if result.eps is not None:
        rel = f" ({result.eps_relative:g} x max cost)" if result.eps_relative is not None else ""
        table.add_row("eps", f"{result.eps:.4g}{rel}")
    table.add_row("transport cost <C,P>", f"{float(result.cost):.6g}")
    table.add_row("iterations", str(result.iterations))
    table.add_row("marginal error", f"{float(result.marginal_error):.3e}")
    table.add_row("converged", "yes" if result.converged else "[red]no[/red]")
    table.add_row("time", f"{seconds:.3f} s")
    Console().print(table)

    if out is not None:
        arrays: dict = {"f": result.f.numpy(), "g": result.g.numpy(),
                        "cost": float(result.cost),
                        "marginal_error": float(result.marginal_error),
                        "iterations": result.iterations, "method": used,
                        "eps": float(result.eps) if result.eps is not None else np.nan}
        if n_entries <= MAX_WRITTEN_PLAN:
            arrays["plan"] = (plan.dense() if lazy else plan).numpy()
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        note = "" if "plan" in arrays else (
            f" (potentials only: the {x.shape[0]}x{y.shape[0]} plan is "
            "exp((f_i + g_j - |x_i - y_j|^2)/eps))")
        Console().print(f"wrote {out}{note}")
    if plot is not None:
        _write_plot(plot, x.double(), y.double(), plan,
                    f"{used}: cost {float(result.cost):.4g}")
        Console().print(f"wrote {plot}")
