"""Paired Bayer-preserving flips/transposes of packed crops against an independent mosaic-domain computation."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.dataset.augment import (
    random_flags,
    transform_packed,
    transform_packed_via_mosaic,
    transform_pair,
)
from denoise.raw.bayer import IDENTITY, PATTERNS, all_transforms, pack_bayer, unpack_bayer

COLOUR = {"R": 0, "G": 1, "B": 2}
SIZE = 5  # packed output size; inputs carry one spare packed pixel


def _coded_mosaic(pattern: str, side: int) -> np.ndarray:
    """Each value encodes its CFA colour (value mod 3) and a unique site number (value // 3)."""
    cell = np.array([COLOUR[c] for c in pattern]).reshape(2, 2)
    colour = np.tile(cell, (side // 2, side // 2))
    return np.arange(side * side).reshape(side, side) * 3 + colour


def _flip_by_hand(mosaic: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """Transpose, then left-right, then up-down, written with plain slicing."""
    out = mosaic.T if transpose else mosaic
    out = out[:, ::-1] if hflip else out
    return out[::-1, :] if vflip else out


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
def test_transform_keeps_the_cfa_phase_and_equals_the_mosaic_operation(pattern, flags):
    mosaic = _coded_mosaic(pattern, 2 * SIZE + 2)
    out = transform_packed(pack_bayer(mosaic, pattern), pattern, flags, SIZE)
    assert out.shape == (4, SIZE, SIZE)
    # Phase: every packed channel still holds only its own colour, R, G, G, B.
    assert [np.unique(out[c] % 3).tolist() for c in range(4)] == [[0], [1], [1], [2]]
    # Content: the result is the hand-flipped mosaic shifted by at most one site in each direction.
    result = unpack_bayer(out, pattern)
    flipped = _flip_by_hand(mosaic, *flags)
    shifts = [(dy, dx) for dy in (0, 1) for dx in (0, 1)
              if np.array_equal(result, flipped[dy : dy + 2 * SIZE, dx : dx + 2 * SIZE])]
    assert len(shifts) == 1
    if flags == IDENTITY:
        assert shifts == [(0, 0)]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
def test_packed_gather_equals_the_mosaic_domain_operation(pattern, flags):
    packed = np.random.default_rng(0).random((2, 3, 4, SIZE + 1, SIZE + 1)).astype(np.float32)
    fast = transform_packed(packed, pattern, flags, SIZE)
    assert fast.shape == (2, 3, 4, SIZE, SIZE) and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, transform_packed_via_mosaic(packed, pattern, flags, SIZE))


@pytest.mark.parametrize("pattern", ["BGGR", "GRBG"])
def test_naive_packed_flip_would_break_the_phase(pattern):
    mosaic = _coded_mosaic(pattern, 2 * SIZE + 2)
    packed = pack_bayer(mosaic, pattern)
    naive = unpack_bayer(packed[:, :, ::-1], pattern)  # flip each packed plane: the trap this module avoids
    flipped = _flip_by_hand(mosaic, True, False, False)
    assert not any(np.array_equal(naive[:, :-1], flipped[:, dx : dx + naive.shape[1] - 1]) for dx in (0, 1))


@pytest.mark.parametrize("flags", all_transforms())
def test_both_crops_of_a_pair_get_the_same_transform(flags):
    rng = np.random.default_rng(0)
    clean = rng.random((4, SIZE + 1, SIZE + 1)).astype(np.float32)
    noisy = clean + 0.25
    out_noisy, out_clean = transform_pair(noisy, clean, "BGGR", flags, SIZE)
    np.testing.assert_array_equal(out_clean, transform_packed(clean, "BGGR", flags, SIZE))
    np.testing.assert_allclose(out_noisy - out_clean, 0.25, atol=1e-6)


def test_random_flags_draw_all_eight_uniformly():
    rng = np.random.default_rng(0)
    draws = [random_flags(rng) for _ in range(8000)]
    counts = [draws.count(f) for f in all_transforms()]
    assert min(counts) > 850 and max(counts) < 1150
