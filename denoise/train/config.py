"""Training section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    """Optimiser, schedule, losses, validation and checkpointing; read only by ``denoise.train``."""

    epochs: int = 100
    max_steps: int = 0  # stop (saving last.pth, resumable) once this many optimiser steps are done; 0 = no limit
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: Literal["step", "cosine"] = "step"
    step_size: int = 20  # StepLR: epochs between decays
    gamma: float = 0.5  # StepLR: factor per decay
    min_lr: float = 1e-7  # cosine: the learning rate reached at the last step
    warmup_steps: int = 0  # linear warm-up over this many optimiser steps; 0 = off
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    ema: float = 0.0  # decay of the weights' exponential moving average (e.g. 0.999); 0 = off
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 adds a gradient scaler
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...; torchrun picks the local GPU
    loss_l1: float = 1.0
    loss_fourier: float = 0.0
    loss_psnr: float = 0.0  # weight of minus the PSNR: this loss term is negative by design
    loss_adjacent: float = 0.0
    fourier_mode: Literal["amp_phase", "real_imag"] = "amp_phase"
    adjacent_directions: tuple[Literal["rows", "cols"], ...] = ("rows", "cols")
    val_every: int = 1  # epochs between validations (and best.pth); 0 = never
    seed: int = 0
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops
    runs_dir: str = "runs"
    log_every: int = 20  # optimiser steps between TensorBoard scalars
    image_crop: int = 256  # side (mosaic pixels) of the validation crop shown in TensorBoard; 0 = no images
    threads: int = 0  # torch CPU threads per process; 0 = PyTorch's default
