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


def removed_structure(noisy: np.ndarray, denoised: np.ndarray) -> float:
    """How closely what a denoiser removed follows the structure of what it kept, for packed (4, h, w) frames.

    The mean over the planes of |corr(noisy - denoised, Laplacian of denoised)|. A residual of noise alone is
    unrelated to the image (near 0 when the level was right); when the level was read too high off fine texture,
    the network removes texture too, and the residual follows the image's edges. On the demo's validation set the
    first stays below 0.25 on every frame read right and exceeds 0.35 on each textured frame read 1.5-4x too high.
    """
    n, d = np.asarray(noisy, dtype=np.float64), np.asarray(denoised, dtype=np.float64)
    assert n.shape == d.shape and n.ndim == 3 and min(n.shape[1:]) >= 3, f"bad shapes {n.shape}, {d.shape}"
    residual = (n - d)[:, 1:-1, 1:-1]
    core = d[:, 1:-1, 1:-1]
    laplacian = 4 * core - d[:, :-2, 1:-1] - d[:, 2:, 1:-1] - d[:, 1:-1, :-2] - d[:, 1:-1, 2:]
    values = []
    for r, lap in zip(residual, laplacian, strict=True):
        r, lap = r - r.mean(), lap - lap.mean()
        norm = np.sqrt((r * r).sum() * (lap * lap).sum())
        values.append(abs(float((r * lap).sum() / norm)) if norm > 0 else 0.0)
    return float(np.mean(values))


def read_noise_share(params: NoiseParams, level: float) -> float:
    """The read-noise term's share ``b / (a * level + b)`` of the noise variance at the normalised ``level``.

    Every sensor has read noise, a few percent of the total at a frame's mean level even at its lowest ISO. A level
    read off fine texture, whose variance grows with the square of the brightness, is fitted by a line through the
    origin or below it, so ``b`` comes out near 0: on the demo's validation set every frame whose std was read 1.4x
    or more too high had a share under 0.09, and every frame at the two highest levels read within 1.2x over 0.11.
    """
    total = params.a * max(level, 0.0) + params.b
    return params.b / total if total > 0 else 1.0


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
        array = packed.numpy() if isinstance(packed, torch.Tensor) else packed
        params = estimate_frame_noise(np.asarray(array, dtype=np.float32), window)
    return NoiseConditioned(model, params)
