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

__all__ = ["InterpolationReport", "interpolate_run", "held_out_images"]


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


def _write(out: Path, report: str, metrics: dict[str, Any]) -> None:
    atomic_write_bytes(out / "report.md", report.encode())
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())


def _save_strip(path: Path, rows: Tensor, title: str, column_labels: list[str] | None = None
                ) -> None:
    """A grid figure: ``rows`` ``[R, K, C, H, W]`` in ``[-1, 1]``, one row per item."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, k = rows.shape[:2]
    fig, axes = plt.subplots(r, k, figsize=(0.9 * k + 0.4, 0.9 * r + 0.6), squeeze=False)
    for i in range(r):
        for j in range(k):
            img = ((rows[i, j].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
            ax = axes[i][j]
            if img.shape[2] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img[:, :, :3] if img.shape[2] != 4 else img,
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and column_labels is not None:
                ax.set_title(column_labels[j], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


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
    for name, value, least in (("pairs", pairs, 1), ("frames", frames, 3), ("steps", steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"--{name}: need an integer >= {least}, got {value!r}")
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
    _save_strip(out / "interpolation.png", rows,
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
