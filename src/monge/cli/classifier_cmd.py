"""``monge train-classifier``: a noisy classifier p(y | x_t, t) for classifier guidance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from monge.core.devices import resolve_device
from monge.core.io import ensure_writable_dir


def train_classifier_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.safetensors or its run folder")],
    out: Annotated[Path | None, typer.Option(
        help="output file (default: classifier.safetensors in the run folder)")] = None,
    steps: Annotated[int, typer.Option(help="training steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 256,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Train a time-conditioned classifier on noisy samples x_t of the run's labelled target
    data and path; use it with ``monge sample CKPT --classifier FILE --label K --guidance W``."""
    import torch

    from monge.data import load_dataset
    from monge.errors import InputError
    from monge.experiments.load import load_trained
    from monge.guidance import save_classifier, train_noisy_classifier

    if steps < 1 or batch_size < 1:
        raise InputError("--steps, --batch-size: must be positive")
    trained = load_trained(checkpoint, resolve_device(device))
    cfg = trained.cfg
    if cfg.source != "gaussian" or not hasattr(trained.method.path, "sigma"):
        raise InputError("train-classifier: classifier guidance needs a model on an affine path "
                         "from a Gaussian source (source: gaussian)")
    ds = load_dataset(cfg.target, n_train=cfg.data.n_train, n_test=cfg.data.n_test,
                      seed=cfg.seed, test_fraction=cfg.data.test_fraction)
    if ds.num_classes is None:
        raise InputError(f"train-classifier: the target {cfg.target!r} has no class labels")
    if out is None:
        run = checkpoint if checkpoint.is_dir() else checkpoint.parent
        out = run / "classifier.safetensors"
    ensure_writable_dir(out.parent, "--out")
    dev = next(trained.model.parameters()).device
    x1 = trained.maps.encode_target(ds.train).to(dev)
    fit = train_noisy_classifier(trained.method.path, x1, ds.train_labels.to(dev),
                                 ds.num_classes, steps=steps, batch_size=batch_size, seed=seed)
    with torch.no_grad():
        xt = trained.maps.encode_target(ds.test).to(dev)
        acc = float((fit.classifier(xt, torch.ones(xt.shape[0], device=dev)).argmax(1).cpu()
                     == ds.test_labels).double().mean())
    save_classifier(out, fit.classifier, {"path": cfg.path.name, "target": cfg.target,
                                          "held_out_accuracy": acc})
    typer.echo(f"classifier: {steps} steps, final loss {fit.final_loss:.4f}, clean accuracy "
               f"{fit.clean_accuracy:.3f} (train) / {acc:.3f} (held out); wrote {out}")
