"""Latent vs pixel flow matching on 8×8 digits at equal training time (benchmark only).

Method measured: latent generative modelling in the manner of Rombach et al., "High-Resolution
Image Synthesis with Latent Diffusion Models" (CVPR 2022, arXiv:2112.10752): an autoencoder
(deterministic, or a VAE after Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014,
arXiv:1312.6114) maps the images to latents and the generative model is trained and sampled
there, every sample decoded before it is measured. The generative model on both sides is flow
matching on the linear path (Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023,
arXiv:2210.02747; Liu et al., "Flow Straight and Fast", ICLR 2023, arXiv:2209.03003):
x_t = t·x1 + (1 − t)·x0, x0 ~ N(0, I), regress the velocity x1 − x0.

What is measured, on scikit-learn's digits (``load_dataset("digits", seed=0,
test_fraction=0.3)``: 1,258 training and 539 test images in [-1, 1]):

1. **The autoencoder floor** (deterministic AE and VAE, ``downsample=2``: latents 4×4×4, as many
   numbers as the 8×8 image): classifier Fréchet distance (FD, features of the digits classifier
   of :func:`monge.metrics.classifier_frechet_distance`) between the reconstructions of the test
   images and the test images, their PSNR, and FD between the reconstructions of 1,000 training
   images and the test set. The last is the floor of a *perfect* latent flow (it would generate
   exactly the decoded training latents), to be set beside the metric's own floor, FD between
   the same 1,000 training images and the test set (the floor of a perfect pixel flow).
2. **Pixel vs latent flows at equal training time**: a U-Net on 8×8×1 pixels and the same
   U-Net (32 base channels, multipliers (1, 2), one residual block per level, batch 128) on the
   standardised 4×4×4 latents (per-channel mean/std fitted on the training latents, undone
   before decoding, as ``monge run`` with ``latent:`` does). The time budget ``T`` is CPU time
   of this single-threaded process (on a dedicated core that is its wall-clock time; on a
   shared machine, wall time includes other processes and would not be a fair ruler). Each
   arm's step count is ``T`` divided by its network's seconds per training step, measured once
   by a short probe; the realised training time is reported. Latent arms come twice: with the
   flow alone trained for ``T`` (the autoencoder's training time shown in its own column, not
   counted), and with the autoencoder's measured training time counted, the flow getting
   ``T − T_AE``. Samples at equal NFE (Euler 10, Heun 5 steps = 10 NFE, Euler 20) from the
   EMA weights; 1,000 samples per cell, clamped to [-1, 1]; classifier FD against the test
   set, the entropy of the histogram of predicted classes (log 10 ≈ 2.303 is balanced), and
   CPU seconds per 1,000 samples (integration, plus the decoder for latent arms).

Cost: the training budget is 3·T + 2·(T − T_AE) + 2·T_AE per seed plus about 40 s of sampling;
the defaults (T = 55 s, 2 seeds) take about 11 CPU minutes.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/latent_vs_pixel.py [--budget 55] [--seeds 2]
[--quick] [--dry-run]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.data import AffineMap, load_dataset  # noqa: E402
from monge.latent import (  # noqa: E402
    Autoencoder,
    AutoencoderConfig,
    psnr,
    train_autoencoder,
)
from monge.metrics import class_histogram_entropy, classifier_frechet_distance  # noqa: E402
from monge.models import UNet  # noqa: E402
from monge.paths import LinearPath, ModelWrapper  # noqa: E402
from monge.solvers import Euler, Heun, integrate  # noqa: E402
from monge.solvers.base import Solver  # noqa: E402
from monge.train import FlowMatchingLoss, Trainer, TrainerConfig  # noqa: E402

STARTED = time.perf_counter()
SOLVERS: tuple[tuple[str, type[Solver], int], ...] = (
    ("Euler", Euler, 10), ("Heun", Heun, 5), ("Euler", Euler, 20))
"""(name, solver, steps): Euler 10 and Heun 5 steps are both 10 NFE; Euler 20 is 20 NFE."""
ARMS = ("pixel", "latent AE", "latent AE (AE time counted)", "latent VAE",
        "latent VAE (AE time counted)")


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f} s wall, {time.process_time():6.0f} s cpu] "
          f"{msg}", flush=True)


@dataclass
class Settings:
    """Everything that sets the figures (written into the RESULTS section)."""

    budget: float = 55.0
    seeds: int = 2
    n_samples: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 50
    ema_decay: float = 0.999
    base_channels: int = 32
    ae_width: int = 16
    ae_steps: int = 400
    ae_lr: float = 4e-3
    latent_channels: int = 4
    probe_steps: int = 20


@dataclass
class FloorResult:
    """Reconstruction floor of one autoencoder (one seed)."""

    kind: str
    seed: int
    train_cpu_s: float
    fd_test_recon: float
    psnr_test: float
    fd_train_recon_vs_test: float


@dataclass
class SampleResult:
    solver: str
    nfe: int
    fd: float
    entropy: float
    cpu_s_per_1000: float


@dataclass
class ArmResult:
    """One trained flow (one seed) and its samples at each NFE."""

    arm: str
    seed: int
    steps: int
    flow_cpu_s: float
    flow_wall_s: float
    ae_cpu_s: float
    final_loss: float
    samples: list[SampleResult] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# training


def flow_trainer(net: torch.nn.Module, data: Tensor, steps: int, seed: int,
                 s: Settings) -> Trainer:
    """Flow matching (linear path, velocity target) from N(0, I) to ``data`` [N, ...]."""
    model = ModelWrapper(net, LinearPath(), "velocity")

    def sample_batch(n: int, g: torch.Generator) -> tuple[Tensor, Tensor, None]:
        x1 = data[torch.randint(data.shape[0], (n,), generator=g)]
        return torch.randn(x1.shape, generator=g), x1, None

    cfg = TrainerConfig(steps=steps, batch_size=s.batch_size, lr=s.lr,
                        warmup_steps=min(s.warmup, steps // 5), ema_decay=s.ema_decay,
                        log_every=max(1, steps // 5), checkpoint_every=10**9, seed=seed)
    return Trainer(model, FlowMatchingLoss(LinearPath()), sample_batch, cfg, progress=False)


def make_unet(channels: int, s: Settings) -> UNet:
    return UNet(channels, base_channels=s.base_channels, channel_mults=(1, 2))


def seconds_per_step(channels: int, shape: tuple[int, ...], s: Settings) -> float:
    """CPU seconds per training step of the flow U-Net on ``shape`` (a throwaway probe; the
    first few steps, slower, are excluded)."""
    torch.manual_seed(12345)
    data = torch.randn(512, *shape)
    trainer = flow_trainer(make_unet(channels, s), data, 5 + s.probe_steps, 0, s)
    trainer.fit(stop_at=5)
    t = time.process_time()
    trainer.fit()
    return (time.process_time() - t) / s.probe_steps


def train_flow(arm: str, channels: int, data: Tensor, cpu_budget: float, sec_per_step: float,
               seed: int, ae_cpu_s: float, s: Settings) -> tuple[ArmResult, torch.nn.Module]:
    steps = max(1, round(cpu_budget / sec_per_step))
    torch.manual_seed(seed)
    trainer = flow_trainer(make_unet(channels, s), data, steps, seed, s)
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    fit = trainer.fit()
    result = ArmResult(arm, seed, steps, time.process_time() - t_cpu,
                       time.perf_counter() - t_wall, ae_cpu_s, fit.final_loss)
    say(f"  {arm}: {steps} steps, {result.flow_cpu_s:.1f} s cpu "
        f"({result.flow_wall_s:.1f} s wall), final loss {fit.final_loss:.4f}")
    return result, trainer.sampling_model.eval()


def train_ae(variational: bool, train: Tensor, seed: int, s: Settings
             ) -> tuple[Autoencoder, float]:
    torch.manual_seed(seed)
    ae = Autoencoder(AutoencoderConfig(image_shape=(1, 8, 8), latent_channels=s.latent_channels,
                                       downsample=2, width=s.ae_width, variational=variational))
    t = time.process_time()
    train_autoencoder(ae, train, steps=s.ae_steps, batch_size=s.batch_size, lr=s.ae_lr,
                      seed=seed)
    return ae.eval(), time.process_time() - t


# ---------------------------------------------------------------------------------------------
# measuring


def clamp_images(x: Tensor) -> Tensor:
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def floor_of(kind: str, ae: Autoencoder, cpu_s: float, seed: int, train_ref: Tensor,
             test: Tensor) -> FloorResult:
    recon_test = clamp_images(ae.reconstruct(test))
    recon_train = clamp_images(ae.reconstruct(train_ref))
    return FloorResult(kind, seed, cpu_s, classifier_frechet_distance(recon_test, test),
                       float(psnr(recon_test, test).double().mean()),
                       classifier_frechet_distance(recon_train, test))


@torch.no_grad()
def sample_arm(result: ArmResult, field: torch.nn.Module, noise: Tensor, test: Tensor,
               shape: tuple[int, ...], decode=None) -> None:
    """Sample ``field`` from ``noise`` [n, 64] (reshaped to ``shape``) at each NFE setting;
    ``decode`` maps model units to images (latent arms)."""
    x0 = noise.reshape(noise.shape[0], *shape)
    for name, solver, steps in SOLVERS:
        t = time.process_time()
        res = integrate(field, x0, solver(), steps=steps)
        images = clamp_images(res.x if decode is None else decode(res.x))
        cpu = time.process_time() - t
        result.samples.append(SampleResult(
            name, res.nfe, classifier_frechet_distance(images, test),
            class_histogram_entropy(images), 1000 * cpu / noise.shape[0]))


def latent_decoder(ae: Autoencoder, scale: AffineMap):
    def decode(z: Tensor) -> Tensor:
        return ae.decode(scale.decode(z))
    return decode


# ---------------------------------------------------------------------------------------------
# tables


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0


def pm(values: list[float], digits: int = 3) -> str:
    m, sd = mean_std(values)
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def floor_table(floors: list[FloorResult], data_fd: list[float]) -> str:
    header = ["autoencoder", "AE train CPU s", "FD recon(test) vs test ↓", "PSNR test dB ↑",
              "FD recon(train 1000) vs test"]
    rows = [["none (data itself: train 1000 vs test)", "—", "0 (identity)", "∞", pm(data_fd)]]
    for kind in ("deterministic AE", "VAE"):
        fs = [f for f in floors if f.kind == kind]
        rows.append([kind, pm([f.train_cpu_s for f in fs], 1),
                     pm([f.fd_test_recon for f in fs]), pm([f.psnr_test for f in fs], 2),
                     pm([f.fd_train_recon_vs_test for f in fs])])
    return markdown_table(header, rows)


def cell(arms: list[ArmResult], arm: str, k: int, attr: str) -> list[float]:
    return [getattr(a.samples[k], attr) for a in arms if a.arm == arm]


def flow_table(arms: list[ArmResult]) -> str:
    header = ["arm", "flow steps", "flow train CPU s", "AE train CPU s", "total CPU s",
              "solver (NFE)", "classifier FD ↓", "class entropy", "sample CPU s / 1000"]
    rows = []
    for arm in ARMS:
        mine = [a for a in arms if a.arm == arm]
        for k, (name, _, _) in enumerate(SOLVERS):
            first = k == 0
            rows.append([
                arm if first else "", pm([a.steps for a in mine], 0) if first else "",
                pm([a.flow_cpu_s for a in mine], 1) if first else "",
                (pm([a.ae_cpu_s for a in mine], 1) if arm != "pixel" else "0") if first else "",
                pm([a.flow_cpu_s + (a.ae_cpu_s if "counted" in arm else 0.0) for a in mine], 1)
                if first else "",
                f"{name} ({mine[0].samples[k].nfe})", pm(cell(arms, arm, k, "fd")),
                pm(cell(arms, arm, k, "entropy")), pm(cell(arms, arm, k, "cpu_s_per_1000"), 2)])
    return markdown_table(header, rows)


def verdict(arms: list[ArmResult], floors: list[FloorResult], data_fd: list[float]
            ) -> list[str]:
    """One line per (latent arm, NFE): who wins by more than the larger seed std."""
    lines = []
    for k, (name, _, _) in enumerate(SOLVERS):
        pix, pix_sd = mean_std(cell(arms, "pixel", k, "fd"))
        nfe = arms[0].samples[k].nfe
        for arm in ARMS[1:]:
            lat, lat_sd = mean_std(cell(arms, arm, k, "fd"))
            margin = max(pix_sd, lat_sd)
            who = ("latent wins" if lat < pix - margin else "pixel wins" if pix < lat - margin
                   else "no clear winner (within the seed spread)")
            lines.append(f"- {name} {nfe} NFE, {arm}: FD {lat:.3f} vs pixel {pix:.3f} "
                         f"(larger seed std {margin:.3f}) → {who}.")
    data_floor = mean_std(data_fd)[0]
    for kind, arm in (("deterministic AE", "latent AE"), ("VAE", "latent VAE")):
        fl = mean_std([f.fd_train_recon_vs_test for f in floors if f.kind == kind])[0]
        best = min(mean_std(cell(arms, arm, k, "fd"))[0] for k in range(len(SOLVERS)))
        share = fl / max(best, 1e-12)
        lines.append(
            f"- {kind} floor: a perfect latent flow would score FD {fl:.3f} (a perfect pixel "
            f"flow {data_floor:.3f}); the best {arm} cell scores {best:.3f}, so the floor is "
            f"{share:.0%} of it → "
            + ("the latent model is limited by the AE floor (floor ≥ half its FD)."
               if share >= 0.5 else
               "the latent model is NOT limited by the AE floor at this scale (most of its "
               "FD is the flow's error, not the decoder's)."))
    return lines


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=55.0,
                    help="flow training budget T in CPU seconds per arm")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--ae-steps", type=int, default=400)
    ap.add_argument("--json", default="/tmp/monge_latent_vs_pixel.json",
                    help="raw per-seed results are written here")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (implies --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="print the tables, do not append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    warnings.filterwarnings("ignore", message="x: values span")
    s = Settings(budget=args.budget, seeds=args.seeds, n_samples=args.n_samples,
                 ae_steps=args.ae_steps)
    if args.quick:
        args.dry_run = True
        s = Settings(budget=2.0, seeds=2, n_samples=200, ae_steps=20, probe_steps=3)
    if s.seeds < 2:
        raise SystemExit("--seeds: need at least 2 for a mean ± std")

    ds = load_dataset("digits", seed=0, test_fraction=0.3)
    train, test = ds.train, ds.test
    n_ref = min(s.n_samples, train.shape[0])
    train_ref = train[:n_ref]
    say(f"digits: {train.shape[0]} train, {test.shape[0]} test; settings {asdict(s)}")
    pixel_sps = seconds_per_step(1, (1, 8, 8), s)
    latent_sps = seconds_per_step(s.latent_channels, (s.latent_channels, 4, 4), s)
    say(f"probe: {1000 * pixel_sps:.1f} ms/step pixel U-Net, {1000 * latent_sps:.1f} ms/step "
        f"latent U-Net (CPU)")

    floors: list[FloorResult] = []
    arms: list[ArmResult] = []
    data_fd: list[float] = []
    for seed in range(s.seeds):
        say(f"seed {seed}")
        g = torch.Generator().manual_seed(1000 + seed)
        perm = torch.randperm(train.shape[0], generator=g)[:n_ref]
        data_fd.append(classifier_frechet_distance(train[perm], test))
        noise = torch.randn(s.n_samples, 64, generator=g)

        result, net = train_flow("pixel", 1, train, s.budget, pixel_sps, seed, 0.0, s)
        sample_arm(result, net, noise, test, (1, 8, 8))
        arms.append(result)

        for kind, variational in (("deterministic AE", False), ("VAE", True)):
            ae, ae_cpu = train_ae(variational, train, seed, s)
            floor = floor_of(kind, ae, ae_cpu, seed, train_ref, test)
            floors.append(floor)
            say(f"  {kind}: {ae_cpu:.1f} s cpu, FD recon(test) {floor.fd_test_recon:.3f}, "
                f"PSNR {floor.psnr_test:.2f} dB, FD recon(train) vs test "
                f"{floor.fd_train_recon_vs_test:.3f}")
            with torch.no_grad():
                latents = ae.encode(train)
            scale = AffineMap.fit(latents)
            z = scale.encode(latents)
            decode = latent_decoder(ae, scale)
            short = "latent AE" if not variational else "latent VAE"
            for arm, budget in ((short, s.budget),
                                (f"{short} (AE time counted)", s.budget - ae_cpu)):
                if budget <= 0:
                    raise SystemExit(f"--budget {s.budget}: the autoencoder took {ae_cpu:.0f} s, "
                                     "no time is left for the flow; raise --budget")
                result, net = train_flow(arm, s.latent_channels, z, budget, latent_sps, seed,
                                         ae_cpu, s)
                sample_arm(result, net, noise, test, (s.latent_channels, 4, 4), decode)
                arms.append(result)
        for a in arms[-5:]:
            say(f"  {a.arm}: " + ", ".join(f"{r.solver}{r.nfe} FD {r.fd:.3f}"
                                           for r in a.samples))

    Path(args.json).write_text(json.dumps(
        {"settings": asdict(s), "pixel_s_per_step": pixel_sps, "latent_s_per_step": latent_sps,
         "data_fd": data_fd, "floors": [asdict(f) for f in floors],
         "arms": [asdict(a) for a in arms]}, indent=1))
    lines = verdict(arms, floors, data_fd)
    wall, cpu = time.perf_counter() - STARTED, time.process_time()
    body = (
        f"Digits (`load_dataset('digits', seed=0, test_fraction=0.3)`: {train.shape[0]} train, "
        f"{test.shape[0]} test, [-1, 1]); {s.seeds} seeds (seed = network and AE "
        f"initialisation, training stream and sampling noise; the split is fixed); mean ± std "
        f"over seeds. Autoencoders: `AutoencoderConfig(latent_channels={s.latent_channels}, "
        f"downsample=2, width={s.ae_width}, blocks=1)`, deterministic and VAE (kl_weight 1e-3), "
        f"{s.ae_steps} steps, batch {s.batch_size}, lr {s.ae_lr}: latents "
        f"{s.latent_channels}×4×4 = {16 * s.latent_channels} numbers for 64 pixels. Flows: "
        f"linear-path flow matching, `UNet(base_channels={s.base_channels}, "
        f"channel_mults=(1, 2))` on 8×8×1 pixels or on the per-channel standardised 4×4×"
        f"{s.latent_channels} posterior-mean latents; batch {s.batch_size}, AdamW lr {s.lr}, "
        f"warm-up ≤ {s.warmup} steps then cosine, EMA {s.ema_decay}. Equal training time: each "
        f"arm trains for T = {s.budget:.0f} CPU seconds of this single-threaded process (its "
        f"wall time on a dedicated core; the machine was shared, so wall time would not be a "
        f"fair ruler), converted to steps with a probe ({1000 * pixel_sps:.0f} ms/step pixel, "
        f"{1000 * latent_sps:.0f} ms/step latent); 'AE time counted' arms give the flow "
        f"T − T_AE. Samples: {s.n_samples} per cell from the same N(0, I) draws on both sides "
        f"(reshaped), clamped to [-1, 1], latent ones decoded; FD = "
        f"`classifier_frechet_distance` against the {test.shape[0]} test images; entropy of "
        f"the predicted-class histogram (log 10 = 2.303 balanced); sampling CPU s per 1000 "
        f"includes the decoder.\n\n"
        f"**Autoencoder floor** (and the metric's floor, first row):\n\n"
        + floor_table(floors, data_fd)
        + "\n\n**Pixel vs latent flows at equal training time:**\n\n" + flow_table(arms)
        + "\n\nConfirmation criterion (no paper spec for this comparison; the LDM claim is that "
        "a latent model reaches a given quality with less compute): at equal training time, "
        "the latent flow beats the pixel flow by more than the seed spread, and its FD stays "
        "above the AE floor (otherwise the decoder, not the flow, limits it).\n\n"
        + "\n".join(lines)
        + f"\n\nRaw per-seed figures: `{args.json}`. Script time: {cpu:.0f} s CPU, "
        f"{wall:.0f} s wall (shared machine).")
    if args.dry_run:
        print("\n" + body)
    else:
        append_results("Latent vs pixel flow matching on digits at equal training time", body)
    say("done")


if __name__ == "__main__":
    main()
