"""Where and how the network runs, shared by training and inference: device, memory format, autocast precision.

Measured on a 2-core AMD EPYC (AVX2) with ``scripts/bench_model.py``: storing weights and activations
channels-last lets oneDNN run every convolution (the depthwise 3x3 included) without layout reorders, and lets
``LayerNorm2d`` call the fused layer-norm kernel on a free (N, H, W, C) view instead of copying.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from denoise.model.nafnet import LayerNorm2d

MEMORY_FORMAT = torch.channels_last
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """"auto" -> this process's GPU when CUDA is present, else the CPU; anything else as torch spells it.

    A bare "cuda" means this process's GPU (``local_rank`` under torchrun). Raises ValueError for a device
    torch does not know or CUDA that is not there.
    """
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(f"unknown device {requested!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    return torch.device(f"cuda:{local_rank}") if device.type == "cuda" and device.index is None else device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for "bf16"/"fp16"; "fp32" runs without it."""
    if precision == "fp32":
        return contextlib.nullcontext()
    assert precision in AUTOCAST_DTYPES, f"precision must be fp32, bf16 or fp16, got {precision!r}"
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def prepare_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in the fast memory format (in place; also returned).

    A per-channel scale of shape (1, C, 1, 1) holds its values in the same order in both formats but takes
    channels-last strides in the move, while its gradient (a broadcast's reduction) comes back with plain strides;
    DistributedDataParallel's gradient buckets read that as a layout mismatch (a warning and a copy per step).
    Those keep plain strides. Convolution weights, 1x1 ones included, stay channels-last: their gradients come
    back channels-last from the convolution itself (with more than one CPU thread, for the 1x1 ones).
    """
    model = model.to(device=torch.device(device), memory_format=MEMORY_FORMAT)
    for p in model.parameters():
        if p.dim() == 4 and p.shape[0] == 1 and p.shape[-2:] == (1, 1):
            p.data = p.data.clone(memory_format=torch.contiguous_format)
    return model


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
