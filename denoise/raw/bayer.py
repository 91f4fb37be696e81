"""Pure Bayer-mosaic maths: normalisation, packing to 4 channels, and CFA-phase-preserving flips.

Every function works on NumPy arrays and on torch tensors with any leading dimensions. A CFA pattern is a
4-letter string over R/G/B naming the 2x2 phase at the mosaic's origin in row-major order: "BGGR" means
B at (0, 0), G at (0, 1), G at (1, 0), R at (1, 1).

Packed tensors always use the canonical channel order R, Gr, Gb, B (Gr: the green sharing rows with red)
whatever the file's pattern, so one network serves every phase. Packing needs even height and width; a frame
with an odd dimension is packed over its largest even region (see ``even_shape``) and callers keep the last
row or column as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
CHANNELS = ("R", "Gr", "Gb", "B")

Array = Any  # np.ndarray or torch.Tensor; the functions below keep the type they are given
Flags = tuple[bool, bool, bool]  # (hflip, vflip, transpose) of one dihedral transform
IDENTITY: Flags = (False, False, False)


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is one of the four 2x2 Bayer phases, else raise ValueError."""
    if pattern not in PATTERNS:
        raise ValueError(f"not a 2x2 Bayer pattern: {pattern!r} (expected one of {', '.join(PATTERNS)})")
    return pattern


def channel_offsets(pattern: str) -> tuple[tuple[int, int], ...]:
    """(row, col) inside the 2x2 cell of the R, Gr, Gb and B samples for ``pattern``."""
    check_pattern(pattern)
    red = pattern.index("R")
    blue = pattern.index("B")
    red_row = red // 2
    greens = [i for i, c in enumerate(pattern) if c == "G"]
    green_r = next(i for i in greens if i // 2 == red_row)
    green_b = next(i for i in greens if i // 2 != red_row)
    return tuple((i // 2, i % 2) for i in (red, green_r, green_b, blue))


def even_shape(height: int, width: int) -> tuple[int, int]:
    """The largest even (height, width) not above the given one."""
    return height - height % 2, width - width % 2


def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(xs: list[Array], axis: int) -> Array:
    return torch.stack(xs, dim=axis) if _is_torch(xs[0]) else np.stack(xs, axis=axis)


def _cat(xs: list[Array], axis: int) -> Array:
    return torch.cat(xs, dim=axis) if _is_torch(xs[0]) else np.concatenate(xs, axis=axis)


def _flip(x: Array, axis: int) -> Array:
    return torch.flip(x, dims=(axis,)) if _is_torch(x) else np.flip(x, axis=axis)


def _transpose_last2(x: Array) -> Array:
    return x.transpose(-2, -1) if _is_torch(x) else np.swapaxes(x, -2, -1)


def cfa_black(black_level: Array | float, dtype: Any = np.float32) -> np.ndarray:
    """Black level as a (2, 2) array aligned with the mosaic's CFA phase, from a scalar, 4 values or (2, 2)."""
    black = np.asarray(black_level, dtype=dtype)
    if black.size == 1:
        return np.full((2, 2), black.item(), dtype=dtype)
    assert black.size == 4, f"black level needs 1 or 4 values, got {black.shape}"
    return black.reshape(2, 2)


def _tile_cfa(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat a (2, 2) per-CFA-position array over a (height, width) mosaic."""
    return np.tile(values, ((height + 1) // 2, (width + 1) // 2))[:height, :width]


def normalize(mosaic: Array, black_level: Array | float, white_level: float) -> Array:
    """Map raw DN to float32 [0, 1]-ish: (x - black) / (white - black), black per CFA position. (..., H, W)."""
    assert mosaic.ndim >= 2, f"expected (..., H, W), got {tuple(mosaic.shape)}"
    height, width = mosaic.shape[-2:]
    black = _tile_cfa(cfa_black(black_level), height, width)
    scale = np.float32(white_level) - black
    assert (scale > 0).all(), f"white level {white_level} must exceed black level {black_level}"
    if _is_torch(mosaic):
        black_t = torch.from_numpy(black).to(mosaic.device)
        scale_t = torch.from_numpy(scale).to(mosaic.device)
        return (mosaic.to(torch.float32) - black_t) / scale_t
    return (mosaic.astype(np.float32) - black) / scale


def denormalize(x: Array, black_level: Array | float, white_level: float) -> np.ndarray:
    """Inverse of ``normalize``: scale to DN, round to nearest, clip to [black, white], uint16 NumPy. (..., H, W).

    Computed in float64 one CFA position at a time, so a 16-MP frame needs a quarter-frame temporary, not frames of
    tiled black levels.
    """
    assert x.ndim >= 2, f"expected (..., H, W), got {tuple(x.shape)}"
    if _is_torch(x):
        x = x.detach().to(torch.float32).cpu().numpy()
    black, white = cfa_black(black_level, np.float64), float(white_level)
    out = np.empty(x.shape, dtype=np.uint16)
    for r in range(2):
        for c in range(2):
            dn = np.rint(x[..., r::2, c::2].astype(np.float64) * (white - black[r, c]) + black[r, c])
            out[..., r::2, c::2] = clip_to_levels(dn, black[r, c], white)
    return out


def clip_to_levels(mosaic: np.ndarray, black_level: Array | float, white_level: float) -> np.ndarray:
    """DN clipped to [black, white] per CFA position (a fractional black rounded up), as uint16. (..., H, W).

    The competition's outputs must lie in [black, white]; a DNG writer keeps whatever it is given.
    """
    black = np.ceil(cfa_black(black_level, np.float64))
    out = np.empty(mosaic.shape, dtype=np.uint16)
    for r in range(2):
        for c in range(2):
            out[..., r::2, c::2] = np.clip(mosaic[..., r::2, c::2], black[r, c], float(white_level))
    return out


def pack_bayer(mosaic: Array, pattern: str) -> Array:
    """(..., H, W) mosaic with CFA ``pattern`` -> (..., 4, H/2, W/2) in channel order R, Gr, Gb, B."""
    height, width = mosaic.shape[-2:]
    assert height % 2 == 0 and width % 2 == 0, f"packing needs even height and width, got {height}x{width}"
    planes = [mosaic[..., r::2, c::2] for r, c in channel_offsets(pattern)]
    return _stack(planes, axis=-3)


def unpack_bayer(packed: Array, pattern: str) -> Array:
    """(..., 4, h, w) in channel order R, Gr, Gb, B -> (..., 2h, 2w) mosaic with CFA ``pattern``."""
    assert packed.ndim >= 3 and packed.shape[-3] == 4, f"expected (..., 4, h, w), got {tuple(packed.shape)}"
    planes = {offset: packed[..., i, :, :] for i, offset in enumerate(channel_offsets(pattern))}
    rows = [_stack([planes[(r, 0)], planes[(r, 1)]], axis=-1) for r in (0, 1)]  # each (..., h, w, 2)
    cells = _stack(rows, axis=-3)  # (..., h, 2, w, 2)
    shape = (*packed.shape[:-3], 2 * packed.shape[-2], 2 * packed.shape[-1])
    return cells.reshape(shape)


def _geometric(x: Array, hflip: bool, vflip: bool, transpose: bool) -> Array:
    """Transpose, then flip left-right, then flip up-down, over the last two axes."""
    if transpose:
        x = _transpose_last2(x)
    if hflip:
        x = _flip(x, -1)
    if vflip:
        x = _flip(x, -2)
    return x


def _geometric_inverse(x: Array, hflip: bool, vflip: bool, transpose: bool) -> Array:
    """Undo ``_geometric``: flips first, transpose last."""
    if vflip:
        x = _flip(x, -2)
    if hflip:
        x = _flip(x, -1)
    if transpose:
        x = _transpose_last2(x)
    return x


def transformed_pattern(pattern: str, hflip: bool, vflip: bool, transpose: bool) -> str:
    """CFA pattern at the origin after the flips/transpose of an even-sized mosaic with ``pattern``."""
    cell = np.array(list(check_pattern(pattern))).reshape(2, 2)
    moved = _geometric(np.tile(cell, (2, 2)), hflip, vflip, transpose)
    return "".join(moved[:2, :2].ravel())


def _phase_shift(pattern: str, hflip: bool, vflip: bool, transpose: bool) -> tuple[int, int]:
    """Rows and columns by which the transformed mosaic's origin must move to show ``pattern`` again."""
    moved = np.array(list(transformed_pattern(pattern, hflip, vflip, transpose))).reshape(2, 2)
    for dy in (0, 1):
        for dx in (0, 1):
            if "".join(np.roll(moved, (-dy, -dx), axis=(0, 1)).ravel()) == pattern:
                return dy, dx
    raise AssertionError("unreachable: a 2x2 Bayer phase is always a shift of another")


def _pad1(x: Array, axis: int) -> Array:
    """Reflect-pad one sample on both ends of ``axis``; the copy two samples in has the same CFA colour."""
    n = x.shape[axis]
    first = x[..., 1:2, :] if axis == -2 else x[..., :, 1:2]
    last = x[..., n - 2 : n - 1, :] if axis == -2 else x[..., :, n - 2 : n - 1]
    return _cat([first, x, last], axis=axis)


def bayer_transform(
    mosaic: Array, pattern: str, hflip: bool, vflip: bool, transpose: bool, mode: str = "pad"
) -> Array:
    """Flip/transpose a (..., H, W) mosaic and restore its CFA phase ``pattern`` by a one-sample shift.

    mode "crop" drops one row/column at each end where the phase moved (Liu et al. 2019, for training crops);
    mode "pad" reflect-pads one instead, so ``bayer_transform_inverse`` recovers the input exactly (for TTA).
    """
    height, width = mosaic.shape[-2:]
    assert height % 2 == 0 and width % 2 == 0, f"needs even height and width, got {height}x{width}"
    assert mode in ("pad", "crop"), f"mode must be 'pad' or 'crop', got {mode!r}"
    dy, dx = _phase_shift(pattern, hflip, vflip, transpose)
    x = _geometric(mosaic, hflip, vflip, transpose)
    if mode == "crop":
        return x[..., dy : x.shape[-2] - dy, dx : x.shape[-1] - dx]
    if dy:
        x = _pad1(x, -2)
    if dx:
        x = _pad1(x, -1)
    return x


def bayer_transform_inverse(mosaic: Array, pattern: str, hflip: bool, vflip: bool, transpose: bool) -> Array:
    """Exact inverse of ``bayer_transform(..., mode="pad")`` for the same pattern and flags."""
    dy, dx = _phase_shift(pattern, hflip, vflip, transpose)
    x = mosaic[..., dy : mosaic.shape[-2] - dy, dx : mosaic.shape[-1] - dx]
    return _geometric_inverse(x, hflip, vflip, transpose)


def all_transforms() -> list[Flags]:
    """The eight (hflip, vflip, transpose) combinations of the dihedral group, identity first."""
    return [(h, v, t) for t in (False, True) for v in (False, True) for h in (False, True)]
