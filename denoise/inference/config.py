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
    # Measured on the 2-core CPU with the w32 NAFNet: 256 packed pixels gave the best throughput per pixel (128 ran
    # 2.5x slower per pixel, 384 and 512 no faster), and overlap 64 brought the largest tiled-vs-whole difference
    # down to its floor (overlap 0: 3272 DN, 32: 240 DN, 48: 13 DN, 64 and 96: 8 DN).
    tile: int = 256  # packed tile side in pixels; 0 = the whole frame at once
    overlap: int = 64  # packed pixels shared by neighbouring tiles; only tile centres are kept
    batch_size: int = 4  # tiles per forward pass
    tta: bool = False  # x8 Bayer-preserving self-ensemble (8x slower)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # "auto" = cuda when available, else cpu
