"""Fuzzing the command line's option strings: whatever a user types for an option of
`monge sample` or `monge eval`, the command either succeeds or prints exactly one `error:` line
with a non-zero exit code, never a traceback (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from monge.cli.main import app

runner = CliRunner()

TINY = """source: gaussian
target: 8gaussians
data: {n_train: 256, n_test: 64}
model: {hidden: 16, depth: 1, time_dim: 8, conditional: true}
train: {steps: 10, batch_size: 32, checkpoint_every: 10, log_every: 5, warmup_steps: 1,
        cond_dropout: 0.2}
eval: {n_samples: 16, solvers: [{solver: euler, nfe: [2]}], trajectories: 0,
       straightness_steps: 2, sweep_nfe: []}
compare: {couplings: []}
distill: {methods: []}
"""

# Values a user might type: garbage text, numbers of every sign and size, and near-misses.
VALUES = st.one_of(
    st.text(max_size=6),
    st.integers(-10**6, 48).map(str),
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "-", "1e3", "inf", "nan", "0x10", "3.5", "cuda", "cuda:7", "mps",
                     "karras:0", "karras:-2", "shift:res", "shift:", "logsnr:1", "dpmpp-3m",
                     "ab4", "plms", "dopri5", "ghvb", "--n", "7"]))
SAMPLE_OPTIONS = ["--nfe", "--n", "--solver", "--grid", "--guidance", "--label", "--seed",
                  "--device"]
EVAL_OPTIONS = ["--nfe", "--n", "--solver", "--grid", "--device"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "c.yaml").write_text(TINY + f"out: {root / 'run'}\n")
    res = runner.invoke(app, ["run", str(root / "c.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "run"


def _check(res) -> None:
    assert "Traceback" not in res.output, res.output
    if res.exit_code == 0:
        return
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.tuples(st.sampled_from(SAMPLE_OPTIONS), VALUES), min_size=1,
                        max_size=3))
def test_sample_options(run_dir, tmp_path, options):
    args = ["sample", str(run_dir), "--out", str(tmp_path / "s.npy")]
    if not any(o == "--n" for o, _ in options):
        args += ["--n", "8"]
    for opt, value in options:
        args += [opt, value]
    res = runner.invoke(app, args)
    _check(res)
    if res.exit_code == 0:
        x = np.load(tmp_path / "s.npy")
        assert np.isfinite(x).all()


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.tuples(st.sampled_from(EVAL_OPTIONS), VALUES), min_size=1,
                        max_size=2))
def test_eval_options(run_dir, options):
    args = ["eval", str(run_dir)]
    if not any(o == "--n" for o, _ in options):
        args += ["--n", "8"]
    for opt, value in options:
        args += [opt, value]
    _check(runner.invoke(app, args))


@pytest.mark.parametrize("args,needle", [
    (["sample", "RUN", "--n", "abc"], "Invalid value for '--n'"),
    (["sample", "RUN", "--bogus"], "No such option: --bogus"),
    (["sample"], "Missing argument"),
    (["pde", "convection", "--beta", "x"], "Invalid value for '--beta'"),
    (["likelihood", "RUN"], "Missing argument 'data'"),
])
def test_usage_errors_are_one_line(run_dir, args, needle):
    res = runner.invoke(app, [str(run_dir) if a == "RUN" else a for a in args])
    assert res.exit_code == 2
    _check(res)
    assert needle in res.output and "╭" not in res.output


def test_no_arguments_prints_the_help():
    res = runner.invoke(app, [])
    assert res.exit_code == 0 and "Usage" in res.output and "error:" not in res.output
