"""Atomic file writes: a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it over ``path``.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and is named
    ``.<name>.<random>.tmp``; it is removed if the writer fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def ensure_writable_dir(folder: str | Path, name: str = "--out",
                        min_free_bytes: int = 64 * 2**20) -> Path:
    """Create ``folder`` if needed and prove it writable (a probe file) with some free space.

    Called before long work starts, so a read-only folder, a path under a regular file or a full
    disk is one line up front instead of a traceback after training.

    Raises:
        InputError: naming ``name`` and the folder, with the operating system's reason.
    """
    from monge.errors import InputError

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".monge-write-probe.")
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise InputError(f"{name}: cannot write to {folder} ({exc.strerror or exc})") from None
    if free < min_free_bytes:
        raise InputError(f"{name}: only {free / 2**20:.0f} MiB free under {folder}; need at "
                         f"least {min_free_bytes / 2**20:.0f} MiB")
    return folder


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files that :func:`atomic_path` leaves when a writer is killed
    between creating and renaming its temporary file. Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed
