"""Data section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    """Where the training pairs are and how samples are drawn from them."""

    root: str = "data/zte/train"
    patch_size: int = 256
    batch_size: int = 8
    num_workers: int = 2
    val_count: int = 5
