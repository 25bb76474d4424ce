"""``method="auto"``: pick exact, Sinkhorn, SNS or online Sinkhorn from eps, sizes and device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from monge.core.checks import as_tensor
from monge.errors import InputError
from monge.ot._problem import EpsScale
from monge.ot._result import OTResult

#: eps (relative to max |C|) below which SNS beats Sinkhorn (ot_vs_pot.py: SNS is slower at
#: eps >= 2e-3 and 6-20x faster at 5e-4). Re-measured for issue 14 (fastest of 2 runs, tol
#: 1e-8, uniform square -> Gaussian): SNS / Sinkhorn time at eps 2e-3, 1e-3, 7e-4, 5e-4 is
#: 3.7, 0.66, 0.60, 0.42 (n = 500), 2.6, 1.39, 1.21, 0.61 (n = 1000), 2.8, 1.0, 0.65, 0.43
#: (n = 2000): the crossover lies in [6e-4, 1.5e-3] at every size, so 1e-3 stays; within that
#: band either choice is at most ~1.5x off, outside it the rule picks the faster method. A
#: "race" (Sinkhorn first, SNS warm-started once the observed rate predicts > 400 more
#: sweeps) was tried and rejected: SNS from plain-Sinkhorn potentials needs damped Newton
#: steps and lost up to 2.7x against SNS with its own annealed warm-up.
SNS_BELOW = 1e-3
#: eps (relative) below which the entropic plan is the exact plan to working precision; exact
#: OT is then used on CPU for problems up to EXACT_MAX_ENTRIES
EXACT_BELOW = 1e-5
EXACT_MAX_ENTRIES = 2000 * 2000
#: a dense n x m cost above this many bytes switches point clouds to the online solver
DENSE_MAX_BYTES = 2 * 2**30


@dataclass(frozen=True)
class AutoChoice:
    """The method ``auto`` picked and why (stored as ``result.info["auto"]``)."""

    method: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"method": self.method, "reason": self.reason}


def choose_method(n: int, m: int, eps_relative: float, *, batch: int = 1,
                  device: torch.device | str = "cpu", itemsize: int = 8,
                  points: bool = False, dense_max_bytes: int = DENSE_MAX_BYTES) -> AutoChoice:
    """Choose a solver for an entropic problem of size ``batch x n x m``.

    Rules (from the measured ``benchmarks/ot_vs_pot.py`` grid): a dense cost that would take
    more than ``dense_max_bytes`` (and point clouds are available) -> ``online``; eps below
    ``EXACT_BELOW`` x max cost on a CPU and at most ``EXACT_MAX_ENTRIES`` entries -> ``exact``
    (the entropic plan equals the LP plan to working precision and the LP is faster); eps below
    ``SNS_BELOW`` -> ``sns``; otherwise ``sinkhorn``.

    Args:
        n, m: problem sizes; batch: number of problems.
        eps_relative: eps divided by ``max |C|``.
        device: where the data live; itemsize: bytes per entry (8 float64, 4 float32).
        points: whether the caller has point clouds (so the online solver is possible).
        dense_max_bytes: memory limit of a dense cost/plan.

    Returns:
        :class:`AutoChoice`.
    """
    dense_bytes = 3 * batch * n * m * itemsize        # cost, plan/kernel and one work buffer
    if points and dense_bytes > dense_max_bytes:
        return AutoChoice("online", f"dense problem needs {dense_bytes / 2**30:.1f} GiB > "
                          f"{dense_max_bytes / 2**30:.1f} GiB")
    dev = torch.device(device).type
    if eps_relative < EXACT_BELOW and dev == "cpu" and batch * n * m <= EXACT_MAX_ENTRIES:
        return AutoChoice("exact", f"eps {eps_relative:.2g} x max cost < {EXACT_BELOW:g}: "
                          "entropic plan = LP plan")
    if eps_relative < SNS_BELOW:
        return AutoChoice("sns", f"eps {eps_relative:.2g} x max cost < {SNS_BELOW:g}")
    return AutoChoice("sinkhorn", f"eps {eps_relative:.2g} x max cost >= {SNS_BELOW:g}")


def _relative(eps: float, eps_scale: EpsScale, cmax: float) -> float:
    if eps_scale == "max_cost":
        return float(eps)
    return float(eps) / cmax if cmax > 0 else float("inf")


def solve_auto(a, b, C, *, eps: float = 0.05, eps_scale: EpsScale = "absolute",
               tol: float | None = None, max_iter: int | None = None) -> OTResult:
    """Solve ``(a, b, C)`` with the method :func:`choose_method` picks; the choice is recorded
    in ``result.info["auto"]`` (``{"method", "reason"}``) and ``result.flags`` (``"auto:..."``).

    Args and Returns: as :func:`monge.ot.solve` (``**options`` are not accepted, since they are
    method-specific).
    """
    from monge.ot.solve import solve

    Ct = as_tensor(C, "C")
    if Ct.ndim not in (2, 3):
        raise InputError(f"C: expected a cost matrix of shape [n, m] or [B, n, m], got shape "
                         f"{tuple(Ct.shape)}")
    n, m = Ct.shape[-2:]
    batch = Ct.shape[0] if Ct.ndim == 3 else 1
    # max |C| without an |C| temporary (two reductions, no n x m allocation)
    cmax = float(torch.maximum(Ct.amax(), -Ct.amin())) if Ct.numel() else 0.0
    choice = choose_method(n, m, _relative(eps, eps_scale, cmax), batch=batch,
                           device=Ct.device, itemsize=Ct.element_size())
    r = solve(a, b, Ct, method=choice.method, eps=eps, eps_scale=eps_scale, tol=tol,
              max_iter=max_iter)
    _record(r, choice)
    return r


def solve_points(x, y, a=None, b=None, *, method: str = "auto", eps: float = 0.05,
                 eps_scale: EpsScale = "absolute", tol: float | None = None,
                 max_iter: int | None = None, dense_max_bytes: int = DENSE_MAX_BYTES,
                 **options) -> OTResult:
    """OT between point clouds ``x [n, d]``, ``y [m, d]`` with cost ``|x - y|^2``.

    Method: ``"online"`` runs :func:`monge.ot.online.online_sinkhorn` (no n x m matrix);
    any other method forms ``C = sq_euclidean_cost(x, y)`` and calls :func:`monge.ot.solve`;
    ``"auto"`` picks with :func:`choose_method` (online when the dense problem exceeds
    ``dense_max_bytes``; the max cost for a relative eps is then computed in blocks).

    Args:
        x, y: point clouds (``[n, d]``, ``[m, d]``; online also takes ``[B, n, d]``).
        a, b: weights (``None``: uniform).
        method: ``"auto"``, ``"online"`` or a :data:`monge.ot.METHODS` name.
        eps, eps_scale, tol, max_iter: as in :func:`monge.ot.solve`.
        dense_max_bytes: memory limit for ``auto``.
        **options: passed to the chosen solver (e.g. ``callback``, ``max_time`` for online).

    Returns:
        :class:`OTResult` (a :class:`monge.ot.online.LazyPlan` as plan when online).
    """
    from monge.ot.cost import sq_euclidean_cost
    from monge.ot.online import max_sq_distance, online_sinkhorn, prepare_points
    from monge.ot.solve import solve

    choice = None
    if method == "auto":
        xx, yy, batched = prepare_points(x, y)
        B, n, _ = xx.shape
        m = yy.shape[1]
        itemsize = xx.element_size()
        if 3 * B * n * m * itemsize > dense_max_bytes:
            choice = AutoChoice("online", f"dense problem needs "
                                f"{3 * B * n * m * itemsize / 2**30:.1f} GiB > "
                                f"{dense_max_bytes / 2**30:.1f} GiB")
        else:
            c = 0.5 * (xx.mean(1, keepdim=True) + yy.mean(1, keepdim=True))
            cmax = float(max_sq_distance(xx - c, yy - c, max(1, 2**22 // max(m, 1))).max())
            choice = choose_method(n, m, _relative(eps, eps_scale, cmax), batch=B,
                                   device=xx.device, itemsize=itemsize, points=True,
                                   dense_max_bytes=dense_max_bytes)
        method = choice.method
        options = {k: v for k, v in options.items()
                   if method == "online" or k not in ("callback", "max_time", "block_bytes")}
    if method == "online":
        kw = dict(options)
        if max_iter is not None:
            kw["max_iter"] = max_iter
        r = online_sinkhorn(x, y, eps, a, b, eps_scale=eps_scale, tol=tol, **kw)
    else:
        r = solve(a, b, sq_euclidean_cost(x, y), method=method, eps=eps,  # type: ignore[arg-type]
                  eps_scale=eps_scale, tol=tol, max_iter=max_iter, **options)
    if choice is not None:
        _record(r, choice)
    return r


def _record(r: OTResult, choice: AutoChoice) -> None:
    r.info["auto"] = choice.as_dict()
    r.flags.append(f"auto:{choice.method}")


__all__ = ["AutoChoice", "choose_method", "solve_auto", "solve_points", "SNS_BELOW",
           "EXACT_BELOW", "DENSE_MAX_BYTES"]
