"""CQ-NIR coordinate quantisation (Jiang, Hua, Han, ICCV 2023) on 2-D image fitting.

A coordinate MLP with a sinusoidal positional encoding (6 or 10 frequencies) fits a 64×64
grey-scale crop of scikit-learn's bundled ``china.jpg`` from random continuous coordinates
(bilinear targets). With CQ-NIR the network only sees coordinates snapped to the centres of an
R × R grid, R ∈ {64, 256, 2048}. We report the PSNR on the pixel centres after a fixed budget
and the wall time to first reach a PSNR target. Plain image fitting is not the paper's setting
(multi-view volume rendering); this is the spec's library-utility check, not a reproduction.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/sciml_cqnir.py`` (about 3 minutes on 2 busy
cores).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.sciml.fields import CoordinateMLP, QuantizedField  # noqa: E402


def image(n: int = 64) -> torch.Tensor:
    from sklearn.datasets import load_sample_image
    img = load_sample_image("china.jpg").mean(axis=2) / 255.0
    crop = img[100:356, 200:456]                              # 256×256
    t = torch.from_numpy(crop).float()[None, None]
    return F.interpolate(t, size=(n, n), mode="area")[0, 0]


def fit(img: torch.Tensor, resolution: int | None, n_freq: int, steps: int, target_psnr: float,
        batch: int, seed: int) -> tuple[float, float | None, float]:
    n = img.shape[0]
    net = CoordinateMLP(2, 1, 128, 3, activation="relu", n_freq=n_freq, generator=seed)
    model = net if resolution is None else QuantizedField(net, -1.0, 1.0, resolution)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    c = (torch.arange(n) + 0.5) / n * 2 - 1
    Xc, Yc = torch.meshgrid(c, c, indexing="ij")
    centres = torch.stack([Xc.ravel(), Yc.ravel()], 1)
    truth = img.ravel()
    grid_img = img[None, None]
    t0 = time.perf_counter()
    t_hit = None
    psnr = 0.0
    for k in range(1, steps + 1):
        x = torch.rand(batch, 2, generator=g) * 2 - 1
        # bilinear target at continuous points (grid_sample: x indexes width = axis 1)
        tgt = F.grid_sample(grid_img, x[None, None, :, [1, 0]], mode="bilinear",
                            padding_mode="border", align_corners=False)[0, 0, 0]
        loss = ((model(x)[:, 0] - tgt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k % 50 == 0 or k == steps:
            with torch.no_grad():
                mse = float(((model(centres)[:, 0] - truth) ** 2).mean())
            psnr = -10 * math.log10(max(mse, 1e-12))
            if t_hit is None and psnr >= target_psnr:
                t_hit = time.perf_counter() - t0
    return psnr, t_hit, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--target", type=float, default=24.0, help="PSNR target in dB")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img = image()
    rows = []
    for n_freq in (6, 10):
        for res in (None, 64, 256, 2048):
            out = [fit(img, res, n_freq, args.steps, args.target, args.batch, s)
                   for s in range(args.seeds)]
            hits = [o[1] for o in out if o[1] is not None]
            rows.append([n_freq, "continuous" if res is None else f"R={res}",
                         f"{np.mean([o[0] for o in out]):.2f}",
                         f"{np.mean(hits):.1f}" if len(hits) == len(out) else
                         f"{len(hits)}/{len(out)} reached",
                         f"{np.mean([o[2] for o in out]):.1f}"])
            print(rows[-1], flush=True)
    header = ["PE freqs", "coordinates", f"PSNR after {args.steps} steps (dB)",
              f"s to {args.target:g} dB", "total s"]
    table = markdown_table(header, rows)
    body = (f"64×64 crop of sklearn china.jpg, ReLU MLP 3×128 with positional encoding, Adam "
            f"lr 1e-3, {args.batch} random points/step, mean of {args.seeds} seeds; PSNR on "
            "pixel centres. Shared 2-core machine (3 other agents), "
            f"{args.threads} torch threads.\n\n{table}")
    print(body)
    if not args.no_save:
        append_results("CQ-NIR coordinate quantisation: image fitting", body)


if __name__ == "__main__":
    main()
