"""Build the network named in the config; the only code that reads ``ModelConfig``."""

from __future__ import annotations

from torch import nn

from denoise.model.config import ModelConfig
from denoise.model.nafnet import NAFNet

MODELS: dict[str, type[nn.Module]] = {"nafnet": NAFNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network described by ``cfg``, freshly initialised, on the CPU in fp32."""
    if cfg.name not in MODELS:
        raise ValueError(f"model.name: unknown model {cfg.name!r}; known: {sorted(MODELS)}")
    if len(cfg.enc_blocks) != len(cfg.dec_blocks):
        raise ValueError(
            f"model.enc_blocks has {len(cfg.enc_blocks)} levels but model.dec_blocks has {len(cfg.dec_blocks)}"
        )
    if cfg.local_window < 0:
        raise ValueError(f"model.local_window must be >= 0, got {cfg.local_window}")
    if cfg.noise_channels not in (0, cfg.in_channels):
        raise ValueError(f"model.noise_channels must be 0 (blind) or {cfg.in_channels} (in_channels), "
                         f"got {cfg.noise_channels}")
    if cfg.scale_residual and cfg.noise_channels == 0:
        raise ValueError("model.scale_residual needs the noise map: set model.noise_channels")
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
