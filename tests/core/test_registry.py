"""Registries: names, aliases, one-line errors listing the valid names, generated tables; the
config schema and the CLI help list exactly what the registries hold."""

import pytest
from typer.testing import CliRunner

from monge.cli.main import app
from monge.core.registry import Registry
from monge.couplings import COUPLINGS, RUN_COUPLINGS
from monge.errors import InputError
from monge.experiments.config import PathConfig, RunConfig, SolverSpec
from monge.paths import PATHS
from monge.solvers import GRIDS, SOLVERS


def test_register_build_alias_and_unknown_name():
    reg = Registry("widget")
    reg.register("square", lambda side=1: side * side, description="area", aliases=("sq",),
                 corners=4)
    assert reg.build("sq", side=3) == 9 and reg.canonical("sq") == "square"
    assert "sq" in reg and len(reg) == 1 and reg.names() == ("square",)
    with pytest.raises(InputError, match=r"^widget: unknown name 'circle'; expected one of "
                                         r"square$"):
        reg.build("circle")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("sq", lambda: 0)
    table = reg.markdown_table(columns=("corners",))
    assert table.splitlines()[2] == "| `square` | `sq` | 4 | area |"


def test_every_kind_has_its_registry():
    assert set(SOLVERS.names()) >= {"euler", "midpoint", "heun", "rk4", "dopri5"}
    assert set(PATHS.names()) == {"linear", "vp", "vp-cosine", "ve", "edm", "interpolant",
                                  "kinetic-optimal", "pfgmpp"}
    assert set(COUPLINGS.names()) >= set(RUN_COUPLINGS) | {"immiscible-scale"}
    assert "uniform" in GRIDS


def _literal_values(model, field):
    return set(model.model_json_schema()["properties"][field]["enum"])


def test_config_schema_is_generated_from_the_registries():
    assert _literal_values(PathConfig, "name") == set(PATHS.names())
    assert _literal_values(SolverSpec, "solver") == set(SOLVERS.names())
    schema = RunConfig.model_json_schema()
    coupling = schema["properties"]["coupling"]
    enum = coupling.get("enum") or schema["$defs"][coupling["$ref"].split("/")[-1]]["enum"]
    assert set(enum) == set(RUN_COUPLINGS)


def test_cli_help_lists_every_path_coupling_and_solver():
    runner = CliRunner()
    text = " ".join(runner.invoke(app, ["run", "--help"], terminal_width=300).output.split())
    for name in (*PATHS.names(), *RUN_COUPLINGS):
        assert name in text, name
    text = " ".join(runner.invoke(app, ["sample", "--help"], terminal_width=300).output.split())
    for name in SOLVERS.names():
        assert name in text, name


def test_unknown_names_get_one_line_listing_the_valid_ones(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--quiet", "--path", "banana", "--out", str(tmp_path)])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "kinetic-optimal" in lines[0]
    res = runner.invoke(app, ["sample", str(tmp_path), "--solver", "banana"])
    assert res.exit_code == 1 and "expected one of euler, midpoint" in res.output
