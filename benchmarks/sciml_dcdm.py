"""DCDM (Kaneda et al., ICML 2023) vs CG, IC(0)-PCG and AMG-PCG on 2-D Poisson, to rel. res. 1e-4.

The Poisson CNN is trained once, unsupervised, on Ritz-vector right-hand sides of the empty
64² Dirichlet Poisson matrix, then reused unchanged on 32², 64², 128² (other resolutions) and on
obstacle matrices (Neumann walls) whose shapes it never saw. Each cell of the table is a mean
over random N(0, 1) and smooth right-hand sides. DCDM wall time includes every network
inference; IC(0) factorisation and AMG set-up times are listed separately.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/sciml_dcdm.py`` (about 5 minutes on 2 busy
cores with the defaults).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.sciml.dcdm import (  # noqa: E402
    IC0,
    NetworkDirection,
    amg_preconditioner,
    dcdm_solve,
    pcg,
    poisson_2d,
    train_poisson_cnn,
)


def obstacles(n: int) -> dict[str, np.ndarray]:
    """Obstacle shapes never seen in training (training used the empty domain)."""
    g = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(g, g, indexing="ij")
    disc = (X - 0.4) ** 2 + (Y - 0.55) ** 2 < 0.15 ** 2
    bars = ((np.abs(X - 0.3) < 0.04) & (Y > 0.2) & (Y < 0.8)) | (
        (np.abs(X - 0.7) < 0.04) & (Y > 0.1) & (Y < 0.6))
    rng = np.random.default_rng(7)
    blobs = np.zeros((n, n), dtype=bool)
    for cx, cy, r in rng.uniform([0.2, 0.2, 0.04], [0.8, 0.8, 0.1], size=(6, 3)):
        blobs |= (X - cx) ** 2 + (Y - cy) ** 2 < r * r
    return {"disc": disc, "two bars": bars, "6 random blobs": blobs}


def measure(system, net, n_rhs: int, max_iter: int) -> dict[str, tuple[float, float, float]]:
    """Mean iterations, mean solve seconds, set-up seconds per method."""
    rhs = [system.random_rhs(s) for s in range(n_rhs)]
    rhs += [system.random_rhs(100 + s, smooth=True) for s in range(n_rhs)]
    out: dict[str, tuple[float, float, float]] = {}
    t0 = time.perf_counter()
    ic = IC0(system.A)
    ic_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    amg = amg_preconditioner(system.A)
    amg_setup = time.perf_counter() - t0
    direction = NetworkDirection(net, system.fluid)
    direction(rhs[0])                                # warm-up (first call allocates)
    runs = {
        "CG": (lambda b: pcg(system.A, b, max_iter=max_iter), 0.0),
        "IC(0)-PCG": (lambda b: pcg(system.A, b, ic, max_iter=max_iter), ic_setup),
        "AMG-PCG (pyamg SA)": (lambda b: pcg(system.A, b, amg, max_iter=max_iter), amg_setup),
        "DCDM": (lambda b: dcdm_solve(system.A, b, direction, max_iter=min(max_iter, 1000)),
                 0.0),
    }
    for name, (fn, setup) in runs.items():
        its, secs, conv, mono = [], [], 0, 0
        for b in rhs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fn(b)
            its.append(r.iterations)
            secs.append(r.seconds)
            conv += r.converged
            mono += bool(np.all(np.diff(r.residuals) <= 0))
        out[name] = (float(np.mean(its)), float(np.mean(secs)), setup, conv / len(rhs),
                     mono / len(rhs), int(np.max(its)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-grid", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500, help="Adam steps for the network")
    ap.add_argument("--samples", type=int, default=2000, help="Ritz training rhs")
    ap.add_argument("--lanczos", type=int, default=300)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--grids", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--rhs", type=int, default=5, help="random and smooth rhs per case (each)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tr = train_poisson_cnn(poisson_2d(args.train_grid), n_samples=args.samples,
                           lanczos_steps=args.lanczos, steps=args.steps, batch=10, lr=1e-3,
                           filters=args.filters, seed=args.seed)
    print(f"trained in {tr.seconds:.1f}s, loss {tr.losses[0]:.3f} -> "
          f"{np.mean(tr.losses[-50:]):.4f}")

    header = ["matrix", "method", "mean iterations", "max iterations", "mean solve s",
              "set-up s", "converged", "monotone residual"]
    rows = []
    cases = [(f"{n}² empty", poisson_2d(n)) for n in args.grids]
    for n in [g for g in args.grids if g >= 64]:
        cases += [(f"{n}² {name}", poisson_2d(n, mask)) for name, mask in obstacles(n).items()]
    for label, system in cases:
        res = measure(system, tr.net, args.rhs, max_iter=5000)
        for name, (it, sec, setup, conv, mono, mx) in res.items():
            rows.append([label, name, f"{it:.1f}", mx, f"{sec:.4f}", f"{setup:.3f}",
                         f"{conv:.0%}", f"{mono:.0%}"])
        print(label, {k: round(v[0], 1) for k, v in res.items()}, flush=True)
    table = markdown_table(header, rows)
    print(table)
    body = (f"Network: PoissonCNN F={args.filters}, trained on the empty {args.train_grid}² "
            f"matrix only ({args.samples} Ritz rhs from {args.lanczos} Lanczos steps, "
            f"{args.steps} Adam steps, batch 10, lr 1e-3; {tr.seconds:.0f} s; loss "
            f"{tr.losses[0]:.3f} -> {np.mean(tr.losses[-50:]):.4f}). Each row: {args.rhs} "
            f"N(0,1) + {args.rhs} smooth rhs, stop at ||r||/||b|| <= 1e-4. Obstacles (solid "
            "cells, Neumann walls) were never seen in training. DCDM seconds include every "
            "network inference (float32, CPU). Shared 2-core machine (3 other agents), "
            f"{args.threads} torch threads: wall times are noisy.\n\n{table}")
    if not args.no_save:
        append_results("DCDM vs CG / IC(0)-PCG / AMG-PCG (2-D Poisson, rel. res. 1e-4)", body)


if __name__ == "__main__":
    main()
