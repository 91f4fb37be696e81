"""The NAFNet U-Net for packed Bayer input, how it runs (device, memory format, precision) and its checkpoints."""

from denoise.model.build import MODELS, build_model
from denoise.model.nafnet import NAFNet
from denoise.model.runtime import autocast, prepare_input, prepare_model, resolve_device, use_explicit_layernorm

__all__ = [
    "MODELS",
    "NAFNet",
    "autocast",
    "build_model",
    "prepare_input",
    "prepare_model",
    "resolve_device",
    "use_explicit_layernorm",
]
