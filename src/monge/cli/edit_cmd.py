"""``monge edit CKPT {interpolate, traverse, upscale}``: edits with a trained image model.

Each command loads the run (a checkpoint file or its folder), does one edit and writes a report
folder (``report.md``, ``metrics.json``, PNG figures); see :mod:`monge.experiments.editing`.
Bad input is one line with exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from monge.cli.errors import friendly_errors

edit_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       pretty_exceptions_enable=False,
                       help="Edit with a trained image model: interpolate through the source, "
                            "traverse a latent model's learned potentials, upscale its samples "
                            "at any size. Usage: monge edit CKPT COMMAND [OPTIONS].")


def _load(ctx: typer.Context, device: str):
    from monge.core.devices import resolve_device
    from monge.experiments.load import load_trained

    return load_trained(ctx.obj["checkpoint"], resolve_device(device))


@edit_app.callback()
def edit_main(ctx: typer.Context, checkpoint: Annotated[Path, typer.Argument(
        help="checkpoint.safetensors or its run folder (an image model)")]) -> None:
    """Edit with a trained image model (monge edit CKPT COMMAND --help for each command)."""
    ctx.obj = {"checkpoint": checkpoint}


@edit_app.command("interpolate")
@friendly_errors
def interpolate_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("edits/interpolate"),
    pairs: Annotated[int, typer.Option(help="pairs of held-out images (same class for a "
                                             "class-conditional model)")] = 4,
    frames: Annotated[int, typer.Option(help="interpolation frames per pair, ends included")]
    = 11,
    steps: Annotated[int, typer.Option(help="steps of the inversion and of each regeneration")]
    = 50,
    solver: Annotated[str, typer.Option(help="fixed-step solver (euler, heun, midpoint, ...)")]
    = "euler",
    seed: Annotated[int, typer.Option(help="seed of the pair draw")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Invert pairs of held-out images to the source, interpolate spherically, regenerate, and
    report ISTD (how evenly the frames change; Smooth Diffusion) and the inversion error."""
    from monge.experiments.editing import interpolate_run

    rep = interpolate_run(_load(ctx, device), out, pairs=pairs, frames=frames, steps=steps,
                          solver=solver, seed=seed)
    typer.echo(f"interpolated {rep.pairs} pairs ({rep.frames} frames, {rep.nfe} network calls): "
               f"ISTD {rep.istd:.4g} ({rep.features}; mean step {rep.mean_step:.4g}), "
               f"end-point RMSE {rep.inversion_rmse:.4g}")
    typer.echo(f"report written to {Path(out) / 'report.md'}")
