"""HomoODE vs neural ODE vs DEQ on digits at equal parameters (Ding et al., NeurIPS 2023).

Arms (state 32, field width 64, linear head; parameter counts in the table): HomoODE with a
shared learnable initial point (init regression, its own SGD), HomoODE with the fixed ±1 start,
a neural ODE (input only through z(0) = W x) and a DEQ z = tanh(h(z) + U x) with implicit
gradients. ODEs: monge's Dopri5, rtol = atol = 1e-3, backprop through the solver. Adam with a
cosine schedule, batch 64, 70/30 split. Metrics: test accuracy (mean ± std over seeds), forward
NFE at evaluation (DEQ: fixed-point iterations at tol 1e-4), equilibrium residual
(ODEs: ||h(z(1))||/||z(1)||, DEQ: ||f(z) − z||/||z||), seconds per epoch, peak graph memory.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/dynamics_homoode.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.data import load_dataset  # noqa: E402
from monge.dynamics.homoode import ImplicitClassifier, make_block, train_classifier  # noqa: E402

ARMS = ("homoode", "homoode-fixed", "node", "deq")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-3, help="dopri5 rtol = atol")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    d = load_dataset("digits", seed=0, test_fraction=0.3)
    xtr, ytr = d.train.reshape(len(d.train), -1), d.train_labels
    xte, yte = d.test.reshape(len(d.test), -1), d.test_labels
    rows = []
    for arm in ARMS:
        reps = []
        for s in range(args.seeds):
            torch.manual_seed(s)
            kw = {} if arm == "deq" else {"rtol": args.tol, "atol": args.tol}
            model = ImplicitClassifier(make_block(arm, 64, 32, 64, **kw), 32, 10)
            reps.append(train_classifier(model, xtr, ytr, xte, yte, epochs=args.epochs, seed=s))
            print(arm, s, reps[-1].test_accuracy, reps[-1].nfe, flush=True)
        acc = [r.test_accuracy for r in reps]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        rows.append([arm, reps[0].params, f"{statistics.mean(acc):.3f} ± {sd:.3f}",
                     f"{statistics.mean(r.nfe for r in reps):.1f}",
                     f"{statistics.mean(r.residual for r in reps):.3g}",
                     f"{statistics.mean(r.seconds_per_epoch for r in reps):.2f}",
                     f"{max(r.graph_bytes for r in reps) / 2 ** 20:.2f}"])
    body = (f"Digits 70/30 split, {args.epochs} epochs, {args.seeds} seeds, dopri5 rtol = atol "
            f"= {args.tol:g}:\n\n"
            + markdown_table(["model", "params", "test accuracy", "forward NFE",
                              "equilibrium residual", "s / epoch", "peak graph MB"], rows)
            + f"\n\nShared 2-core machine (other agents' jobs running), 2 torch threads. Total "
            f"{time.perf_counter() - t0:.0f} s.")
    if args.no_write:
        print(body)
    else:
        append_results("HomoODE vs neural ODE vs DEQ on digits (issue 12)", body)


if __name__ == "__main__":
    main()
