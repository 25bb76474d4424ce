"""TESLA / MTT trajectory matching on digits (Cui et al., ICML 2023): memory, exactness, accuracy.

(a) Peak autograd-graph memory (bytes of tensors saved for backward, all devices) and time of
    one matching gradient vs unroll length N, for MTT's full unroll, monge's constant-memory exact
    reverse pass and the paper's first-order TESLA gradient; plus the N·|θ| parameter snapshots.
    (On a GPU, ``torch.cuda.max_memory_allocated`` is reported too.)
(b) Agreement with the full-unroll gradient (float64): relative difference and cosine.
(c) Test accuracy of fresh students trained on the distilled set (IPC 1 and 10), next to random
    real subsets of the same size (hard labels) and full-data training; mean ± std over seeds.
Experts: 3 runs of the project's Trainer (AdamW) on the digits training split, per-epoch
snapshots. Student: MLP 64-128-10.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/dynamics_tesla.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.data import load_dataset  # noqa: E402
from monge.dynamics.tesla import (  # noqa: E402
    DistillConfig,
    MLPSpec,
    distill,
    evaluate_synthetic,
    train_experts,
    trajectory_matching_grad,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--combos", default="learned:exact,hard:exact,expert:tesla",
                    help="comma list of labels:gradient-mode pairs for (c)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    dev = torch.device(args.device)
    t0 = time.perf_counter()
    d = load_dataset("digits", seed=0)
    x, y = d.train.reshape(len(d.train), -1), d.train_labels
    xt, yt = d.test.reshape(len(d.test), -1).double(), d.test_labels
    spec = MLPSpec((64, 128, 10))
    experts = train_experts(x, y, spec, n_experts=3, epochs=15, seed=0)
    # (a) + (b)
    g = torch.Generator().manual_seed(0)
    X = x[torch.randperm(len(x), generator=g)[:100]].double().to(dev)
    Y = torch.nn.functional.one_hot(y[:100], 10).double().to(dev) * 10
    th0, th1 = experts[0][2].to(dev), experts[0][4].to(dev)
    lr = torch.tensor(0.05, dtype=torch.float64, device=dev)
    rows, agree = [], []
    for n_steps in (5, 10, 20, 40, 80):
        batches = [torch.randperm(100, generator=g)[:50].to(dev) for _ in range(n_steps)]
        res = {}
        for mode in ("unroll", "exact", "tesla"):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            r = trajectory_matching_grad(spec, X, Y, lr, th0, th1, batches, mode=mode,
                                         labels_learned=True)
            secs = time.perf_counter() - t
            cuda = (f"{torch.cuda.max_memory_allocated() / 2 ** 20:.2f}" if dev.type == "cuda"
                    else "—")
            res[mode] = r
            rows.append([n_steps, mode, f"{r.graph_bytes / 2 ** 20:.3f}",
                         f"{r.snapshot_bytes / 2 ** 20:.3f}", cuda, f"{secs:.3f}"])
        u = res["unroll"]
        for mode in ("exact", "tesla"):
            r = res[mode]
            rel = float((r.grad_x - u.grad_x).norm() / u.grad_x.norm())
            rel_y = float((r.grad_labels - u.grad_labels).norm() / u.grad_labels.norm())
            cos = float(torch.nn.functional.cosine_similarity(r.grad_x.reshape(-1),
                                                              u.grad_x.reshape(-1), 0))
            rel_a = abs(float(r.grad_lr - u.grad_lr)) / abs(float(u.grad_lr))
            agree.append([n_steps, mode, f"{rel:.2e}", f"{rel_y:.2e}", f"{rel_a:.2e}",
                          f"{cos:.6f}"])
        print(rows[-3:], agree[-2:], flush=True)
    # (c)
    acc_rows = []
    full = evaluate_synthetic(spec, x.double(), torch.nn.functional.one_hot(y, 10).double(), 0.1,
                              xt, yt, steps=300, seeds=(0, 1, 2))
    combos = [tuple(c.split(":")) for c in args.combos.split(",")]
    for ipc in [int(v) for v in args.ipcs.split(",")]:
        for labels, mode in combos:
            cfg = DistillConfig(ipc=ipc, syn_steps=20, iterations=args.iterations, mode=mode,
                                labels=labels, expert_epochs=2, max_start_epoch=10, seed=0)
            t = time.perf_counter()
            r = distill(x, y, experts, 10, spec, cfg)
            m, s = evaluate_synthetic(spec, r.x, r.labels, r.lr, xt, yt, steps=300,
                                      seeds=(0, 1, 2, 3, 4))
            acc_rows.append([ipc, f"distilled ({mode} gradient, {labels} labels)",
                             f"{m:.3f} ± {s:.3f}", f"α = {r.lr:.3g}; loss {r.losses[0]:.3f} → "
                             f"{sum(r.losses[-10:]) / 10:.3f}; {time.perf_counter() - t:.0f} s"])
            print(acc_rows[-1], flush=True)
        accs = []
        gg = torch.Generator().manual_seed(ipc)
        for s in range(5):
            idx = torch.cat([torch.nonzero(y == c).reshape(-1)[torch.randperm(
                int((y == c).sum()), generator=gg)[:ipc]] for c in range(10)])
            accs.append(evaluate_synthetic(spec, x[idx].double(), torch.nn.functional.one_hot(
                y[idx], 10).double(), 0.1, xt, yt, steps=300, seeds=(s,))[0])
        mean = sum(accs) / 5
        std = (sum((a - mean) ** 2 for a in accs) / 4) ** 0.5
        acc_rows.append([ipc, "random real subset (hard labels, lr 0.1)",
                         f"{mean:.3f} ± {std:.3f}", "5 subsets"])
    acc_rows.append(["all", f"full training split ({len(x)} images)",
                     f"{full[0]:.3f} ± {full[1]:.3f}", "lr 0.1, 300 full-batch steps"])
    body = ("(a) One matching gradient, 100 synthetic digits, batch 50 per student step, MLP "
            "64-128-10 (float64). Graph MB = peak bytes saved for backward; snapshots = stored "
            "θ_i:\n\n" + markdown_table(["N", "mode", "graph MB", "snapshots MB", "CUDA peak MB",
                                          "seconds"], rows)
            + "\n\n(b) Agreement with the full-unroll gradient:\n\n"
            + markdown_table(["N", "mode", "rel. diff dL/dX", "rel. diff dL/dlabels",
                              "rel. diff dL/dα", "cosine dL/dX"], agree)
            + f"\n\n(c) Test accuracy on the digits test split ({len(xt)} images) of fresh "
            "students (300 full-batch SGD steps at the learned α; 5 init seeds), "
            f"{args.iterations} distillation iterations, N = 20, M = 2 expert epochs:\n\n"
            + markdown_table(["IPC", "training set", "test accuracy", "notes"], acc_rows)
            + f"\n\nShared 2-core machine (other agents' jobs running), 2 torch threads. Total "
            f"{time.perf_counter() - t0:.0f} s.")
    if args.no_write:
        print(body)
    else:
        append_results("TESLA / MTT trajectory matching on digits (issue 12)", body)


if __name__ == "__main__":
    main()
