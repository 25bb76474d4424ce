"""PFGM++ (Xu et al. 2023) on 8x8 digits: quality vs D and robustness to injected field error.

For each augmentation dimension D (same EDM σ schedule for all: the r = σ√D alignment), an
EDM-preconditioned denoiser is trained with :class:`monge.train.pfgmpp_loss.PFGMPPLoss` and
sampled from the PFGM++ prior with the Heun sampler (:func:`monge.paths.pfgmpp.pfgmpp_sample`).
Quality is the classifier Fréchet distance (``monge.metrics.classifier_frechet_distance``) of
generated digits against the 1,797 real ones. Robustness: the denoiser's output is perturbed at
every evaluation by α·σ·z, z ~ N(0, I) (the spec's injected error), α ∈ {0, 0.5, 1, 2} (the
spec's α ≤ 0.3 barely moves the FD at this scale); and
fewer Heun steps (9 σ-levels instead of 18).

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/pfgmpp.py`` (about 8 minutes on 2 busy cores
with the defaults). ``--model unet`` uses the small U-Net (about 10× slower per step here).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.data import load_dataset  # noqa: E402
from monge.metrics import classifier_frechet_distance  # noqa: E402
from monge.models import MLP, UNet  # noqa: E402
from monge.paths.pfgmpp import EDMPreconditioner, PFGMPPPath, pfgmpp_sample  # noqa: E402
from monge.train import Trainer, TrainerConfig  # noqa: E402
from monge.train.pfgmpp_loss import PFGMPPLoss  # noqa: E402

ALPHAS = (0.0, 0.5, 1.0, 2.0)


class NoisyDenoiser(nn.Module):
    """D(x, t) + α·σ(t)·z with fresh z ~ N(0, I) at every call (injected field error)."""

    def __init__(self, denoiser: nn.Module, path: PFGMPPPath, alpha: float,
                 generator: torch.Generator):
        super().__init__()
        self.denoiser, self.path, self.alpha, self.generator = denoiser, path, alpha, generator

    def forward(self, x, t, **cond):
        out = self.denoiser(x, t, **cond)
        if self.alpha == 0:
            return out
        sigma = self.path.sigma(t.to(torch.float64)).to(x.dtype).reshape(-1, 1, 1, 1)
        z = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return out + self.alpha * sigma * z


def build_net(kind: str) -> nn.Module:
    if kind == "unet":
        return UNet(1, base_channels=16, channel_mults=(1, 2))
    return _FlatMLP()


class _FlatMLP(nn.Module):
    """The spec's denoiser: 64 (+ c_noise embedding) → 4×512 SiLU → 64, on image-shaped data."""

    def __init__(self):
        super().__init__()
        self.mlp = MLP(64, hidden=512, depth=4)

    def forward(self, x, t, y=None):
        return self.mlp(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def run_one(D: float, data: torch.Tensor, real: torch.Tensor, args) -> list[list[object]]:
    torch.manual_seed(args.seed)
    path = PFGMPPPath(D=D)
    model = EDMPreconditioner(build_net(args.model), path, sigma_data=0.5)

    def sample_batch(n, generator):
        idx = torch.randint(data.shape[0], (n,), generator=generator)
        return None, data[idx], None

    cfg = TrainerConfig(steps=args.steps, batch_size=args.batch, lr=1e-3, warmup_steps=200,
                        checkpoint_every=10**9, log_every=10**9, ema_decay=0.999,
                        seed=args.seed)
    trainer = Trainer(model, PFGMPPLoss(path), sample_batch, cfg, progress=False)
    t0 = time.time()
    fit = trainer.fit()
    train_s = time.time() - t0
    net = trainer.ema.module if trainer.ema is not None else model
    net.eval()
    rows = []
    configs = [(18, a) for a in ALPHAS] + [(9, 0.0)]
    for num_steps, alpha in configs:
        g = torch.Generator().manual_seed(args.seed + 7)
        den = NoisyDenoiser(net, path, alpha, torch.Generator().manual_seed(args.seed + 9))
        res = pfgmpp_sample(den, path, args.samples, shape=(1, 8, 8), num_steps=num_steps,
                            generator=g)
        x = res.x.clamp(-1, 1)
        fd = classifier_frechet_distance(x, real)
        rows.append(["∞" if math.isinf(D) else int(D), num_steps, res.nfe, alpha, fd])
        print(rows[-1], flush=True)
    print(f"D={D}: trained {args.steps} steps in {train_s:.0f} s, final loss "
          f"{fit.final_loss:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=float, nargs="+", default=[8.0, 64.0, math.inf])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--model", choices=("mlp", "unet"), default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    ds = load_dataset("digits", seed=0)
    data = ds.train
    real = torch.cat([ds.train, ds.test])
    floor = classifier_frechet_distance(ds.test, ds.train)
    rows = []
    for D in args.D:
        rows += run_one(D, data, real, args)
    table = markdown_table(["D", "σ-levels", "NFE", "injected α", "classifier FD ↓"], rows)

    def fd(D, steps, alpha):
        key = "∞" if math.isinf(D) else int(D)
        return next(float(r[4]) for r in rows if r[0] == key and r[1] == steps and r[3] == alpha)

    lines = []
    for D in args.D:
        base = fd(D, 18, 0.0)
        top = ALPHAS[-1]
        lines.append(f"D={'∞' if math.isinf(D) else int(D)}: FD {base:.2f} at α=0, "
                     f"{fd(D, 18, top):.2f} at α={top} (×{fd(D, 18, top) / base:.2f}), "
                     f"{fd(D, 9, 0.0):.2f} with 9 σ-levels (×{fd(D, 9, 0.0) / base:.2f})")
    Ds = list(args.D)
    slopes = [(fd(D, 18, ALPHAS[-1]) - fd(D, 18, 0.0)) / ALPHAS[-1] for D in Ds]
    ordered = all(a <= b for a, b in zip(slopes, slopes[1:], strict=False))
    few = [fd(D, 9, 0.0) - fd(D, 18, 0.0) for D in Ds]
    few_ordered = all(a <= b for a, b in zip(few, few[1:], strict=False))
    best = min(Ds, key=lambda D: fd(D, 18, 0.0))
    verdict = (
        "Robustness claim (degradation slope in α smaller for smaller D): "
        + ("holds here — slopes " if ordered else "does NOT hold cleanly here — slopes ")
        + ", ".join(f"{s:.2f}" for s in slopes) + " FD per unit α for D = "
        + ", ".join("∞" if math.isinf(D) else str(int(D)) for D in Ds) + ". "
        + "Best clean quality (α = 0, 18 levels) at D = "
        + ("∞" if math.isinf(best) else str(int(best))) + ". Robustness to larger steps "
        + "(FD increase from 18 to 9 σ-levels: "
        + ", ".join(f"{v:.1f}" for v in few) + " for the same D order) "
        + ("grows with D, as the paper claims." if few_ordered
           else "is not ordered by D here."))
    body = (f"Denoiser: {args.model} ({'4×512 SiLU MLP on flattened 8×8' if args.model == 'mlp' else 'U-Net base 16, mults (1, 2)'}), "  # noqa: E501
            f"EDM preconditioning (σ_d = 0.5), {args.steps} steps, batch {args.batch}, AdamW "
            f"1e-3, EMA 0.999; ln σ ~ N(−1.2, 1.2²); Heun on EDM's ρ = 7 grid, σ ∈ [0.002, 80], "
            f"final denoising step; {args.samples} samples vs the 1,797 real digits. The "
            f"classifier FD of the held-out digits (359) against the training digits is "
            f"{floor:.2f} (a small-sample floor).\n\n" + table + "\n\n" + "\n".join(
                f"- {line}" for line in lines) + "\n\n" + verdict +
            f" One seed per cell, so differences of a few tenths are within noise. Total time "
            f"{time.time() - start:.0f} s.")
    if args.no_append:
        print(body)
    else:
        append_results("PFGM++ quality vs D and robustness on digits (issue 4)", body)


if __name__ == "__main__":
    main()
