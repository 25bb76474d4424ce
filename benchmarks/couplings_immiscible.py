"""Immiscible diffusion on digits (issue 4 acceptance): steps to a target Fréchet distance.

Li et al. (2024), "Immiscible Diffusion: Accelerating Diffusion Training with Noise Assignment"
(NeurIPS 2024, arXiv:2406.12303) and "Improved Immiscible Diffusion" (arXiv:2505.18521). Claim
checked: pairing each datum with nearby noise (linear assignment on the unsquared distance, or
the nearest of k noise candidates) reaches a given sample quality in fewer training steps than
plain flow matching (the papers claim up to >4x); the KNN variant biases the noise marginal.

Setup: scikit-learn 8x8 digits (64-D, [-1, 1]; the held-out 20% is never trained on), source N(0,
I) in 64-D, linear path with a velocity target (``FlowMatchingLoss(LinearPath(), coupling=...)``),
MLP 3x256 (3x512 with ``--full``), batch 256, the monge Trainer (AdamW 1e-3, warm-up + cosine, EMA
0.995). Every ``--eval-every`` steps: 1000 samples by 20 Euler steps from fixed noise, classifier
Fréchet distance (``monge.metrics.classifier_frechet_distance``) against the held-out digits.
Speed-up = (steps plain FM needs to reach its own final FD) / (steps the arm needs to reach that
FD), and the same for plain FM's best FD (FD vs steps is not monotone at this scale).
Noise-marginal bias: ``noise_marginal_bias`` of the noise each coupling pairs with 20 batches of
256 training digits (||ε||²/d vs 1 and its z-score against χ²_64, the worst KS statistic over
random projections, and the mean pull ⟨ε, x1/|x1|⟩ towards the paired datum).

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/couplings_immiscible.py`` (2000 steps, one seed,
plain / KNN k=4 / assignment; about 6-8 min on 2 shared cores) or ``--full`` (6000 steps,
2 seeds, + KNN k=16 and image scaling s=2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.couplings import (  # noqa: E402
    collect_coupled_noise,
    make_coupling,
    noise_marginal_bias,
)
from monge.data import load_dataset  # noqa: E402
from monge.metrics import classifier_frechet_distance, load_digits_classifier  # noqa: E402
from monge.models import MLP  # noqa: E402
from monge.paths import LinearPath  # noqa: E402
from monge.solvers import Euler, integrate  # noqa: E402
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig  # noqa: E402


def arms(full: bool) -> dict[str, tuple[str, dict]]:
    out = {"plain FM": ("independent", {}), "KNN k=4": ("immiscible-knn", {"k": 4}),
           "assignment (L2)": ("immiscible-la", {})}
    if full:
        out["KNN k=16"] = ("immiscible-knn", {"k": 16})
        out["scaling s=2"] = ("immiscible-scale", {"scale": 2.0})
    return out


def run_arm(name: str, kw: dict, data, steps: int, every: int, seed: int, clf,
            hidden: int) -> dict:
    torch.manual_seed(seed)
    model = MLP(64, hidden=hidden, depth=3, time_dim=64)
    cfg = TrainerConfig(steps=steps, batch_size=256, lr=1e-3, warmup_steps=100,
                        ema_decay=0.995, log_every=max(1, steps // 10),
                        checkpoint_every=10**9, seed=seed)

    def sample_batch(n, g):
        x1, _ = data.sample(n, g)
        return torch.randn(n, 64, generator=g), x1, None

    coupling = make_coupling(name, **kw)
    trainer = Trainer(model, FlowMatchingLoss(LinearPath(), coupling=coupling), sample_batch,
                      cfg, progress=False)
    noise = torch.randn(1000, 64, generator=torch.Generator().manual_seed(1234))
    curve, train_s = [], 0.0
    for stop in range(every, steps + 1, every):
        t0 = time.perf_counter()
        trainer.fit(stop_at=stop)
        train_s += time.perf_counter() - t0
        x = integrate(trainer.sampling_model.eval(), noise, Euler(), steps=20).x
        trainer.model.train()
        if hasattr(coupling, "unscale"):
            x = coupling.unscale(x)
        curve.append((stop, classifier_frechet_distance(x.clamp(-1.5, 1.5), data.test, clf)))
    return {"curve": curve, "ms": 1000 * train_s / steps}


def steps_to(curve: list[tuple[int, float]], target: float) -> int | None:
    for step, fd in curve:
        if fd <= target:
            return step
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None, help="MLP width (256; --full: 512)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-append", action="store_true", help="print only")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    steps = args.steps or (6000 if args.full else 2000)
    every = args.eval_every or max(1, steps // 20)
    seeds = args.seeds or (2 if args.full else 1)
    hidden = args.hidden or (512 if args.full else 256)
    arm_defs = arms(args.full)
    data = load_dataset("digits", shape=(64,), seed=0)
    clf = load_digits_classifier()
    res: dict[str, list[dict]] = {a: [] for a in arm_defs}
    for seed in range(seeds):
        for arm, (name, kw) in arm_defs.items():
            r = run_arm(name, kw, data, steps, every, seed, clf, hidden)
            res[arm].append(r)
            print(f"seed {seed} {arm}: " + " ".join(f"{s}:{fd:.2f}" for s, fd in r["curve"])
                  + f"  {r['ms']:.1f} ms/step", flush=True)

    evals = [s for s, _ in res["plain FM"][0]["curve"]]
    curves = {a: [(s, statistics.mean(r["curve"][i][1] for r in rs)) for i, s in enumerate(evals)]
              for a, rs in res.items()}
    # FD vs steps is not monotone here (plain FM gets worse late in training), so two targets:
    # plain FM's final FD (the spec's definition) and its best FD over the run.
    targets = {"final": curves["plain FM"][-1][1], "best": min(fd for _, fd in curves["plain FM"])}
    n_plain = {k: steps_to(curves["plain FM"], v) for k, v in targets.items()}
    rows, speedups = [], {}
    for arm, curve in curves.items():
        cells = []
        for key, target in targets.items():
            n = steps_to(curve, target)
            speedups[(arm, key)] = None if n is None else n_plain[key] / n
            cells += ["not reached" if n is None else n,
                      "–" if n is None else f"{n_plain[key] / n:.2f}×"]
        rows.append([arm, *[fd for _, fd in curve], min(fd for _, fd in curve), *cells,
                     statistics.mean(r["ms"] for r in res[arm])])
    fd_table = markdown_table(["coupling", *[f"FD @{s}" for s in evals], "best FD",
                               "steps to plain's final FD", "speed-up (final)",
                               "steps to plain's best FD", "speed-up (best)", "train ms/step"],
                              rows)

    g = torch.Generator().manual_seed(7)
    batches = [data.sample(256, g)[0] for _ in range(20)]
    bias_rows = []
    bias_arms = {"plain FM": ("independent", {}), "assignment (L2)": ("immiscible-la", {}),
                 "KNN k=4": ("immiscible-knn", {"k": 4}),
                 "KNN k=16": ("immiscible-knn", {"k": 16}),
                 "KNN k=64": ("immiscible-knn", {"k": 64})}
    for arm, (name, kw) in bias_arms.items():
        noise, x1 = collect_coupled_noise(make_coupling(name, **kw), batches, seed=3)
        b = noise_marginal_bias(noise, x1)
        bias_rows.append([arm, b.sq_norm_ratio, b.sq_norm_z, b.mean_norm, b.ks_max,
                          f"{b.ks_pvalue:.2g}", b.target_alignment])
    bias_table = markdown_table(["coupling", "‖ε‖²/d", "z vs χ²_64", "‖mean ε‖", "worst KS",
                                 "KS p (Bonf.)", "⟨ε, x1/‖x1‖⟩"], bias_rows)

    verdict = []
    for arm in curves:
        if arm == "plain FM":
            continue
        parts = []
        for key, target in targets.items():
            sp = speedups[(arm, key)]
            parts.append(f"plain's {key} FD {target:.2f}: " + (
                f"reached at {n_plain[key] / sp:.0f} vs {n_plain[key]} steps ({sp:.2f}×)" if sp
                else "not reached"))
        verdict.append(f"- {arm}: " + "; ".join(parts) + f"; final FD {curves[arm][-1][1]:.2f} "
                       f"vs plain {targets['final']:.2f}, best {min(f for _, f in curves[arm]):.2f}"
                       f" vs plain {targets['best']:.2f}.")
    body = (f"digits 64-D, N(0,I) source, linear path, MLP 3×{hidden}, batch 256, {steps} steps, "
            f"{seeds} seed(s), {args.threads} thread(s); classifier Fréchet distance of 1000 "
            f"samples (20 Euler steps, EMA weights) vs the {data.test.shape[0]} held-out digits, "
            f"every {every} steps (mean over seeds). Speed-up resolution is one evaluation "
            f"interval ({every} steps).\n\n{fd_table}\n\nNoise-marginal bias (20 batches of 256 "
            f"training digits; N(0, I) gives ‖ε‖²/d ≈ 1, |z| ≲ 3, ⟨ε, x1/‖x1‖⟩ ≈ 0 ± "
            f"{1 / (20 * 256) ** 0.5:.3f}):\n\n{bias_table}\n\nVerdict (the papers claim up to "
            ">4×; the spec expects 1.3–3× at this scale):\n\n" + "\n".join(verdict) + "\n")
    if args.no_append:
        print(body)
    else:
        append_results("Couplings: immiscible diffusion on digits (issue 4)", body)


if __name__ == "__main__":
    main()
