"""1-NFE W2 of reflow/one-step students as a ratio of their teacher's 100-step W2 on fresh
held-out draws (8 gaussians → moons; issue 9's 1.25× acceptance).

The students come from the default teacher of ``benchmarks/distill_students.py``::

    monge distill TEACHER --method reflow --pairs 20000 --steps 5000 --out RF
    monge distill RF --method onestep --pairs 20000 --steps 3000 --out RF_ONE

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/distill_ratio_check.py TEACHER NAME=FOLDER ...``
Each of 6 draws takes 2000 fresh source points and 2000 fresh moons (seeds 100+k and 200+k);
the ratio is per draw, then averaged.
"""

import sys

import torch

from monge.data import load_dataset
from monge.experiments.load import load_trained
from monge.metrics import wasserstein2
from monge.solvers import Euler, integrate


def main() -> None:
    torch.set_num_threads(1)
    teacher = load_trained(sys.argv[1])
    models = {a.split("=", 1)[0]: load_trained(a.split("=", 1)[1]) for a in sys.argv[2:]}
    rows: dict[str, list[float]] = {k: [] for k in ["teacher, Euler 100", *models]}
    for s in range(6):
        src = load_dataset("8gaussians", n_train=16, n_test=2000, seed=100 + s).test
        tgt = load_dataset("moons", n_train=16, n_test=2000, seed=200 + s).test
        z = teacher.maps.encode_source(src)
        with torch.no_grad():
            x = teacher.maps.decode(integrate(teacher.field, z, Euler(), steps=100).x)
            rows["teacher, Euler 100"].append(wasserstein2(x, tgt))
            for k, m in models.items():
                x = m.maps.decode(integrate(m.field, z, Euler(), steps=1).x)
                rows[k].append(wasserstein2(x, tgt))
    t = torch.tensor(rows["teacher, Euler 100"])
    print("| model | W2 (mean over 6 draws) | sd | ratio to the teacher's 100-NFE W2 |")
    print("|---|---:|---:|---:|")
    for k, v in rows.items():
        v = torch.tensor(v)
        print(f"| {k} | {v.mean():.4f} | {v.std():.4f} | {(v / t).mean():.3f} |")


if __name__ == "__main__":
    main()
