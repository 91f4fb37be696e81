"""Frames named by number in a folder (``noisy3.dng``, ``gt3.dng``, ``denoise3.dng``): which file is frame N."""

from __future__ import annotations

import re
from pathlib import Path


class FolderError(ValueError):
    """A folder whose files cannot be told apart by frame number; the message names the files and the problem."""


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """``denoise{N}`` -> a regex matching ``denoise12.dng`` with the number captured."""
    if pattern.count("{N}") != 1:
        raise FolderError(f"file pattern {pattern!r} must contain {{N}} exactly once")
    head, tail = pattern.split("{N}")
    return re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\.dng", re.IGNORECASE)


def index_folder(folder: Path, pattern: str) -> dict[int, Path]:
    """Files in ``folder`` matching ``pattern`` (with ``{N}``), keyed by N."""
    if not folder.is_dir():
        raise FolderError(f"{folder}: no such folder")
    regex = _pattern_regex(pattern)
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = regex.fullmatch(path.name)
        if match:
            n = int(match.group(1))
            if n in found:  # denoise5.dng beside denoise05.dng: which one is frame 5?
                raise FolderError(f"{path}: frame {n} again, beside {found[n].name}; keep one of them")
            found[n] = path
    if not found:
        raise FolderError(f"{folder}: no files named like {pattern}.dng")
    return found
