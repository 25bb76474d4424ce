"""mkdocs hook: replace ``<!-- registry: KIND -->`` markers with the registry's Markdown table.

The tables are rendered from the live registries (``monge.paths.PATHS``, ``monge.solvers.SOLVERS``,
...), so the docs list exactly what the code registers.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"<!-- registry: ([a-z]+) -->")


def registry_tables() -> dict[str, str]:
    from monge.couplings import COUPLINGS
    from monge.paths import PATHS
    from monge.solvers import GRIDS, SOLVERS
    from monge.train import LOSSES

    return {
        "solvers": SOLVERS.markdown_table(columns=("order", "nfe_per_step", "adaptive",
                                                    "schedule")),
        "paths": PATHS.markdown_table(columns=("gaussian_source", "prediction")),
        "couplings": COUPLINGS.markdown_table(columns=("run",)),
        "grids": GRIDS.markdown_table(),
        "losses": LOSSES.markdown_table(),
    }


def render(markdown: str) -> str:
    """``markdown`` with every registry marker replaced by its table."""
    tables = registry_tables()
    return MARKER.sub(lambda m: tables[m.group(1)], markdown)


def on_page_markdown(markdown: str, **_: object) -> str:
    return render(markdown)
