"""Inference section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InferConfig:
    """Defaults for ``python -m denoise.infer`` when run with no arguments."""

    test_dir: str = "data/zte/test"
    output_dir: str = "result/data"
    tile: int = 512
    overlap: int = 32
    tta: bool = False
