"""A folder held by one process at a time: an advisory lock on the folder itself, let go when the process ends.

The operating system drops the lock of a process that dies, even by kill -9, and the lock is on the folder, not
on a file in it, so nothing is left behind to block or clutter the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FolderInUse(OSError):
    """Another live process holds the folder."""


@contextmanager
def hold_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold the existing ``folder`` for the block; raise ``FolderInUse`` naming ``what`` at once when another
    process holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(f"{what} is in use by another process: wait for it to end") from None
        yield
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing lets the lock go
