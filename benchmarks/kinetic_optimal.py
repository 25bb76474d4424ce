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
from monge.paths import GaussianMixture, LinearPath, ModelWrapper  # noqa: E402
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


def evaluate_field(field, test: torch.Tensor, seed: int, dtype=torch.float32) -> dict:
    """W2 to held-out data at 4/8/100 Euler steps, KE/d of the 100-step flow, dopri5 NFE."""
    g = torch.Generator().manual_seed(seed + 1)
    x0 = torch.randn(1000, 2, generator=g, dtype=dtype)
    out = {}
    for n_steps in (4, 8, 100):
        res = integrate(field, x0, Euler(), steps=n_steps, return_trajectory=n_steps == 100)
        out[f"w2@{n_steps}"] = wasserstein2(res.x, test[:1000])
        if n_steps == 100:
            out["ke"] = kinetic_energy(res.trajectory, res.times) / 2
    res = integrate(field, x0, Dopri5(), controller=PIController(rtol=1e-4, atol=1e-4))
    out["nfe"] = res.nfe
    return out


def train_and_eval(path, data, test, steps: int, seed: int,
                   prediction: str = "velocity") -> dict[str, float]:
    torch.manual_seed(seed)
    model = MLP(2, hidden=256, depth=3)

    def sample_batch(n, generator):
        idx = torch.randint(data.shape[0], (n,), generator=generator)
        return torch.randn(n, 2, generator=generator), data[idx], None

    cfg = TrainerConfig(steps=steps, batch_size=256, lr=2e-3, warmup_steps=100,
                        checkpoint_every=10**9, log_every=10**9, ema_decay=0.999, seed=seed)
    trainer = Trainer(model, FlowMatchingLoss(path, target=prediction), sample_batch, cfg,
                      progress=False)
    trainer.fit()
    net = trainer.ema.module if trainer.ema is not None else model
    net.eval()
    return evaluate_field(ModelWrapper(net, path, prediction), test, seed)


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
    # the exact marginal field of the Gaussian mixture behind the toy (8 centres on a circle of
    # radius 4, std 0.5), in normalised units: isolates the path from the training
    angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    gmm = GaussianMixture(4 * scale * torch.stack([angle.cos(), angle.sin()], 1),
                          torch.full((8,), 0.5 * scale, dtype=torch.float64))
    rows = []
    paths = [("CondOT (linear)", LinearPath()), (f"KO, h_floor={ko.h_floor}", ko),
             ("KO, exact geodesic (h_floor=1e-4)", exact)]
    for name, path in paths:
        ke_pred = path_kinetic_energy(path, est.snr, est.smoothed)
        res = evaluate_field(gmm.field(path), test.double(), seed=0, dtype=torch.float64)
        rows.append([name, "exact GMM field", f"{ke_pred:.4f}", f"{res['ke']:.4f}", res["nfe"],
                     f"{res['w2@4']:.4f}", f"{res['w2@8']:.4f}", f"{res['w2@100']:.4f}"])
        print(rows[-1], flush=True)
    for prediction in ("velocity", "x1"):
        for name, path in paths[:2]:
            ke_pred = path_kinetic_energy(path, est.snr, est.smoothed)
            res = train_and_eval(path, train, test, args.steps, seed=0, prediction=prediction)
            rows.append([name, f"MLP, {args.steps} steps, {prediction}-prediction",
                         f"{ke_pred:.4f}", f"{res['ke']:.4f}", res["nfe"], f"{res['w2@4']:.4f}",
                         f"{res['w2@8']:.4f}", f"{res['w2@100']:.4f}"])
            print(rows[-1], flush=True)
    table_b = markdown_table(["path", "field", "KE/d predicted", "KE/d empirical (Euler 100)",
                              "dopri5 NFE (tol 1e-4)", "W2 @4", "W2 @8", "W2 @100"], rows)
    ke_lin, ke_ko = float(rows[0][2]), float(rows[1][2])
    tt = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    emp_lin, emp_ko = float(rows[0][3]), float(rows[1][3])
    w4_lin, w4_ko = float(rows[0][5]), float(rows[1][5])
    tr_lin, tr_ko = float(rows[3][7]), float(rows[4][7])
    x1_lin, x1_ko = rows[5], rows[6]
    verdict = (
        f"On normalised 8-gaussians (λ from held-out points) the exact geodesic has "
        f"Φ = {exact.Phi:.3f} (CondOT: π/2), KE/d = 2 − 2cosΦ = "
        f"{exact.kinetic_energy_per_dim:.3f}, but it is near-singular (max α̇² + σ̇² = "
        f"{float((exact.d_alpha(tt) ** 2 + exact.d_sigma(tt) ** 2).max()):.0f}; h = O(s²) at "
        f"low SNR for isotropic data); the default KO path floors h at {ko.h_floor} (max "
        f"α̇² + σ̇² = {float((ko.d_alpha(tt) ** 2 + ko.d_sigma(tt) ** 2).max()):.0f}). "
        f"With the exact marginal field the mechanism shows: KE/d {emp_ko:.3f} (KO) vs "
        f"{emp_lin:.3f} (CondOT), as the formula predicts ({ke_ko:.3f} vs {ke_lin:.3f}), and "
        f"W2 at 4 Euler steps {w4_ko:.3f} vs {w4_lin:.3f} "
        f"({'better' if w4_ko < w4_lin else 'not better'}). Trained by flow matching at this "
        f"budget, the KO model {'does NOT learn the flow' if tr_ko > 2 * tr_lin else 'learns'}"
        f" (W2@100 {tr_ko:.3f} vs CondOT {tr_lin:.3f})"
        + (": the KO path moves fast where the marginal barely changes, so the conditional "
           "target α̇x1 + σ̇x0 has a much larger variance relative to the marginal velocity "
           "than under CondOT and the regression is far noisier (uniform t-sampling puts few "
           "samples where the path moves)." if tr_ko > 2 * tr_lin else ".")
        + f" With an x1-prediction network (its target x1 has bounded variance at every t; the "
        f"velocity is recovered exactly through the path) the KO model trains: KE/d "
        f"{x1_ko[3]} vs {x1_lin[3]} (CondOT), W2 at 4 Euler steps {x1_ko[5]} vs {x1_lin[5]}, "
        f"W2@100 {x1_ko[7]} vs {x1_lin[7]}."
        + " The 'KE/d predicted' of the exact geodesic row is the quadrature of its "
        "near-singular table and over-estimates its true value 2 − 2cosΦ.")
    body = (f"(a) λ(s) of the empirical measure (posterior over the subset itself, data scaled "
            f"to E||x||² = d, {args.n_queries} query draws per s), and KE/d of CondOT vs the KO "
            "path for that λ:\n\n" + table_a +
            "\n\nλ at fixed s rises towards 1 as n/√d falls (digits n = 5 → 1797), and the KO "
            "path's KE gain over CondOT shrinks with it; for 2-D 8-gaussians (n/√d = 7071) λ is "
            "far from 1 at low SNR. Note: the data are not centred (the spec's normalisation), "
            "so λ(0) = ||mean||²/E||x||² > 0 for digits.\n\n"
            "(b) CondOT vs KO on 8-gaussians: the exact Gaussian-mixture velocity of each path, "
            f"and flow matching with an MLP 3×256 ({args.steps} steps, batch 256, EMA); W2 = "
            "exact OT, 1000 generated vs 1000 held-out points (normalised units):\n\n" + table_b +
            "\n\n" + verdict + f"\n\nTotal time {time.time() - start:.0f} s.")
    if args.no_append:
        print(body)
    else:
        append_results("Kinetic-optimal paths vs CondOT (issue 4)", body)


if __name__ == "__main__":
    main()
