"""The Markdown report of a run: set-up, quality-vs-NFE table, path statistics, figures."""

from __future__ import annotations

import math
from typing import Any

from monge.experiments.config import RunConfig


def _comparison_section(metrics: dict[str, Any]) -> list[str]:
    rows = metrics.get("coupling_comparison")
    if not rows:
        return []
    nfes = list(rows[0]["w2"])
    head = ("| coupling | " + " | ".join(f"W2 NFE {n}" for n in nfes)
            + " | straightness | transport cost | train s / 1k steps |")
    sep = "|---|" + "---:|" * (len(nfes) + 3)
    body = [f"| {r['coupling']} | " + " | ".join(f"{r['w2'][n]:.4f}" for n in nfes)
            + f" | {r['straightness']:.4f} | {r['transport_cost']:.4f} | "
            f"{r['train_seconds_per_1k']:.2f} |" for r in rows]
    return ["## Couplings compared (Euler; same model, steps and data)", "", head, sep, *body,
            "", f"Held-out floor W2 {metrics['reference_w2']:.4f}. Lower straightness means "
            "straighter paths (1-step sampling is exact at 0). The first row's training time "
            "includes one-off start-up costs (imports, first optimiser step).", ""]


def _latent_lines(metrics: dict[str, Any]) -> list[str]:
    lat = metrics.get("latent")
    if not lat:
        return []
    fl = lat["reconstruction_floor"]
    fd = f", Fréchet {fl['frechet']:.3f}" if "frechet" in fl else ""
    return [f"- latent flow on {'×'.join(map(str, lat['latent_shape']))} autoencoder latents "
            f"(`{lat['autoencoder']}`): held-out reconstruction PSNR "
            f"{lat['reconstruction_psnr']:.2f} dB (MSE {lat['reconstruction_mse']:.4g} vs "
            f"{lat['mean_image_mse']:.4g} for the mean image); the decoder's floor, its "
            f"reconstructions measured like samples: W2 {fl['w2']:.4f}{fd}"]


def _student_section(metrics: dict[str, Any]) -> list[str]:
    rows = metrics.get("students")
    if not rows:
        return []
    ev = metrics["evaluations"]
    key = "frechet" if any("frechet" in e for e in ev) else "w2"
    name = "Fréchet" if key == "frechet" else "W2"
    teacher = {e["nfe"]: e[key] for e in ev if e.get("model", "teacher") == "teacher"
               and e["solver"] == "euler"}
    ref_nfe = max(teacher) if teacher else None
    lines = ["## Few-step students (distilled from this model)", "",
             f"| student | {name} 1 step | {name} 2 steps | {name} 4 steps | training steps | "
             "seconds | teacher network calls |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        got = {e["nfe"]: e[key] for e in ev if e.get("model") == r["label"]}
        cells = " | ".join(f"{got[n]:.4f}" if n in got else "–" for n in (1, 2, 4))
        lines.append(f"| {r['label']} | {cells} | {r['steps']} | {r['seconds']:.1f} | "
                     f"{r['teacher_nfe']} |")
    lines.append("")
    if ref_nfe is not None:
        lines.append(f"The teacher: {name} {teacher.get(1, float('nan')):.4f} at 1 Euler step, "
                     f"{teacher[ref_nfe]:.4f} at {ref_nfe}. Each student is a run folder under "
                     "students/ (`monge sample runs/.../students/LABEL --nfe 1`).")
    return [*lines, "", "![student](student.png)", ""]


def solver_label(record: dict[str, Any]) -> str:
    """The solver's name, flagged when its solve did not converge or its samples were not
    finite (so a flag shows in every table)."""
    label = record["solver"]
    if record.get("grid"):
        label += f" [{record['grid']}]"
    if record.get("converged") is False:
        label += " (NOT converged)"
    if record.get("note"):
        label += f" ({record['note']})"
    return label


def _sweep_section(metrics: dict[str, Any]) -> list[str]:
    """Solvers × NFE table of W2 (or classifier Fréchet distance for digits)."""
    recs = metrics.get("solver_sweep")
    if not recs:
        return []
    key = "frechet" if any("frechet" in r for r in recs) else "w2"
    nfes = sorted({r["nfe"] for r in recs})
    solvers = list(dict.fromkeys(solver_label(r) for r in recs))
    cell = {(solver_label(r), r["nfe"]): r[key] for r in recs}
    head = "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
    sep = "|---|" + "---:|" * len(nfes)
    body = ["| " + s + " | " + " | ".join(
        f"{cell[(s, n)]:.4f}" if (s, n) in cell else "—" for n in nfes) + " |"
        for s in solvers]
    best = {n: min((cell[(s, n)], s) for s in solvers if (s, n) in cell) for n in nfes}
    what = "classifier Fréchet distance" if key == "frechet" else "W2"
    floor = metrics.get("reference_frechet" if key == "frechet" else "reference_w2")
    return [f"## Every solver at small NFE ({what}; {metrics['sweep_samples']} samples, "
            f"grid `{metrics['sweep_grid']}`)", "", head, sep, *body, "",
            "Best per budget: " + ", ".join(f"NFE {n}: {b[1]} ({b[0]:.4f})"
                                            for n, b in best.items()) + ". "
            + (f"The held-out floor at the main table's sample size is {floor:.4f}. "
               if floor else "")
            + "A dash: the solver cannot spend that budget (one step costs more, or a "
              "multistep method of order k needs k steps).", ""]


def ratio(value: float, floor: float) -> str:
    """value / floor, or "n/a" when the floor is 0 (e.g. a constant target)."""
    return f"{value / floor:.2f}" if floor > 0 else "n/a"


def render_report(cfg: RunConfig, metrics: dict[str, Any]) -> str:
    """The Markdown report: set-up, quality-vs-NFE table, path statistics, figures."""
    ev = metrics["evaluations"]
    has_fd = any("frechet" in e for e in ev)
    ref = metrics["reference_w2"]
    students = any(e.get("model", "teacher") != "teacher" for e in ev)
    head = ("| model " if students else "") + "| solver | NFE | W2 | W2 / floor | energy " \
        "distance |" + (" Fréchet (classifier) | class entropy |" if has_fd else "")
    sep = ("|---" if students else "") + "|---|---:|---:|---:|---:|" + (
        "---:|---:|" if has_fd else "")
    rows = []
    for e in ev:
        row = ((f"| {e.get('model', 'teacher')} " if students else "")
               + f"| {solver_label(e)} | {e['nfe']} | {e['w2']:.4f} | {ratio(e['w2'], ref)} | "
               f"{e['energy_distance']:.4f} |")
        if has_fd:
            row += f" {e['frechet']:.3f} | {e['class_entropy']:.3f} |"
        rows.append(row)
    floor = (f"- held-out floor: W2 {ref:.4f}, energy distance "
             f"{metrics['reference_energy_distance']:.4f}")
    if has_fd:
        floor += (f", Fréchet {metrics['reference_frechet']:.3f}, class entropy "
                  f"{metrics['reference_class_entropy']:.3f} (log 10 = {math.log(10):.3f})")
    lines = [
        f"# monge run: {cfg.source} → {cfg.target}",
        "",
        f"- path `{cfg.path.name}`, coupling `{cfg.coupling}`, prediction "
        f"`{cfg.train.prediction}`, {metrics['steps']} steps of batch {cfg.train.batch_size} "
        f"({metrics['train_seconds']:.1f} s training, {metrics['total_seconds']:.1f} s total)",
        f"- evaluation: {metrics['n_eval']} generated samples vs {metrics['n_eval']} held-out "
        "target samples (exact W2 by network simplex)",
        floor + " (two independent held-out samples of the same size)",
        *_latent_lines(metrics),
        "",
        "## Quality vs NFE",
        "",
        head, sep, *rows,
        "",
        "## Paths (Euler, fine grid)",
        "",
        "| straightness | kinetic energy | transport cost E‖x1 − x0‖² |",
        "|---:|---:|---:|",
        f"| {metrics['straightness']:.4f} | {metrics['kinetic_energy']:.4f} | "
        f"{metrics['transport_cost']:.4f} |",
        "",
        *_student_section(metrics),
        *_sweep_section(metrics),
        *_comparison_section(metrics),
        "## Figures",
        "",
        "![samples](samples.png)",
        "",
        "![trajectories](trajectories.png)",
        "",
        "![quality vs NFE](quality_vs_nfe.png)",
        "",
        "![loss](loss.png)",
        "",
    ]
    return "\n".join(lines)
