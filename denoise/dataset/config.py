"""Data section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DataConfig:
    """Where the training pairs are and how samples are drawn from them.

    Sizes (``patch_size``, ``tile_overlap``) are in packed pixels: one packed pixel is a 2x2 mosaic cell.
    """

    # Pair discovery: globs relative to ``root``; ``key_regex`` must match both file names, group 1 is the key.
    root: str = "data/zte/train"
    noisy_glob: str = "noisy/*_noise.dng"  # "" means a clean-only dataset (needs synthetic_fraction = 1)
    clean_glob: str = "ground truth/*_gt.dng"
    key_regex: str = r"^(\d+)_(?:noise|gt)\.dng$"

    # Validation split: ``val_keys`` if given, else ``val_count`` keys spread evenly over the sorted keys.
    val_count: int = 5
    val_keys: list[str] = field(default_factory=list)

    # Batches.
    patch_size: int = 256
    batch_size: int = 8
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect when CUDA is available

    # Decoded-frame cache; "" means ``<root>/.cache``.
    cache_dir: str = ""
    cache_dtype: Literal["uint16", "float32"] = "uint16"

    # Sampling: random crops, or the deterministic overlap-tile grid over every frame.
    sampling: Literal["random", "tiles"] = "random"
    tile_overlap: int = 32
    samples_per_epoch: int = 0  # 0: as many as the tile grid has tiles

    # Paired Bayer-preserving flips and transposes (one of the eight, uniformly).
    augment_flips: bool = True

    # Pairs synthesised on the fly from clean frames: the fraction of samples, the noise model and its ranges.
    synthetic_fraction: float = 0.0
    noise_model: Literal["gaussian", "poisson_gaussian"] = "gaussian"
    noise_a_range: tuple[float, float] = (1e-4, 1e-2)  # shot term (var = a*x + b on normalised values)
    noise_b_range: tuple[float, float] = (1e-6, 1e-3)  # read term
    brightness_range: tuple[float, float] = (1.0, 1.0)  # clean frame scaled by this before synthesis
    # Log-normal error (std of log) put on the noise std a synthetic sample reports to a noise-aware model, so it
    # learns to live with a mis-read level as the blind estimate gives at test time; 0 reports the true level.
    noise_level_error: float = 0.0
    # What a synthetic sample reports as its noise level: the level drawn, or "estimator": the drawn level plus
    # the level the blind estimate reads off the clean frame alone (its noise-like fine texture, which the
    # estimate of a noisy frame counts as noise), so synthetic samples carry the bias that real pairs and test
    # frames carry; or "estimate_grid": what the estimate reads off the whole frame with noise at the drawn level,
    # interpolated from a per-frame table measured before training (denoise/dataset/estimate_grid.py).
    noise_level_report: Literal["drawn", "estimator", "estimate_grid"] = "drawn"
    # How far above the fitted noise variance (in standard deviations of a smooth block's variance estimate) a
    # block still counts as noise when the level is estimated blind, here and at inference: 3 keeps nearly all
    # noise-only blocks; 1 drops more texture, so textured frames read less high (denoise/noise_estimation.py).
    noise_estimate_window: float = 3.0
