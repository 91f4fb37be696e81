"""Bayer packing, normalisation and phase-preserving transforms, checked on colour-coded mosaics."""

import numpy as np
import pytest
import torch

from denoise.raw.bayer import (
    PATTERNS,
    all_transforms,
    bayer_transform,
    bayer_transform_inverse,
    channel_offsets,
    denormalize,
    normalize,
    pack_bayer,
    transformed_pattern,
    unpack_bayer,
)

CODE = {"R": 0, "G": 1, "B": 2}


def _colour_mosaic(pattern: str, height: int, width: int) -> np.ndarray:
    """A mosaic whose every value is the CFA colour of its site: R=0, G=1, B=2."""
    rows, cols = np.mgrid[0:height, 0:width]
    cell = np.array([CODE[c] for c in pattern]).reshape(2, 2)
    return cell[rows % 2, cols % 2]


def _site_ids(height: int, width: int) -> np.ndarray:
    return np.arange(height * width, dtype=np.int64).reshape(height, width)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pack_puts_each_colour_in_its_canonical_channel(pattern):
    packed = pack_bayer(_colour_mosaic(pattern, 6, 8), pattern)
    assert packed.shape == (4, 3, 4)
    assert [np.unique(packed[c]).tolist() for c in range(4)] == [[0], [1], [1], [2]]
    # Gr shares rows with R; Gb shares rows with B.
    ids = _site_ids(6, 8)
    p = pack_bayer(ids, pattern)
    assert np.array_equal(p[0] // 8, p[1] // 8) and np.array_equal(p[3] // 8, p[2] // 8)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("as_torch", [False, True])
def test_pack_unpack_round_trip_with_leading_dims(pattern, as_torch):
    mosaic = np.random.default_rng(0).integers(0, 2**16, size=(2, 3, 8, 10)).astype(np.int64)
    x = torch.from_numpy(mosaic) if as_torch else mosaic
    back = unpack_bayer(pack_bayer(x, pattern), pattern)
    assert np.array_equal(np.asarray(back), mosaic)


def test_canonical_packing_unpacks_as_rggb():
    ids = _site_ids(4, 6)
    for pattern in PATTERNS:
        packed = pack_bayer(_colour_mosaic(pattern, 4, 6), pattern)
        assert np.array_equal(unpack_bayer(packed, "RGGB"), _colour_mosaic("RGGB", 4, 6))
    assert channel_offsets("RGGB") == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert np.array_equal(unpack_bayer(pack_bayer(ids, "GBRG"), "GBRG"), ids)


def test_pack_refuses_odd_sizes():
    with pytest.raises(AssertionError, match="even"):
        pack_bayer(np.zeros((5, 4)), "BGGR")


def test_normalize_uses_per_site_black_levels():
    black = [1000, 1010, 1020, 1030]  # row-major over the 2x2 cell
    mosaic = np.array([[1000, 1010], [1020, 1030]] * 2, dtype=np.uint16).reshape(4, 2)
    assert np.allclose(normalize(mosaic, black, 2000), 0.0)
    white = np.full((4, 4), 2000, dtype=np.uint16)
    assert np.allclose(normalize(white, black, 2000), 1.0)
    t = normalize(torch.from_numpy(white.astype(np.int32)), black, 2000)
    assert t.dtype == torch.float32 and torch.allclose(t, torch.ones(4, 4))


def test_denormalize_inverts_normalize_and_clips():
    rng = np.random.default_rng(1)
    mosaic = rng.integers(1024, 16384, size=(6, 6)).astype(np.uint16)
    assert np.array_equal(denormalize(normalize(mosaic, 1024, 16383), 1024, 16383), mosaic)
    out = denormalize(np.array([[-0.5, 2.0], [0.49999 / 15359, 0.5]]), 1024, 16383)
    assert out.dtype == np.uint16
    assert out.tolist() == [[1024, 16383], [1024, round(1024 + 0.5 * 15359)]]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_bayer_transform_keeps_cfa_phase(pattern, flags, mode):
    out = bayer_transform(_colour_mosaic(pattern, 6, 8), pattern, *flags, mode=mode)
    assert np.array_equal(out, _colour_mosaic(pattern, *out.shape))
    if mode == "crop":
        assert out.shape[0] <= 8 and out.shape[1] <= 8


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
def test_bayer_transform_moves_each_site_like_the_plain_geometric_op(pattern, flags):
    hflip, vflip, transpose = flags
    ids = _site_ids(6, 8)
    plain = ids.T if transpose else ids
    plain = plain[:, ::-1] if hflip else plain
    plain = plain[::-1] if vflip else plain
    out = bayer_transform(ids, pattern, *flags, mode="crop")
    # The crop is the plain transform shifted by at most one site per axis, so it is a window of it.
    windows = np.lib.stride_tricks.sliding_window_view(plain, out.shape)
    assert any(np.array_equal(w, out) for w in windows.reshape(-1, *out.shape))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", all_transforms())
def test_bayer_transform_pad_mode_inverts_exactly(pattern, flags):
    mosaic = np.random.default_rng(2).integers(0, 4096, size=(2, 6, 8))
    for x in (mosaic, torch.from_numpy(mosaic)):
        back = bayer_transform_inverse(bayer_transform(x, pattern, *flags, mode="pad"), pattern, *flags)
        assert np.array_equal(np.asarray(back), mosaic)


def test_transformed_pattern_known_values():
    assert transformed_pattern("BGGR", True, False, False) == "GBRG"
    assert transformed_pattern("BGGR", False, True, False) == "GRBG"
    assert transformed_pattern("BGGR", False, False, True) == "BGGR"
    assert transformed_pattern("GRBG", False, False, True) == "GBRG"
    assert len(set(all_transforms())) == 8
