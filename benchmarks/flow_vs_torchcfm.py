"""monge flow matching vs torchcfm on 8 gaussians → moons (issue: foundation acceptance).

Four trainings per seed, all through the same monge Trainer (AdamW, warm-up + cosine, clipping,
EMA) and the same 3×64 MLP, so that only the objective/coupling implementation differs:

- monge independent: ``FlowMatchingLoss(LinearPath(), coupling=IndependentCoupling())``
- monge OT: ``MinibatchOTCoupling`` (exact assignment permutation, no resampling)
- torchcfm CFM: ``ConditionalFlowMatcher(sigma=0)`` (its t, x_t, u_t)
- torchcfm OT-CFM: ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` (POT emd plan, pairs
  resampled i.i.d. with replacement from the plan)

Reported: W2 (exact, 2000 generated vs 2000 held-out) at Euler NFE 1, 2, 4, 8, 100, mean ± std
over seeds, and training seconds per 1000 steps with the ratio monge / torchcfm.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/flow_vs_torchcfm.py [--steps 5000] [--seeds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _flows import euler_w2, train_flow  # noqa: E402
from _results import append_results, markdown_table  # noqa: E402

from monge.couplings import IndependentCoupling, MinibatchOTCoupling  # noqa: E402
from monge.data import load_dataset  # noqa: E402
from monge.paths import LinearPath  # noqa: E402
from monge.train import FlowMatchingLoss, LossOutput  # noqa: E402

NFES = (1, 2, 4, 8, 100)


class TorchCFMLoss(torch.nn.Module):
    """Adapter: torchcfm's matcher as a monge loss module (same Trainer, same model)."""

    def __init__(self, matcher):
        super().__init__()
        self.matcher = matcher

    def forward(self, model, x0, x1, y1=None, generator=None) -> LossOutput:
        t, xt, ut = self.matcher.sample_location_and_conditional_flow(x0, x1)
        per = (model(xt, t) - ut).pow(2).mean(1)
        return LossOutput(per.mean(), per.detach(), t)


def make_loss(name: str):
    if name == "monge-independent":
        return FlowMatchingLoss(LinearPath(), coupling=IndependentCoupling())
    if name == "monge-ot":
        return FlowMatchingLoss(LinearPath(), coupling=MinibatchOTCoupling())
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )
    if name == "torchcfm-cfm":
        return TorchCFMLoss(ConditionalFlowMatcher(sigma=0.0))
    return TorchCFMLoss(ExactOptimalTransportConditionalFlowMatcher(sigma=0.0))


def train_and_eval(name: str, seed: int, steps: int, src, tgt) -> dict:
    np.random.seed(seed)  # torchcfm's OT sampler draws with numpy's global RNG
    trainer, seconds = train_flow(make_loss(name), src, tgt, steps=steps, seed=seed, hidden=64,
                                  depth=3, time_dim=32)
    w2 = euler_w2(trainer.sampling_model.eval(), src.test[:2000], tgt.test[:2000], NFES)
    return {"w2": w2, "sec_per_1k": 1000 * seconds / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true", help="print only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = ["monge-independent", "torchcfm-cfm", "monge-ot", "torchcfm-ot-cfm"]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for seed in range(args.seeds):
        src = load_dataset("8gaussians", n_train=20000, n_test=2000, seed=100 + seed)
        tgt = load_dataset("moons", n_train=20000, n_test=2000, seed=200 + seed)
        for name in names:
            r = train_and_eval(name, seed, args.steps, src, tgt)
            results[name].append(r)
            print(f"seed {seed} {name:>18}: " + " ".join(
                f"W2@{k}={v:.3f}" for k, v in r["w2"].items()) + f"  {r['sec_per_1k']:.2f} s/1k",
                flush=True)

    def ms(vals):
        return (f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1
                else f"{vals[0]:.3f}")

    rows = []
    for name in names:
        rs = results[name]
        rows.append([name, *[ms([r["w2"][k] for r in rs]) for k in NFES],
                     ms([r["sec_per_1k"] for r in rs])])
    table = markdown_table(["method", *[f"W2 NFE {k}" for k in NFES], "train s / 1k steps"],
                           rows)
    sec = {n: statistics.mean(r["sec_per_1k"] for r in results[n]) for n in names}
    w2 = {n: {k: statistics.mean(r["w2"][k] for r in results[n]) for k in NFES} for n in names}
    ratios = markdown_table(
        ["pair", "W2 ratio NFE 1", "W2 ratio NFE 100", "time ratio (monge / torchcfm)"],
        [["independent: monge / torchcfm", w2["monge-independent"][1] / w2["torchcfm-cfm"][1],
          w2["monge-independent"][100] / w2["torchcfm-cfm"][100],
          sec["monge-independent"] / sec["torchcfm-cfm"]],
         ["OT: monge / torchcfm", w2["monge-ot"][1] / w2["torchcfm-ot-cfm"][1],
          w2["monge-ot"][100] / w2["torchcfm-ot-cfm"][100],
          sec["monge-ot"] / sec["torchcfm-ot-cfm"]]])
    body = (f"8gaussians → moons, MLP 3×64, batch 256, {args.steps} steps, {args.seeds} seeds, "
            f"{args.threads} thread(s); W2 exact on 2000 generated vs 2000 held-out; every "
            "method trained by the same monge Trainer (AdamW, warm-up + cosine, clip 1.0, EMA "
            f"0.999).\n\n{table}\n\nRatios of means:\n\n{ratios}\n")
    if args.no_append:
        print(body)
    else:
        append_results("Flow matching: monge vs torchcfm (8 gaussians → moons)", body)


if __name__ == "__main__":
    main()
