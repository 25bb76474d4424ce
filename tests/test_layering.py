"""The layer table of ``shared/DESIGN.md``, enforced: every import inside ``monge`` points down.

A module may import from packages on lower rows only. Packages on the same row do not import each
other, except ``cli`` → ``experiments`` and the bottom row (``errors``, ``core``) among itself.
Imports inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "monge"

LAYERS: list[set[str]] = [
    {"errors", "core", ""},                       # "" is the package root (monge/__init__.py)
    {"models", "data"},
    {"ot"},
    {"metrics"},
    {"solvers"},
    {"paths", "couplings"},
    {"train"},
    {"distill", "guidance", "inverse", "latent", "editing", "sciml", "dynamics"},
    {"cli", "experiments", "__main__"},
]
ALLOWED_SAME_ROW = {("cli", "experiments"), ("__main__", "cli"), ("errors", "core"),
                    ("core", "errors"),
                    ("", "errors"), ("core", ""), ("errors", "")}
ROW = {pkg: i for i, row in enumerate(LAYERS) for pkg in row}


def _package(module: str) -> str:
    """``monge.paths.affine`` → ``paths``; ``monge`` → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return [(name, line) for name, line in found if name == "monge" or
            name.startswith("monge.")]


MODULES = sorted(SRC.rglob("*.py"))


def test_every_package_has_a_row():
    packages = {_package(_module_name(p)) for p in MODULES}
    assert packages - set(ROW) == set(), "add new packages to the layer table"


def _violations(path: Path, module: str) -> list[str]:
    src_pkg = _package(module)
    bad = []
    for name, line in _imports(path, module):
        dst_pkg = _package(name)
        if dst_pkg == src_pkg or (src_pkg, dst_pkg) in ALLOWED_SAME_ROW:
            continue
        if ROW[dst_pkg] >= ROW[src_pkg]:
            bad.append(f"line {line}: imports {name} (row {ROW[dst_pkg]} >= row {ROW[src_pkg]})")
    return bad


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    module = _module_name(path)
    bad = _violations(path, module)
    assert not bad, f"{module} (row {ROW[_package(module)]}): " + "; ".join(bad)


def test_the_check_catches_upward_and_sideways_imports(tmp_path):
    """The rule itself can fail: ``ot`` importing ``paths`` (lazily, in a function) and
    ``paths`` importing ``couplings`` (same row) are both reported; ``paths`` → ``ot`` is not."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from monge.paths import LinearPath\n")
    assert len(_violations(probe, "monge.ot.probe")) == 1
    probe.write_text("import monge.couplings.base\nfrom monge.ot import solve\n")
    assert len(_violations(probe, "monge.paths.probe")) == 1
