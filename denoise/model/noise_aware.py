"""The noise-aware network: one wrapper owns how a NAFNet is conditioned on a noise level, and one function is the
test-time flow (read the level off the frame, denoise, check for texture read as noise, denoise again lower).

Training calls the model with each sample's level, inference and validation run ``denoise_blind`` with a tiled
runner, and a submission's ``network.py`` (this file after ``nafnet.py`` and the estimate's files) runs it on
whole frames, so the four cannot drift apart. Torch and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from denoise.model.nafnet import NAFNet
from denoise.raw.noise_estimation import REJECT_SIGMAS, NoiseParams, estimate_frame_noise
from denoise.raw.texture_check import texture_std_scale

NOISE_MAP_GAIN = 10.0  # puts the map's values (about 0.01 to 1 over the competition's noise range) on the image's scale


def noise_level_map(x: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Per-pixel noise std ``sqrt(a*x + b)`` of a normalised (N, C, H, W) input, times ``NOISE_MAP_GAIN``.

    ``a`` and ``b`` are floats or (N,) tensors, one noise level per sample. The noisy value stands in for the
    clean one, clipped to [0, 1], since at test time only the noisy frame is known.
    """
    assert x.ndim == 4, f"expected (N, C, H, W), got {tuple(x.shape)}"
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)  # (N or 1, 1, 1, 1)
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    assert a.shape[0] in (1, x.shape[0]) and b.shape[0] in (1, x.shape[0]), "one (a, b) per sample or one for all"
    return NOISE_MAP_GAIN * torch.sqrt(a * x.clamp(0.0, 1.0) + b)


def denoise_blind(
    packed: Tensor,
    run: Callable[[NoiseParams], Tensor],
    window: float,
    texture_threshold: float,
    texture_read_share: float,
    texture_scale: float,
) -> Tensor:
    """A normalised packed frame (4, h, w) denoised at the level read off it alone: ``run(level)`` denoises the
    frame at a level (whole or tiled), returning (4, h, w).

    The level is ``estimate_frame_noise`` with ``window``; then the texture check (``texture_std_scale``): where
    the estimate left little read noise and what the network removed follows the image, the estimate read texture
    as noise, and the frame is denoised again with the std lowered (threshold 0 turns the check off).
    """
    params = estimate_frame_noise(packed.float(), window)  # float32, as network.py sees it
    y = run(params)
    factor = texture_std_scale(packed, y, params, texture_threshold, texture_read_share, texture_scale)
    return y if factor == 1.0 else run(params.std_scaled(factor))


class NoiseAwareNAFNet(NAFNet):
    """A NAFNet that reads a per-pixel noise-std map (``noise_level_map``) beside the image planes.

    ``forward(x, noise=(a, b))`` runs it at a given level (floats, or (N,) tensors: one per sample, as in
    training); ``forward(x)`` reads each frame's level off the frame itself (``denoise_blind`` on the whole frame,
    with this model's ``noise_window`` and texture check), which is what a judge's ``network.py`` runs. An input
    that already holds the map (N, 4 + noise_channels, H, W) goes straight to the network.
    """

    def __init__(
        self,
        *args: object,
        noise_window: float = REJECT_SIGMAS,
        texture_threshold: float = 0.0,
        texture_scale: float = 1.0,
        texture_read_share: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        assert self.noise_channels > 0, "a noise-aware NAFNet needs noise_channels > 0"
        self.noise_window, self.texture_threshold = noise_window, texture_threshold
        self.texture_scale, self.texture_read_share = texture_scale, texture_read_share

    def forward(self, x: Tensor, noise: tuple[Tensor | float, Tensor | float] | None = None) -> Tensor:
        if x.shape[1] != self.in_channels:
            assert noise is None, "an input that holds its noise map takes no noise level"
            return super().forward(x)
        if noise is not None:
            return super().forward(torch.cat([x, noise_level_map(x, *noise)], dim=1))
        outputs = []
        for frame in x:  # one level per frame

            def whole(params: NoiseParams, frame: Tensor = frame) -> Tensor:
                return self(frame[None], noise=params)[0]

            outputs.append(self.at_estimated_level(frame, whole)[None])
        return torch.cat(outputs)

    def at_estimated_level(self, packed: Tensor, run: Callable[[NoiseParams], Tensor]) -> Tensor:
        """``denoise_blind`` with this model's window and texture check."""
        return denoise_blind(packed, run, self.noise_window, self.texture_threshold, self.texture_read_share,
                             self.texture_scale)  # fmt: skip

    def at_level(self, params: NoiseParams) -> Callable[[Tensor], Tensor]:
        """The network with one level fixed: (N, 4, h, w) image planes in, the same out, for tiling and TTA."""
        return lambda x: self(x, noise=params)
