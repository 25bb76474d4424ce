"""Config fuzzing: any value at any known key either validates or gives one ConfigError line
naming the key (never a traceback from deep inside, never a silent coercion of a bool)."""

from __future__ import annotations

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monge.errors import ConfigError
from monge.experiments.config import RunConfig, parse_config

KEYS = ["seed", "out", "source", "target", "coupling", "data.n_train", "data.test_fraction",
        "data.normalize", "model.hidden", "model.kind", "model.channel_mults", "path.name",
        "path.D", "train.steps", "train.lr", "train.grad_clip", "train.prediction",
        "eval.n_samples", "eval.solvers", "compare.couplings", "compare.nfe"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                   st.lists(st.integers(-5, 5), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _nested(dotted: str, value):
    *parents, leaf = dotted.split(".")
    data = node = {}
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(KEYS), VALUES)
@example("out", "~0")            # found by this test: a home directory that does not exist
@example("out", "~nosuchuser/x")
def test_any_value_validates_or_fails_in_one_line(key, value):
    try:
        cfg = parse_config(_nested(key, value), origin="fuzz.yaml")
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith("fuzz.yaml")
        return
    assert isinstance(cfg, RunConfig)
    if isinstance(value, bool) and key in ("seed", "data.n_train", "model.hidden",
                                           "train.steps", "eval.n_samples"):
        raise AssertionError(f"{key}: a boolean was accepted as an integer")
    # what validated survives a round trip through the stored (JSON) form
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again.model_dump() == cfg.model_dump()
