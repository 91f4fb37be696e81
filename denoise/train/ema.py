"""Exponential moving average of a model's weights, used for validation and export when enabled."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMA:
    """A frozen copy of ``model`` whose floating-point weights follow ``decay * ema + (1 - decay) * model``.

    The averaging is PyTorch's own EMA update (``swa_utils.get_ema_multi_avg_fn``: one foreach ``lerp_`` over all
    parameters), called directly rather than through ``AveragedModel``, whose update copies its CPU step counter
    to the GPU every step, and that copy makes the host wait for the device. Buffers (the network has none today)
    are copied as they are. ``state_dict`` is the plain module's, so checkpoints load into a model built from the
    config.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        assert 0.0 < decay < 1.0, f"EMA decay must be in (0, 1), got {decay}"
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._average = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights; buffers are copied as they are."""
        self._average(list(self.module.parameters()), [p.detach() for p in model.parameters()], None)
        for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, loadable into a model built from the same config."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved with ``state_dict``."""
        self.module.load_state_dict(state)
