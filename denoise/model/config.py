"""Model section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """NAFNet U-Net hyper-parameters; read only by ``build_model``."""

    name: str = "nafnet"
    in_channels: int = 4
    width: int = 32
    enc_blocks: tuple[int, ...] = (2, 2, 4, 8)
    middle_blocks: int = 12
    dec_blocks: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.0
