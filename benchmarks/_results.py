"""Append a dated, self-describing table to ``benchmarks/RESULTS.md`` (shared by benchmarks)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    dev = "CPU"
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    return (f"{platform.system()} {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {dev}")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """Render a Markdown table; floats are written with 4 significant digits."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def append_results(title: str, body: str, *, path: Path = RESULTS) -> None:
    """Append a section (title, date, machine, command, body) to RESULTS.md and echo it."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    section = (f"\n## {title}\n\n- date: {stamp}\n- machine: {machine()}\n"
               f"- command: `python benchmarks/{cmd}`\n\n{body.strip()}\n")
    print(section)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(section)
