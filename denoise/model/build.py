"""Build the network named in the config; the only code that reads ``ModelConfig``."""

from __future__ import annotations

from torch import nn

from denoise.config import ModelConfig
from denoise.model.nafnet import NAFNet

MODELS: dict[str, type[nn.Module]] = {"nafnet": NAFNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network described by ``cfg`` (checked by ``validate_config``), freshly initialised, on the CPU in fp32."""
    model = MODELS[cfg.name](
        in_channels=cfg.in_channels,
        width=cfg.width,
        enc_blocks=tuple(cfg.enc_blocks),
        middle_blocks=cfg.middle_blocks,
        dec_blocks=tuple(cfg.dec_blocks),
        dropout=cfg.dropout,
        noise_channels=cfg.noise_channels,
        scale_residual=cfg.scale_residual,
    )
    model.set_local_window(cfg.local_window)
    return model
