"""NAFNet U-Net ("Simple Baselines for Image Restoration", Chen et al., ECCV 2022) for packed Bayer frames, and
its noise-aware form: one wrapper owns how the network is conditioned on a noise level, and one function is the
test-time flow (read the level off the frame, denoise, check for texture read as noise, denoise again lower).

Training calls the noise-aware model with each sample's level, inference and validation run ``denoise_blind``
with a tiled runner, and a submission's ``network.py`` (``raw/noise_estimation.py`` then this file, verbatim but
for the import of the first; ``denoise.model.standalone``) runs it on whole frames, so they cannot drift apart.
Torch and the standard library only. Parameter names follow the published network so its checkpoints load.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from denoise.raw.noise_estimation import REJECT_SIGMAS, NoiseParams, estimate_frame_noise, texture_std_scale


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of (N, C, H, W) with a per-channel affine.

    The default path runs PyTorch's fused layer-norm kernel on a channels-last view (no copy when the tensor is
    stored channels-last); ``explicit=True`` spells out mean and variance, the slow reference path.
    """

    def __init__(self, channels: int, eps: float = 1e-6, explicit: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.channels = channels  # a plain int, so tracing exporters see a constant normalized shape
        self.eps = eps
        self.explicit = explicit

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected (N, {self.channels}, H, W)"
        if self.explicit:
            mu = x.mean(1, keepdim=True)
            var = (x - mu).pow(2).mean(1, keepdim=True)
            y = (x - mu) / torch.sqrt(var + self.eps)
            return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)  # (N, H, W, C)
        return y.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """Split the channels into two halves and multiply them: a gate with no activation function."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def local_mean(x: Tensor, window: tuple[int, int]) -> Tensor:
    """Mean of each channel over a window around every pixel; at the borders the window slides inside the frame.

    A window at least as large as the frame gives the global mean everywhere. Computed from an integral image in
    float64, so the cost does not depend on the window size.
    """
    assert x.ndim == 4, "expected (N, C, H, W)"
    h, w = x.shape[-2:]
    kh, kw = min(window[0], h), min(window[1], w)
    s = F.pad(x.double().cumsum(2).cumsum(3), (1, 0, 1, 0))  # (N, C, H+1, W+1), s[i, j] = sum of x[:i, :j]
    box = s[..., kh:, kw:] - s[..., :-kh, kw:] - s[..., kh:, :-kw] + s[..., :-kh, :-kw]  # (N, C, H-kh+1, W-kw+1)
    mean = (box / (kh * kw)).to(x.dtype)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return F.pad(mean, (left, kw - 1 - left, top, kh - 1 - top), mode="replicate")


class SimplifiedChannelAttention(nn.Sequential):
    """Average pool, 1x1 conv, multiply: channel attention with no reduction and no sigmoid.

    A Sequential (pool, conv) so the parameters are named ``sca.1.*`` as in the published network. With
    ``window`` > 0 and an input larger than it, the statistics come from a local window instead of the whole
    frame (test-time local statistics), so a large frame sees the same context size as a training crop.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.window = 0

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.window > 0 and (h > self.window or w > self.window):
            pooled = local_mean(x, (self.window, self.window))  # (N, C, H, W)
        else:
            pooled = self[0](x)  # (N, C, 1, 1)
        return x * self[1](pooled)


class NAFBlock(nn.Module):
    """Two residual halves: norm, expand, depthwise 3x3, gate, attention, project; then norm, expand, gate, project.

    Each half is scaled by a zero-initialised per-channel factor (``beta``, ``gamma``) so the block starts as
    the identity.
    """

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        c, c2 = channels, 2 * channels
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, c2, 1)
        self.conv2 = nn.Conv2d(c2, c2, 3, padding=1, groups=c2)
        self.sg = SimpleGate()
        self.sca = SimplifiedChannelAttention(c)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, c2, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.dropout1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.sg(self.conv2(self.conv1(self.norm1(x))))  # (N, C, H, W)
        y = self.dropout1(self.conv3(self.sca(y)))
        x = x + y * self.beta
        y = self.conv5(self.sg(self.conv4(self.norm2(x))))
        return x + self.dropout2(y) * self.gamma


def _stage(channels: int, blocks: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(channels, dropout) for _ in range(blocks)])


class NAFNet(nn.Module):
    """U-Net of NAFBlocks that predicts the clean image as input plus a learned residual.

    Input (N, in_channels + noise_channels, H, W), output (N, in_channels, H, W); any H, W works (padded to a
    multiple of 2^levels, then cropped). With ``noise_channels`` > 0 the input's last channels are a noise-level
    map (``noise_level_map``, which ``NoiseAwareNAFNet`` builds), and the residual goes to the image only.
    ``scale_residual`` multiplies the learned residual by that map, so the network predicts the noise in units of
    its local std: a frame with almost no noise is left almost unchanged without the network having to learn it.
    """

    def __init__(
        self,
        in_channels: int = 4,
        width: int = 32,
        enc_blocks: tuple[int, ...] = (2, 2, 4, 8),
        middle_blocks: int = 12,
        dec_blocks: tuple[int, ...] = (2, 2, 2, 2),
        dropout: float = 0.0,
        noise_channels: int = 0,
        scale_residual: bool = False,
    ) -> None:
        super().__init__()
        assert len(enc_blocks) == len(dec_blocks), "encoder and decoder need the same number of levels"
        assert not scale_residual or noise_channels == in_channels, "scale_residual needs one noise map per channel"
        self.in_channels, self.noise_channels, self.scale_residual = in_channels, noise_channels, scale_residual
        self.intro = nn.Conv2d(in_channels + noise_channels, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        chan = width
        for n in enc_blocks:
            self.encoders.append(_stage(chan, n, dropout))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = _stage(chan, middle_blocks, dropout)
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            # A 1x1 conv to 2C channels then PixelShuffle(2) gives C/2 channels at twice the resolution.
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(_stage(chan, n, dropout))
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        self.multiple = 2 ** len(enc_blocks)

    def set_local_window(self, window: int) -> None:
        """Pool channel-attention statistics over ``window`` input pixels (scaled per level); 0 = whole frame."""
        levels = len(self.encoders)
        stages = [(s, i) for i, s in enumerate(self.encoders)] + [(self.middle_blks, levels)]
        stages += [(s, levels - 1 - i) for i, s in enumerate(self.decoders)]
        for stage, level in stages:
            for block in stage:
                block.sca.window = max(1, round(window / 2**level)) if window > 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 4 and x.shape[1] == self.intro.in_channels, f"expected (N, {self.intro.in_channels}, H, W)"
        h, w = x.shape[-2:]
        m = self.multiple
        inp = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m))  # (N, C, H', W'), H' and W' multiples of m
        y = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            y = encoder(y)
            skips.append(y)
            y = down(y)
        y = self.middle_blks(y)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            y = decoder(up(y) + skip)
        y = self.ending(y)  # (N, in_channels, H', W'), the residual
        if self.scale_residual:
            y = y * inp[:, self.in_channels :]
        y = y + inp[:, : self.in_channels]
        return y[..., :h, :w]


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
