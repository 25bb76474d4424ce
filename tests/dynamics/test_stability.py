"""The tr(H) <= 2B/eta check, plain SGD and the sharpness callback."""

import pytest
import torch
from torch import nn

from monge.dynamics.stability import SharpnessCallback, run_sgd, stability_report
from monge.errors import InputError

torch.set_num_threads(1)


def mse(model, batch):
    x, y = batch
    return 0.5 * ((model(x) - y) ** 2).sum(1).mean()


def _linear_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3, 1, generator=g, dtype=torch.float64)
    return x, x @ w


def test_stability_report_linear_regression_closed_form():
    x, y = _linear_problem()
    model = nn.Linear(3, 1, bias=False).double()
    h = x.T @ x / x.shape[0]  # Hessian of mse for a linear model
    tr, lam = float(torch.trace(h)), float(torch.linalg.eigvalsh(h)[-1])
    rep = stability_report(model, mse, (x, y), lr=0.1, batch_size=4)
    assert rep.trace == pytest.approx(tr, rel=1e-10)
    assert rep.lambda_max == pytest.approx(lam, rel=1e-8)
    assert rep.trace_lr_over_b == pytest.approx(tr * 0.1 / 4)
    assert rep.sgd_stable == (tr * 0.1 / 4 <= 2.1)
    assert rep.to_dict()["batch_size"] == 4


def test_sgd_b1_diverges_above_trace_bound_and_converges_below():
    # linear least squares interpolation: SGD B=1 stable iff eta below ~2/tr(H) (Wu & Su 2023)
    x, y = _linear_problem()
    tr = float(torch.trace(x.T @ x / x.shape[0]))
    results = {}
    for factor in (0.5, 4.0):
        model = nn.Linear(3, 1, bias=False).double()
        nn.init.zeros_(model.weight)
        lr = factor * 2 / tr
        results[factor] = run_sgd(model, mse, (x, y), lr=lr, batch_size=1, steps=4000, seed=0,
                                  target_loss=1e-12, log_every=50)
    assert results[0.5].converged and not results[0.5].diverged
    assert results[4.0].diverged


def test_lr_must_be_positive():
    x, y = _linear_problem()
    model = nn.Linear(3, 1).double()
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(InputError, match="learning rate must be a finite number > 0"):
            stability_report(model, mse, (x, y), lr=bad)
        with pytest.raises(InputError, match="lr"):
            run_sgd(model, mse, (x, y), lr=bad, batch_size=1, steps=1)
        with pytest.raises(InputError, match="lr"):
            SharpnessCallback(mse, (x, y), lr=bad)


def test_sharpness_callback_logs_every_n_steps(tmp_path):
    x, y = _linear_problem()
    model = nn.Linear(3, 1, bias=False).double()
    cb = SharpnessCallback(mse, (x, y), every=5, lr=0.05, trace_probes=10,
                           path=tmp_path / "sharp.jsonl")
    run_sgd(model, mse, (x, y), lr=0.05, batch_size=4, steps=20, seed=0, callback=cb,
            target_loss=0.0)
    assert [r["step"] for r in cb.history] == [5, 10, 15, 20]
    lam = float(torch.linalg.eigvalsh(x.T @ x / 16)[-1])
    assert cb.history[-1]["lambda_max"] == pytest.approx(lam, rel=1e-6)
    assert cb.history[-1]["lambda_max_lr"] == pytest.approx(0.05 * lam, rel=1e-6)
    assert len((tmp_path / "sharp.jsonl").read_text().splitlines()) == 4
