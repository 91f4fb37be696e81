"""The NAFNet U-Net for packed Bayer input."""

from denoise.model.build import MODELS, build_model
from denoise.model.config import ModelConfig
from denoise.model.nafnet import NAFNet
from denoise.model.runtime import prepare_input, prepare_model, use_explicit_layernorm

__all__ = [
    "MODELS",
    "ModelConfig",
    "NAFNet",
    "build_model",
    "prepare_input",
    "prepare_model",
    "use_explicit_layernorm",
]
