"""``monge edit``: edits with a trained image model, each writing images and a report folder.

- :func:`interpolate_run`: invert pairs of held-out images to the source, interpolate the
  inverted points spherically, regenerate every frame, and measure how evenly the frames change
  (ISTD, Guo et al., "Smooth Diffusion", CVPR 2024; :func:`monge.inverse.interpolation.istd`).
- :func:`traverse_run`: learn potential-flow traversals in a latent model's latent space (Song
  et al., "Latent Traversals in Generative Models as Potential Flows", ICML 2023;
  :mod:`monge.editing.potential_flow`) with the run's decoder as the generator.
- :func:`upscale_run`: decode a latent model's samples at any output size with an implicit
  (LIIF) decoder trained on the run's autoencoder (Kim & Kim, "Arbitrary-Scale Image
  Generation and Upsampling using Latent Diffusion Model and Implicit Neural Decoder",
  CVPR 2024; :mod:`monge.latent.implicit_decoder`).

Every function takes a :class:`~monge.experiments.load.Trained` run, returns a dataclass of
what it measured, and writes ``report.md``, ``metrics.json`` and PNG figures into ``out``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from monge.core.io import atomic_write_bytes, ensure_writable_dir
from monge.data import load_dataset
from monge.errors import InputError
from monge.experiments.load import Trained
from monge.experiments.plots import plot_image_rows

__all__ = ["InterpolationReport", "TraversalReport", "held_out_images", "interpolate_run",
           "traverse_run", "UpscaleReport", "upscale_run"]


def _require_images(trained: Trained, what: str) -> None:
    if trained.flow_map is not None:
        raise InputError(f"edit {what}: a flow-map student has no velocity field to invert; use "
                         "its teacher")
    if len(trained.data_shape) != 3:
        raise InputError(f"edit {what}: the model's samples have shape "
                         f"{list(trained.data_shape)}, not images [C, H, W]")


def held_out_images(trained: Trained) -> tuple[Tensor, Tensor | None]:
    """The run's held-out target images (data units) and their labels (or None)."""
    cfg = trained.cfg
    ds = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                      seed=cfg.seed, test_fraction=cfg.data.test_fraction,
                      shape=trained.data_shape)
    return ds.test, ds.test_labels


def _pairs(trained: Trained, n_pairs: int, seed: int
           ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``n_pairs`` pairs of distinct held-out images; for a class-conditional model both images
    of a pair share a class (the pair is generated under that class)."""
    x, labels = held_out_images(trained)
    g = torch.Generator().manual_seed(seed)
    if trained.num_classes is None or labels is None:
        if trained.num_classes is not None:
            raise InputError("edit: the model is class-conditional but its target has no labels")
        order = torch.randperm(x.shape[0], generator=g)
        if x.shape[0] < 2 * n_pairs:
            raise InputError(f"--pairs: {n_pairs} pairs need {2 * n_pairs} held-out images; "
                             f"the run has {x.shape[0]}")
        return x[order[:n_pairs]], x[order[n_pairs:2 * n_pairs]], None
    ia, ib = [], []
    classes = torch.unique(labels)
    for k in range(n_pairs):
        c = classes[k % classes.numel()]
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < 2:
            continue
        pick = members[torch.randperm(members.numel(), generator=g)[:2]]
        ia.append(int(pick[0]))
        ib.append(int(pick[1]))
    if not ia:
        raise InputError("edit: no class has two held-out images to interpolate between")
    ia_t, ib_t = torch.tensor(ia), torch.tensor(ib)
    return x[ia_t], x[ib_t], labels[ia_t]


def _image_features(trained: Trained):
    """Features for frame distances: the digits classifier's for 8×8 digits (the LPIPS
    stand-in), else None (pixels)."""
    if trained.cfg.target == "digits" and tuple(trained.data_shape) == (1, 8, 8):
        from monge.metrics import load_digits_classifier

        classifier = load_digits_classifier().eval()
        return lambda images: classifier.features(images.to(torch.float32))
    return None


def _check_counts(*options: tuple[str, object, int]) -> None:
    """Each ``(name, value, least)``: an integer option of at least ``least``."""
    for name, value, least in options:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"--{name}: need an integer >= {least}, got {value!r}")


def _write(out: Path, report: str, metrics: dict[str, Any]) -> None:
    atomic_write_bytes(out / "report.md", report.encode())
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())


# --- interpolation ------------------------------------------------------------------------------


@dataclass
class InterpolationReport:
    """What :func:`interpolate_run` measured."""

    pairs: int
    frames: int
    steps: int
    solver: str
    istd: float
    """Mean over pairs of the std of consecutive-frame distances (feature space below)."""
    istd_pixels: float
    """The same with plain pixel distances."""
    mean_step: float
    """Mean consecutive-frame distance in the feature space (ISTD's scale)."""
    features: str
    inversion_rmse: float
    """RMSE between each end image and its regeneration from the inverted point (image units)."""
    nfe: int
    files: dict[str, str] = field(default_factory=dict)


def interpolate_run(trained: Trained, out: str | Path, *, pairs: int = 4, frames: int = 11,
                    steps: int = 50, solver: str = "euler", seed: int = 0) -> InterpolationReport:
    """Interpolate between ``pairs`` pairs of held-out images through the model's source.

    Each image is encoded (a latent model), inverted to the source with the ODE run backwards
    (``steps`` steps of ``solver``), the two inverted points are interpolated spherically at
    ``frames`` evenly spaced ratios, and every frame is regenerated with the same solver and
    decoded. Cost: two inversions and one batched generation of ``pairs · frames`` points,
    ``steps`` network calls each (``steps`` · 2 for Heun).

    Writes ``interpolation.png`` (a row per pair, the originals at both ends), ``report.md``
    and ``metrics.json``.
    """
    from monge.inverse.interpolation import istd

    _require_images(trained, "interpolate")
    _check_counts(("pairs", pairs, 1), ("frames", frames, 3), ("steps", steps, 1))
    out = ensure_writable_dir(Path(out), "--out")
    x_a, x_b, y = _pairs(trained, pairs, seed)
    dev = next(trained.model.parameters()).device
    maps = trained.maps
    za, zb = maps.encode_target(x_a).to(dev), maps.encode_target(x_b).to(dev)
    cond = {"y": y.to(dev)} if y is not None else None
    feats = _image_features(trained)

    def image_features(frames_: Tensor) -> Tensor:
        images = maps.decode(frames_).cpu()
        return (feats(images) if feats is not None else images).flatten(1)

    with torch.no_grad():
        res = istd(trained.field, za, zb, steps=steps, points=frames, solver=solver,
                   features=image_features, cond=cond)
        images = maps.decode(res.frames.flatten(0, 1)).cpu().reshape(
            frames, za.shape[0], *trained.data_shape)
    pix = images.flatten(2)
    pixel_std = (pix[1:] - pix[:-1]).norm(dim=2).std(dim=0).mean()
    ends = torch.stack([images[0], images[-1]])
    rmse = float((ends - torch.stack([x_a, x_b])).pow(2).mean().sqrt())
    rows = torch.cat([x_a[:, None], images.transpose(0, 1), x_b[:, None]], dim=1)
    labels = ["A"] + [f"{r:.2g}" for r in torch.linspace(0, 1, frames).tolist()] + ["B"]
    plot_image_rows(out / "interpolation.png", rows,
                f"interpolation through the source ({solver}, {steps} steps)", labels)
    feature_name = "digits-classifier features" if feats is not None else "pixels"
    report = InterpolationReport(
        pairs=za.shape[0], frames=frames, steps=steps, solver=solver, istd=res.istd,
        istd_pixels=float(pixel_std), mean_step=res.mean_step, features=feature_name,
        inversion_rmse=rmse, nfe=res.nfe, files={"figure": "interpolation.png"})
    md = ["# monge edit: interpolate", "",
          f"{report.pairs} pairs of held-out images, {frames} frames each, inverted and "
          f"regenerated with {solver} ({steps} steps; {res.nfe} network calls in all).", "",
          "| ISTD (" + feature_name + ") | mean frame step | ISTD (pixels) | "
          "end-point RMSE |", "|---|---|---|---|",
          f"| {report.istd:.4g} | {report.mean_step:.4g} | {report.istd_pixels:.4g} | "
          f"{rmse:.4g} |", "",
          "ISTD is the spread of the distances between consecutive frames (lower: the frames "
          "change evenly). The end-point RMSE is how far the regenerated end frames are from "
          "the originals (inversion error).", "", "![interpolation](interpolation.png)", ""]
    _write(out, "\n".join(md), {"interpolate": asdict(report)})
    return report


# --- potential-flow traversals ------------------------------------------------------------------


@dataclass
class TraversalReport:
    """What :func:`traverse_run` measured."""

    space: str
    """``latent`` (the autoencoder's code; generator = its decoder) or ``noise`` (the flow's
    source; generator = a few Euler steps of the flow)."""
    dim: int
    directions: int
    train_steps: int
    frames: int
    accuracy: float
    """The pair classifier's accuracy on fresh held-out traversal steps (chance below)."""
    chance: float
    per_direction: list[float]
    step_norm: float
    image_change: list[float]
    """Mean RMS image change per traversal step, per direction."""
    files: dict[str, str] = field(default_factory=dict)


def _generator(trained: Trained, space: str, sampler_steps: int):
    """(G: flat codes [B, D] → images, D, encode: images → flat codes)."""
    maps = trained.maps
    if space == "latent":
        if not trained.is_latent:
            raise InputError("--space latent: the model is not a latent model (no autoencoder); "
                             "use --space noise")
        ae = maps.latent
        for p in ae.parameters():
            p.requires_grad_(False)
        shape = tuple(ae.latent_shape)

        def G(z: Tensor) -> Tensor:
            return ae.decode(z.reshape(z.shape[0], *shape))

        def encode(x: Tensor) -> Tensor:
            return ae.encode(x).flatten(1)
        return G, int(torch.Size(shape).numel()), encode
    if space != "noise":
        raise InputError(f"--space: expected latent or noise, got {space!r}")
    from monge.solvers import Euler, integrate

    shape = tuple(trained.shape)
    model = trained.field
    for p in trained.model.parameters():
        p.requires_grad_(False)

    def G(z: Tensor) -> Tensor:   # differentiable: a few Euler steps of the flow from z
        x = integrate(model, z.reshape(z.shape[0], *shape), Euler(), steps=sampler_steps).x
        return maps.decode(x)
    return G, int(torch.Size(shape).numel()), None


def traverse_run(trained: Trained, out: str | Path, *, space: str | None = None,
                 directions: int = 4, train_steps: int = 300, frames: int = 6,
                 starts: int = 3, batch_size: int = 64, sampler_steps: int = 4, seed: int = 0,
                 progress: bool = False) -> TraversalReport:
    """Learn ``directions`` potential-flow traversals and draw them.

    The potentials ``u_k(z, t)`` are trained jointly with a pair classifier (which direction
    changed this image?) under the wave-equation residual, the initial condition and the
    maximal-variation term (:class:`monge.editing.potential_flow.PotentialFlowLoss`; the
    Laplacian by Hutchinson's estimator above 16 dimensions). Traversals start from the
    held-out images' codes (``latent``) or from source draws (``noise``). Cost per training
    step: ``H + 1`` potential-gradient passes with third-order autograd, two generator calls
    and a JVP through the generator.

    Writes ``traversals.png`` (a block of rows per start, a row per direction), ``report.md``,
    ``metrics.json`` and ``potentials.safetensors`` (the field and classifier weights).
    """
    from safetensors.torch import save_file

    from monge.editing.potential_flow import (
        PotentialFlowConfig,
        Potentials,
        train_potentials,
        traversal_accuracy,
        traverse,
    )

    _require_images(trained, "traverse")
    space = space or ("latent" if trained.is_latent else "noise")
    _check_counts(("directions", directions, 2), ("train-steps", train_steps, 1),
                               ("frames", frames, 2), ("starts", starts, 1))
    out = ensure_writable_dir(Path(out), "--out")
    G, dim, encode = _generator(trained, space, sampler_steps)
    dev = next(trained.model.parameters()).device
    if encode is not None:
        x, _ = held_out_images(trained)
        with torch.no_grad():
            codes = encode(x.to(dev))
        half = max(1, codes.shape[0] // 2)      # first half trains, second half is held out
        train_codes = codes[:half]
        test_codes = codes[half:] if codes.shape[0] > 1 else codes

        def sampler(codes_: Tensor):
            def draw(n: int, g: torch.Generator) -> Tensor:
                idx = torch.randint(0, codes_.shape[0], (n,), generator=g)
                return codes_[idx.to(codes_.device)]
            return draw
        train_sampler, test_sampler = sampler(train_codes), sampler(test_codes)
    else:
        def gaussian(n: int, g: torch.Generator) -> Tensor:
            return torch.randn(n, dim, generator=g).to(dev)
        train_sampler = test_sampler = gaussian
    half_horizon = max(2, frames - 1)
    config = PotentialFlowConfig(half_horizon=half_horizon,
                                 laplacian="exact" if dim <= 16 else "hutchinson")
    torch.manual_seed(seed)
    potentials = Potentials(dim, directions).to(dev)
    trained_pf = train_potentials(G, train_sampler, potentials, config=config,
                                  steps=train_steps, batch_size=batch_size, seed=seed,
                                  progress=progress)
    model = trained_pf.model.eval()
    acc = traversal_accuracy(model, G, test_sampler, n=200, half_horizon=half_horizon,
                             seed=seed + 1)
    z0 = test_sampler(starts, torch.Generator().manual_seed(seed + 2))
    rows, change = [], torch.zeros(directions)
    for k in range(directions):
        path = traverse(model.field, z0, k, frames - 1)             # [frames, starts, D]
        with torch.no_grad():
            imgs = G(path.flatten(0, 1)).reshape(frames, starts, *trained.data_shape).cpu()
        change[k] = (imgs[1:] - imgs[:-1]).flatten(2).pow(2).mean(2).sqrt().mean()
        rows.append(imgs.transpose(0, 1))                           # [starts, frames, ...]
    grid = torch.stack(rows, dim=1).flatten(0, 1)                   # [starts·K, frames, ...]
    plot_image_rows(out / "traversals.png", grid,
                f"{directions} potential-flow traversals in the {space} space (rows: start × "
                "direction)", [f"step {j}" for j in range(frames)])
    state = {f"field.{k}": v.detach().cpu().contiguous()
             for k, v in model.field.state_dict().items()}
    state.update({f"classifier.{k}": v.detach().cpu().contiguous()
                  for k, v in model.reconstructor.state_dict().items()})
    save_file(state, str(out / "potentials.safetensors"),
              metadata={"space": space, "dim": str(dim), "directions": str(directions)})
    report = TraversalReport(
        space=space, dim=dim, directions=directions, train_steps=train_steps, frames=frames,
        accuracy=acc.accuracy, chance=acc.chance,
        per_direction=[float(v) for v in acc.per_direction], step_norm=acc.step_norm,
        image_change=[float(v) for v in change],
        files={"figure": "traversals.png", "weights": "potentials.safetensors"})
    md = ["# monge edit: traverse", "",
          f"{directions} potentials in the {space} space ({dim} dimensions), trained "
          f"{train_steps} steps with the pair classifier and the wave-equation residual.", "",
          "| direction | classifier accuracy | RMS image change per step |", "|---|---|---|"]
    md += [f"| {k} | {report.per_direction[k]:.3f} | {report.image_change[k]:.4g} |"
           for k in range(directions)]
    md += ["", f"Overall accuracy {acc.accuracy:.3f} (chance {acc.chance:.3f}) on fresh "
           f"held-out traversal steps; mean latent step length {acc.step_norm:.4g}.", "",
           "![traversals](traversals.png)", ""]
    _write(out, "\n".join(md), {"traverse": asdict(report)})
    return report


# --- arbitrary-scale decoding -------------------------------------------------------------------


@dataclass
class UpscaleReport:
    """What :func:`upscale_run` measured."""

    sizes: list[int]
    base: int
    ground_truth: str
    """``exact renders`` (a procedural target: PSNR at every size) or ``none above the base
    size`` (other images: the decoder is trained at sizes up to the base only)."""
    decoder_steps: int
    psnr: dict[int, float | None]
    """Implicit decoder vs ground truth on held-out images, per size (None: no ground truth)."""
    bicubic_psnr: dict[int, float | None]
    """The autoencoder's fixed-size decode, bicubic-resized, vs ground truth."""
    consistency: dict[int, float]
    """MSE between a sample's decode at this size, area-resized to the base, and at the base."""
    base_psnr: float
    """The implicit decoder at the base size vs held-out images (dB)."""
    autoencoder_psnr: float
    """The autoencoder's own decoder on the same images (dB): the floor to compare with."""
    samples: int
    files: dict[str, str] = field(default_factory=dict)


def _parse_sizes(scales: list[float], base: int) -> list[int]:
    sizes = []
    for s in scales:
        if not (isinstance(s, int | float) and s > 0 and s == s):
            raise InputError(f"--scale: expected positive numbers, got {s!r}")
        size = int(round(s * base))
        if size < 1 or size > 16 * base:
            raise InputError(f"--scale: {s} gives {size} pixels per side; allowed 1..{16 * base}")
        sizes.append(size)
    return sorted(set(sizes))


def upscale_run(trained: Trained, out: str | Path, *, scales: list[float] | None = None,
                decoder_steps: int = 1500, samples: int = 8, nfe: int = 20, seed: int = 0,
                decoder_file: str | Path | None = None, progress: bool = False
                ) -> UpscaleReport:
    """Decode a latent model's samples at any output size with an implicit (LIIF) decoder.

    The decoder is trained on the run's frozen autoencoder (L1 on random pixels at a random
    output size): for a procedural target at sizes ×1–×4 of the base from exact renders; for
    other images at the base size and area-downsampled sizes only (no ground truth above the
    base exists, so larger sizes are extrapolation and only their cross-scale consistency is
    measured). Then ``samples`` latents are generated (Euler, ``nfe`` steps) and decoded at
    every size. Cost: ``decoder_steps`` decoder training steps of 256 pixel queries per image,
    then one decode per size. ``decoder_file`` (an earlier run's ``implicit_decoder.safetensors``)
    skips the training.

    Writes ``upscaled.png`` (a row per sample, a column per size, the bicubic-resized
    fixed-size decode last), ``report.md``, ``metrics.json`` and ``implicit_decoder.safetensors``.
    """
    from monge.data import PROCEDURAL_DATASETS
    from monge.latent import psnr
    from monge.latent.implicit_decoder import (
        ImplicitDecoder,
        ScaleBank,
        area_resize,
        cross_scale_consistency,
        evaluate_scales,
        load_implicit_decoder,
        save_implicit_decoder,
        train_implicit_decoder,
    )
    from monge.solvers import Euler, integrate

    _require_images(trained, "upscale")
    if not trained.is_latent:
        raise InputError("edit upscale: the model is not a latent model; the implicit decoder "
                         "decodes an autoencoder's latents (train with a latent: section)")
    _check_counts(("decoder-steps", decoder_steps, 1), ("samples", samples, 1),
                               ("nfe", nfe, 1))
    ae = trained.maps.latent
    _, height, width = trained.data_shape
    if height != width:
        raise InputError(f"edit upscale: square images only, got {height}x{width}")
    base = height
    sizes = _parse_sizes(list(scales or [1.5, 2.0, 3.0]), base)
    out = ensure_writable_dir(Path(out), "--out")
    dev = next(trained.model.parameters()).device
    cfg = trained.cfg
    procedural = cfg.target in PROCEDURAL_DATASETS
    data = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                        seed=cfg.seed, test_fraction=cfg.data.test_fraction,
                        shape=trained.data_shape)
    if decoder_file is not None:
        decoder = load_implicit_decoder(decoder_file, dev)
        want = (ae.latent_shape[0], trained.data_shape[0])
        got = (decoder.config.latent_channels, decoder.config.out_channels)
        if got != want:
            raise InputError(f"--decoder: {decoder_file} decodes {got[0]}-channel latents to "
                             f"{got[1]}-channel images; this run needs {want[0]} → {want[1]}")
        decoder_steps = 0
    else:
        torch.manual_seed(seed)
        decoder = ImplicitDecoder.for_autoencoder(ae).to(dev)
        if procedural:
            source = data                                   # exact renders at ×1–×4
        else:
            low = max(1, base // 2)
            source = ScaleBank(data.train, {s: area_resize(data.train, s)
                                            for s in range(low, base + 1)}, data.train_labels)
        train_implicit_decoder(decoder, ae, source, steps=decoder_steps, seed=seed,
                               progress=progress)
    decoder.eval()
    psnr_: dict[int, float | None] = {s: None for s in sizes}
    bicubic: dict[int, float | None] = {s: None for s in sizes}
    if procedural:
        ev = evaluate_scales(decoder, ae, data, sizes, n=128)
        for score in ev.scores:
            psnr_[score.size], bicubic[score.size] = score.psnr, score.bicubic_psnr
    with torch.no_grad():                      # fidelity at the base size, on held-out images
        test = data.test[:128].to(dev)
        z_test = ae.encode(test)
        base_psnr = float(psnr(decoder.decode(z_test, base).clamp(-1, 1), test).mean())
        ae_psnr = float(psnr(ae.decode(z_test).clamp(-1, 1), test).mean())
    z0 = trained.method.initial_state(trained.source_samples(samples, seed).to(dev), seed)
    cond = None
    if trained.num_classes is not None:
        cond = {"y": (torch.arange(samples) % trained.num_classes).to(dev)}
    with torch.no_grad():
        lat = trained.maps.to_latent(integrate(trained.field, z0, Euler(), steps=nfe,
                                               cond=cond).x)
        at_base = decoder.decode(lat, base).clamp(-1, 1)
        outputs = {s: decoder.decode(lat, s).clamp(-1, 1).cpu() for s in sizes}
        fixed = ae.decode(lat).clamp(-1, 1)
    consistency = {s: float(cross_scale_consistency(outputs[s], at_base.cpu()).mean())
                   for s in sizes}
    largest = max(sizes)
    import torch.nn.functional as F

    show = [F.interpolate(outputs[s], size=largest, mode="nearest") for s in sizes]
    show.append(F.interpolate(fixed.cpu(), size=largest, mode="bicubic",
                              align_corners=False).clamp(-1, 1))
    plot_image_rows(out / "upscaled.png", torch.stack(show, dim=1),
                f"samples decoded at {', '.join(map(str, sizes))} px (last: bicubic)",
                [f"{s} px" for s in sizes] + ["bicubic"])
    save_implicit_decoder(decoder, out / "implicit_decoder.safetensors")
    report = UpscaleReport(
        sizes=sizes, base=base,
        ground_truth="exact renders" if procedural else "none above the base size",
        decoder_steps=decoder_steps, psnr=psnr_, bicubic_psnr=bicubic,
        consistency=consistency, base_psnr=base_psnr, autoencoder_psnr=ae_psnr,
        samples=samples,
        files={"figure": "upscaled.png", "decoder": "implicit_decoder.safetensors"})
    md = ["# monge edit: upscale", "",
          (f"Implicit (LIIF) decoder trained {decoder_steps} steps on the run's frozen "
           "autoencoder" if decoder_file is None else f"Implicit (LIIF) decoder from "
           f"{decoder_file}") + f"; ground truth: {report.ground_truth}. Base size {base} "
          f"px: held-out PSNR {base_psnr:.2f} dB (the autoencoder's own decoder: "
          f"{ae_psnr:.2f} dB).", "",
          "| size | scale | PSNR (dB) | bicubic PSNR (dB) | cross-scale MSE (samples) |",
          "|---|---|---|---|---|"]

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"
    md += [f"| {s} | ×{s / base:.3g} | {fmt(psnr_[s])} | {fmt(bicubic[s])} | "
           f"{consistency[s]:.3g} |" for s in sizes]
    md += ["", "PSNR is on held-out images against the exact render at that size; the "
           "bicubic column resizes the autoencoder's fixed-size decode. Cross-scale MSE: a "
           "sample decoded at the size, area-resized to the base, against its decode at the "
           "base.", "", "![upscaled](upscaled.png)", ""]
    _write(out, "\n".join(md), {"upscale": asdict(report)})
    return report
