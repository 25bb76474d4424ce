"""Acceptance figures of the main job: ``monge run`` default, a user file, and digits.

1. ``monge run`` with no arguments (8 gaussians → moons): W2 at each (solver, NFE) against the
   held-out floor, and wall time.
2. ``monge run --source gaussian --target points.npy`` on a 2-D mixture saved sorted by class.
3. optionally (``--digits``) ``monge run configs/digits.yaml``: classifier Fréchet distance by NFE.

Acceptance: W2 at Euler NFE 100 ≤ 2.5 × reference_w2 (jobs 1 and 2); wall time ≤ 3 min (job 1)
and ≤ 15 min (job 3) on 2 CPU cores.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/main_job.py [--digits]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "monge", "run", "--quiet", *args], check=True,
                   cwd=ROOT)
    seconds = time.perf_counter() - t0
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text()), seconds


def table(metrics: dict, seconds: float, frechet: bool = False) -> str:
    ref = metrics["reference_w2"]
    header = ["solver", "NFE", "W2", "W2 / floor", "energy distance"]
    if frechet:
        header += ["Fréchet", "class entropy"]
    rows = []
    for e in metrics["evaluations"]:
        row = [e["solver"], e["nfe"], e["w2"], e["w2"] / ref, e["energy_distance"]]
        if frechet:
            row += [e["frechet"], e["class_entropy"]]
        rows.append(row)
    extra = (f", Fréchet floor {metrics['reference_frechet']:.3f}, class-entropy floor "
             f"{metrics['reference_class_entropy']:.3f}" if frechet else "")
    return (f"wall time {seconds:.0f} s (training {metrics['train_seconds']:.0f} s), held-out "
            f"floor W2 {ref:.4f}{extra}, straightness {metrics['straightness']:.3f}, "
            f"n_eval {metrics['n_eval']}\n\n" + markdown_table(header, rows))


def verdict(metrics: dict) -> str:
    w2 = next(e["w2"] for e in metrics["evaluations"] if e["solver"] == "euler"
              and e["nfe"] == 100)
    ratio = w2 / metrics["reference_w2"]
    return (f"Euler NFE 100: W2 = {w2:.4f} = {ratio:.2f} × floor → "
            f"{'meets' if ratio <= 2.5 else 'MISSES'} the ≤ 2.5 × floor target")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--digits", action="store_true", help="also run configs/digits.yaml")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="monge-main-job-"))
    parts = []
    m, s = run(["--out", str(tmp / "default")])
    parts.append(f"### `monge run` (default: 8gaussians → moons)\n\n{table(m, s)}\n\n"
                 f"{verdict(m)}; wall time {s:.0f} s "
                 f"({'within' if s <= 180 else 'OVER'} the 3-minute budget).")
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.35, size=(1500, 2)) for c in
                          ([-3, 0], [0, 3], [3, 0])]).astype(np.float32)  # sorted by class
    np.save(tmp / "points.npy", pts)
    m, s = run(["--source", "gaussian", "--target", str(tmp / "points.npy"), "--out",
                str(tmp / "user")])
    parts.append("### `monge run --source gaussian --target points.npy` (3-component mixture, "
                 f"4,500 rows saved sorted by class)\n\n{table(m, s)}\n\n{verdict(m)}.")
    if args.digits:
        m, s = run([str(ROOT / "configs" / "digits.yaml"), "--out", str(tmp / "digits")])
        parts.append(f"### `monge run configs/digits.yaml` (class-conditional U-Net)\n\n"
                     f"{table(m, s, frechet=True)}\n\nwall time {s:.0f} s "
                     f"({'within' if s <= 900 else 'OVER'} the 15-minute budget).")
    append_results("Main job acceptance (monge run)", "\n\n".join(parts))


if __name__ == "__main__":
    main()
