"""Build the network named in the config; the only code that reads ``ModelConfig``."""

from __future__ import annotations

import os

import torch
from torch import nn

from denoise.config import Config, ConfigError, ModelConfig
from denoise.model.nafnet import NAFNet, NoiseAwareNAFNet

MODELS: dict[str, type[nn.Module]] = {"nafnet": NAFNet}
NOISE_AWARE: dict[str, type[nn.Module]] = {"nafnet": NoiseAwareNAFNet}  # with model.noise_channels > 0


def blind_options(cfg: Config) -> dict[str, float]:
    """How a noise-aware model reads its level blind at test time, part of its recipe: the estimate's window and
    the texture check (``NoiseAwareNAFNet``'s keywords) from the config it was trained with; {} for a blind one."""
    if cfg.model.noise_channels == 0:
        return {}
    i = cfg.infer
    return {"noise_window": cfg.data.noise_estimate_window, "texture_threshold": i.texture_threshold,
            "texture_scale": i.texture_scale, "texture_read_share": i.texture_read_share}  # fmt: skip


def build_model(cfg: ModelConfig, **test_time: float) -> nn.Module:
    """The network described by ``cfg`` (checked by ``validate_config``), freshly initialised, on the CPU in fp32;
    a noise-aware one with ``test_time`` options (``blind_options``)."""
    model = (NOISE_AWARE if cfg.noise_channels > 0 else MODELS)[cfg.name](
        in_channels=cfg.in_channels,
        width=cfg.width,
        enc_blocks=tuple(cfg.enc_blocks),
        middle_blocks=cfg.middle_blocks,
        dec_blocks=tuple(cfg.dec_blocks),
        dropout=cfg.dropout,
        noise_channels=cfg.noise_channels,
        scale_residual=cfg.scale_residual,
        **test_time,
    )
    model.set_local_window(cfg.local_window)
    return model


def parameter_count(cfg: ModelConfig) -> int:
    """The network's parameter count, from a copy built on the "meta" device, so nothing is allocated."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(cfg).parameters())


def device_memory(device: torch.device) -> int:
    """Bytes of memory the device has in all: the GPU's, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_model_fits(cfg: ModelConfig, device: torch.device, copies: int, what: str) -> None:
    """Refuse, before anything is allocated, a network whose ``copies`` fp32 copies of its weights (for training:
    weights, gradients, Adam's two moments, maybe an average) alone exceed the device's memory."""
    params = parameter_count(cfg)
    need, have = params * 4 * copies, device_memory(device)
    if need > have:
        raise ConfigError(f"model.width={cfg.width}: {params:,} parameters need {need / 2**30:,.1f} GiB for {what}, "
                          f"more than the {have / 2**30:,.1f} GiB of {device}")
