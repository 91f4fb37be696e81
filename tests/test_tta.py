"""x8 Bayer-preserving self-ensemble: views keep the CFA phase, invert exactly, and average aligned pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from denoise.inference.tiling import tile_grid
from denoise.inference.tta import count_tiles, denoise_mosaic, self_ensemble, transforms_for, view_shape
from denoise.raw.bayer import PATTERNS, all_transforms, bayer_transform, bayer_transform_inverse, pack_bayer


def _colour_map(pattern: str, height: int, width: int) -> np.ndarray:
    """Each mosaic position's colour letter, an independent way to see the CFA phase."""
    cell = np.array(list(pattern)).reshape(2, 2)
    return np.tile(cell, (height // 2, width // 2))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
def test_view_keeps_phase_and_inverts_exactly(pattern: str, flags: tuple[bool, bool, bool]) -> None:
    height, width = 6, 10
    colours = _colour_map(pattern, height, width)
    codes = np.vectorize("RGB".index)(colours)  # colour of every sample, moved along with the samples
    view = bayer_transform(codes, pattern, *flags, mode="pad")
    assert view.shape == view_shape(height, width, pattern, flags)
    assert (view == np.vectorize("RGB".index)(_colour_map(pattern, *view.shape))).all()
    mosaic = torch.rand(height, width)
    restored = bayer_transform_inverse(bayer_transform(mosaic, pattern, *flags, mode="pad"), pattern, *flags)
    assert torch.equal(restored, mosaic)


def test_eight_distinct_transforms_identity_first() -> None:
    assert transforms_for(False) == ((False, False, False),)
    flags = transforms_for(True)
    assert len(set(flags)) == 8 and flags[0] == (False, False, False)


class _ChannelScale(nn.Module):
    """Per-colour gain: equivariant to any spatial transform, but sensitive to which colour is in which channel.

    The two greens share a gain because a transpose rightly exchanges them (Gr's row neighbour becomes a column one).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.tensor([1.0, 2.0, 2.0, 4.0]).view(1, 4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


@pytest.mark.parametrize("pattern", PATTERNS)
def test_tta_of_equivariant_model_equals_single_pass(pattern: str) -> None:
    # If any view had a shifted phase, colours would land in the wrong channel and get the wrong gain.
    mosaic = torch.rand(12, 16)
    single = denoise_mosaic(_ChannelScale(), mosaic, pattern, tile=0, overlap=0)
    ensemble = denoise_mosaic(_ChannelScale(), mosaic, pattern, tile=4, overlap=2, transforms=transforms_for(True))
    expected = pack_bayer(mosaic, pattern) * _ChannelScale().gain[0]
    assert torch.allclose(pack_bayer(single, pattern), expected, atol=1e-6)
    assert torch.allclose(ensemble, single, atol=1e-6)


def test_tta_averages_over_views() -> None:
    # A model that adds a ramp along packed x is not flip-equivariant; the ensemble must average 8 different views.
    class Ramp(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.arange(x.shape[-1], dtype=x.dtype) * 0.01

    mosaic = torch.zeros(8, 8)
    single = denoise_mosaic(Ramp(), mosaic, "RGGB", tile=0, overlap=0)
    ensemble = denoise_mosaic(Ramp(), mosaic, "RGGB", tile=0, overlap=0, transforms=transforms_for(True))
    assert torch.allclose(single[0, ::2], torch.arange(4) * 0.01)
    # Flipped views run the ramp the other way, so the average is nearly flat across the frame.
    assert ensemble.amax() - ensemble.amin() < 0.5 * (single.amax() - single.amin())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_self_ensemble_of_numpy_denoiser_matches_torch_and_explicit_views(pattern: str) -> None:
    # A classical (NumPy) packed denoiser goes through the same views as the model: the per-colour gain is
    # equivariant, so all eight views agree with one pass; a ramp is not, so the mean must equal the average of
    # the views built here with plain NumPy flips of the mosaic and a one-sample reflected shift.
    gain = np.array([1.0, 2.0, 2.0, 4.0]).reshape(4, 1, 1)
    mosaic = np.random.default_rng(1).random((12, 16))
    ensemble = self_ensemble(lambda p: p * gain, mosaic, pattern, transforms_for(True))
    assert isinstance(ensemble, np.ndarray) and ensemble.dtype == np.float64
    np.testing.assert_allclose(pack_bayer(ensemble, pattern), pack_bayer(mosaic, pattern) * gain, atol=1e-12)
    torch_out = self_ensemble(lambda p: p * torch.from_numpy(gain).float(), torch.from_numpy(mosaic).float(),
                              pattern, transforms_for(True))
    np.testing.assert_allclose(torch_out.numpy(), ensemble, atol=1e-5)


def test_self_ensemble_mean_over_views_of_a_ramp() -> None:
    # RGGB 8x8 zeros; the "denoiser" adds 0.01 * packed column. The hflip view is the mosaic flipped and padded
    # by one sample per side (10 wide, 5 packed columns), so mosaic column c sits at view column 8 - c. An even
    # column c (R, Gb) lands in packed column (8 - c) / 2: identity gives c/2 * 0.01, the flip (8 - c)/2 * 0.01,
    # mean 0.02. An odd column (Gr, B) lands in packed column (7 - c) / 2 there and (c - 1) / 2 here: mean 0.015.
    def ramp(p: np.ndarray) -> np.ndarray:
        return p + np.arange(p.shape[-1]) * 0.01

    out = self_ensemble(ramp, np.zeros((8, 8)), "RGGB", [(False, False, False), (True, False, False)])
    np.testing.assert_allclose(out[:, 0::2], 0.02, atol=1e-12)
    np.testing.assert_allclose(out[:, 1::2], 0.015, atol=1e-12)


def test_count_tiles_matches_views() -> None:
    transforms = transforms_for(True)
    expected = 0
    for flags in transforms:
        h, w = view_shape(20, 30, "BGGR", flags)
        expected += len(tile_grid(h // 2, w // 2, 8, 2))
    assert count_tiles(20, 30, "BGGR", 8, 2, transforms) == expected
    assert count_tiles(20, 30, "BGGR", 0, 0, transforms) == 8
