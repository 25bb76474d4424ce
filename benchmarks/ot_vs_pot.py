"""monge.ot Sinkhorn and Sinkhorn–Newton–Sparse against POT's sinkhorn / sinkhorn_log.

Problem (issue 3): x ~ U([0,1]^2), y ~ N((1,1), 0.2^2 I), n points each, uniform weights,
squared Euclidean cost divided by its max, float64. Every solver runs to L1 marginal error
<= tol (default 1e-8) with at most --max-iter iterations and --time-cap seconds. POT cannot
be stopped on a clock, so its iteration cap is set from a 20-iteration calibration run;
POT's own stopping test (L2 column error every 10 iterations) uses stopThr = tol, and the L1
error of every returned plan is measured here. Ratios are against POT's faster solver measured
in the same run (the faster of those that reached tol, else the faster of both).

monge's three methods (sinkhorn, sns, auto) are timed ``--repeats`` times each, interleaved
(sinkhorn, sns, auto, sinkhorn, ...), and the fastest run of each is reported: on a machine shared
with other jobs a single timing is off by up to ~1.5x (issue 14 measured auto at 1.47x of the
identical fixed solve), and the minimum over interleaved runs is the least noisy estimate of a
deterministic solve's cost. ``--no-pot`` skips the POT solvers (for the auto-vs-fixed figures).

Run: python benchmarks/ot_vs_pot.py [--quick] [--sizes 500,1000] [--eps 0.01,0.0005]
     [--repeats 3] [--no-pot]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import ot  # noqa: E402
import torch  # noqa: E402
from _results import append_results, markdown_table  # noqa: E402

from monge.ot import sinkhorn, sinkhorn_newton_sparse, solve, sq_euclidean_cost  # noqa: E402


def problem(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    y = rng.normal(1.0, 0.2, (n, 2))
    C = sq_euclidean_cost(torch.as_tensor(x), torch.as_tensor(y)).numpy()
    return C / C.max()


def l1_error(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def run_pot(fn, a, b, C, eps, tol, max_iter, cap):
    """POT solver with an iteration cap derived from the time cap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        fn(a, b, C, eps, numItermax=20, stopThr=0.0)
        per_it = (time.perf_counter() - t) / 20
        cap_iter = int(min(max_iter, max(20, cap / per_it)))
        t = time.perf_counter()
        P, log = fn(a, b, C, eps, numItermax=cap_iter, stopThr=tol, log=True)
        sec = time.perf_counter() - t
    its = int(log.get("niter", cap_iter))
    err = l1_error(P, a, b) if np.isfinite(P).all() else float("nan")
    return its, sec, err


def run_monge(fn, C, eps, tol, max_iter, cap, **kw):
    Ct = torch.as_tensor(C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        r = fn(None, None, Ct, eps, tol=tol, max_iter=max_iter, max_time=cap, **kw)
        sec = time.perf_counter() - t
    return r.iterations, sec, float(r.marginal_error), r


def run_auto(C, eps, tol, max_iter, cap):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        r = solve(None, None, torch.as_tensor(C), method="auto", eps=eps, tol=tol)
        sec = time.perf_counter() - t
    return r.iterations, sec, float(r.marginal_error), r


def monge_best_of(C, eps, tol, max_iter, cap, repeats):
    """Fastest of ``repeats`` interleaved runs of monge sinkhorn, sns and auto."""
    runs = {"monge sinkhorn": lambda: run_monge(sinkhorn, C, eps, tol, max_iter, cap),
            "monge sns": lambda: run_monge(sinkhorn_newton_sparse, C, eps, tol, 500, cap),
            "monge auto": lambda: run_auto(C, eps, tol, max_iter, cap)}
    Ct = torch.as_tensor(C)[:50, :50].contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in (sinkhorn, sinkhorn_newton_sparse):        # warm-up
            fn(None, None, Ct, eps, tol=tol, max_iter=5)
    best: dict = {}
    done = 0
    while done < repeats:
        for name, run in runs.items():
            out = run()
            if name not in best or out[1] < best[name][1]:
                best[name] = out
        done += 1
        if done == 1:       # short solves: repeat until each method has had ~1 s in all
            fastest = min(v[1] for v in best.values())
            repeats = max(repeats, min(15, math.ceil(1.0 / max(fastest, 1e-3))))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--eps", default="0.05,0.01,0.002,0.0005")
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--max-iter", type=int, default=100_000)
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per solver")
    ap.add_argument("--quick", action="store_true", help="n=500, eps 0.01 and 5e-4, 20 s cap")
    ap.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per monge method")
    ap.add_argument("--no-pot", action="store_true", help="monge methods only")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    sizes = [500] if args.quick else [int(s) for s in args.sizes.split(",")]
    epss = [0.01, 0.0005] if args.quick else [float(e) for e in args.eps.split(",")]
    cap = 20.0 if args.quick else args.time_cap

    rows = []
    for n in sizes:
        C = problem(n)
        a = b = np.full(n, 1.0 / n)
        for eps in epss:
            res = {}
            if not args.no_pot:
                res["POT sinkhorn"] = run_pot(ot.bregman.sinkhorn_knopp, a, b, C, eps,
                                              args.tol, args.max_iter, cap)
                res["POT sinkhorn_log"] = run_pot(ot.bregman.sinkhorn_log, a, b, C, eps,
                                                  args.tol, args.max_iter, cap)
            best_m = monge_best_of(C, eps, args.tol, args.max_iter, cap, args.repeats)
            r, ra = best_m["monge sns"][3], best_m["monge auto"][3]
            for name in ("monge sinkhorn", "monge sns", "monge auto"):
                res[name] = best_m[name][:3]
            auto_pick = ra.info["auto"]["method"]
            best_fixed = min(res["monge sinkhorn"][1], res["monge sns"][1])
            auto_note = f"auto -> {auto_pick}: {res['monge auto'][1] / best_fixed:.2f}x best fixed"
            sns_detail = f"{r.info['warmup_iterations']}+{r.info['newton_iterations']}"
            pot = {k: v for k, v in res.items() if k.startswith("POT")} or {
                "monge sinkhorn": res["monge sinkhorn"]}      # --no-pot: ratios vs monge
            ok = {k: v for k, v in pot.items() if v[2] <= args.tol}
            best_name, best = min((ok or pot).items(), key=lambda kv: kv[1][1])
            log_ref = res.get("POT sinkhorn_log", (1, float("nan")))
            log_per_it = log_ref[1] / max(log_ref[0], 1)
            for name, (its, sec, err) in res.items():
                per_it = sec / max(its, 1)
                rows.append([
                    n, eps, name, f"{its}" + (f" ({sns_detail})" if name == "monge sns" else ""),
                    round(sec, 3), f"{err:.1e}", "yes" if err <= args.tol else "NO",
                    f"{best[1] / sec:.2f}x" if name.startswith("monge") else "",
                    f"{best[0] / max(its, 1):.1f}x" if name == "monge sns" else "",
                    f"{log_per_it / per_it:.1f}x" if name == "monge sinkhorn" else "",
                    best_name if name == "monge sns" else (
                        auto_note if name == "monge auto" else "")])
                print(rows[-1], flush=True)
    header = ["n", "eps", "solver", "iterations", "seconds", "L1 marginal error",
              f"<= {args.tol:g}", "speed-up vs POT best", "iteration ratio vs POT best",
              "per-iteration speed-up vs POT sinkhorn_log", "POT best / auto choice"]
    body = (f"Uniform square vs N((1,1), 0.2^2 I), squared Euclidean cost / max, float64, "
            f"tol {args.tol:g} (L1, both marginals), at most {args.max_iter} iterations and "
            f"{cap:g} s per solver. Speed-ups are POT-best seconds / monge seconds (>1: monge "
            f"faster; with --no-pot, vs monge sinkhorn); SNS iterations are warm-up sweeps + "
            f"Newton steps. monge seconds: fastest of {args.repeats} interleaved runs (more, up to "
            f"15, for solves under ~0.3 s).\n\n"
            + markdown_table(header, rows))
    if not args.no_write:
        append_results("OT: monge sinkhorn / SNS vs POT sinkhorn / sinkhorn_log", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
