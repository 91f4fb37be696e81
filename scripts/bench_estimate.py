"""Blind noise estimate speed: seconds per estimate (inference, network.py and the training data's estimate grids
all run the one torch estimate), per frame size and noise regime.

    python scripts/bench_estimate.py [--sizes 64 128 256 1024] [--repeats 5] [--threads 1]

Frames are a scikit-image photo, linearised and packed, at a bright level (no clipping: the line fit alone) and a
dark noisy one (clipped at black: the clipped model's maximum-likelihood refinement, a compass search of a few
dozen steps, each evaluating 9 points at once). Prints the median seconds per estimate.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from skimage import data

from denoise.config import CliParser
from denoise.raw.noise_estimation import estimate_noise

REGIMES = {"bright, unclipped": (1.0, 1e-3, 1e-5), "dark, clipped at black": (0.1, 8e-3, 1e-4)}


def packed_photo(size: int) -> np.ndarray:
    """(4, size, size) linear planes of the astronaut photo, tiled when the photo is smaller."""
    rgb = (data.astronaut().astype(np.float64) / 255) ** 2.2  # (512, 512, 3)
    planes = np.stack([rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1], rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]])
    reps = -(-size // planes.shape[-1])
    return np.tile(planes, (1, reps, reps))[:, :size, :size]


def median_seconds(noisy: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimate_noise(noisy, window=1.0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="scripts/bench_estimate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 1024], help="packed pixels per side")
    parser.add_argument("--repeats", type=int, default=5, help="estimates per cell; the median is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"| frame (packed) | regime | s per estimate |  (threads {args.threads})")
    print("|---|---|---|")
    for size in args.sizes:
        for regime, (gain, a, b) in REGIMES.items():
            clean = gain * packed_photo(size)
            noisy = np.clip(clean + np.sqrt(a * clean + b) * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
            seconds = median_seconds(noisy, args.repeats)
            print(f"| 4 x {size} x {size} | {regime} | {seconds:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
