"""Reflow (k-rectified flow) and one-step distillation of a flow.

Liu, Gong & Liu (2023), "Flow Straight and Fast: Learning to Generate and Transfer Data with
Rectified Flow": given a trained flow (the teacher), draw z0 from the source, solve the ODE to
z1 with an accurate solver, and retrain on the *coupled* pairs (z0, z1) with the linear path,
starting from the teacher's weights. The new flow's paths are straighter (k-RF) and its
transport cost E‖Z1 − Z0‖² does not increase (their Theorem 3.5). One-step distillation then
trains T(z) = z + v(z, 0) on the same pairs with ‖T(z0) − z1‖², so the student is an ordinary
velocity model sampled with one Euler step.

Cost: pair generation = teacher NFE × pairs (stored in chunks, seeded, resumable); retraining =
the usual one forward/backward per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from monge.core.io import atomic_path
from monge.errors import DataError, InputError
from monge.solvers import PIController, integrate, make_solver
from monge.train.losses import LossOutput


@dataclass
class PairSet:
    """Coupled pairs (x0, x1) from a teacher, with the teacher NFE spent on them."""

    x0: Tensor
    x1: Tensor
    labels: Tensor | None
    teacher_nfe: int

    def sampler(self) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor, Tensor | None]]:
        """A trainer batch sampler drawing the same rows of x0 and x1 (the pairing is kept)."""
        def sample(n: int, g: torch.Generator):
            idx = torch.randint(0, self.x0.shape[0], (n,), generator=g, device=g.device)
            idx = idx.to(self.x0.device)
            y = None if self.labels is None else self.labels[idx]
            return self.x0[idx], self.x1[idx], y
        return sample


def generate_pairs(field: Callable[..., Tensor], source: Callable[[int, torch.Generator], Tensor],
                   n: int, *, solver: str = "dopri5", nfe: int | None = None,
                   rtol: float = 1e-5, atol: float = 1e-5, chunk: int = 2048, seed: int = 0,
                   folder: str | Path | None = None,
                   labels: Callable[[int, torch.Generator], Tensor] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> PairSet:
    """Solve the teacher ODE from ``n`` source draws, in seeded chunks.

    Args:
        field: the teacher's velocity (a ModelWrapper).
        source: ``source(k, generator)`` → k source samples (model units).
        n: number of pairs.
        solver, nfe, rtol, atol: the teacher's solver (adaptive by default).
        chunk: pairs per chunk; each chunk is seeded with ``seed + chunk index``.
        folder: where chunks are stored (``pairs-00000.safetensors``, ...); existing chunks
            are reused, so an interrupted generation resumes.
        labels: ``labels(k, generator)`` for a class-conditional teacher.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n: the number of pairs must be a positive integer, got {n!r}")
    s = make_solver(solver)
    folder = Path(folder) if folder is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    xs0, xs1, ys, spent = [], [], [], 0
    for i, start in enumerate(range(0, n, chunk)):
        k = min(chunk, n - start)
        file = folder / f"pairs-{i:05d}.safetensors" if folder is not None else None
        if file is not None and file.exists():
            with safe_open(str(file), framework="pt") as fh:
                meta = fh.metadata() or {}
                part = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
            if int(meta.get("rows", -1)) != k or "x0" not in part:
                raise DataError(f"{file}: a pair chunk of another generation; remove the folder")
            spent += int(meta.get("nfe", 0))
        else:
            g = torch.Generator().manual_seed(seed + i)
            x0 = source(k, g)
            y = labels(k, g) if labels is not None else None
            cond = {"y": y} if y is not None else None
            with torch.no_grad():
                if s.adaptive and nfe is None:
                    res = integrate(field, x0, s, cond=cond,
                                    controller=PIController(rtol=rtol, atol=atol))
                else:
                    res = integrate(field, x0, s, steps=(nfe or 100) // s.nfe_per_step,
                                    cond=cond)
            if not res.converged:
                raise DataError(f"reflow: the teacher's solve did not converge ({res.message})")
            part = {"x0": x0.contiguous(), "x1": res.x.contiguous()}
            if y is not None:
                part["y"] = y.contiguous()
            if file is not None:
                with atomic_path(file) as tmp:
                    save_file(part, str(tmp), metadata={"rows": str(k), "nfe": str(res.nfe)})
            spent += res.nfe
        xs0.append(part["x0"])
        xs1.append(part["x1"])
        if "y" in part:
            ys.append(part["y"])
        if progress is not None:
            progress(start + k, n)
    return PairSet(torch.cat(xs0), torch.cat(xs1), torch.cat(ys) if ys else None, spent)


class OneStepLoss(nn.Module):
    """‖z0 + v_θ(z0, 0) − z1‖²: distils coupled pairs into one Euler step of a velocity net.

    Args:
        num_classes: set for a class-conditional network (labels passed as ``y``).
    """

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, model: nn.Module, x0: Tensor, x1: Tensor, y1: Tensor | None,
                generator: torch.Generator | None, **_: Any) -> LossOutput:
        t = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        cond = {"y": y1} if (self.num_classes is not None and y1 is not None) else {}
        pred = x0 + model(x0, t, **cond)
        per = ((pred - x1) ** 2).flatten(1).mean(1)
        return LossOutput(loss=per.mean(), per_example=per.detach(), t=t)
