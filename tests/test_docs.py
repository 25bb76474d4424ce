"""The docs: the contributing page's worked example runs, and the registry tables are rendered
from the live registries (what ``mkdocs build --strict`` shows)."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_contributing_worked_example_runs():
    result = doctest.testfile(str(DOCS / "contributing.md"), module_relative=False)
    assert result.attempted >= 8 and result.failed == 0
    from monge.solvers import SOLVERS
    assert "ralston" not in SOLVERS  # the example unregisters its solver


def test_registry_tables_are_generated_into_the_registries_page():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.render((DOCS / "registries.md").read_text())
    assert "<!-- registry:" not in page
    from monge.paths import PATHS
    from monge.solvers import SOLVERS
    for name in (*PATHS.names(), *SOLVERS.names()):
        assert f"| `{name}` |" in page, name


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "reference").glob("*.md")))
def test_reference_pages_name_importable_modules(page):
    import importlib
    for line in (DOCS / "reference" / page).read_text().splitlines():
        if line.startswith("::: "):
            importlib.import_module(line[4:].strip())
