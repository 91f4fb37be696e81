"""What a training run carries from one step to the next, and the one place that saves and restores it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from denoise.train.checkpoint import set_rng_state
from denoise.train.ema import EMA
from denoise.train.schedule import load_optimizer_state


@dataclass
class TrainState:
    """The model, its average, the optimiser, schedule and loss scaler, and the run's counters.

    ``epoch`` and ``batch`` say where this process started: the epoch, and the batches of it that the checkpoint
    had done (0 at an epoch boundary); ``step`` counts optimiser steps; ``best_score`` is best.pth's score.
    """

    model: nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_score: float | None = None

    @classmethod
    def start(
        cls,
        model: nn.Module,
        ema_decay: float,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        ckpt: dict[str, Any] | None,
        rank: int,
    ) -> TrainState:
        """A fresh state, or one restored from ``ckpt``: everything the next step depends on, this rank's RNG too.

        The weights are loaded before the average is made, so a resumed average starts from them when the
        checkpoint holds none.
        """
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
        ema = EMA(model, ema_decay) if ema_decay > 0 else None
        state = cls(model, ema, optimizer, scheduler, scaler)
        if ckpt is None:
            return state
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        load_optimizer_state(optimizer, ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state.epoch, state.batch, state.step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        state.best_score = ckpt.get("best_score")
        if rank < len(ckpt["rng"]):
            set_rng_state(ckpt["rng"][rank])
        return state

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation scores and checkpoints serve to inference: the average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self, epoch: int, batch: int, rng: list[dict], val_frames: str, config: dict) -> dict[str, Any]:
        """The checkpoint dict (``denoise.train.checkpoint`` lists its keys) at ``batch`` batches into ``epoch``;
        ``rng`` holds every rank's generator states from the start of that epoch."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "step": self.step,
            "best_score": self.best_score,
            "val_frames": val_frames,
            "rng": rng,
            "config": config,
        }
