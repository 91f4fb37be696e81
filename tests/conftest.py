"""Shared fixtures: tiny DNG files built directly with tifffile, independently of the project's own writer.

``make_dng`` covers the layouts the reader and writer must handle: the four CFA phases, strips and tiles (with
padded edge tiles), both byte orders, per-position black levels, 10/12/14/16-bit white levels, a preview in IFD0
with the CFA image in a SubIFD, an ActiveArea with masked borders, packed 12-bit samples and lossless-JPEG
(LJ92) tiles. ``make_bad_dng`` builds the files that must be refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL, DOUBLE = 1, 2, 3, 4, 5, 10, 12
needs_dcraw = pytest.mark.skipif(shutil.which("dcraw") is None, reason="dcraw not installed (apt-get install dcraw)")
needs_exiftool = pytest.mark.skipif(
    shutil.which("exiftool") is None, reason="exiftool not installed (apt-get install libimage-exiftool-perl)"
)
DNG_VERSION = (50706, BYTE, 4, b"\x01\x04\x00\x00", True)

# A plausible XYZ -> camera matrix and neutral, stored as rationals with denominator 10000.
COLOR_MATRIX = np.array([[0.6461, -0.1164, -0.0857], [-0.3825, 1.1597, 0.2534], [-0.0416, 0.1540, 0.6039]])
AS_SHOT_NEUTRAL = np.array([0.5, 1.0, 0.6666])


def random_mosaic(height: int, width: int, black: float, white: int, seed: int = 0) -> np.ndarray:
    """(H, W) uint16 noise spanning [black, white]."""
    rng = np.random.default_rng(seed)
    return rng.integers(int(np.max(black)), white + 1, size=(height, width), dtype=np.uint16)


def _rationals(values: np.ndarray) -> tuple[int, ...]:
    return tuple(v for x in np.asarray(values).ravel() for v in (round(float(x) * 10000), 10000))


def dng_tags(
    pattern: str,
    black: float | tuple[float, ...],
    white: int,
    make: str = "TestCam",
    model: str = "Model 1",
    iso: int | None = 400,
    active_area: tuple[int, int, int, int] | None = None,
    default_crop: tuple[int, int, int, int] | None = None,
    noise_profile: tuple[float, ...] | None = None,
    noise_profile_in: str = "ifd0",
) -> tuple[list, list]:
    """(camera tags for IFD0, raw tags for the CFA IFD) as tifffile extratags; the NoiseProfile goes to either."""
    camera = [
        (271, ASCII, 0, make, True),
        (272, ASCII, 0, model, True),
        DNG_VERSION,
        (50708, ASCII, 0, f"{make} {model}", True),
        (50721, SRATIONAL, 9, _rationals(COLOR_MATRIX), True),
        (50728, RATIONAL, 3, _rationals(AS_SHOT_NEUTRAL), True),
        (50778, SHORT, 1, 21, True),
    ]
    if iso is not None:
        camera.append((34855, SHORT, 1, iso, True))
    raw = [
        (33421, SHORT, 2, (2, 2), True),
        (33422, BYTE, 4, bytes("RGB".index(c) for c in pattern), True),
        (50717, LONG, 1, white, True),
    ]
    blacks = tuple(np.atleast_1d(black))
    if len(blacks) == 4:
        raw += [(50713, SHORT, 2, (2, 2), True), (50714, LONG, 4, tuple(int(b) for b in blacks), True)]
    else:
        raw.append((50714, LONG, 1, int(blacks[0]), True))
    if active_area is not None:
        raw.append((50829, LONG, 4, active_area, True))
    if default_crop is not None:
        raw += [(50719, LONG, 2, default_crop[:2], True), (50720, LONG, 2, default_crop[2:], True)]
    if noise_profile is not None:
        tag = (51041, DOUBLE, len(noise_profile), tuple(noise_profile), True)
        (camera if noise_profile_in == "ifd0" else raw).append(tag)
    return camera, raw


def _lj92_tiles(image: np.ndarray, tile: tuple[int, int], bits: int) -> Iterator[bytes]:
    """Lossless-JPEG encoded tiles, edge tiles zero-padded to the full tile size."""
    for y in range(0, image.shape[0], tile[0]):
        for x in range(0, image.shape[1], tile[1]):
            block = np.zeros(tile, dtype=np.uint16)
            part = image[y : y + tile[0], x : x + tile[1]]
            block[: part.shape[0], : part.shape[1]] = part
            yield imagecodecs.ljpeg_encode(block, bitspersample=bits)


def build_dng(
    path: Path,
    raw: np.ndarray,
    pattern: str = "RGGB",
    black: float | tuple[float, ...] = 64,
    white: int = 4095,
    byteorder: str = "<",
    tile: tuple[int, int] | None = None,
    rowsperstrip: int | None = None,
    bits: int | None = None,
    lj92: bool = False,
    preview: bool = False,
    **tag_kwargs,
) -> Path:
    """Write ``raw`` (H, W) uint16 as a DNG with tifffile; ``bits`` < 16 packs the samples."""
    camera, raw_tags = dng_tags(pattern, black, white, **tag_kwargs)
    options = dict(photometric=32803, subfiletype=0, metadata=None, tile=tile, rowsperstrip=rowsperstrip)
    data: np.ndarray | Iterator[bytes] = raw
    if bits is not None:
        options["bitspersample"] = bits
    if lj92:
        assert tile is not None, "LJ92 fixtures are tiled"
        data = _lj92_tiles(raw, tile, bits or 16)
        options.update(shape=raw.shape, dtype=np.uint16, compression=7)
        options.pop("bitspersample", None)
    with tifffile.TiffWriter(path, byteorder=byteorder) as tiff:
        if preview:
            thumb = np.full((raw.shape[0] // 4, raw.shape[1] // 4, 3), 128, dtype=np.uint8)
            tiff.write(thumb, photometric="rgb", subfiletype=1, subifds=1, metadata=None, extratags=camera)
            tiff.write(data, **options, extratags=raw_tags)
        else:
            tiff.write(data, **options, extratags=camera + raw_tags)
    return path


def load_module(path: Path, name: str | None = None):
    """A Python file loaded as a module, e.g. a script of ``scripts/`` (which is not a package)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def make_dng(tmp_path: Path) -> Callable[..., Path]:
    """``make_dng(name, raw, **build_dng_options)`` writes a fixture DNG into tmp_path."""
    return lambda name, raw, **kwargs: build_dng(tmp_path / name, raw, **kwargs)


def _overwrite_tag(path: Path, code: int, value: int) -> None:
    """Rewrite one inline SHORT/LONG tag value in place, keeping everything else."""
    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages[0].tags[code]
        fmt = tiff.byteorder + ("H" if int(tag.dtype) == SHORT else "I")
        offset = tag.valueoffset
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


def build_bad_dng(path: Path, kind: str) -> Path:
    """A file that must be refused: bomb, claims_too_much, truncated, linear_raw, xtrans, cygm, not_tiff, no_cfa."""
    small = random_mosaic(24, 24, 64, 4095)
    if kind in ("bomb", "claims_too_much", "truncated"):
        build_dng(path, small)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size - 100])
        else:
            side = 32000 if kind == "bomb" else 3000  # 1 GP is over the limit; 9 MP is fine but not in 1 KB
            _overwrite_tag(path, 278, side)  # RowsPerStrip, so the image still has one strip
            _overwrite_tag(path, 256, side)
            _overwrite_tag(path, 257, side)
    elif kind == "linear_raw":
        linear = np.zeros((24, 24, 3), np.uint16)
        tifffile.imwrite(path, linear, photometric=34892, metadata=None, extratags=[DNG_VERSION])
    elif kind in ("xtrans", "cygm"):
        dims, codes = ((6, 6), bytes([1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1] * 2))
        if kind == "cygm":
            dims, codes = (2, 2), bytes([3, 4, 1, 5])  # cyan, magenta, green, yellow
        extratags = [DNG_VERSION, (33421, SHORT, 2, dims, True), (33422, BYTE, len(codes), codes, True)]
        if kind == "cygm":
            extratags.append((50710, BYTE, 6, bytes([0, 1, 2, 3, 4, 5]), True))  # CFAPlaneColor R G B C M Y
        tifffile.imwrite(path, np.zeros((36, 36), np.uint16), photometric=32803, metadata=None, extratags=extratags)
    elif kind == "not_tiff":
        path.write_text("this is not a raw file\n")
    elif kind == "no_cfa":
        tifffile.imwrite(path, np.zeros((24, 24), np.uint16), photometric="minisblack", metadata=None)
    else:
        raise ValueError(kind)
    return path


@pytest.fixture
def make_bad_dng(tmp_path: Path) -> Callable[[str], Path]:
    """``make_bad_dng(kind)`` writes one of ``build_bad_dng``'s broken files into tmp_path."""
    return lambda kind: build_bad_dng(tmp_path / f"bad_{kind}.dng", kind)


def tiled_black(black: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(2, 2) per-position black repeated over a mosaic."""
    return np.tile(black, (shape[0] // 2 + 1, shape[1] // 2 + 1))[: shape[0], : shape[1]]


def changed_pixels(source: Path, dest: Path) -> np.ndarray:
    """(N, 2) image coordinates of the changed pixels; fails if a changed byte is not a 16-bit CFA pixel's byte."""
    a = np.frombuffer(source.read_bytes(), np.uint8)
    b = np.frombuffer(dest.read_bytes(), np.uint8)
    assert a.size == b.size, "patch mode must keep the file size"
    changed = np.flatnonzero(a != b)
    covered = np.zeros(changed.size, bool)
    with tifffile.TiffFile(source) as tiff:
        page = next(p for q in tiff.pages for p in [q, *(q.pages or [])] if p.photometric == 32803)
        height, width = page.imagelength, page.imagewidth
        if page.is_tiled:
            chunk_h, chunk_w = page.tilelength, page.tilewidth
        else:
            chunk_h, chunk_w = min(page.rowsperstrip, height), width
        per_row = -(-width // chunk_w)
        hit = np.zeros(height * width, bool)
        for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
            top, left = (i // per_row) * chunk_h, (i % per_row) * chunk_w
            rows, cols = min(chunk_h, height - top), min(chunk_w, width - left)
            # Padded tiles keep the full tile width per row; a writer may also store an edge tile cropped.
            stride = chunk_w if count >= rows * chunk_w * 2 else cols
            inside = (changed >= offset) & (changed < offset + count)
            covered |= inside
            pixel = (changed[inside] - offset) // 2
            assert (pixel % stride < cols).all() and (pixel // stride < rows).all(), "tile padding changed"
            hit[(pixel // stride + top) * width + pixel % stride + left] = True
    assert covered.all(), f"{(~covered).sum()} bytes outside the pixel data changed"
    return np.stack(np.divmod(np.flatnonzero(hit), width), axis=1)


def dcraw_mosaic(path: Path) -> np.ndarray:
    """The raw mosaic as dcraw sees it (document mode, 16-bit, no flip), parsed from its PGM output."""
    out = subprocess.run(["dcraw", "-D", "-4", "-t", "0", "-c", str(path)], capture_output=True, check=True).stdout
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", out)  # exactly one whitespace byte before the pixels
    assert header is not None and int(header[3]) > 255, out[:40]
    width, height = int(header[1]), int(header[2])
    return np.frombuffer(out, ">u2", count=width * height, offset=header.end()).reshape(height, width)


def exif(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-n", str(path)], capture_output=True, check=True, text=True).stdout
    return json.loads(out)[0]


def numbers(value: object) -> np.ndarray:
    return np.asarray([float(v) for v in str(value).split()])


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: on a busy 2-core machine extra OpenMP threads only spin."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# On CI every optional tool is installed by .ci/run, so a test that skips there hides a missing install step:
# report it as a failure instead. DENOISE_SLOW_TESTS-gated tests are enabled by .ci/run too.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where nothing may be skipped: {reason}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A folder on a real 192 KiB tmpfs, so that writes fail with ENOSPC as on a full disk; None where tmpfs cannot
    be mounted (no mount rights), and the test then makes the error itself."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(folder)], capture_output=True)
    except OSError:  # no mount command at all
        mounted = None
    if mounted is None or mounted.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
