"""Hessian trace and SGD stability (Wu & Su, ICML 2023): monge vs curvlinops, tr(H) ≤ 2B/η table.

(a) Small MLP 64-16-10 (tanh, float64) on 200 digits, cross-entropy and square loss: monge's
    exact trace (torch.func Hessian), Hutchinson (Rademacher, K probes, ± standard error),
    exact Gauss–Newton trace and Lanczos λ_max, next to curvlinops-for-pytorch's Hessian / GGN
    operators (dense via matmat with the identity).
(b) Scalar square-loss regression on n digits (target (label − 4.5)/4.5), MLP 64-w-1 tanh, same
    init for every run; plain SGD with batches drawn with replacement (B = 1, 4) and full-batch
    GD, trained to loss ≤ 1e-5; at the end: exact GN trace, λ_max, tr(H)·η/B and λ_max·η.

Set-up (benchmark only, never a runtime dependency):
``pip install curvlinops-for-pytorch --no-deps einops linear_operator`` (a plain install may
upgrade torch and pull CUDA wheels). Run: ``OMP_WAIT_POLICY=PASSIVE python
benchmarks/dynamics_hessian.py`` (a few minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.cli.dynamics_cmd import digits_regression  # noqa: E402
from monge.data import load_dataset  # noqa: E402
from monge.dynamics.hessian import hessian_trace, top_hessian_eigenvalue  # noqa: E402
from monge.dynamics.stability import run_sgd, stability_report  # noqa: E402


def part_a(probes: list[int]) -> str:
    d = load_dataset("digits", seed=0)
    x = d.train[:200].reshape(200, -1).double()
    lab = d.train_labels[:200]
    onehot = nn.functional.one_hot(lab, 10).double()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    losses = {
        "cross-entropy": (lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), (x, lab),
                          nn.CrossEntropyLoss(), lab),
        "square (MSE mean)": (lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), (x, onehot),
                              nn.MSELoss(), onehot),
    }
    try:
        from curvlinops import GGNLinearOperator, HessianLinearOperator
        have_peer = True
    except ImportError:
        have_peer = False
    rows = []
    params = [p for p in model.parameters()]
    dim = sum(p.numel() for p in params)
    for name, (fn, batch, peer_loss, target) in losses.items():
        t = time.perf_counter()
        exact = hessian_trace(model, fn, batch, "exact").value
        t_exact = time.perf_counter() - t
        gn = hessian_trace(model, fn, batch, "gauss-newton").value
        lam = top_hessian_eigenvalue(model, fn, batch, iters=40).value
        peer = ["not installed"] * 3
        if have_peer:
            eye = torch.eye(dim, dtype=torch.float64)
            h = HessianLinearOperator(model, peer_loss, params, [(x, target)]) @ eye
            g = GGNLinearOperator(model, peer_loss, params, [(x, target)]) @ eye
            peer = [f"{float(torch.trace(h)):.6g}", f"{float(torch.trace(g)):.6g}",
                    f"{float(torch.linalg.eigvalsh(0.5 * (h + h.T))[-1]):.6g}"]
        rows.append([name, "exact / GN / λmax (monge)", f"{exact:.6g}", f"{gn:.6g}",
                     f"{lam:.6g}", f"{t_exact:.2f} s"])
        rows.append([name, "curvlinops Hessian / GGN / eigvalsh", *peer, ""])
        for k in probes:
            t = time.perf_counter()
            est = hessian_trace(model, fn, batch, "hutchinson", probes=k, generator=1)
            z = (est.value - exact) / est.std_error
            rows.append([name, f"Hutchinson K={k}", f"{est.value:.6g} ± {est.std_error:.3g}",
                         f"z-score {abs(z):.2f}", "", f"{time.perf_counter() - t:.2f} s"])
    return (f"(a) MLP 64-16-10 tanh, d = {dim}, 200 digits, float64:\n\n"
            + markdown_table(["loss", "method", "tr(H)", "tr(GN) or z-score", "λ_max", "time"],
                             rows))


def part_b(etas: list[float], batches: list[int], n: int, width: int, steps: int) -> str:
    x, y, _, _ = digits_regression(n, 0)
    mse = lambda m, b: 0.5 * ((m(b[0]) - b[1]) ** 2).sum(1).mean()
    rows = []
    for b in batches:
        for eta in etas:
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 1)).double()
            t = time.perf_counter()
            run = run_sgd(model, mse, (x, y), eta, b, steps, seed=0, target_loss=1e-5,
                          log_every=250)
            label = "GD" if b >= n else f"SGD B={b}"
            if run.diverged:
                rows.append([label, eta, "unstable (diverged)", "", "", "", "", ""])
                continue
            rep = stability_report(model, mse, (x, y), eta, min(b, n))
            status = "converged" if run.converged else f"not converged ({run.steps} steps)"
            rows.append([label, eta, status, f"{run.final_loss:.1e}", f"{rep.trace:.4g}",
                         f"{rep.trace * eta:.3f}", f"{rep.trace_lr_over_b:.3f}",
                         f"{rep.lambda_max_lr:.3f}"])
            print(rows[-1], f"{time.perf_counter() - t:.1f}s", flush=True)
    return (f"(b) Scalar digits regression, n = {n}, MLP 64-{width}-1 tanh, same init, plain "
            f"SGD (batches with replacement) / GD, ≤ {steps} steps to loss ≤ 1e-5; exact GN "
            "trace at the end (= Hessian at interpolation):\n\n"
            + markdown_table(["run", "η", "status", "loss", "tr(H)", "tr(H)·η",
                              "tr(H)·η/B (≤ 2?)", "λ_max·η (≤ 2?)"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--etas", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--batches", default="1,4,50")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    a = part_a([30, 100, 300])
    print(a, flush=True)
    b = part_b([float(v) for v in args.etas.split(",")],
               [int(v) for v in args.batches.split(",")], args.n, args.width, args.steps)
    body = (a + "\n\n" + b + f"\n\nShared 2-core machine (other agents' jobs running), 1 torch "
            f"thread. Total {time.perf_counter() - t0:.0f} s.")
    if args.no_write:
        print(body)
    else:
        append_results("Hessian trace and SGD stability tr(H) ≤ 2B/η (issue 12)", body)


if __name__ == "__main__":
    main()
