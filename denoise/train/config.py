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


def check_train_config(tc: TrainConfig) -> None:
    """Raise ValueError naming the first ``train.*`` value outside its valid range (the types are checked on load)."""
    rules = [
        ("epochs", tc.epochs >= 1, "at least 1"),
        ("max_steps", tc.max_steps >= 0, "0 (no limit) or more"),
        ("lr", tc.lr > 0, "positive"),
        ("weight_decay", tc.weight_decay >= 0, "0 or more"),
        ("step_size", tc.step_size >= 1, "at least 1 epoch"),
        ("gamma", 0 < tc.gamma <= 1, "in (0, 1]"),
        ("min_lr", 0 <= tc.min_lr <= tc.lr, "in [0, train.lr]"),
        ("warmup_steps", tc.warmup_steps >= 0, "0 (off) or more"),
        ("grad_clip", tc.grad_clip >= 0, "0 (off) or positive"),
        ("ema", 0 <= tc.ema < 1, "0 (off) or in (0, 1)"),
        ("adjacent_directions", len(tc.adjacent_directions) > 0, "at least one of rows, cols"),
        ("val_every", tc.val_every >= 0, "0 (never) or more"),
        ("max_nonfinite", tc.max_nonfinite >= 1, "at least 1"),
        ("log_every", tc.log_every >= 1, "at least 1"),
        ("image_crop", tc.image_crop >= 0, "0 (off) or more"),
        ("threads", tc.threads >= 0, "0 (PyTorch's default) or more"),
    ]
    for name, ok, expected in rules:
        if not ok:
            raise ValueError(f"train.{name}={getattr(tc, name)!r} must be {expected}")
    weights = (tc.loss_l1, tc.loss_fourier, tc.loss_psnr, tc.loss_adjacent)
    if all(w == 0 for w in weights):
        raise ValueError("every train.loss_* weight is 0: nothing to train on")
