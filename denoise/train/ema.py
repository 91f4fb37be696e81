"""Exponential moving average of a model's weights, used for validation and export when enabled."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose floating-point weights follow ``decay * ema + (1 - decay) * model``."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        assert 0.0 < decay < 1.0, f"EMA decay must be in (0, 1), got {decay}"
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights; buffers are copied as they are."""
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                value.lerp_(current[name].to(value.dtype), 1.0 - self.decay)
            else:
                value.copy_(current[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, loadable into a model built from the same config."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved with ``state_dict``."""
        self.module.load_state_dict(state)
