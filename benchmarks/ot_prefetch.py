"""OT-CFM training time with the coupling prefetched vs inline vs the independent coupling.

Issue 14 acceptance: minibatch-OT flow matching (OT-CFM, Tong et al. 2024) should cost at most
1.2x independent CFM per step at batch 256, with pairs identical to the synchronous ones. The
monge Trainer computes model-independent couplings (exact OT, Sinkhorn, ...) for the next batches
in a background thread (``monge.couplings.prefetch.PrefetchedPairs``) while the current step
trains; ``prefetch=False`` computes the same pairs inline.

Task: 8 gaussians -> moons, MLP 3x256 (SiLU), batch 256, AdamW, EMA, monge Trainer; one torch
thread (the producer thread is a second Python thread, so it can use a second core). Each arm is
timed over ``--steps`` steps (default 1000), arms interleaved, ``--repeats`` times; the table
gives the median seconds per 1000 steps. The prefetched and inline runs of one coupling must end
with bit-identical weights (checked and reported).

Run: OMP_WAIT_POLICY=PASSIVE python benchmarks/ot_prefetch.py [--steps 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _results import append_results, markdown_table  # noqa: E402

from monge.couplings import make_coupling  # noqa: E402
from monge.data import load_dataset  # noqa: E402
from monge.models import MLP  # noqa: E402
from monge.paths import LinearPath  # noqa: E402
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig  # noqa: E402

ARMS = {  # name -> (coupling, options, prefetch)
    "independent": ("independent", {}, None),
    "OT exact, inline": ("ot", {}, False),
    "OT exact, prefetched": ("ot", {}, True),
    "Sinkhorn 0.05·median, inline": ("sinkhorn", {"eps": 0.05}, False),
    "Sinkhorn 0.05·median, prefetched": ("sinkhorn", {"eps": 0.05}, True),
}


def run_arm(name: str, src, tgt, steps: int, batch: int, seed: int = 0):
    coupling, options, prefetch = ARMS[name]
    torch.manual_seed(seed)
    model = MLP(2, hidden=256, depth=3, time_dim=32)
    cfg = TrainerConfig(steps=steps, batch_size=batch, lr=1e-3, warmup_steps=100,
                        log_every=max(1, steps // 10), checkpoint_every=10**9, seed=seed)

    def sample_batch(n, g):
        return src.sample(n, g)[0], tgt.sample(n, g)[0], None

    loss = FlowMatchingLoss(LinearPath(), coupling=make_coupling(coupling, **options))
    tr = Trainer(model, loss, sample_batch, cfg, progress=False, prefetch=prefetch)
    t0 = time.perf_counter()
    tr.fit()
    return time.perf_counter() - t0, tr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-sinkhorn", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = load_dataset("8gaussians", n_train=20000, n_test=100, seed=100)
    tgt = load_dataset("moons", n_train=20000, n_test=100, seed=200)
    names = [n for n in ARMS if not (args.no_sinkhorn and n.startswith("Sinkhorn"))]
    secs: dict[str, list[float]] = {n: [] for n in names}
    final: dict[str, dict] = {}
    run_arm("independent", src, tgt, 50, args.batch)            # warm-up
    for rep in range(args.repeats):
        for n in names:
            s, tr = run_arm(n, src, tgt, args.steps, args.batch)
            secs[n].append(s)
            final[n] = tr.base_model.state_dict()
            print(f"repeat {rep} {n}: {1000 * s / args.steps:.2f} s / 1000 steps", flush=True)
    ind = statistics.median(secs["independent"])
    rows = []
    for n in names:
        med = statistics.median(secs[n])
        same = ""
        if n.endswith("prefetched"):
            other = n.replace("prefetched", "inline")
            same = "yes" if all(torch.equal(a, b) for a, b in zip(
                final[n].values(), final[other].values(), strict=True)) else "NO"
        rows.append([n, round(1000 * med / args.steps, 3),
                     " / ".join(f"{1000 * s / args.steps:.2f}" for s in secs[n]),
                     f"{med / ind:.2f}x", same])
    ot_ratio = statistics.median(secs["OT exact, prefetched"]) / ind
    inline_ratio = statistics.median(secs["OT exact, inline"]) / ind
    body = (f"8 gaussians → moons, MLP 3×256, batch {args.batch}, {args.steps} steps per run, "
            f"{args.repeats} interleaved repeats (median), 1 torch thread, monge Trainer; "
            f"machine load at start {os.getloadavg()[0]:.2f} (2 cores shared with other jobs)."
            "\n\n" + markdown_table(["arm", "s / 1000 steps (median)", "each repeat",
                                     "time / independent", "weights identical to inline"],
                                    rows)
            + f"\n\nOT-CFM prefetched / independent: {ot_ratio:.2f}x (goal <= 1.2x: "
            f"{'met' if ot_ratio <= 1.2 else 'NOT met'}); inline OT / independent: "
            f"{inline_ratio:.2f}x.\n")
    if args.no_write:
        print(body)
    else:
        append_results("OT-CFM training cost: prefetched coupling (issue 14)", body)


if __name__ == "__main__":
    main()
