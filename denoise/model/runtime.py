"""The fast default runtime settings shared by training and inference.

Measured on a 2-core AMD EPYC (AVX2) with ``scripts/bench_model.py``: storing weights and activations
channels-last lets oneDNN run every convolution (the depthwise 3x3 included) without layout reorders, and lets
``LayerNorm2d`` call the fused layer-norm kernel on a free (N, H, W, C) view instead of copying.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from denoise.model.nafnet import LayerNorm2d

MEMORY_FORMAT = torch.channels_last


def prepare_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in the fast memory format (in place; also returned)."""
    return model.to(device=torch.device(device), memory_format=MEMORY_FORMAT)


def prepare_input(x: Tensor, device: str | torch.device) -> Tensor:
    """Move a (N, C, H, W) batch to ``device`` in the memory format ``prepare_model`` uses."""
    assert x.ndim == 4, f"expected (N, C, H, W), got shape {tuple(x.shape)}"
    return x.to(device=torch.device(device), memory_format=MEMORY_FORMAT, non_blocking=True)


def use_explicit_layernorm(model: nn.Module, explicit: bool = True) -> nn.Module:
    """Switch every ``LayerNorm2d`` to the explicit mean/variance arithmetic (the benchmark's baseline) or back."""
    for module in model.modules():
        if isinstance(module, LayerNorm2d):
            module.explicit = explicit
    return model
