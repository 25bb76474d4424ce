"""Sample quality vs NFE for every solver, likelihood, and guidance on trained monge models.

Issue 8 ("Samplers, likelihood and guidance"), acceptance items "Quality vs NFE", "Likelihood"
and "Guidance". Everything goes through monge's own APIs: models are trained by
``monge.experiments.run.run_experiment`` on configs built with ``load_config``, restored with
``load_trained``, swept with ``monge.experiments.evaluate.solver_sweep``/``evaluate``; likelihoods
by ``monge.paths.log_likelihood`` (data units handled as ``monge likelihood`` does); guidance by
``Trained.sample(guidance=w)`` (classifier-free) and ``monge.guidance.ClassifierGuidance`` with a
``train_noisy_classifier`` classifier.

Models (one per data set):
  lin8m   8gaussians -> moons, linear path, velocity (the main job's set-up)
  vpm     gaussian -> moons, VP path, epsilon prediction (``--vp-prediction x1`` to change)
  digits  configs/digits.yaml (class-conditional U-Net, cond_dropout 0.1), train.steps cut
  cond8g  gaussian -> 8gaussians, linear path, class-conditional, cond_dropout 0.1

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/samplers_quality.py [--work DIR] [--reuse]``
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_results, markdown_table  # noqa: E402

from monge.experiments.build import build_components  # noqa: E402
from monge.experiments.config import SolverSpec, load_config  # noqa: E402
from monge.experiments.evaluate import eval_set, evaluate, solve, solver_sweep  # noqa: E402
from monge.experiments.load import load_trained  # noqa: E402
from monge.experiments.run import run_experiment  # noqa: E402
from monge.guidance import ClassifierGuidance, train_noisy_classifier  # noqa: E402
from monge.metrics import (  # noqa: E402
    class_histogram_entropy,
    classifier_frechet_distance,
    load_digits_classifier,
    wasserstein2,
)
from monge.paths import ModelWrapper, log_likelihood  # noqa: E402
from monge.solvers import SOLVERS  # noqa: E402
from monge.train import CHECKPOINT_NAME  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

def _light_eval(overrides: dict, n_samples: int | None = None) -> dict:
    """Keep run_experiment's own evaluation short: the benchmark measures on its own."""
    o = {"compare.couplings": [], "eval.sweep_nfe": [],
         "eval.solvers": [{"solver": "dopri5", "rtol": 1e-4, "atol": 1e-4}],
         "eval.straightness_steps": 20, "eval.trajectories": 0}
    if n_samples is not None:
        o["eval.n_samples"] = n_samples
    o.update(overrides)
    return o


def model_configs(args) -> dict[str, tuple[str | None, dict]]:
    work = Path(args.work)
    return {
        "lin8m": (None, _light_eval({
            "source": "8gaussians", "target": "moons", "path.name": "linear",
            "train.steps": args.steps_2d, "out": str(work / "lin8m")})),
        "vpm": (None, _light_eval({
            "source": "gaussian", "target": "moons", "path.name": "vp",
            "train.prediction": args.vp_prediction, "train.steps": args.steps_2d,
            "out": str(work / f"vpm-{args.vp_prediction}")})),
        "cond8g": (None, _light_eval({
            "source": "gaussian", "target": "8gaussians", "path.name": "linear",
            "model.conditional": True, "train.cond_dropout": 0.1,
            "train.steps": args.steps_2d, "out": str(work / "cond8g")})),
        "digits": (str(ROOT / "configs" / "digits.yaml"), _light_eval({
            "train.steps": args.steps_digits, "out": str(work / "digits")})),
    }


def train(name: str, args) -> tuple[Path, float, int]:
    """Train (or reuse) one model; returns its run folder, training seconds and steps."""
    path, overrides = model_configs(args)[name]
    cfg = load_config(path, overrides)
    out = Path(cfg.out)
    done = (out / CHECKPOINT_NAME).exists() and (out / "metrics.json").exists()
    if args.reuse and done:
        import json
        m = json.loads((out / "metrics.json").read_text())
        log(f"{name}: reusing {out} ({m['steps']} steps, trained in {m['train_seconds']:.0f} s)")
        return out, float(m["train_seconds"]), int(m["steps"])
    resume = args.reuse and (out / CHECKPOINT_NAME).exists()
    log(f"{name}: training {cfg.source} -> {cfg.target}, path {cfg.path.name}, prediction "
        f"{cfg.train.prediction}, {cfg.train.steps} steps -> {out}"
        + (" (resuming)" if resume else ""))
    m = run_experiment(cfg, resume=resume, overwrite=not resume, progress=False)
    log(f"{name}: trained in {m['train_seconds']:.0f} s, final loss {m['final_loss']:.4g}")
    return out, float(m["train_seconds"]), int(m["steps"])


class Ctx:
    """A restored model with its held-out evaluation set (as run_experiment builds it)."""

    def __init__(self, run_dir: Path):
        self.tr = load_trained(run_dir)
        self.cfg = self.tr.cfg
        self.comp = build_components(self.cfg, "cpu")
        self.ev = eval_set(self.cfg, self.comp, "cpu")
        self.x_init = self.tr.method.initial_state(self.ev.x0, self.cfg.seed + 4)


# ---------------------------------------------------------------------------------------------
# 1. quality vs NFE
# ---------------------------------------------------------------------------------------------

def fixed_solvers(gaussian_source: bool) -> list[str]:
    return [n for n in SOLVERS.names() if not SOLVERS.entry(n).factory.adaptive
            and (gaussian_source or not SOLVERS.entry(n).factory.stochastic)]


def quality(ctx: Ctx, label: str, nfes: list[int], grids: list[str], k: int,
            frechet: bool) -> tuple[str, dict]:
    """Every-solver table(s) plus dopri5 on the same k starting points."""
    metric = "frechet" if frechet else "w2"
    mname = "classifier FD" if frechet else "W2"
    k = min(k, ctx.x_init.shape[0])
    x0, ref = ctx.x_init[:k], ctx.ev.ref_a[:k]
    cond = {kk: v[:k] for kk, v in ctx.ev.cond.items()} if ctx.ev.cond else None
    decode = ctx.tr.maps.decode
    field = ctx.tr.field
    names = fixed_solvers(ctx.cfg.source == "gaussian")
    t = time.perf_counter()
    dop, _ = evaluate(field, x0, ref, [SolverSpec(solver="dopri5", rtol=1e-5, atol=1e-5)],
                      cond=cond, frechet=frechet, decode=decode)
    dop = dop[0]
    log(f"  {label} dopri5: {mname} {dop[metric]:.4f}, NFE {dop['nfe']} "
        f"({time.perf_counter() - t:.1f} s)")
    floor = (classifier_frechet_distance(ref, ctx.ev.ref_b[:k]) if frechet
             else wasserstein2(ref, ctx.ev.ref_b[:k]))
    tables, results = [], {"dopri5": dop, "floor": floor, "cells": {}}
    for grid in grids:
        rows = []
        for s in names:
            t = time.perf_counter()
            recs = solver_sweep(field, x0, ref, nfes, [s], grid=grid, cond=cond,
                                frechet=frechet, decode=decode)
            by = {r["nfe"]: r for r in recs}
            for n, r in by.items():
                results["cells"][(grid, s, n)] = r[metric]
            rows.append([s] + [by[n][metric] if n in by else "—" for n in nfes])
            log(f"  {label} {grid} {s:>11}: " + " ".join(
                f"{by[n][metric]:.3f}" if n in by else "  —  " for n in nfes)
                + f" ({time.perf_counter() - t:.1f} s)")
        rows.append([f"dopri5 (rtol=atol=1e-5, NFE {dop['nfe']})"]
                    + [dop[metric]] + [""] * (len(nfes) - 1))
        tables.append(f"{mname}, **{grid}** grid:\n\n"
                      + markdown_table(["solver"] + [f"NFE {n}" for n in nfes], rows))
    body = (f"{mname} of {k} samples against {k} held-out target samples (same starting points "
            f"for every cell; held-out vs held-out floor at this size: {floor:.4g}). "
            "'—': the budget is below the solver's minimum (multistep start, or NFE per "
            "step). The dopri5 row's figure is under 'NFE 1' only for layout; its NFE is in the "
            "row label.\n\n" + "\n\n".join(tables))
    return body, results


def best_at(results: dict, max_nfe: int) -> tuple[str, str, int, float]:
    cells = [(v, g, s, n) for (g, s, n), v in results["cells"].items()
             if n <= max_nfe and math.isfinite(v)]
    v, g, s, n = min(cells)
    return g, s, n, v


# ---------------------------------------------------------------------------------------------
# 2. likelihood
# ---------------------------------------------------------------------------------------------

def data_units_loglik(ctx: Ctx, x: torch.Tensor, cond, **kw):
    """log p(x) in data units, as ``monge likelihood`` computes it (standardisation and the
    path's data scale undone through the log-Jacobian)."""
    tr = ctx.tr
    x = x.double()
    z = tr.maps.encode_target(x)
    scale = tr.maps.target.scale
    log_det = x[0].numel() * math.log(tr.maps.data_scale)
    if scale is not None:
        log_det -= float(torch.log(scale.double().expand(x.shape[1:])).sum())
    model = copy.deepcopy(tr.field).double()
    t = time.perf_counter()
    res = log_likelihood(model, z, cond=cond, **kw)
    return res, res.log_prob + log_det, time.perf_counter() - t


def likelihood_2d(ctx: Ctx, n: int, probes: int) -> tuple[str, dict]:
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity

    x = ctx.comp.target.test[:n]
    ex, lp_e, s_e = data_units_loglik(ctx, x, None, divergence="exact", solver="dopri5",
                                      rtol=1e-5, atol=1e-5)
    log(f"  exact: mean {float(lp_e.mean()):.4f} nats, NFE {ex.nfe}, {s_e:.1f} s, "
        f"converged {ex.converged}")
    hu, lp_h, s_h = data_units_loglik(ctx, x, None, divergence="hutchinson", probes=probes,
                                      solver="dopri5", rtol=1e-5, atol=1e-5, generator=0)
    se_mean = float(hu.std_error.double().pow(2).mean().sqrt()) / math.sqrt(n)
    diff = float(lp_h.mean() - lp_e.mean())
    per_row = float(((lp_h - lp_e).abs() <= 3 * hu.std_error.double()).double().mean())
    log(f"  hutchinson K={probes}: mean {float(lp_h.mean()):.4f} ± {se_mean:.4f}, diff "
        f"{diff:+.4f} ({abs(diff) / se_mean:.2f} SE), NFE {hu.nfe}, {s_h:.1f} s")
    # kernel density estimate, bandwidth by 5-fold CV on (a subset of) the training data
    t = time.perf_counter()
    train = ctx.comp.target.train[:4000].double().numpy()
    grid = GridSearchCV(KernelDensity(kernel="gaussian"),
                        {"bandwidth": np.logspace(-2.0, 0.0, 21)}, cv=5)
    grid.fit(train)
    bw = float(grid.best_params_["bandwidth"])
    kde = KernelDensity(kernel="gaussian", bandwidth=bw).fit(
        ctx.comp.target.train.double().numpy())
    lp_k = kde.score_samples(x.double().numpy())
    log(f"  KDE bandwidth {bw:.4g}: mean {lp_k.mean():.4f} nats ({time.perf_counter() - t:.1f} s)")
    rows = [["flow, exact divergence (dopri5, rtol=atol=1e-5)", float(lp_e.mean()), "",
             ex.nfe, s_e],
            [f"flow, Hutchinson K={probes} (Rademacher, dopri5)", float(lp_h.mean()),
             se_mean, hu.nfe, s_h],
            [f"KDE (Gaussian kernel, bandwidth {bw:.3g} by 5-fold CV on 4000 training rows; "
             f"fit on all {ctx.comp.target.train.shape[0]})", float(lp_k.mean()), "", "", ""]]
    agree = abs(diff) <= 3 * se_mean
    body = (f"Model: {ctx.cfg.source} → {ctx.cfg.target}, path {ctx.cfg.path.name}, prediction "
            f"{ctx.cfg.train.prediction}. Mean log-likelihood (nats per point, data units) of "
            f"the first {n} held-out target rows.\n\n"
            + markdown_table(["estimator", "mean log p (nats)", "SE of mean", "NFE", "s"], rows)
            + f"\n\nHutchinson − exact = {diff:+.4g} nats = {abs(diff) / se_mean:.2f} standard "
            f"errors of the mean (SE = √(mean per-row SE²)/√{n}); per row, "
            f"{100 * per_row:.1f} % of rows have |Hutchinson − exact| ≤ 3 × their own SE. "
            f"**Exact vs Hutchinson within 3 SE: {'yes' if agree else 'no'}.** "
            f"Flow − KDE = {float(lp_e.mean()) - lp_k.mean():+.4g} nats.")
    return body, {"agree": agree, "diff": diff, "se": se_mean, "exact": float(lp_e.mean()),
                  "kde": float(lp_k.mean()), "hutch": float(lp_h.mean())}


def likelihood_digits(ctx: Ctx, n_hutch: int, probes: int, n_exact: int) -> tuple[str, dict]:
    test = ctx.comp.target.test
    labels = ctx.comp.target.test_labels
    d = test[0].numel()
    null = ctx.tr.num_classes  # the null label, as Trained.guided uses it
    rows, out = [], {}
    jobs = [("hutchinson", n_hutch, probes)]
    if n_exact > 0:
        jobs.append(("exact", n_exact, 1))
    for kind, n, k in jobs:
        for cname, y in (("log p(x | y), true label", labels[:n]),
                         ("log p(x), null label (unconditional)",
                          None if null is None else torch.full((n,), null))):
            if y is None:
                continue
            kw = dict(divergence=kind, solver="dopri5", rtol=1e-4, atol=1e-4)
            if kind == "hutchinson":
                kw.update(probes=k, generator=0)
            res, lp, s = data_units_loglik(ctx, test[:n], {"y": y}, **kw)
            bpd = -float(lp.mean()) / (d * math.log(2.0))
            se = ("" if res.std_error is None else
                  float(res.std_error.double().pow(2).mean().sqrt()) / math.sqrt(n))
            se_bpd = "" if se == "" else se / (d * math.log(2.0))
            rows.append([f"{kind}" + (f" K={k}" if kind == "hutchinson" else ""), cname, n,
                         float(lp.mean()), se, bpd, se_bpd, bpd + 3.0, res.nfe, s,
                         res.converged])
            out[(kind, cname)] = bpd
            log(f"  digits {kind} {cname}: {float(lp.mean()):.3f} nats, {bpd:.4f} bits/dim, "
                f"NFE {res.nfe}, {s:.1f} s")
    body = ("Model: class-conditional U-Net on digits (linear path, gaussian source). "
            "log-likelihood of the first n held-out digits in the model's data units (pixels "
            "v/16·2 − 1 ∈ [−1, 1]; the checkpoint's standardisation, here none, is undone by "
            "its log-Jacobian as in `monge likelihood`); dopri5 rtol = atol = 1e-4, float64. "
            "'bits/dim (0..16 units)' = bits/dim + log2(8) = +3, the same density expressed "
            "per unit of the raw 0..16 pixel scale.\n\n"
            + markdown_table(["divergence", "density", "n", "mean log p (nats)", "SE",
                              "bits/dim", "SE bits/dim", "bits/dim (0..16 units)", "NFE", "s",
                              "converged"], rows)
            + "\n\nCaveat: the digits take only the 17 values 0..16, so a continuous density "
            "on them is not a likelihood of the discrete data and can grow without bound as "
            "the model concentrates on the lattice; these bits/dim are NOT comparable with "
            "dequantised image benchmarks (e.g. MNIST/CIFAR bits/dim with uniform "
            "dequantisation), and no dequantisation was done here.")
    return body, out


# ---------------------------------------------------------------------------------------------
# 3. guidance
# ---------------------------------------------------------------------------------------------

def per_class_w2(x, y, ref, ref_y, num_classes: int) -> float:
    vals = []
    for c in range(num_classes):
        a, b = x[y == c], ref[ref_y == c]
        m = min(a.shape[0], b.shape[0])
        vals.append(wasserstein2(a[:m], b[:m]))
    return float(np.mean(vals))


class NullLabel(torch.nn.Module):
    """The unconditional prediction of a class-conditional network (every label = null)."""

    def __init__(self, network, null_class: int):
        super().__init__()
        self.net, self.null = network, null_class

    def forward(self, x, t, **cond):
        return self.net(x, t, y=torch.full((x.shape[0],), self.null, dtype=torch.long))


def guidance_2d(ctx: Ctx, ws: list[float], cg_ws: list[float], n: int, solver: str,
                nfe: int, clf_steps: int) -> tuple[str, dict]:
    from sklearn.neighbors import KNeighborsClassifier

    tr = ctx.tr
    nc = tr.num_classes
    test, test_y = ctx.comp.target.test, ctx.comp.target.test_labels
    half = test.shape[0] // 2
    knn = KNeighborsClassifier(n_neighbors=15).fit(test[:half].numpy(), test_y[:half].numpy())
    knn_acc = float((knn.predict(test[half:].numpy()) == test_y[half:].numpy()).mean())
    ref, ref_y = test[half:], test_y[half:]
    labels = torch.arange(n) % nc
    floor = per_class_w2(test[:half], test_y[:half], ref, ref_y, nc)

    def measure(x):
        acc = float((knn.predict(x.numpy()) == labels.numpy()).mean())
        return acc, per_class_w2(x, labels, ref, ref_y, nc), wasserstein2(x, ref[:n])

    rows, accs = [], []
    for w in ws:
        t = time.perf_counter()
        res = tr.sample(n, solver=solver, nfe=nfe, seed=0, labels=labels, guidance=w)
        acc, pcw, w2 = measure(res.x)
        accs.append(acc)
        rows.append([w, acc, pcw, w2, res.nfe, res.network_calls, time.perf_counter() - t])
        log(f"  cond8g CFG w={w}: accuracy {acc:.4f}, per-class W2 {pcw:.4f}, NFE {res.nfe}, "
            f"network calls {res.network_calls}")
    cfg_table = markdown_table(["CFG w", "class accuracy", "mean per-class W2", "W2 (all)",
                                "solver NFE", "network calls", "s"], rows)
    # classifier guidance: a noisy classifier trained on x_t of the run's own path
    t = time.perf_counter()
    x1 = tr.maps.encode_target(ctx.comp.target.train)
    ct = train_noisy_classifier(tr.method.path, x1, ctx.comp.target.train_labels, nc,
                                steps=clf_steps, seed=0)
    log(f"  noisy classifier: {clf_steps} steps, final loss {ct.final_loss:.4f}, clean "
        f"accuracy {ct.clean_accuracy:.4f} ({time.perf_counter() - t:.1f} s)")
    field = tr.field
    uncond = ModelWrapper(NullLabel(field.network, tr.num_classes), field.path,
                          field.prediction, t_clamp=field.t_clamp)
    cg_rows, cg_accs = [], {}
    for base_name, base in (("unconditional (null label)", uncond),
                            ("conditional (Trained.sample(classifier=...))", None)):
        cg_accs[base_name] = []
        for w in cg_ws:
            t = time.perf_counter()
            if base is None:
                res = tr.sample(n, solver=solver, nfe=nfe, seed=0, labels=labels,
                                classifier=ct.classifier, guidance=w)
                calls = res.network_calls
                ccalls = ""
            else:
                g = ClassifierGuidance(base, ct.classifier, w)
                src = torch.randn(n, *tr.shape, generator=torch.Generator().manual_seed(0))
                with torch.no_grad():
                    res = solve(g, tr.method.initial_state(src, 0), solver, nfe=nfe,
                                cond={"y": labels}, seed=0)
                res.x = tr.maps.decode(res.x)
                calls, ccalls = res.network_calls, g.classifier_calls
            acc, pcw, w2 = measure(res.x)
            cg_accs[base_name].append(acc)
            cg_rows.append([base_name, w, acc, pcw, w2, res.nfe, calls, ccalls,
                            time.perf_counter() - t])
            log(f"  cond8g classifier guidance [{base_name}] w={w}: accuracy {acc:.4f}, "
                f"per-class W2 {pcw:.4f}, network calls {calls}, classifier calls {ccalls}")
    cg_table = markdown_table(["flow model", "classifier-guidance w", "class accuracy",
                               "mean per-class W2", "W2 (all)", "solver NFE", "network calls",
                               "classifier calls", "s"], cg_rows)
    body = (f"Model: gaussian → 8gaussians, linear path, class-conditional MLP "
            f"(cond_dropout {ctx.cfg.train.cond_dropout}). {n} samples per row, labels "
            f"0..{nc - 1} in turn, {solver} with NFE {nfe} (uniform grid), same noise for every "
            f"row. Accuracy: a 15-NN classifier fit on {half} held-out points with their labels "
            f"(its accuracy on the other {test.shape[0] - half} held-out points: {knn_acc:.4f}). "
            f"Diversity: mean over classes of W2 between the samples of that class and as many "
            f"held-out points of that class (held-out vs held-out: {floor:.4g}); 'W2 (all)' "
            f"against {n} held-out points. Network calls count flow-network evaluations "
            "(2 per guided evaluation for CFG w ≠ 1).\n\n"
            f"Classifier-free guidance (w = 1 conditional, w = 0 unconditional):\n\n{cfg_table}"
            f"\n\nClassifier guidance: `train_noisy_classifier` on the run's linear path "
            f"({clf_steps} steps, final loss {ct.final_loss:.3g}, clean accuracy "
            f"{ct.clean_accuracy:.3f}); `ClassifierGuidance` (default interval [0.05, 1]). "
            "First on the model's unconditional prediction (every label set to the null class "
            "through a small wrapper network, so only the classifier sees y), then on the "
            "conditional model as `Trained.sample(classifier=, guidance=)` does it.\n\n"
            + cg_table)
    return body, {"cfg_acc": accs, "cg_acc": cg_accs}


def guidance_digits(ctx: Ctx, ws: list[float], n: int, solver: str, nfe: int
                    ) -> tuple[str, dict]:
    tr = ctx.tr
    clf = load_digits_classifier()
    labels = torch.arange(n) % 10
    ref = ctx.comp.target.test
    half = ref.shape[0] // 2
    floor = classifier_frechet_distance(ref[:half], ref[half:])
    with torch.no_grad():
        real_acc = float((clf(ref).argmax(1) == ctx.comp.target.test_labels).double().mean())
    rows, accs = [], []
    for w in ws:
        t = time.perf_counter()
        res = tr.sample(n, solver=solver, nfe=nfe, seed=0, labels=labels, guidance=w)
        x = res.x.float().clamp(-1.0, 1.0)
        with torch.no_grad():
            acc = float((clf(x).argmax(1) == labels).double().mean())
        fd = classifier_frechet_distance(x, ref)
        ent = class_histogram_entropy(x)
        accs.append(acc)
        rows.append([w, acc, fd, ent, res.nfe, res.network_calls, time.perf_counter() - t])
        log(f"  digits CFG w={w}: accuracy {acc:.4f}, FD {fd:.3f}, entropy {ent:.4f}, "
            f"network calls {res.network_calls}")
    body = (f"Model: class-conditional U-Net on digits (cond_dropout {ctx.cfg.train.cond_dropout}"
            f", {ctx.cfg.train.steps} training steps). {n} samples per row, labels 0..9 in "
            f"turn, {solver} with NFE {nfe} (uniform grid), same noise for every row; samples "
            "clipped to [−1, 1] before the classifier. Accuracy: monge's digits classifier "
            f"(`load_digits_classifier`; its accuracy on the {ref.shape[0]} held-out digits: "
            f"{real_acc:.4f}). FD: classifier Fréchet distance to all {ref.shape[0]} held-out "
            f"digits (held-out half vs half: {floor:.4g}). Entropy: class-histogram entropy "
            f"(log 10 = 2.303 is balanced).\n\n"
            + markdown_table(["CFG w", "class accuracy", "classifier FD", "class entropy",
                              "solver NFE", "network calls", "s"], rows))
    return body, {"acc": accs}


def rises(accs: list[float], tol: float = 0.0) -> bool:
    return all(b >= a - tol for a, b in zip(accs, accs[1:], strict=False))


# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/monge-samplers-quality", help="run folders")
    ap.add_argument("--reuse", action="store_true",
                    help="skip training where the run folder holds a finished run")
    ap.add_argument("--steps-2d", type=int, default=3000)
    ap.add_argument("--steps-digits", type=int, default=3000)
    ap.add_argument("--vp-prediction", default="epsilon", choices=["epsilon", "x1", "velocity"])
    ap.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4, 8, 10, 16])
    ap.add_argument("--samples-2d", type=int, default=1000)
    ap.add_argument("--samples-digits", type=int, default=500)
    ap.add_argument("--ll-rows", type=int, default=1000)
    ap.add_argument("--ll-probes", type=int, default=16)
    ap.add_argument("--digits-ll-rows", type=int, default=100)
    ap.add_argument("--digits-ll-probes", type=int, default=4)
    ap.add_argument("--digits-ll-exact", type=int, default=0, help="rows for exact digits ll")
    ap.add_argument("--guide-solver", default="dpmpp-2m")
    ap.add_argument("--guide-nfe", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parts", default="quality,likelihood,guidance")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    emit = (lambda title, body: print(f"\n## {title}\n\n{body}")) if args.no_append \
        else append_results
    need = set()
    if "quality" in parts:
        need |= {"lin8m", "vpm", "digits"}
    if "likelihood" in parts:
        need |= {"vpm", "digits"}
    if "guidance" in parts:
        need |= {"cond8g", "digits"}
    runs = {}
    for name in ("lin8m", "vpm", "cond8g", "digits"):
        if name in need:
            runs[name] = train(name, args)
    train_note = "; ".join(f"{k}: {s} steps in {sec:.0f} s" for k, (_, sec, s) in runs.items())
    ctxs = {k: Ctx(v[0]) for k, v in runs.items()}
    summary = []

    if "quality" in parts:
        bodies = []
        log("quality: 8gaussians -> moons, linear")
        b, _ = quality(ctxs["lin8m"], "lin8m", args.nfe, ["uniform"], args.samples_2d, False)
        bodies.append("### (a) 8gaussians → moons, linear path (velocity)\n\n" + b)
        log("quality: gaussian -> moons, VP")
        b, vp = quality(ctxs["vpm"], "vpm", args.nfe, ["uniform", "logsnr"], args.samples_2d,
                        False)
        g, s, n, v = best_at(vp, 10)
        ratio = v / vp["dopri5"]["w2"]
        met = ratio <= 1.3
        verdict = (f"**Acceptance (best solver at NFE ≤ 10 on the VP model within 1.3× of "
                   f"dopri5's W2): {'met' if met else 'NOT met'}** — best is {s} at NFE {n} on "
                   f"the {g} grid, W2 {v:.4g} vs dopri5 {vp['dopri5']['w2']:.4g} "
                   f"(NFE {vp['dopri5']['nfe']}): ratio {ratio:.3f}.")
        summary.append(verdict)
        bodies.append(f"### (b) gaussian → moons, VP path ({args.vp_prediction} prediction)"
                      f"\n\n{b}\n\n{verdict}")
        log("quality: digits")
        b, _ = quality(ctxs["digits"], "digits", args.nfe, ["uniform"], args.samples_digits,
                       True)
        bodies.append(f"### (c) digits (configs/digits.yaml, train.steps cut to "
                      f"{runs['digits'][2]} from 6000)\n\n" + b)
        emit("Samplers: quality vs NFE for every solver (trained models)",
             f"Trained with `run_experiment` ({train_note}); 1 thread. Sweeps by "
             "`monge.experiments.evaluate.solver_sweep` on the run's own held-out split and "
             "starting points.\n\n" + "\n\n".join(bodies))

    if "likelihood" in parts:
        log("likelihood: VP moons")
        b2, ll = likelihood_2d(ctxs["vpm"], args.ll_rows, args.ll_probes)
        log("likelihood: digits")
        bd, _ = likelihood_digits(ctxs["digits"], args.digits_ll_rows, args.digits_ll_probes,
                                  args.digits_ll_exact)
        ok = "met" if ll["agree"] else "NOT met"
        v = (f"**Acceptance (exact vs Hutchinson within 3 SE): {ok}** — difference "
             f"{ll['diff']:+.4g} nats, SE {ll['se']:.4g}. Held-out mean "
             f"log-likelihood: flow {ll['exact']:.4f} vs KDE {ll['kde']:.4f} nats.")
        summary.append(v)
        emit("Likelihood of trained models (exact / Hutchinson / KDE; digits bits/dim)",
             f"{b2}\n\n{v}\n\n### digits\n\n{bd}")

    if "guidance" in parts:
        log("guidance: 2-D")
        ws = [0.0, 1.0, 2.0, 3.0, 5.0]
        b2, g2 = guidance_2d(ctxs["cond8g"], ws, [0.0, 1.0, 2.0, 4.0], args.samples_2d,
                             args.guide_solver, args.guide_nfe, 2000)
        log("guidance: digits")
        bd, gd = guidance_digits(ctxs["digits"], ws, args.samples_digits, args.guide_solver,
                                 args.guide_nfe)
        lines = [f"- 2-D CFG accuracy over w = {ws}: "
                 + ", ".join(f"{a:.4f}" for a in g2["cfg_acc"])
                 + f" — rises with w (non-decreasing): {'yes' if rises(g2['cfg_acc']) else 'no'}"
                 f"; strictly higher at w = 5 than at w = 0: "
                 f"{'yes' if g2['cfg_acc'][-1] > g2['cfg_acc'][0] else 'no'}.",
                 f"- digits CFG accuracy over w = {ws}: "
                 + ", ".join(f"{a:.4f}" for a in gd["acc"])
                 + f" — rises with w (non-decreasing): {'yes' if rises(gd['acc']) else 'no'}"
                 f"; strictly higher at w = 5 than at w = 0: "
                 f"{'yes' if gd['acc'][-1] > gd['acc'][0] else 'no'}."]
        for k, a in g2["cg_acc"].items():
            lines.append(f"- 2-D classifier guidance [{k}] accuracy over w = [0, 1, 2, 4]: "
                         + ", ".join(f"{x:.4f}" for x in a)
                         + f" — non-decreasing: {'yes' if rises(a) else 'no'}.")
        v = "**Acceptance (class accuracy rises with w):**\n\n" + "\n".join(lines)
        summary.append(v)
        emit("Guidance: class accuracy and diversity vs weight (trained models)",
             f"### 2-D\n\n{b2}\n\n### digits\n\n{bd}\n\n{v}")

    log("done")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
