"""Training section of the experiment config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimiser, schedule, losses, validation and checkpointing."""

    epochs: int = 100
    lr: float = 1e-3
    seed: int = 0
