"""Where training crops come from: random square crops, or a deterministic overlap-tile grid over each frame.

All coordinates are packed pixels (one per 2x2 mosaic cell), so every crop starts on a CFA cell boundary and
keeps the frame's phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denoise.raw.tiles import tile_starts


@dataclass(frozen=True)
class Crop:
    """A square crop of ``size`` packed pixels at (y, x) in frame number ``frame``."""

    frame: int
    y: int
    x: int


def check_fits(shapes: list[tuple[int, int]], size: int, names: list[str]) -> None:
    """Raise ValueError naming the frames (packed (h, w)) too small for a crop of ``size``."""
    small = [f"{n} ({h}x{w})" for n, (h, w) in zip(names, shapes, strict=True) if h < size or w < size]
    if small:
        raise ValueError(f"crop of {size} packed pixels does not fit {len(small)} frame(s): {'; '.join(small[:10])}")


def random_crop(rng: np.random.Generator, frame: int, height: int, width: int, size: int) -> Crop:
    """A crop of ``size`` placed uniformly inside a packed (height, width) frame."""
    assert height >= size and width >= size, f"crop {size} larger than frame {height}x{width}"
    return Crop(frame, int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1)))


def tile_origins(height: int, width: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """(y, x) origins of ``size`` tiles overlapping by at least ``overlap`` that cover the frame, row-major."""
    assert height >= size and width >= size, f"tile {size} larger than frame {height}x{width}"
    return [(y, x) for y in tile_starts(height, size, overlap) for x in tile_starts(width, size, overlap)]


def tile_crops(shapes: list[tuple[int, int]], size: int, overlap: int) -> list[Crop]:
    """Every tile of every packed frame shape, frame by frame."""
    return [Crop(i, y, x) for i, (h, w) in enumerate(shapes) for y, x in tile_origins(h, w, size, overlap)]


def read_window(crop: Crop, height: int, width: int, size: int) -> tuple[int, int]:
    """Origin of a window of ``size`` packed pixels containing as much of ``crop`` as the frame allows.

    Augmented crops read one spare pixel (``size`` = crop size + 1); at the far edges the window moves back.
    """
    assert height >= size and width >= size, f"window {size} larger than frame {height}x{width}"
    return min(crop.y, height - size), min(crop.x, width - size)
