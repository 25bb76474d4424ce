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

from monge.errors import InputError
from monge.ot import METHODS, solve, sq_euclidean_cost


def _write_plot(path: Path, x: torch.Tensor, y: torch.Tensor, plan: torch.Tensor,
                title: str) -> None:
    """Scatter both clouds and draw the heaviest plan entries as segments (first two dims)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    xs, ys = x[:, :2].numpy(), y[:, :2].numpy()
    if xs.shape[1] == 1:
        xs = np.hstack([xs, np.zeros_like(xs)])
        ys = np.hstack([ys, np.ones_like(ys)])
    P = plan.numpy()
    flat = np.argsort(P, axis=None)[::-1][: min(P.size, 4 * max(P.shape))]
    rows, cols = np.unravel_index(flat, P.shape)
    w = P[rows, cols] / max(float(P.max()), 1e-300)
    fig, ax = plt.subplots(figsize=(5, 5))
    segs = np.stack([xs[rows], ys[cols]], axis=1)
    ax.add_collection(LineCollection(segs, colors="0.3", linewidths=0.8, alpha=np.clip(w, 0.05, 1)))
    ax.scatter(xs[:, 0], xs[:, 1], s=8, label="source")
    ax.scatter(ys[:, 0], ys[:, 1], s=8, label="target")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ot_command(
    source: Annotated[Path, typer.Argument(help="Source points [N, D] (.npy, .npz or .csv).")],
    target: Annotated[Path, typer.Argument(help="Target points [M, D] (.npy, .npz or .csv).")],
    method: Annotated[str, typer.Option(help="exact, sinkhorn, sns or sparse.")] = "sns",
    eps: Annotated[float, typer.Option(help="Regularisation (gamma for sparse).")] = 1e-3,
    eps_scale: Annotated[str, typer.Option(
        help="max_cost: eps is relative to the largest cost; absolute: in cost units.")
    ] = "max_cost",
    k: Annotated[int, typer.Option(help="Non-zeros per column (method sparse).")] = 2,
    tol: Annotated[float | None, typer.Option(help="Marginal-error tolerance.")] = None,
    max_iter: Annotated[int | None, typer.Option(help="Iteration cap.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write plan and potentials (.npz).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a plot of the plan (.png).")] = None,
) -> None:
    """Solve OT between two point clouds (uniform weights, squared Euclidean cost).

    Prints cost, iterations, marginal error and time; writes the plan and potentials with
    ``numpy.savez`` (keys ``plan``, ``f``, ``g``, ``cost``, ``marginal_error``) and an optional
    plot. Bad input raises :class:`monge.errors.MongeError` (one line, exit code 1 in the app).
    """
    from monge.data.files import load_array

    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    if eps_scale not in ("absolute", "max_cost"):
        raise InputError(f"--eps-scale: expected 'absolute' or 'max_cost', got {eps_scale!r}")
    x = load_array(source).double()
    y = load_array(target).double()
    if x.shape[1] != y.shape[1]:
        raise InputError(f"{source} and {target}: point dimensions differ "
                         f"({x.shape[1]} vs {y.shape[1]})")
    C = sq_euclidean_cost(x, y)
    options: dict = {}
    if method == "sparse":
        options["k"] = k
        if eps_scale == "max_cost":
            eps = eps * float(C.max())
        scale = "absolute"
    else:
        scale = eps_scale
    start = time.perf_counter()
    result = solve(None, None, C, method=method, eps=eps, eps_scale=scale, tol=tol,
                   max_iter=max_iter, **options)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    plan = result.dense_plan()

    table = Table(title=f"monge ot: {source.name} -> {target.name} ({method})")
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
        np.savez(out, plan=plan.numpy(), f=result.f.numpy(), g=result.g.numpy(),
                 cost=float(result.cost), marginal_error=float(result.marginal_error),
                 iterations=result.iterations, method=method)
        Console().print(f"wrote {out}")
    if plot is not None:
        _write_plot(plot, x, y, plan, f"{method}: cost {float(result.cost):.4g}")
        Console().print(f"wrote {plot}")
