"""Paired Bayer-preserving augmentation of packed crops.

Packed channels must never be flipped spatially on their own: that moves every sample by half a CFA cell.
Instead the crop is unpacked to its mosaic, flipped or transposed there, cropped by one row/column where the
CFA phase moved (``bayer_transform`` mode "crop"), and packed again; the fast path replays that operation as a
gather whose index map is the mosaic-domain operation applied to sample indices. Noisy and clean are
given the same flags, so the pair always receives the same operation.
"""

from __future__ import annotations

import functools

import numpy as np

from denoise.raw.bayer import IDENTITY, Flags, all_transforms, bayer_transform, pack_bayer, unpack_bayer


def random_flags(rng: np.random.Generator) -> Flags:
    """One of the eight flips/transposes, uniformly."""
    return all_transforms()[int(rng.integers(8))]


def transform_packed_via_mosaic(packed: np.ndarray, pattern: str, flags: Flags, size: int) -> np.ndarray:
    """Bayer-preserving transform of a packed square crop with one spare packed pixel. (..., 4, s+1, s+1) -> s.

    The reference implementation: unpack to the mosaic, flip/transpose there, re-phase to ``pattern`` by
    dropping a row/column (``bayer_transform`` mode "crop"), pack again. A crop without the spare pixel cannot
    be re-phased, hence the +1.
    """
    expected = (4, size + 1, size + 1)
    assert packed.shape[-3:] == expected, f"expected (..., {expected}), got {packed.shape}"
    mosaic = unpack_bayer(packed, pattern)  # (..., 2s+2, 2s+2)
    moved = bayer_transform(mosaic, pattern, *flags, mode="crop")  # (..., 2s or 2s+2, 2s or 2s+2)
    return np.ascontiguousarray(pack_bayer(moved[..., : 2 * size, : 2 * size], pattern))


@functools.lru_cache(maxsize=256)
def _gather_index(pattern: str, flags: Flags, size: int) -> np.ndarray:
    """For each output sample, its flat index in the input crop: the mosaic-domain operation applied to indices."""
    ids = np.arange(4 * (size + 1) ** 2).reshape(4, size + 1, size + 1)
    return transform_packed_via_mosaic(ids, pattern, flags, size)  # (4, s, s)


def transform_packed(packed: np.ndarray, pattern: str, flags: Flags, size: int) -> np.ndarray:
    """Same result as ``transform_packed_via_mosaic``, as one gather through a cached index map (much faster)."""
    expected = (4, size + 1, size + 1)
    assert packed.shape[-3:] == expected, f"expected (..., {expected}), got {packed.shape}"
    if flags == IDENTITY:
        return np.ascontiguousarray(packed[..., :size, :size])
    flat = packed.reshape(*packed.shape[:-3], -1)
    return np.take(flat, _gather_index(pattern, tuple(flags), size), axis=-1)  # (..., 4, s, s)


def transform_pair(
    noisy: np.ndarray, clean: np.ndarray, pattern: str, flags: Flags, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``transform_packed`` applied identically to both crops of a pair. Each (4, s+1, s+1) -> (4, s, s)."""
    assert noisy.shape == clean.shape, f"pair crops differ in shape: {noisy.shape} vs {clean.shape}"
    return transform_packed(noisy, pattern, flags, size), transform_packed(clean, pattern, flags, size)
