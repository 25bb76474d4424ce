"""Sample a trained model with named solvers and NFE budgets and measure the samples against
held-out data (W2, energy distance, digits Fréchet distance, path statistics)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from monge.errors import ConfigError, DataError, InputError
from monge.experiments.build import Components
from monge.experiments.config import RunConfig, SolverSpec
from monge.metrics import (
    class_histogram_entropy,
    classifier_frechet_distance,
    energy_distance,
    kinetic_energy,
    straightness,
    transport_cost,
    wasserstein2,
)
from monge.solvers import PIController, SolveResult, integrate, make_solver


def steps_for_budget(solver: str, nfe: int) -> int:
    """Number of steps a fixed-step solver can take within an NFE budget (0 if none)."""
    return nfe // make_solver(solver).nfe_per_step


def check_budget(solver: str, nfe: int | None, name: str = "nfe") -> None:
    """Refuse an NFE budget a solver cannot spend: non-positive, or below one step's cost."""
    s = make_solver(solver)
    if nfe is None:
        if not s.adaptive:
            raise InputError(f"{name}: {solver} is a fixed-step solver and needs an NFE budget")
        return
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise InputError(f"{name}: must be a positive integer, got {nfe!r}")
    if not s.adaptive and nfe < s.nfe_per_step:
        raise InputError(f"{name}: {solver} spends {s.nfe_per_step} NFE per step, so a budget "
                         f"of {nfe} allows no step; use at least {s.nfe_per_step}")
    if not s.adaptive and nfe // s.nfe_per_step < s.min_steps:
        raise InputError(f"{name}: {solver} is a multistep method that needs at least "
                         f"{s.min_steps * s.nfe_per_step} NFE; got {nfe}")


def budget_allows(solver: str, nfe: int) -> bool:
    """Whether a fixed-step solver can spend ``nfe`` (at least one step and its minimum)."""
    s = make_solver(solver)
    return nfe // s.nfe_per_step >= max(1, s.min_steps)


def solve(field: nn.Module, x_init: Tensor, solver: str, *, nfe: int | None = None,
          rtol: float = 1e-5, atol: float = 1e-5, cond: dict[str, Any] | None = None,
          return_trajectory: bool = False, grid: str = "uniform",
          seed: int | None = None) -> SolveResult:
    """Integrate the model's velocity from t = 0 to 1 with a named solver, NFE budget and time
    grid (``seed`` seeds a stochastic solver's noise)."""
    s = make_solver(solver)
    if s.stochastic:
        s = make_solver(solver, generator=seed)
    if s.adaptive and nfe is None:
        return integrate(field, x_init, s, controller=PIController(rtol=rtol, atol=atol),
                         cond=cond, return_trajectory=return_trajectory)
    if nfe is None:
        raise ConfigError(f"solver {solver!r}: give an NFE budget")
    steps = steps_for_budget(solver, nfe)
    if steps < 1:
        raise ConfigError(f"solver {solver!r} needs at least {s.nfe_per_step} NFE per step; "
                          f"budget {nfe} is too small")
    return integrate(field, x_init, s, steps=steps, grid=grid, cond=cond,
                     return_trajectory=return_trajectory)


def measure(x: Tensor, reference: Tensor, frechet: bool = False) -> dict[str, Any]:
    """W2 and energy distance of samples x against reference (and, for digits, the classifier
    Fréchet distance and class-histogram entropy); a ``note`` flags non-finite samples."""
    rec: dict[str, Any] = {"w2": wasserstein2(x, reference),
                           "energy_distance": energy_distance(x, reference)}
    if frechet:
        rec["frechet"] = classifier_frechet_distance(x, reference)
        rec["class_entropy"] = class_histogram_entropy(x)
    if not all(math.isfinite(v) for v in (rec["w2"], rec["energy_distance"])):
        rec["note"] = "non-finite samples"
    return rec


def evaluate(field: nn.Module, x_init: Tensor, reference: Tensor, specs: list[SolverSpec], *,
             cond: dict[str, Any] | None = None, frechet: bool = False,
             progress: bool = False, decode: Callable[[Tensor], Tensor] | None = None,
             model: str = "teacher"
             ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], Tensor]]:
    """One record per (solver, NFE): W2, energy distance (and digits Fréchet distance); each
    record names the ``model`` it measures (``teacher``, or a student's method, e.g.
    ``reflow-2``).

    Returns the records and the generated samples keyed by (solver, NFE). Samples are divided
    mapped back to data units by ``decode`` (standardisation, a path's data scale) before they
    are measured.
    """
    records, samples = [], {}
    jobs = [(s, n) for s in specs for n in (s.nfe or [None])]
    for spec, budget in jobs:
        if budget is not None and not budget_allows(spec.solver, budget):
            continue
        t0 = time.perf_counter()
        res = solve(field, x_init, spec.solver, nfe=budget, rtol=spec.rtol, atol=spec.atol,
                    cond=cond, grid=spec.grid, seed=0)
        seconds = time.perf_counter() - t0
        x = res.x.float().cpu()
        x = decode(x) if decode is not None else x
        samples[(spec.solver, res.nfe)] = x
        rec: dict[str, Any] = {"model": model, "solver": spec.solver, "nfe": res.nfe,
                               **measure(x, reference, frechet), "seconds": seconds}
        if spec.grid != "uniform":
            rec["grid"] = spec.grid
        if make_solver(spec.solver).adaptive:
            rec.update(rtol=spec.rtol, atol=spec.atol, converged=res.converged,
                       rejected=res.n_rejected)
        elif not res.converged:
            rec["converged"] = False
        records.append(rec)
        if progress:
            extra = f"  FD {rec['frechet']:.3f}" if frechet else ""
            print(f"  {spec.solver:>8} NFE {res.nfe:>4}: W2 {rec['w2']:.4f}  "
                  f"energy {rec['energy_distance']:.4f}{extra}")
    return records, samples


def solver_sweep(field: nn.Module, x_init: Tensor, reference: Tensor, nfes: list[int],
                 solvers: list[str], *, grid: str = "uniform",
                 cond: dict[str, Any] | None = None, frechet: bool = False,
                 decode: Callable[[Tensor], Tensor] | None = None) -> list[dict[str, Any]]:
    """W2 (and digits Fréchet distance) of every named fixed-step solver at every NFE budget it
    can spend, on one set of starting points: the report's every-solver table."""
    specs = [SolverSpec(solver=s, nfe=[n for n in nfes if budget_allows(s, n)], grid=grid)
             for s in solvers]
    records, _ = evaluate(field, x_init, reference, [s for s in specs if s.nfe], cond=cond,
                          frechet=frechet, decode=decode)
    return records


@dataclass
class EvalSet:
    """Held-out target halves, source starts and conditioning for evaluation."""

    ref_a: Tensor
    ref_b: Tensor
    x0: Tensor
    cond: dict[str, Any] | None


def eval_set(cfg: RunConfig, comp: Components, device) -> EvalSet:
    tgt = comp.target
    m = min(cfg.eval.n_samples, tgt.test.shape[0] // 2)
    if m < 8:
        raise DataError(f"{cfg.target}: only {tgt.test.shape[0]} held-out samples; need at "
                        "least 16 for evaluation (use more data or a larger test_fraction)")
    x0 = comp.source.test
    if x0.shape[0] < m:
        x0, _ = comp.source.sample(m, torch.Generator().manual_seed(cfg.seed + 2))
    cond = None
    if comp.num_classes is not None:
        cond = {"y": tgt.test_labels[:m].to(device)}
    x0 = comp.maps.encode_source(x0[:m])
    return EvalSet(tgt.test[:m], tgt.test[m:2 * m], x0.to(device), cond)


def path_statistics(field: nn.Module, x_init: Tensor, steps: int, cond,
                     decode: Callable[[Tensor], Tensor] | None = None) -> tuple[dict, Any]:
    """Straightness, kinetic energy and transport cost from a fine Euler trajectory (in data
    units: a trajectory in model units is mapped back by ``decode``)."""
    fine = solve(field, x_init, "euler", nfe=steps, cond=cond, return_trajectory=True)
    traj = fine.trajectory.float().cpu()
    traj = decode(traj.flatten(0, 1)).reshape(traj.shape) if decode is not None else traj
    stats = {"straightness": straightness(traj, fine.times),
             "kinetic_energy": kinetic_energy(traj, fine.times),
             "transport_cost": transport_cost(traj[0], traj[-1])}
    return stats, traj
