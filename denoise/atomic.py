"""Atomic file writes: a temporary file beside the destination, flushed to disk, then renamed over it.

A crash or an exception therefore leaves either the old file or the complete new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder to write; on success it replaces ``dest``, on failure it goes."""
    dest = Path(dest)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def unwritable_reason(folder: str | Path) -> str | None:
    """Why no file can be created in the existing ``folder`` (read-only, no permission, a file), found by creating
    and removing one, or None when one can: checked before long work whose output would go there."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as err:
        return err.strerror or str(err)


def remove_stale_temps(dest: str | Path, age_s: float = 60.0) -> int:
    """Delete the temporaries ``atomic_path`` left for ``dest`` when a process was killed mid-write (a kill -9
    skips its cleanup), those untouched for ``age_s`` seconds, so a write still under way is spared; returns how
    many went."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return 0
    now, removed = time.time(), 0
    for tmp in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if tmp.is_file() and now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
                removed += 1
    return removed


def write_text_atomic(dest: str | Path, text: str) -> None:
    """Write ``text`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
