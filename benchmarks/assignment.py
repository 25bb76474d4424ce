"""Minibatch assignment: network simplex (POT ot.emd, as in monge.ot.assignment) vs scipy's
linear_sum_assignment, on the squared-Euclidean cost of two point clouds (the OT-CFM inner loop).

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/assignment.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.ot import assignment, sq_euclidean_cost  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for n, d in [(64, 2), (128, 2), (256, 2), (256, 64), (512, 2), (1024, 2), (1024, 64)]:
        g = torch.Generator().manual_seed(n + d)
        x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
        x1 = 2 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1
        C = sq_euclidean_cost(x0, x1)
        Cn = C.numpy()
        reps = 20 if n <= 256 else 5
        t_monge = best_of(lambda: assignment(C), reps)
        t_scipy = best_of(lambda: linear_sum_assignment(Cn), reps)
        perm = assignment(C).numpy()
        r, c = linear_sum_assignment(Cn)
        gap = Cn[np.arange(n), perm].sum() - Cn[r, c].sum()
        rows.append([n, d, 1e3 * t_monge, 1e3 * t_scipy, t_scipy / t_monge, gap])
    body = ("Square uniform assignment on C = ‖x0 − x1‖², x0 ~ N(0, I), x1 ~ N(1, 4I), float64, "
            "1 thread, best of 5–20 runs. `cost gap` = monge's cost − scipy's (both optimal: "
            "should be 0 up to round-off).\n\n" + markdown_table(
                ["n", "d", "monge.ot.assignment ms", "scipy LSA ms", "speed-up", "cost gap"],
                rows))
    append_results("Assignment: monge (network simplex) vs scipy linear_sum_assignment", body)


if __name__ == "__main__":
    main()
