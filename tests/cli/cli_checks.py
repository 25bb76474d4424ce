"""The one check every bad-input test of the command line makes (imported by the tests here)."""

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
