"""Report figures (matplotlib, Agg backend): samples, trajectories, loss and quality vs NFE."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def _np(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _is_image(x: Tensor) -> bool:
    return x.ndim == 4


def _image_grid(x: Tensor, nrow: int) -> np.ndarray:
    """Tile images [N, C, H, W] in [-1, 1] into one [rows*H, nrow*W(, C)] array in [0, 1]."""
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    grid = np.ones((rows * (h + 1), nrow * (w + 1), c), dtype=np.float32)
    imgs = ((_np(x).clip(-1, 1) + 1) / 2).transpose(0, 2, 3, 1)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = imgs[i]
    return grid[..., 0] if c == 1 else grid


def _draw_panels(axes, panels: list[tuple[Tensor, str, str]], labels: Tensor | None,
                 by_class: set[str], limits: Tensor) -> None:
    """Draw (samples, title, colour) panels: image grids (one row per class for the titles in
    ``by_class`` when labels are given) or 2-D scatters on the common limits of ``limits``."""
    if _is_image(panels[0][0]):
        for ax, (x, name, _) in zip(axes, panels, strict=True):
            if labels is not None and name in by_class:
                order = torch.argsort(labels.cpu(), stable=True)
                x = _per_class_rows(x[order], labels[order])
            ax.imshow(_image_grid(x[:100], 10), cmap="gray", vmin=0, vmax=1)
            ax.set_title(name)
            ax.axis("off")
        return
    allx = limits.cpu()
    lo, hi = allx.quantile(0.002, dim=0), allx.quantile(0.998, dim=0)
    for ax, (x, name, color) in zip(axes, panels, strict=True):
        a = _np(x)
        ax.scatter(a[:, 0], a[:, 1], s=2, alpha=0.5, color=color)
        ax.set_title(name)
        ax.set_xlim(float(lo[0]) - 0.5, float(hi[0]) + 0.5)
        ax.set_ylim(float(lo[1]) - 0.5, float(hi[1]) + 0.5)
        ax.set_aspect("equal")


def _save(fig, path: Path, title: str) -> None:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_image_rows(path: Path, rows: Tensor, title: str,
                    column_labels: list[str] | None = None) -> None:
    """A grid of images ``rows`` ``[R, K, C, H, W]`` in ``[-1, 1]``, one row per item (an
    interpolation, a traversal, an image at several sizes), columns titled ``column_labels``.
    Grayscale, RGB or RGBA (shown with its alpha)."""
    r, k = rows.shape[:2]
    fig, axes = plt.subplots(r, k, figsize=(0.9 * k + 0.4, 0.9 * r + 0.6), squeeze=False)
    for i in range(r):
        for j in range(k):
            img = ((_np(rows[i, j]).clip(-1, 1) + 1) / 2).transpose(1, 2, 0)
            ax = axes[i][j]
            if img.shape[2] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img if img.shape[2] == 4 else img[:, :, :3],
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and column_labels is not None:
                ax.set_title(column_labels[j], fontsize=7)
    _save(fig, path, title)


def plot_samples(path: Path, generated: Tensor, reference: Tensor, title: str,
                 labels: Tensor | None = None, source: Tensor | None = None) -> None:
    """Generated samples beside held-out data (2-D scatter, or image grids / one row per class)."""
    if _is_image(generated):
        fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
        name = "generated (row = class)" if labels is not None else "generated"
        _draw_panels(axes, [(generated, name, ""), (reference, "held-out", "")], labels,
                     {name}, generated)
    else:
        fig, axes = plt.subplots(1, 2 if source is None else 3, figsize=(12 if source is not None
                                                                        else 8.5, 4.2))
        pairs = [] if source is None else [(source, "source", "tab:gray")]
        pairs += [(generated, "generated", "tab:blue"), (reference, "held-out target",
                                                         "tab:orange")]
        _draw_panels(axes, pairs, None, set(), torch.cat([q[0][:, :2] for q in pairs]))
    _save(fig, path, title)


def plot_student(path: Path, student: Tensor, teacher: Tensor, reference: Tensor, label: str,
                 labels: Tensor | None = None) -> None:
    """One-step samples of a student beside one Euler step of its teacher (same starting
    points) and held-out data: 2-D scatters, or image grids (one row per class)."""
    panels = [(student, f"{label}, 1 step", "tab:green"),
              (teacher, "teacher, 1 Euler step", "tab:blue"),
              (reference, "held-out", "tab:orange")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    _draw_panels(axes, panels, labels, {panels[0][1], panels[1][1]},
                 torch.cat([reference[:, :2], student[:, :2]]) if not _is_image(student)
                 else student)
    _save(fig, path, f"one network call: the {label} student vs its teacher")


def _per_class_rows(x: Tensor, labels: Tensor, per_row: int = 10) -> Tensor:
    """Arrange up to ``per_row`` samples of each class on its own row (blank where missing)."""
    rows = []
    for c in sorted(set(labels.tolist()))[:10]:
        xc = x[labels == c][:per_row]
        pad = torch.ones(per_row - xc.shape[0], *x.shape[1:], dtype=x.dtype)
        rows.append(torch.cat([xc.cpu(), pad]))
    return torch.cat(rows)


def plot_trajectories(path: Path, trajectory: Tensor, title: str) -> None:
    """2-D: paths from source (grey) to end points (blue); images: a strip of states per row."""
    if trajectory.ndim == 5:  # [T+1, B, C, H, W]
        steps = trajectory.shape[0]
        cols = min(steps, 11)
        idx = np.linspace(0, steps - 1, cols).round().astype(int)
        strip = trajectory[idx][:, :8].transpose(0, 1).reshape(-1, *trajectory.shape[2:])
        fig, ax = plt.subplots(figsize=(cols * 0.9, 8 * 0.9 + 0.6))
        ax.imshow(_image_grid(strip, cols), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}\n(left: t = 0, right: t = 1)")
        ax.axis("off")
    else:
        tr = _np(trajectory)
        fig, ax = plt.subplots(figsize=(6, 6))
        for b in range(tr.shape[1]):
            ax.plot(tr[:, b, 0], tr[:, b, 1], color="tab:olive", lw=0.6, alpha=0.6)
        ax.scatter(tr[0, :, 0], tr[0, :, 1], s=6, color="tab:gray", label="t = 0", zorder=3)
        ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=6, color="tab:blue", label="t = 1", zorder=3)
        ax.set_aspect("equal")
        ax.legend(loc="upper right")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_loss(path: Path, log_file: Path) -> None:
    """Training loss (log scale) from the JSONL log."""
    rows = [json.loads(r) for r in log_file.read_text().splitlines() if r.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        steps = np.array([r["step"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
        k = max(1, len(loss) // 20)
        if len(loss) > k:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, lw=1.6, label=f"moving average ({k})")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_quality_vs_nfe(path: Path, evaluations: list[dict], reference: float,
                        key: str = "w2") -> None:
    """Quality (W2 or another key) against NFE, one line per solver, with the noise floor."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for solver in dict.fromkeys(e["solver"] for e in evaluations):
        pts = sorted((e["nfe"], e[key]) for e in evaluations if e["solver"] == solver
                     and e.get(key) is not None)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=solver)
    ax.axhline(reference, color="gray", ls="--", label="held-out floor")
    ax.set_xscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel(key)
    ax.legend()
    ax.set_title(f"{key} vs NFE")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
