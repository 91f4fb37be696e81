"""A noise-aware NAFNet that reads its noise level off the frame it is given: what a submission's ``network.py`` runs.

The project's own inference estimates the level once per frame and then tiles (``denoise.inference``); this class
does the same on a whole frame in one call, so a judge holding only ``network.py`` and ``model.pth`` reproduces
the submitted frames. It imports only torch, the standard library and two torch-only modules of this project
(``denoise.model.nafnet`` and three of ``denoise.raw``); ``network.py`` is these files one after the other, these
imports removed (``denoise.model.standalone``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from denoise.model.nafnet import NAFNet, noise_level_map
from denoise.raw.noise_estimation import WINDOW, NoiseParams, estimate_frame_noise
from denoise.raw.texture_check import texture_std_scale


class SelfEstimatingNAFNet(NAFNet):
    """NAFNet that takes the normalised packed planes (N, 4, H, W) alone and, when noise-aware, estimates each
    frame's noise level from that frame (``estimate_frame_noise`` with ``noise_window``), runs the network with
    that level's noise map, and applies the texture check (``texture_std_scale``): a frame whose estimate left
    little read noise is denoised again with the noise std scaled by a factor from ``HEDGE`` down to
    ``texture_scale``, the lower the more its residual follows the image (the estimate read texture as noise).

    ``forward(x, noise=(a, b))`` uses a known level instead (a DNG's NoiseProfile), with no texture check. An input
    that already holds the noise map (N, 4 + noise_channels, H, W) goes straight to the network.
    """

    def __init__(
        self,
        *args: object,
        noise_window: float = WINDOW,
        texture_threshold: float = 0.0,
        texture_scale: float = 1.0,
        texture_read_share: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.noise_window, self.texture_threshold = noise_window, texture_threshold
        self.texture_scale, self.texture_read_share = texture_scale, texture_read_share

    def at_level(self, x: Tensor, params: NoiseParams) -> Tensor:
        """The network's output for image planes ``x`` (N, 4, H, W) at one noise level."""
        return super().forward(torch.cat([x, noise_level_map(x, params.a, params.b)], dim=1))

    def forward(self, x: Tensor, noise: tuple[float, float] | None = None) -> Tensor:
        if self.noise_channels == 0 or x.shape[1] != self.in_channels:
            return super().forward(x)
        outputs = []
        for frame in x:  # one level per frame
            params = NoiseParams(*noise) if noise is not None else estimate_frame_noise(frame, self.noise_window)
            y = self.at_level(frame[None], params)
            factor = 1.0 if noise is not None else texture_std_scale(
                frame, y[0], params, self.texture_threshold, self.texture_read_share, self.texture_scale)
            if factor != 1.0:
                y = self.at_level(frame[None], params.std_scaled(factor))
            outputs.append(y)
        return torch.cat(outputs)
