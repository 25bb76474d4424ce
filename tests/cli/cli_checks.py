"""Shared checks and configs of the command-line tests (imported by the tests here)."""

from __future__ import annotations


def one_error(res, *needles: str) -> str:
    """The command failed with exactly one ``error:`` line naming every needle, no traceback."""
    assert res.exit_code != 0, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# a small class-conditional latent flow on digits (the `latent_run` fixture of conftest.py)
LATENT = """source: gaussian
target: digits
model: {kind: unet, base_channels: 16, conditional: true}
train: {steps: 150, batch_size: 64, checkpoint_every: 150, log_every: 50, cond_dropout: 0.1}
latent: {enabled: true, steps: 200, latent_channels: 4, downsample: 2, width: 16}
eval: {n_samples: 100, solvers: [{solver: euler, nfe: [8]}], trajectories: 0,
       straightness_steps: 4, sweep_nfe: []}
compare: {couplings: []}
distill: {methods: []}
"""
