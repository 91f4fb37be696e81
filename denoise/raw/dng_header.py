"""DNG header inspection with tifffile: find the CFA image and refuse unusable files before any pixel is decoded.

Everything here reads only the TIFF directory structure (a few kilobytes), so a file claiming 32000x32000 pixels
in 208 bytes is refused in milliseconds, and a LinearRaw or X-Trans file is refused with a clear reason instead
of whatever LibRaw would make of it.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")  # bayer.PATTERNS, repeated so reading a DNG needs no torch
MAX_PIXELS = 400_000_000  # larger than any current sensor (a 200 MP phone raw is 200e6)
MIN_SIDE = 22  # LibRaw (like dcraw) rejects smaller images as "not RAW"

PHOTOMETRIC_CFA = 32803
PHOTOMETRIC_LINEAR_RAW = 34892
RATIONAL_TYPES = (5, 10)  # TIFF RATIONAL and SRATIONAL
NOISE_PROFILE = 51041  # DNG 1.3: (S, O) pairs, noise variance S * x + O on linear values scaled to [0, 1]

# Tags describing the camera and colour rendering, copied from the source when a DNG is rebuilt.
CAMERA_TAGS = (
    271, 272, 274,  # Make, Model, Orientation
    33434, 33437, 34855,  # ExposureTime, FNumber, ISOSpeedRatings (TIFF/EP allows them in IFD0)
    50706, 50707, 50708, 50709,  # DNGVersion, DNGBackwardVersion, UniqueCameraModel, LocalizedCameraModel
    50721, 50722, 50723, 50724,  # ColorMatrix1/2, CameraCalibration1/2
    50727, 50728, 50729,  # AnalogBalance, AsShotNeutral, AsShotWhiteXY
    50730, 50731, 50732, 50734,  # BaselineExposure, BaselineNoise, BaselineSharpness, LinearResponseLimit
    50735, 50736, 50778, 50779,  # CameraSerialNumber, LensInfo, CalibrationIlluminant1/2
    50964, 50965,  # ForwardMatrix1/2
)  # fmt: skip


class DngError(Exception):
    """A raw file that cannot be used; the message names the file and the problem."""


class DngNotFoundError(DngError):
    """The file does not exist or is not a regular file."""


class DngFormatError(DngError):
    """Not a TIFF/DNG, or a TIFF without a raw image."""


class DngTooLargeError(DngError):
    """The header declares an absurd image size."""


class DngCorruptError(DngError):
    """Truncated or inconsistent data: pixel data past the end of the file, missing strips, decoder errors."""


class DngNotBayerError(DngError):
    """A raw image that is not a 2x2 Bayer mosaic (LinearRaw, X-Trans, other CFAs, several samples per pixel)."""


class DngWriteError(DngError):
    """A write that was refused (destination is the source, wrong mosaic shape) or failed."""


@dataclass(frozen=True)
class TagValue:
    """One TIFF tag as stored, so it can be written again unchanged."""

    dtype: int
    count: int
    value: Any


@dataclass(frozen=True)
class CfaLayout:
    """Where and how the CFA image is stored, plus the tags a rebuilt DNG carries over."""

    path: Path
    byteorder: str  # "<" or ">"
    height: int
    width: int
    bits_per_sample: int
    compression: int
    sample_format: int
    chunk_shape: tuple[int, int]  # (rows, cols) of one strip or tile; a strip spans the full width
    tiled: bool
    offsets: tuple[int, ...]
    bytecounts: tuple[int, ...]
    tag_pattern: str  # CFAPattern as letters, at the ActiveArea origin
    active_area: tuple[int, int, int, int]  # (top, left, bottom, right)
    camera_tags: dict[int, TagValue] = field(default_factory=dict)
    raw_tags: dict[int, TagValue] = field(default_factory=dict)
    iso: float | None = None
    noise_profile: tuple[float, ...] | None = None  # NoiseProfile's (S, O) pairs, one per colour plane or one


def tag_floats(tag: TagValue | None) -> list[float] | None:
    """Numeric tag values as floats (RATIONALs divided out), or None when the tag is absent."""
    if tag is None:
        return None
    value = tag.value if isinstance(tag.value, (tuple, list)) else (tag.value,)
    if tag.dtype in RATIONAL_TYPES:
        return [n / d if d else 0.0 for n, d in zip(value[0::2], value[1::2], strict=True)]
    return [float(v) for v in value]


def _tags(page: tifffile.TiffPage, codes: tuple[int, ...] | None = None) -> dict[int, TagValue]:
    out = {}
    for tag in page.tags.values():
        if codes is None or tag.code in codes:
            out[tag.code] = TagValue(int(tag.dtype), int(tag.count), tag.value)
    return out


def _raw_pages(tiff: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    """Full-resolution images (NewSubfileType bit 0 clear) in IFD0..n and their SubIFDs."""
    found = []
    for page in tiff.pages:
        for candidate in [page, *(page.pages or [])]:
            if isinstance(candidate, tifffile.TiffPage) and not candidate.subfiletype & 1:
                found.append(candidate)
    return found


def _pattern_letters(page: tifffile.TiffPage, name: str) -> str:
    """The 2x2 CFAPattern tag as R/G/B letters; refuse anything else."""
    dims = tuple(page.tags.valueof(33421, (0, 0)))
    raw = page.tags.valueof(33422)
    if dims != (2, 2) or raw is None:
        raise DngNotBayerError(f"{name}: CFA repeat pattern {dims[0]}x{dims[1]} is not a 2x2 Bayer (X-Trans or other)")
    codes = list(raw)
    plane_colors = list(page.tags.valueof(50710, b"\x00\x01\x02"))
    letters = []
    for code in codes:
        color = plane_colors[code] if code < len(plane_colors) else -1
        letters.append("RGBCMYW"[color] if 0 <= color < 7 else "?")  # DNG CFAPlaneColor codes
    pattern = "".join(letters)
    if pattern not in BAYER_PATTERNS:
        raise DngNotBayerError(f"{name}: CFA pattern {pattern!r} is not a Bayer pattern")
    return pattern


def chunk_regions(height: int, width: int, chunk: tuple[int, int], tiled: bool) -> list[tuple[int, int, int, int]]:
    """(row, col, rows, cols) of the image area each strip or tile covers, in file order (row-major tiles)."""
    if not tiled:
        return [(y, 0, min(chunk[0], height - y), width) for y in range(0, height, chunk[0])]
    return [
        (y, x, min(chunk[0], height - y), min(chunk[1], width - x))
        for y in range(0, height, chunk[0])
        for x in range(0, width, chunk[1])
    ]


def _check_data_bounds(page: tifffile.TiffPage, name: str, file_size: int) -> tuple[int, int]:
    """Refuse missing strips/tiles and pixel data past the end of the file; return the chunk shape."""
    height, width = page.imagelength, page.imagewidth
    strip = (min(page.rowsperstrip or height, height), width)
    chunk = (page.tilelength, page.tilewidth) if page.is_tiled else strip
    regions = chunk_regions(height, width, chunk, page.is_tiled)
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != len(regions) or len(counts) != len(regions):
        raise DngCorruptError(f"{name}: the CFA image lists {len(offsets)} data chunks, its size needs {len(regions)}")
    end = max(o + c for o, c in zip(offsets, counts, strict=True))
    if end > file_size:
        raise DngCorruptError(f"{name}: truncated: pixel data ends at byte {end} but the file has {file_size} bytes")
    if page.compression == 1:
        # A writer may crop edge tiles to the image, so only the image area inside each chunk is required.
        for count, (_, _, rows, cols) in zip(counts, regions, strict=True):
            needed = rows * math.ceil(cols * page.bitspersample / 8)
            if count < needed:
                raise DngCorruptError(f"{name}: a CFA data chunk holds {count} bytes but its pixels need {needed}")
    return chunk


def _iso(pages: list[tifffile.TiffPage]) -> float | None:
    """ISO from IFD0's TIFF/EP tag or the EXIF IFD; 0 means unknown."""
    for page in pages:
        exif = page.tags.valueof(34665) or {}
        for value in (page.tags.valueof(34855), exif.get("ISOSpeedRatings"), exif.get("PhotographicSensitivity")):
            if isinstance(value, (tuple, list)):
                value = value[0] if value else None
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
    return None


def _noise_profile(pages: list[tifffile.TiffPage]) -> tuple[float, ...] | None:
    """The first NoiseProfile among ``pages`` that is usable: (S, O) pairs with S > 0 and O >= 0, all finite."""
    for page in pages:
        values = tag_floats(_tags(page, (NOISE_PROFILE,)).get(NOISE_PROFILE))
        if values is None:
            continue
        scales, offsets = np.asarray(values[0::2]), np.asarray(values[1::2])
        usable = len(values) >= 2 and len(values) % 2 == 0 and np.isfinite(values).all()
        if usable and (scales > 0).all() and (offsets >= 0).all():
            return tuple(values)
    return None


def _layout(tiff: tifffile.TiffFile, page: tifffile.TiffPage, path: Path, file_size: int) -> CfaLayout:
    name = str(path)
    if page.samplesperpixel != 1:
        raise DngNotBayerError(f"{name}: CFA image has {page.samplesperpixel} samples per pixel, not 1")
    pattern = _pattern_letters(page, name)
    chunk = _check_data_bounds(page, name, file_size)
    height, width = page.imagelength, page.imagewidth
    area = [int(v) for v in page.tags.valueof(50829, ())]
    active = (area[0], area[1], area[2], area[3]) if len(area) == 4 else (0, 0, height, width)
    ifd0 = tiff.pages[0]
    # Camera tags belong in IFD0; a writer that put them in the raw IFD is honoured where IFD0 lacks them.
    camera = _tags(ifd0, CAMERA_TAGS)
    camera.update({k: v for k, v in _tags(page, CAMERA_TAGS).items() if k not in camera})
    return CfaLayout(
        path=path,
        byteorder=tiff.byteorder,
        height=height,
        width=width,
        bits_per_sample=int(page.bitspersample),
        compression=int(page.compression),
        sample_format=int(page.sampleformat),
        chunk_shape=chunk,
        tiled=bool(page.is_tiled),
        offsets=tuple(int(o) for o in page.dataoffsets),
        bytecounts=tuple(int(c) for c in page.databytecounts),
        tag_pattern=pattern,
        active_area=active,
        camera_tags=camera,
        raw_tags=_tags(page),
        iso=_iso([ifd0, page]),
        noise_profile=_noise_profile([page, ifd0]),
    )


@contextmanager
def _quiet_tifffile():
    """Silence tifffile's warnings about odd tags; a DNG reader must tolerate them (and refuses real problems)."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def inspect_dng(path: str | Path) -> CfaLayout:
    """Parse the TIFF structure and return the CFA image's layout, or raise the DngError that says why not."""
    path = Path(path)
    if not path.is_file():
        raise DngNotFoundError(f"{path}: no such file")
    file_size = path.stat().st_size
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tiff:
            pages = _raw_pages(tiff)
            cfa = [p for p in pages if p.photometric == PHOTOMETRIC_CFA]
            if not cfa:
                if any(p.photometric == PHOTOMETRIC_LINEAR_RAW for p in pages):
                    raise DngNotBayerError(f"{path}: LinearRaw (already demosaiced) image, not a Bayer CFA image")
                raise DngFormatError(f"{path}: TIFF file without a CFA raw image, not a Bayer DNG")
            page = cfa[0]
            if min(page.imagelength, page.imagewidth) < MIN_SIDE:
                raise DngFormatError(
                    f"{path}: CFA image of {page.imagewidth}x{page.imagelength} pixels is too small"
                    f" (LibRaw needs {MIN_SIDE}x{MIN_SIDE})"
                )
            if page.imagelength * page.imagewidth > MAX_PIXELS:
                raise DngTooLargeError(
                    f"{path}: header declares {page.imagewidth}x{page.imagelength} pixels"
                    f" (limit {MAX_PIXELS // 1_000_000} MP)"
                )
            return _layout(tiff, page, path, file_size)
    except tifffile.TiffFileError as exc:
        raise DngFormatError(f"{path}: not a TIFF/DNG file ({exc})") from None
    except OSError as exc:
        raise DngError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except (ValueError, KeyError, IndexError, TypeError, EOFError) as exc:
        raise DngCorruptError(f"{path}: corrupt TIFF structure ({type(exc).__name__}: {exc})") from None
