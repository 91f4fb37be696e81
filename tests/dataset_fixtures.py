"""Tiny DNG pair datasets for the data-pipeline tests (imported by test_pairs.py, test_cache.py, test_samples.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from denoise.raw.dng import write_new_dng

BLACK, WHITE = 1024, 16383


def write_pairs(root: Path, count: int = 3, shape: tuple[int, int] = (24, 32), pattern: str = "BGGR",
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``count`` noisy/clean pairs in the competition layout under ``root``; returns {key: (noisy, clean)} DN."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i in range(count):
        clean = rng.integers(BLACK, 9000, size=shape, dtype=np.uint16)
        noisy = np.clip(clean.astype(np.int64) + rng.integers(-300, 300, size=shape), BLACK, WHITE).astype(np.uint16)
        write_frame(root / "noisy" / f"{i}_noise.dng", noisy, pattern)
        write_frame(root / "ground truth" / f"{i}_gt.dng", clean, pattern)
        frames[str(i)] = (noisy, clean)
    return frames


def write_frame(path: Path, mosaic: np.ndarray, pattern: str = "BGGR", black: float = BLACK,
                white: int = WHITE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_dng(path, mosaic, pattern, black, white, as_shot_neutral=np.array([0.5, 1.0, 0.6]))
    return path
