"""Noise-aware networks at test time: the frame's noise level estimated from the noisy frame alone, then fixed.

A network built with ``noise_channels`` > 0 reads a per-pixel noise-std map beside the image. The competition
gives no noise parameters, so inference reads ``a`` and ``b`` off the noisy frame with ``estimate_noise`` and
wraps the network so that tiling and TTA still see a plain (N, 4, h, w) -> (N, 4, h, w) model: the map is a
per-pixel function of the input, so it commutes with tiling, flips and transposes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from denoise.model.nafnet import noise_level_map
from denoise.raw.noise_estimation import WINDOW, NoiseParams, estimate_frame_noise


def needs_noise_level(model: nn.Module) -> bool:
    """Whether ``model`` (or the network inside a wrapper) reads a noise-level map."""
    return getattr(model, "noise_channels", 0) > 0


class NoiseConditioned(nn.Module):
    """A noise-aware network with one frame's noise level fixed: (N, C, h, w) image in, (N, C, h, w) out."""

    def __init__(self, net: nn.Module, params: NoiseParams) -> None:
        super().__init__()
        self.net = net
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise_map = noise_level_map(x, self.params.a, self.params.b)  # (N, C, h, w)
        return self.net(torch.cat([x, noise_map], dim=1))


def condition_on_noise(
    model: nn.Module, packed: np.ndarray | torch.Tensor, params: NoiseParams | None = None, window: float = WINDOW
) -> nn.Module:
    """``model`` itself if blind, else wrapped with the noise level of the normalised (4, h, w) ``packed`` frame.

    ``params`` overrides the estimate (an oracle, for experiments); by default it comes from the frame alone,
    estimated with the ``window`` the model was trained with (``data.noise_estimate_window``).
    """
    if not needs_noise_level(model):
        return model
    if params is None:
        params = estimate_frame_noise(torch.as_tensor(packed).float(), window)  # float32, as network.py sees it
    return NoiseConditioned(model, params)
