"""Read Bayer DNG files through rawpy/LibRaw and write denoised mosaics back as DNG files.

``read_dng`` refuses unusable files from their TIFF header before LibRaw decodes anything (see
``dng_header``), then copies the visible mosaic and its levels out of LibRaw. ``write_dng`` patches the
source's pixel bytes when they are plain 16-bit samples (the competition's layout) and otherwise rebuilds a
new DNG; ``write_new_dng`` writes a DNG from scratch (one little-endian strip, so it can be patched later).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rawpy

from denoise.raw.dng_header import (
    BAYER_PATTERNS,
    MIN_SIDE,
    CfaLayout,
    DngCorruptError,
    DngError,
    DngFormatError,
    DngNotBayerError,
    DngNotFoundError,
    DngTooLargeError,
    DngWriteError,
    TagValue,
    inspect_dng,
    tag_floats,
)
from denoise.raw.dng_write import (
    LONG,
    RATIONAL,
    cfa_tags,
    patch_dng,
    patchable,
    rationals,
    stored_cfa,
    write_cfa_dng,
)

__all__ = [
    "DngCorruptError",
    "DngError",
    "DngFormatError",
    "DngNotBayerError",
    "DngNotFoundError",
    "DngTooLargeError",
    "DngWriteError",
    "RawFrame",
    "read_dng",
    "write_dng",
    "write_new_dng",
]

ILLUMINANT_D65 = 21
COPIED_RAW_TAGS = (50718, 50733, 50738, 50780)  # DefaultScale, BayerGreenSplit, AntiAliasStrength, BestQualityScale
UINT16_MAX = 65535  # the largest sample a 16-bit DNG written here can hold


@dataclass(frozen=True)
class RawFrame:
    """One Bayer raw frame as read from a file."""

    mosaic: np.ndarray  # (H, W) uint16, the visible CFA area
    pattern: str  # 2x2 phase at the visible origin, e.g. "BGGR"
    black_level: np.ndarray  # (2, 2) float64, per CFA position aligned with ``mosaic``
    white_level: int
    as_shot_neutral: np.ndarray | None  # (3,) camera-space neutral (R, G, B), or None
    color_matrix: np.ndarray | None  # (3, 3) XYZ -> camera (DNG ColorMatrix), or None
    iso: float | None
    path: Path
    noise_profile: tuple[float, ...] | None = None  # the file's NoiseProfile (S, O) pairs, when it has one


def _libraw_error(path: Path, exc: Exception) -> DngError:
    """Map a LibRaw failure to the DngError kind that says what is wrong with the file."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return DngFormatError(f"{path}: LibRaw cannot decode this raw format ({detail})")
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError)):
        return DngTooLargeError(f"{path}: image too large to decode ({detail})")
    return DngCorruptError(f"{path}: truncated or corrupt raw data ({detail})")


def _pattern(raw: rawpy.RawPy, path: Path) -> str:
    """CFA letters at the visible origin; raw_pattern indexes color_desc, where b"RGBG"[3] is the second green."""
    indices = raw.raw_pattern
    if indices is None or indices.shape != (2, 2) or raw.raw_type != rawpy.RawType.Flat:
        raise DngNotBayerError(f"{path}: LibRaw does not see a 2x2 Bayer mosaic")
    letters = "".join(chr(raw.color_desc[i]) for i in indices.ravel())
    if letters not in BAYER_PATTERNS:
        raise DngNotBayerError(f"{path}: CFA pattern {letters!r} is not a Bayer pattern")
    return letters


def _as_shot_neutral(layout: CfaLayout, raw: rawpy.RawPy) -> np.ndarray | None:
    """AsShotNeutral from the tag, else the inverse of LibRaw's camera multipliers (green = 1)."""
    tag = tag_floats(layout.camera_tags.get(50728))
    if tag is not None and len(tag) == 3 and min(tag) > 0:
        return np.asarray(tag, dtype=np.float64)
    mult = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
    return mult[1] / mult if (mult > 0).all() else None


def _color_matrix(layout: CfaLayout, raw: rawpy.RawPy) -> np.ndarray | None:
    """The D65 ColorMatrix if there is one, else ColorMatrix1, else LibRaw's XYZ -> camera matrix."""
    matrices = [
        (tag_floats(layout.camera_tags.get(code)), tag_floats(layout.camera_tags.get(illuminant)))
        for code, illuminant in ((50721, 50778), (50722, 50779))
    ]
    matrices = [(m, ill) for m, ill in matrices if m is not None and len(m) == 9]
    matrices.sort(key=lambda item: item[1] != [ILLUMINANT_D65])  # stable: D65 first, else ColorMatrix1 first
    if matrices:
        return np.asarray(matrices[0][0], dtype=np.float64).reshape(3, 3)
    fallback = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    return fallback if np.abs(fallback).sum() > 0 else None


def _libraw_iso(raw: rawpy.RawPy) -> float | None:
    """LibRaw's ISO (rawpy >= 0.21 exposes it), for files without an ISO tag that tifffile can see."""
    iso = getattr(getattr(raw, "other", None), "iso_speed", 0.0)
    return float(iso) if iso > 0 else None


def _libraw_open(path: Path) -> rawpy.RawPy:
    """LibRaw on ``path``: by name, or from the file's bytes when the name is not valid UTF-8 (LibRaw takes only
    UTF-8 names, and a Linux file name may be any bytes)."""
    try:
        return rawpy.imread(os.fsencode(path).decode("utf-8"))
    except UnicodeDecodeError:
        with open(path, "rb") as fh:
            return rawpy.imread(io.BytesIO(fh.read()))


def _decode(path: Path, layout: CfaLayout, keep_full: bool) -> tuple[RawFrame, np.ndarray | None, tuple[int, int]]:
    """Decode with LibRaw; returns the frame, the full raw image (if asked) and the visible window (top, left)."""
    try:
        with _libraw_open(path) as raw:
            pattern = _pattern(raw, path)
            sizes = raw.sizes
            mosaic = raw.raw_image_visible.copy()  # a view would dangle once LibRaw is closed
            full = raw.raw_image.copy() if keep_full else None
            per_channel = np.asarray(raw.black_level_per_channel, dtype=np.float64)
            frame = RawFrame(
                mosaic=mosaic,
                pattern=pattern,
                black_level=per_channel[raw.raw_pattern],  # (2, 2): black of the colour at each CFA position
                white_level=int(raw.white_level),
                as_shot_neutral=_as_shot_neutral(layout, raw),
                color_matrix=_color_matrix(layout, raw),
                iso=layout.iso or _libraw_iso(raw),
                path=path,
                noise_profile=layout.noise_profile,
            )
    except rawpy.LibRawError as exc:
        raise _libraw_error(path, exc) from None
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16 or min(mosaic.shape) < 2:
        raise DngNotBayerError(f"{path}: decoded raw image is {mosaic.shape} {mosaic.dtype}, not a 2-D uint16 mosaic")
    _check_levels(frame, layout.bits_per_sample)
    return frame, full, (sizes.top_margin, sizes.left_margin)


def _check_levels(frame: RawFrame, bits: int) -> None:
    """Refuse black and white levels no image can be normalised with: black at or above white, or outside what
    the samples can hold (every later step divides by white - black)."""
    black, white, top = frame.black_level, frame.white_level, 2 ** min(max(bits, 1), 16) - 1
    if not np.isfinite(black).all() or black.min() < 0 or black.max() > top:
        raise DngFormatError(f"{frame.path}: black level {black.ravel().tolist()} is outside the {bits}-bit "
                             f"samples' [0, {top}]")
    if black.max() >= white:
        raise DngFormatError(f"{frame.path}: black level {black.max():g} is not below the white level {white}")


def read_dng(path: str | Path) -> RawFrame:
    """Read the visible Bayer mosaic and its metadata."""
    path = Path(path)
    frame, _, _ = _decode(path, inspect_dng(path), keep_full=False)
    return frame


def _stored_values(mosaic: np.ndarray, name: Path) -> np.ndarray:
    """``mosaic`` rounded to nearest as the uint16 samples a 16-bit DNG stores. (H, W).

    Values are kept as given, below black or above white too (a sensor's read noise reaches below black, and a
    frame read and written back must not change): keeping outputs in [black, white] is the caller's policy, as
    inference's. Only what 16 bits cannot hold is refused.
    """
    values = np.asarray(mosaic)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DngWriteError(f"{name}: mosaic to write contains NaN or infinite values")
        values = np.rint(values)
    elif values.dtype.kind not in "iu":
        raise DngWriteError(f"{name}: mosaic to write has dtype {values.dtype}, expected integers or floats")
    if values.size and (values.min() < 0 or values.max() > UINT16_MAX):
        raise DngWriteError(f"{name}: mosaic to write has values in [{values.min():g}, {values.max():g}], outside "
                            f"the 16-bit samples' [0, {UINT16_MAX}]")
    return values.astype(np.uint16)


def _crop_tags(layout: CfaLayout, window: tuple[int, int], shape: tuple[int, int]) -> dict[int, TagValue]:
    """DefaultCropOrigin/Size re-expressed for an image that starts at the visible window, clipped to it."""
    origin = tag_floats(layout.raw_tags.get(50719))
    size = tag_floats(layout.raw_tags.get(50720))
    if origin is None or size is None:
        return {}
    # The tags are (x, y) relative to the ActiveArea origin; the rebuilt image starts at LibRaw's visible origin.
    x = max(origin[0] - (window[1] - layout.active_area[1]), 0.0)
    y = max(origin[1] - (window[0] - layout.active_area[0]), 0.0)
    new_origin = [min(x, shape[1] - 1), min(y, shape[0] - 1)]
    new_size = [min(size[0], shape[1] - new_origin[0]), min(size[1], shape[0] - new_origin[1])]
    values = new_origin + new_size
    if all(float(v).is_integer() for v in values):
        return {50719: TagValue(LONG, 2, tuple(int(v) for v in new_origin)),
                50720: TagValue(LONG, 2, tuple(int(v) for v in new_size))}  # fmt: skip
    return {50719: TagValue(RATIONAL, 2, tuple(rationals(new_origin))),
            50720: TagValue(RATIONAL, 2, tuple(rationals(new_size)))}  # fmt: skip


def _rebuild_tags(layout: CfaLayout, frame: RawFrame, window: tuple[int, int], shape: tuple[int, int]) -> dict:
    """Tags of the rebuilt DNG: the frame's levels and pattern plus the source's camera and colour tags."""
    tags = cfa_tags(frame.pattern, frame.black_level, frame.white_level, frame.as_shot_neutral, frame.color_matrix,
                    frame.iso)  # fmt: skip
    if 50721 in layout.camera_tags:
        # The source's own matrices and illuminants replace the computed ones as a consistent set.
        tags.pop(50721)
        tags.pop(50778)
    tags.update(layout.camera_tags)
    tags.update({code: layout.raw_tags[code] for code in COPIED_RAW_TAGS if code in layout.raw_tags})
    tags.update(_crop_tags(layout, window, shape))
    return tags


def _check_paths(source: Path, dest: Path) -> None:
    """Refuse to overwrite the source, including through another name for the same file."""
    same = dest.resolve() == source.resolve() or (dest.exists() and source.exists() and os.path.samefile(source, dest))
    if same:
        raise DngWriteError(f"{dest}: destination is the source file; refusing to overwrite an input")


def write_dng(source: str | Path, dest: str | Path, mosaic: np.ndarray) -> str:
    """Write ``mosaic`` as a DNG keeping ``source``'s metadata; returns the mode used, "patch" or "rebuild"."""
    source, dest = Path(source), Path(dest)
    _check_paths(source, dest)
    layout = inspect_dng(source)
    frame, full, window = _decode(source, layout, keep_full=True)
    if np.shape(mosaic) != frame.mosaic.shape:
        raise DngWriteError(f"{dest}: mosaic shape {np.shape(mosaic)} differs from {source}'s {frame.mosaic.shape}")
    values = _stored_values(mosaic, dest)
    height, width = values.shape
    if patchable(layout) and full is not None and full.shape == (layout.height, layout.width):
        data = bytearray(source.read_bytes())
        stored = stored_cfa(data, layout)
        # Patch only when LibRaw's values are the stored samples themselves (no linearisation or shifts).
        if np.array_equal(stored, full):
            top, left = window
            stored[top : top + height, left : left + width] = values
            patch_dng(data, dest, layout, stored)
            return "patch"
    write_cfa_dng(dest, values, _rebuild_tags(layout, frame, window, values.shape))
    return "rebuild"


def write_new_dng(
    dest: str | Path,
    mosaic: np.ndarray,
    pattern: str,
    black_level: float | np.ndarray,
    white_level: int,
    as_shot_neutral: np.ndarray | None = None,
    color_matrix: np.ndarray | None = None,
    iso: float | None = None,
    make: str = "raw-denoise",
    model: str = "synthetic",
) -> None:
    """Write a fresh uncompressed 16-bit DNG (one little-endian strip) with the given tags, atomically."""
    dest = Path(dest)
    if pattern not in BAYER_PATTERNS:
        raise DngWriteError(f"{dest}: {pattern!r} is not a 2x2 Bayer pattern ({', '.join(BAYER_PATTERNS)})")
    if np.ndim(mosaic) != 2 or min(np.shape(mosaic)) < MIN_SIDE:
        raise DngWriteError(
            f"{dest}: mosaic must be 2-D and at least {MIN_SIDE}x{MIN_SIDE} (LibRaw's minimum), got {np.shape(mosaic)}"
        )
    black = np.broadcast_to(np.asarray(black_level, dtype=np.float64).reshape(-1), (4,)).reshape(2, 2)
    values = _stored_values(mosaic, dest)
    tags = cfa_tags(pattern, black, white_level, as_shot_neutral, color_matrix, iso)
    tags[271] = TagValue(2, 0, make)
    tags[272] = TagValue(2, 0, model)
    tags[50708] = TagValue(2, 0, f"{make} {model}")  # UniqueCameraModel
    write_cfa_dng(dest, values, tags)
