"""Kinetic-optimal paths (Shaul et al. 2023): λ-curves on digit subsets, KO vs CondOT training.

(a) The data-separation function λ(s) of the empirical measure on digit subsets of n points
    (d = 64, data normalised to E||x||² = d), and of 2-D 8-gaussians with n = 10⁴: λ → 1 as
    n/√d → 0. Also the predicted KE/d of CondOT vs the KO path for each curve.
(b) Flow matching on 8-gaussians (normalised, λ estimated on held-out points) under CondOT and
    under the KO path: predicted KE/d, empirical KE/d of generated trajectories, dopri5 NFE and
    exact W2 to held-out data at 4/8/100 Euler steps.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/kinetic_optimal.py`` (about 5 minutes on 2
busy cores with the defaults; ``--steps`` trades time for quality).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.data import load_dataset  # noqa: E402
from monge.metrics import kinetic_energy, wasserstein2  # noqa: E402
from monge.models import MLP  # noqa: E402
from monge.paths import LinearPath  # noqa: E402
from monge.paths.kinetic_optimal import (  # noqa: E402
    KineticOptimalPath,
    data_separation,
    path_kinetic_energy,
)
from monge.solvers import Dopri5, Euler, PIController, integrate  # noqa: E402
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig  # noqa: E402

SNR_REPORT = (0.1, 0.3, 1.0, 3.0)


def lambda_curves(n_queries: int) -> tuple[str, list[str]]:
    digits = load_dataset("digits", seed=0)
    x = torch.cat([digits.train, digits.test]).reshape(-1, 64).double()
    snr = torch.tensor(SNR_REPORT, dtype=torch.float64)
    full = torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.logspace(-2, 2, 33, dtype=torch.float64)])
    rows, notes = [], []
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    toy = load_dataset("8gaussians", n_train=10_000, n_test=10, seed=0).train.double()
    for label, data, d in [*[(f"digits n={n}", x[perm[:n]], 64) for n in (5, 20, 100, 1797)],
                           ("8gaussians n=10000", toy, 2)]:
        est = data_separation(data, full, n_queries=n_queries, generator=1)
        at = data_separation(data, snr, n_queries=n_queries, generator=2).separation
        path = KineticOptimalPath(est.snr, est.smoothed)
        ke_lin = path_kinetic_energy(LinearPath(), est.snr, est.smoothed)
        rows.append([label, f"{data.shape[0] / math.sqrt(d):.3g}",
                     *[f"{float(v):.3f}" for v in at], f"{ke_lin:.4f}",
                     f"{path.kinetic_energy_per_dim:.4f}"])
    header = ["data", "n/√d", *[f"λ(s={s})" for s in SNR_REPORT], "KE/d CondOT",
              "KE/d KO"]
    return markdown_table(header, rows), notes


def train_and_eval(path, data, test, steps: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = MLP(2, hidden=256, depth=3)

    def sample_batch(n, generator):
        idx = torch.randint(data.shape[0], (n,), generator=generator)
        return torch.randn(n, 2, generator=generator), data[idx], None

    cfg = TrainerConfig(steps=steps, batch_size=256, lr=2e-3, warmup_steps=100,
                        checkpoint_every=10**9, log_every=10**9, ema_decay=0.999, seed=seed)
    trainer = Trainer(model, FlowMatchingLoss(path), sample_batch, cfg, progress=False)
    trainer.fit()
    net = trainer.ema.module if trainer.ema is not None else model
    net.eval()
    g = torch.Generator().manual_seed(seed + 1)
    x0 = torch.randn(1000, 2, generator=g)
    out = {}
    for n_steps in (4, 8, 100):
        res = integrate(net, x0, Euler(), steps=n_steps, return_trajectory=n_steps == 100)
        out[f"w2@{n_steps}"] = wasserstein2(res.x, test[:1000])
        if n_steps == 100:
            out["ke"] = kinetic_energy(res.trajectory, res.times) / 2
    res = integrate(net, x0, Dopri5(), controller=PIController(rtol=1e-4, atol=1e-4))
    out["nfe"] = res.nfe
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps per path")
    parser.add_argument("--n-queries", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    table_a, _ = lambda_curves(args.n_queries)
    print(table_a)

    ds = load_dataset("8gaussians", n_train=20_000, n_test=2000, seed=0)
    scale = math.sqrt(2.0 / float(ds.train.pow(2).sum(1).mean()))
    train, test = ds.train * scale, ds.test * scale
    ko = KineticOptimalPath.from_data(train[:4000], held_out=train[4000:5000], generator=0,
                                      n_queries=1000)
    est = ko.estimate
    exact = KineticOptimalPath(est.snr, est.smoothed, h_floor=1e-4)
    rows = []
    for name, path in [("CondOT (linear)", LinearPath()), ("kinetic-optimal", ko)]:
        ke_pred = path_kinetic_energy(path, est.snr, est.smoothed)
        res = train_and_eval(path, train, test, args.steps, seed=0)
        rows.append([name, f"{ke_pred:.4f}", f"{res['ke']:.4f}", res["nfe"],
                     f"{res['w2@4']:.4f}", f"{res['w2@8']:.4f}", f"{res['w2@100']:.4f}"])
        print(rows[-1])
    table_b = markdown_table(["path", "KE/d predicted", "KE/d empirical (Euler 100)",
                              "dopri5 NFE (tol 1e-4)", "W2 @4", "W2 @8", "W2 @100"], rows)
    ke_lin, ke_ko = float(rows[0][1]), float(rows[1][1])
    tt = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    emp_lin, emp_ko = float(rows[0][2]), float(rows[1][2])
    verdict = (
        f"(b) On normalised 8-gaussians (λ held-out estimate) the exact geodesic has "
        f"Φ = {exact.Phi:.3f} (CondOT: π/2), KE/d = 2 − 2cosΦ = "
        f"{exact.kinetic_energy_per_dim:.3f}, but it is near-singular (max α̇² + σ̇² = "
        f"{float((exact.d_alpha(tt) ** 2 + exact.d_sigma(tt) ** 2).max()):.0f}); the "
        f"trained KO path uses h_floor = {ko.h_floor} (max α̇² + σ̇² = "
        f"{float((ko.d_alpha(tt) ** 2 + ko.d_sigma(tt) ** 2).max()):.0f}). The formula "
        "predicts KE/d "
        f"{ke_ko:.3f} for the trained KO path vs {ke_lin:.3f} for CondOT "
        f"({100 * (1 - ke_ko / ke_lin):.0f}% lower); the trained models' trajectories give "
        f"{emp_ko:.3f} vs {emp_lin:.3f} "
        f"({'lower, as predicted' if emp_ko < emp_lin else 'NOT lower'}). Few-step W2 is in "
        "the table; the paper's claim is about KE (and that KO ≈ CondOT when λ ≈ 1), not a "
        "guaranteed few-step gain.")
    body = (f"(a) λ(s) of the empirical measure (posterior over the subset itself, data scaled "
            f"to E||x||² = d, {args.n_queries} query draws per s), and KE/d of CondOT vs the KO "
            "path for that λ:\n\n" + table_a +
            "\n\nλ at fixed s rises towards 1 as n/√d falls (digits n = 5 → 1797), and the KO "
            "path's KE gain over CondOT shrinks with it; for 2-D 8-gaussians (n/√d = 7071) λ is "
            "far from 1 at low SNR. Note: the data are not centred (the spec's normalisation), "
            "so λ(0) = ||mean||²/E||x||² > 0 for digits.\n\n"
            f"(b) Flow matching, MLP 3×256, {args.steps} steps, batch 256, EMA; W2 = exact OT "
            "on 1000 generated vs 1000 held-out points (normalised units):\n\n" + table_b +
            "\n\n" + verdict + f"\n\nTotal time {time.time() - start:.0f} s.")
    if args.no_append:
        print(body)
    else:
        append_results("Kinetic-optimal paths vs CondOT (issue 4)", body)


if __name__ == "__main__":
    main()
