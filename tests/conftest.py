"""Shared test settings: two threads, passive OpenMP waits, importable helper modules.

Tests run with ``--import-mode=importlib`` (so test files in different folders may share a name);
each test folder is put on ``sys.path`` so that private helper modules next to the tests
(``_ot_problems.py`` and the like) can still be imported by name.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

for folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir()):
    if not folder.name.startswith((".", "__")) and str(folder) not in sys.path:
        sys.path.append(str(folder))

import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# CI runs the same property-test examples every time (repeatable verdicts); local runs explore.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
