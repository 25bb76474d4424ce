"""Reflow and one-step distillation on 8 gaussians → moons (Liu et al. 2023; issue 9).

Trains the teacher (independent coupling, linear path) and an OT-CFM model with `monge run`,
then `monge distill` twice (2- and 3-rectified flow) and once one-step, and reports on the same
held-out moons: W2 at NFE 1/2/4 (Euler) and the teacher at 100 NFE, straightness, the pairs'
transport cost E‖Z1 − Z0‖² against the exact OT cost between the same source and target samples
(the lower bound), and each stage's cost in seconds and teacher NFE.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/reflow.py [--steps 3000] [--pairs 20000]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.cli.distill_cmd import distill_command  # noqa: E402
from monge.data import load_dataset  # noqa: E402
from monge.experiments.config import load_config  # noqa: E402
from monge.experiments.load import load_trained  # noqa: E402
from monge.experiments.run import run_experiment  # noqa: E402
from monge.metrics import straightness, wasserstein2  # noqa: E402
from monge.ot import solve  # noqa: E402
from monge.solvers import Euler, integrate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--student-steps", type=int, default=2000)
    ap.add_argument("--work", default="/tmp/monge_reflow")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    base = {"train.steps": args.steps, "compare.couplings": [], "eval.sweep_nfe": [],
            "eval.n_samples": 1000}
    runs, seconds = {}, {}
    for name, coupling in (("teacher", "independent"), ("ot-cfm", "ot")):
        out = work / name
        if not (out / "checkpoint.safetensors").exists():
            cfg = load_config(None, {**base, "coupling": coupling, "out": str(out)})
            t0 = time.perf_counter()
            run_experiment(cfg, progress=False, overwrite=True)
            seconds[name] = time.perf_counter() - t0
        runs[name] = out
    chain = [("reflow-2", "reflow", "teacher"), ("reflow-3", "reflow", "reflow-2"),
             ("onestep", "onestep", "reflow-2")]
    meta = {}
    for name, method, parent in chain:
        out = work / name
        if not (out / "metrics.json").exists():
            t0 = time.perf_counter()
            distill_command(checkpoint=runs[parent], method=method, out=out, pairs=args.pairs,
                            steps=args.student_steps, quiet=True)
            seconds[name] = time.perf_counter() - t0
        runs[name] = out
        meta[name] = json.loads((out / "metrics.json").read_text())

    teacher = load_trained(runs["teacher"])
    cfg = teacher.cfg
    tgt = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                       seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    src = load_dataset(cfg.source, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                       seed=cfg.seed + 1, test_fraction=cfg.data.test_fraction)
    m = min(1000, tgt.test.shape[0] // 2)
    ref, ref2 = tgt.test[:m], tgt.test[m:2 * m]
    z = teacher.maps.encode_source(src.test[:m])
    floor = wasserstein2(ref, ref2)
    ot_cost = float(solve(None, None, torch.cdist(src.test[:m].double(), ref.double()) ** 2,
                          method="exact").cost)  # squared-Euclidean exact OT
    rows = []
    for name in ("teacher", "ot-cfm", "reflow-2", "reflow-3", "onestep"):
        tr = load_trained(runs[name])
        w = {}
        with torch.no_grad():
            for nfe in (1, 2, 4, 100):
                if nfe == 100 and name not in ("teacher", "ot-cfm"):
                    continue
                x = tr.maps.decode(integrate(tr.field, z, Euler(), steps=nfe).x)
                w[nfe] = wasserstein2(x, ref)
            traj = integrate(tr.field, z, Euler(), steps=100, return_trajectory=True)
        path = traj.trajectory
        dec = tr.maps.decode(path.flatten(0, 1)).reshape(path.shape)
        cost = float(((dec[-1] - dec[0]) ** 2).sum(1).mean())
        rows.append([name, w[1], w[2], w[4], w.get(100, float("nan")),
                     straightness(dec, traj.times), cost,
                     meta.get(name, {}).get("teacher_nfe", 0),
                     seconds.get(name, float("nan"))])
    t100 = rows[0][4]
    best1 = min(r[1] for r in rows[2:])
    table = markdown_table(["model", "W2 NFE 1", "W2 NFE 2", "W2 NFE 4", "W2 NFE 100",
                            "straightness", "E‖Z1 − Z0‖²", "teacher NFE for pairs",
                            "seconds (this run)"], rows)
    straight_ratio = rows[0][5] / rows[2][5]
    body = (f"{cfg.source} → {cfg.target}, linear path, {args.steps} teacher steps; students "
            f"{args.student_steps} steps on {args.pairs} dopri5 pairs, from the parent's "
            f"weights. {m} held-out source/target samples; Euler for every NFE. Held-out floor "
            f"W2 {floor:.4f}; exact OT cost between the same samples {ot_cost:.4f} (a "
            "reference only: the generated Z1 are not those target samples, so a model's cost "
            "can fall below it). The one-step student is trained for t = 0 only, so its "
            "multi-step rows and straightness are not meaningful. NaN seconds: reused from an "
            "earlier run in the work folder.\n\n" + table + "\n\n"
            f"- best 1-NFE student W2 {best1:.4f} vs teacher 100-NFE {t100:.4f}: ratio "
            f"{best1 / t100:.2f} (goal ≤ 1.25); OT-CFM 1-NFE {rows[1][1]:.4f} "
            f"({'student below' if best1 < rows[1][1] else 'student NOT below'} it).\n"
            f"- straightness teacher / 2-RF: {straight_ratio:.1f}× (spec: ≥ 5×).\n"
            f"- transport cost by k: {rows[0][6]:.4f} (1-RF) → {rows[2][6]:.4f} (2-RF) → "
            f"{rows[3][6]:.4f} (3-RF); exact OT {ot_cost:.4f}.\n")
    append_results("Reflow and one-step distillation (issue 9)", body)


if __name__ == "__main__":
    main()
