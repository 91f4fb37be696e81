"""Model section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """NAFNet U-Net hyper-parameters; read only by ``build_model``.

    ``local_window`` switches on test-time local statistics for the channel attention: the pooling window in
    packed input pixels (about 1.5x the training patch), used only where the input is larger; 0 pools over the
    whole frame as in training.

    ``noise_channels`` = ``in_channels`` makes the network noise-aware: it also reads a per-pixel noise-std map
    (``noise_level_map``) built from each frame's noise level, estimated from the noisy frame alone at test time;
    0 makes it blind. ``scale_residual`` (needs the map) multiplies the predicted residual by the map, so the
    network predicts the noise in units of its std.
    """

    name: str = "nafnet"
    in_channels: int = 4
    width: int = 32
    enc_blocks: tuple[int, ...] = (2, 2, 4, 8)
    middle_blocks: int = 12
    dec_blocks: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.0
    local_window: int = 0
    noise_channels: int = 0
    scale_residual: bool = False
