"""Exponential moving average of a model's weights, used for validation and export when enabled."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """A frozen copy of ``model`` whose floating-point weights follow ``decay * ema + (1 - decay) * model``.

    PyTorch's ``AveragedModel`` does the averaging with one foreach ``lerp_`` over all parameters; buffers (the
    network has none today) are copied as they are. ``state_dict`` is the plain module's, so checkpoints load into
    a model built from the config.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        assert 0.0 < decay < 1.0, f"EMA decay must be in (0, 1), got {decay}"
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.averaged.eval().requires_grad_(False)
        # AveragedModel copies the weights at its first update; the copy made here already holds them. Its counter
        # stays on the CPU, so reading it never waits for a GPU.
        self.averaged.n_averaged.fill_(1)

    @property
    def module(self) -> nn.Module:
        """The averaged network, ready to evaluate."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights; buffers are copied as they are."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, loadable into a model built from the same config."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved with ``state_dict``."""
        self.module.load_state_dict(state)
