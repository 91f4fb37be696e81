"""Inference section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class InferConfig:
    """Defaults for ``python -m denoise.infer`` and ``python -m denoise.submit`` when run with no arguments."""

    test_dir: str = "data/zte/test"  # folder of noisy test frames
    output_dir: str = "result/data"  # where the denoised DNGs go
    runs_dir: str = "runs"  # searched for the newest best.pth when no checkpoint is given
    tile: int = 256  # packed tile side (a full frame's quarter-resolution plane); 0 = whole frame
    overlap: int = 32  # packed pixels shared by neighbouring tiles; only tile centres are kept
    batch_size: int = 4  # tiles per forward pass
    tta: bool = False  # x8 Bayer-preserving self-ensemble (8x slower)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # "auto" = cuda when available, else cpu
