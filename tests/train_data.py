"""Tiny generated DNG datasets and configs for the training tests (imported by test_train*.py, test_resume.py,
test_ddp.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from denoise.config import Config, load_config
from denoise.raw.dng import write_new_dng

NEUTRAL = np.array([0.5, 1.0, 0.7])


def make_pairs(root: Path, count: int = 3, size: int = 64, seed: int = 0) -> Path:
    """``count`` noisy/clean BGGR pairs of (size, size) in the competition layout under ``root``."""
    rng = np.random.default_rng(seed)
    (root / "noisy").mkdir(parents=True, exist_ok=True)
    (root / "ground truth").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        # Smooth gradients plus a little texture: something a tiny network can learn quickly.
        wave = 0.5 + 0.5 * np.sin((xx + 3 * i) / 7.0) * np.cos(yy / 5.0)
        clean = 1024 + 6000 * wave + 500 * rng.random((size, size))
        noisy = clean + rng.normal(0.0, 400.0, clean.shape)
        clean = np.clip(clean, 1024, 16383).astype(np.uint16)
        noisy = np.clip(noisy, 1024, 16383).astype(np.uint16)
        write_new_dng(root / "noisy" / f"{i}_noise.dng", noisy, "BGGR", 1024, 16383, as_shot_neutral=NEUTRAL)
        write_new_dng(root / "ground truth" / f"{i}_gt.dng", clean, "BGGR", 1024, 16383, as_shot_neutral=NEUTRAL)
    return root


def tiny_config(data: Path, runs: Path, *overrides: str) -> Config:
    """A 1-level width-4 NAFNet on ``data`` (one pair held out), 16-pixel patches, 4 steps per epoch, on the CPU."""
    return load_config(
        None,
        [
            "name=tiny",
            f"data.root={data}",
            "data.val_count=1",
            "data.patch_size=16",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.samples_per_epoch=8",
            "model.width=4",
            "model.enc_blocks=[1]",
            "model.middle_blocks=1",
            "model.dec_blocks=[1]",
            "infer.tile=0",
            "train.device=cpu",
            "train.threads=1",  # tiny tensors: more threads only add synchronisation on a busy machine
            "train.epochs=2",
            "train.log_every=1",
            "train.image_crop=32",
            f"train.runs_dir={runs}",
            *overrides,
        ],
    )
