"""DNG reading through rawpy/LibRaw and writing through tifffile. (Interface stub: being implemented.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DngError(Exception):
    """A raw file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RawFrame:
    """One Bayer raw frame as read from a file."""

    mosaic: np.ndarray  # (H, W) uint16, the visible CFA area
    pattern: str  # 2x2 phase at the visible origin, e.g. "BGGR"
    black_level: np.ndarray  # (2, 2) float64, per CFA position aligned with ``mosaic``
    white_level: int
    as_shot_neutral: np.ndarray | None  # (3,) camera-space neutral (R, G, B), or None
    color_matrix: np.ndarray | None  # (3, 3) XYZ -> camera (DNG ColorMatrix), or None
    iso: float | None
    path: Path


def read_dng(path: str | Path) -> RawFrame:
    """Read the visible Bayer mosaic and its metadata."""
    raise NotImplementedError


def write_dng(source: str | Path, dest: str | Path, mosaic: np.ndarray) -> str:
    """Write ``mosaic`` as a DNG keeping ``source``'s metadata; returns the mode used, "patch" or "rebuild"."""
    raise NotImplementedError


def write_new_dng(
    dest: str | Path,
    mosaic: np.ndarray,
    pattern: str,
    black_level: float | np.ndarray,
    white_level: int,
    as_shot_neutral: np.ndarray | None = None,
    color_matrix: np.ndarray | None = None,
    iso: float | None = None,
    make: str = "raw-denoise",
    model: str = "synthetic",
) -> None:
    """Write a fresh uncompressed 16-bit DNG (one strip) with the given tags, atomically."""
    raise NotImplementedError
