"""LCM student after the guidance-embedding fix: FD and class accuracy at w = 1, 2, 3 and 1/2/4
steps (1000 samples, 100 per class, vs the held-out digits). The student comes from
``monge distill TEACHER --method lcm --steps 800 --batch-size 64 --out /tmp/lcm_fix`` with the
digits teacher of ``benchmarks/distill_students.py``.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/lcm_guidance_check.py [STUDENT]``
"""

import sys

import torch

from monge.data import load_dataset
from monge.experiments.load import load_trained
from monge.metrics import classifier_frechet_distance, predict_digits


def main() -> None:
    torch.set_num_threads(1)
    t = load_trained(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lcm_fix")
    ds = load_dataset("digits", test_fraction=t.cfg.data.test_fraction, seed=t.cfg.seed)
    labels = torch.arange(1000) % 10
    for w in (1.0, 2.0, 3.0):
        for k in (1, 2, 4):
            x = t.sample(1000, nfe=k, labels=labels, guidance=w, seed=0).x
            acc = float((predict_digits(x) == labels).float().mean())
            print(f"w={w} steps={k}: FD {classifier_frechet_distance(x, ds.test):.3f} "
                  f"acc {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
