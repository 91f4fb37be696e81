"""DNG reading and writing on tiny fixtures built with tifffile (see conftest.py)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from conftest import (
    AS_SHOT_NEUTRAL,
    COLOR_MATRIX,
    changed_pixels,
    dcraw_mosaic,
    exif,
    needs_dcraw,
    needs_exiftool,
    numbers,
    random_mosaic,
)

from denoise.raw import dng
from denoise.raw.bayer import PATTERNS, pack_bayer, unpack_bayer
from denoise.raw.dng import (
    DngCorruptError,
    DngFormatError,
    DngNotBayerError,
    DngNotFoundError,
    DngTooLargeError,
    DngWriteError,
    read_dng,
    write_dng,
    write_new_dng,
)

H, W = 40, 56  # 16x16 tiles leave padded edge tiles on both axes
LAYOUTS = {
    "strip-le": dict(byteorder="<"),
    "strip-be": dict(byteorder=">"),
    "strips7-le": dict(rowsperstrip=7),
    "tiles-le": dict(tile=(16, 16)),
    "tiles-be": dict(tile=(16, 16), byteorder=">"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_read_matches_fixture(make_dng, pattern, layout):
    raw = random_mosaic(H, W, 64, 4095)
    frame = read_dng(make_dng("a.dng", raw, pattern=pattern, **LAYOUTS[layout]))
    assert frame.mosaic.dtype == np.uint16 and np.array_equal(frame.mosaic, raw)
    assert frame.pattern == pattern
    assert np.array_equal(frame.black_level, np.full((2, 2), 64.0)) and frame.white_level == 4095
    np.testing.assert_allclose(frame.as_shot_neutral, AS_SHOT_NEUTRAL, atol=1e-4)
    np.testing.assert_allclose(frame.color_matrix, COLOR_MATRIX, atol=1e-4)
    assert frame.iso == 400 and frame.path.name == "a.dng"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_per_position_black_levels(make_dng, pattern):
    black = (10, 20, 30, 40)  # BlackLevel with BlackLevelRepeatDim 2x2, row-major over the CFA cell
    frame = read_dng(make_dng("b.dng", random_mosaic(H, W, 40, 4095), pattern=pattern, black=black))
    assert np.array_equal(frame.black_level, np.reshape(black, (2, 2)))
    with rawpy.imread(str(frame.path)) as raw:  # LibRaw's own per-colour values, placed via raw_pattern
        assert sorted(raw.black_level_per_channel) == sorted(black)


@pytest.mark.parametrize("white", [1023, 4095, 16383, 65535])
def test_white_levels(make_dng, white):
    assert read_dng(make_dng("w.dng", random_mosaic(24, 24, 0, white), white=white)).white_level == white


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_round_trip_patch_is_bit_exact(make_dng, tmp_path, pattern, layout):
    source = make_dng("src.dng", random_mosaic(H, W, 64, 4095, seed=1), pattern=pattern, **LAYOUTS[layout])
    frame = read_dng(source)
    target = random_mosaic(H, W, 64, 4095, seed=2)
    mosaic = unpack_bayer(pack_bayer(target, frame.pattern), frame.pattern)  # read -> pack -> unpack -> write
    assert write_dng(source, tmp_path / "out.dng", mosaic) == "patch"
    assert np.array_equal(read_dng(tmp_path / "out.dng").mosaic, target)
    assert np.array_equal(tifffile.imread(tmp_path / "out.dng"), target)  # an independent decoder agrees
    changed = changed_pixels(source, tmp_path / "out.dng")
    assert len(changed) == np.count_nonzero(target != frame.mosaic)


def test_patch_preview_subifd_layout(make_dng, tmp_path):
    source = make_dng("p.dng", random_mosaic(H, W, 64, 4095), pattern="BGGR", preview=True)
    with tifffile.TiffFile(source) as tiff:
        assert tiff.pages[0].photometric == 2 and tiff.pages[0].pages[0].photometric == 32803
    frame = read_dng(source)
    assert frame.pattern == "BGGR" and frame.iso == 400
    np.testing.assert_allclose(frame.color_matrix, COLOR_MATRIX, atol=1e-4)  # camera tags live in IFD0
    target = random_mosaic(H, W, 64, 4095, seed=3)
    assert write_dng(source, tmp_path / "out.dng", target) == "patch"
    assert np.array_equal(read_dng(tmp_path / "out.dng").mosaic, target)
    changed_pixels(source, tmp_path / "out.dng")


@pytest.mark.parametrize("area", [(2, 4, 40, 54), (1, 3, 39, 55)])
def test_patch_keeps_masked_pixels_outside_the_active_area(make_dng, tmp_path, area):
    raw = random_mosaic(H, W, 64, 4095)
    source = make_dng("aa.dng", raw, active_area=area)
    frame = read_dng(source)
    with rawpy.imread(str(source)) as libraw:  # LibRaw decides the visible window (it rounds odd origins)
        top, left = libraw.sizes.top_margin, libraw.sizes.left_margin
        assert frame.pattern == "".join(chr(libraw.color_desc[i]) for i in libraw.raw_pattern.ravel())
    height, width = frame.mosaic.shape
    assert np.array_equal(frame.mosaic, raw[top : top + height, left : left + width])
    target = random_mosaic(height, width, 64, 4095, seed=4)
    assert write_dng(source, tmp_path / "out.dng", target) == "patch"
    changed = changed_pixels(source, tmp_path / "out.dng")
    assert changed[:, 0].min() >= top and changed[:, 1].min() >= left
    assert changed[:, 0].max() < top + height and changed[:, 1].max() < left + width
    assert np.array_equal(read_dng(tmp_path / "out.dng").mosaic, target)


def test_odd_dimensions_patch(make_dng, tmp_path):
    source = make_dng("odd.dng", random_mosaic(33, 47, 64, 4095), tile=(16, 16))
    target = random_mosaic(33, 47, 64, 4095, seed=5)
    assert write_dng(source, tmp_path / "out.dng", target) == "patch"
    assert np.array_equal(read_dng(tmp_path / "out.dng").mosaic, target)


REBUILD_SOURCES = {
    "packed12": dict(bits=12, pattern="BGGR", black=(60, 61, 62, 63)),
    "packed14-tiles-be": dict(bits=14, white=16383, tile=(16, 16), byteorder=">", pattern="GBRG"),
    "lj92-tiles": dict(lj92=True, tile=(16, 16), bits=12, pattern="GRBG"),
    "packed10-preview": dict(bits=10, white=1023, preview=True, pattern="RGGB"),
}


@pytest.mark.parametrize("kind", REBUILD_SOURCES)
def test_rebuild_reads_back_identically(make_dng, tmp_path, kind):
    options = REBUILD_SOURCES[kind]
    white = options.get("white", 4095)
    source = make_dng("src.dng", random_mosaic(H, W, 64, white), **options)
    frame = read_dng(source)
    target = random_mosaic(H, W, 64, white, seed=7)
    assert write_dng(source, tmp_path / "out.dng", target) == "rebuild"
    back = read_dng(tmp_path / "out.dng")
    assert np.array_equal(back.mosaic, target) and back.pattern == frame.pattern
    assert np.array_equal(back.black_level, frame.black_level) and back.white_level == frame.white_level
    np.testing.assert_allclose(back.as_shot_neutral, frame.as_shot_neutral, atol=1e-4)
    np.testing.assert_allclose(back.color_matrix, frame.color_matrix, atol=1e-4)
    assert back.iso == frame.iso
    with tifffile.TiffFile(tmp_path / "out.dng") as tiff:
        page = tiff.pages[0]
        assert (page.photometric, page.compression, page.bitspersample, len(page.dataoffsets)) == (32803, 1, 16, 1)


@needs_dcraw
@pytest.mark.parametrize("kind", ["packed12", "lj92-tiles"])
def test_rebuild_read_by_dcraw(make_dng, tmp_path, kind):
    source = make_dng("src.dng", random_mosaic(H, W, 64, 4095), **REBUILD_SOURCES[kind])
    target = random_mosaic(H, W, 64, 4095, seed=8)
    assert write_dng(source, tmp_path / "out.dng", target) == "rebuild"
    assert np.array_equal(dcraw_mosaic(tmp_path / "out.dng"), target)


@needs_exiftool
def test_rebuild_keeps_metadata_for_exiftool(make_dng, tmp_path):
    source = make_dng("src.dng", random_mosaic(H, W, 64, 4095), **REBUILD_SOURCES["packed12"])
    write_dng(source, tmp_path / "out.dng", random_mosaic(H, W, 64, 4095, seed=9))
    before, after = exif(source), exif(tmp_path / "out.dng")
    for key in ("Make", "Model", "UniqueCameraModel", "WhiteLevel", "ISO", "CalibrationIlluminant1"):
        assert after[key] == before[key], key
    for key in ("BlackLevel", "AsShotNeutral", "ColorMatrix1"):
        np.testing.assert_allclose(numbers(after[key]), numbers(before[key]), atol=1e-4, err_msg=key)
    assert after["PhotometricInterpretation"] == 32803 and after["BitsPerSample"] == 16


def test_rebuild_carries_the_crop_relative_to_the_visible_area(make_dng, tmp_path):
    options = dict(bits=12, active_area=(2, 4, 40, 54), default_crop=(3, 1, 40, 30))
    source = make_dng("src.dng", random_mosaic(H, W, 64, 4095), **options)
    frame = read_dng(source)
    assert write_dng(source, tmp_path / "out.dng", frame.mosaic) == "rebuild"
    sizes = []
    for path in (source, tmp_path / "out.dng"):
        with rawpy.imread(str(path)) as raw:
            s = raw.sizes
            sizes.append((s.crop_left_margin - s.left_margin, s.crop_top_margin - s.top_margin, s.crop_width,
                          s.crop_height, s.width, s.height))  # fmt: skip
    assert sizes[0] == sizes[1] and sizes[0][4:] == (50, 38)
    with tifffile.TiffFile(tmp_path / "out.dng") as tiff:  # the visible area starts at the ActiveArea origin
        assert tiff.pages[0].tags["DefaultCropOrigin"].value == (3, 1)
        assert tiff.pages[0].tags["DefaultCropSize"].value == (40, 30)


def test_write_new_dng_is_one_little_endian_strip_and_patchable(tmp_path):
    black = np.array([[1024, 1025], [1026, 1027]])
    mosaic = random_mosaic(H, W, black.max(), 16383)
    path = tmp_path / "new.dng"
    write_new_dng(path, mosaic, "BGGR", black, 16383, AS_SHOT_NEUTRAL, COLOR_MATRIX, iso=800, make="ZTE", model="X")
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert tiff.byteorder == "<" and not page.is_tiled and len(page.dataoffsets) == 1
        assert page.databytecounts[0] == H * W * 2 and page.tags["Make"].value == "ZTE"
    frame = read_dng(path)
    assert np.array_equal(frame.mosaic, mosaic) and frame.pattern == "BGGR" and frame.white_level == 16383
    assert np.array_equal(frame.black_level, black) and frame.iso == 800
    np.testing.assert_allclose(frame.as_shot_neutral, AS_SHOT_NEUTRAL, atol=1e-4)
    np.testing.assert_allclose(frame.color_matrix, COLOR_MATRIX, atol=1e-4)
    assert write_dng(path, tmp_path / "again.dng", mosaic) == "patch"
    assert (tmp_path / "again.dng").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("bomb", DngTooLargeError),
        ("claims_too_much", DngCorruptError),
        ("truncated", DngCorruptError),
        ("linear_raw", DngNotBayerError),
        ("xtrans", DngNotBayerError),
        ("cygm", DngNotBayerError),
        ("not_tiff", DngFormatError),
        ("no_cfa", DngFormatError),
    ],
)
def test_bad_files_get_their_error(make_bad_dng, tmp_path, kind, error):
    path = make_bad_dng(kind)
    with pytest.raises(error) as caught:
        read_dng(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(error):
        write_dng(path, tmp_path / "out.dng", np.zeros((24, 24), np.uint16))
    assert not (tmp_path / "out.dng").exists()


def test_bomb_is_refused_fast_without_allocating(make_bad_dng):
    path = make_bad_dng("bomb")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DngTooLargeError):
        read_dng(path)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 10 * 2**20


def test_too_small_for_libraw(make_dng, tmp_path):
    with pytest.raises(DngFormatError, match="too small"):
        read_dng(make_dng("tiny.dng", random_mosaic(16, 16, 64, 4095)))
    with pytest.raises(DngWriteError, match="at least 22x22"):
        write_new_dng(tmp_path / "tiny_new.dng", random_mosaic(16, 30, 64, 4095), "RGGB", 64, 4095)
    with pytest.raises(DngWriteError, match="not a 2x2 Bayer"):
        write_new_dng(tmp_path / "xtrans.dng", random_mosaic(24, 24, 64, 4095), "RGBG", 64, 4095)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.dng"]


def test_missing_file(tmp_path):
    with pytest.raises(DngNotFoundError, match="no such file"):
        read_dng(tmp_path / "absent.dng")
    with pytest.raises(DngNotFoundError):
        read_dng(tmp_path)


@pytest.mark.parametrize(
    ("libraw_error", "error"),
    [
        (rawpy.LibRawIOError, DngCorruptError),
        (rawpy.LibRawDataError, DngCorruptError),
        (rawpy.LibRawFileUnsupportedError, DngFormatError),
        (rawpy.LibRawTooBigError, DngTooLargeError),
    ],
)
def test_libraw_failures_are_mapped(make_dng, monkeypatch, libraw_error, error):
    path = make_dng("ok.dng", random_mosaic(24, 24, 64, 4095))

    def fail(_):
        raise libraw_error("decoder failed")

    monkeypatch.setattr(dng.rawpy, "imread", fail)
    with pytest.raises(error, match=r"ok\.dng"):
        read_dng(path)


def test_dest_must_not_be_the_source(make_dng, tmp_path, monkeypatch):
    source = make_dng("s.dng", random_mosaic(24, 24, 64, 4095))
    original = source.read_bytes()
    (tmp_path / "link.dng").symlink_to(source)
    monkeypatch.chdir(tmp_path)
    for dest in (source, Path("s.dng"), tmp_path / "sub" / ".." / "s.dng", tmp_path / "link.dng"):
        with pytest.raises(DngWriteError, match="source"):
            write_dng(source, dest, np.zeros((24, 24), np.uint16))
    assert source.read_bytes() == original


def test_wrong_shape_and_missing_folder_are_refused(make_dng, tmp_path):
    source = make_dng("s.dng", random_mosaic(24, 24, 64, 4095))
    with pytest.raises(DngWriteError, match="shape"):
        write_dng(source, tmp_path / "out.dng", np.zeros((24, 26), np.uint16))
    with pytest.raises(DngWriteError, match="folder"):
        write_dng(source, tmp_path / "nowhere" / "out.dng", np.zeros((24, 24), np.uint16))
    (tmp_path / "taken.dng").mkdir()
    with pytest.raises(DngWriteError, match="cannot write"):
        write_dng(source, tmp_path / "taken.dng", np.zeros((24, 24), np.uint16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.dng", "taken.dng"]
    with pytest.raises(DngWriteError, match="NaN"):
        write_dng(source, tmp_path / "out.dng", np.full((24, 24), np.nan))


@pytest.mark.parametrize("mode", ["patch", "rebuild"])
def test_failed_write_leaves_no_partial_file(make_dng, tmp_path, monkeypatch, mode):
    source = make_dng("s.dng", random_mosaic(H, W, 64, 4095), bits=None if mode == "patch" else 12)
    dest = tmp_path / "out.dng"
    dest.write_bytes(b"previous result")

    def crash(self, *args, **kwargs):
        with Path(self if isinstance(self, Path) else self.filehandle.path).open("ab") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    target = (Path, "write_bytes") if mode == "patch" else (tifffile.TiffWriter, "write")
    monkeypatch.setattr(*target, crash)
    with pytest.raises(DngWriteError, match="disk full"):
        write_dng(source, dest, random_mosaic(H, W, 64, 4095))
    assert dest.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dng", "s.dng"]


@needs_dcraw
@needs_exiftool
def test_write_new_dng_for_dcraw_and_exiftool(tmp_path):
    black = np.array([[1024, 1025], [1026, 1027]])
    mosaic = random_mosaic(H, W, black.max(), 16383, seed=10)
    path = tmp_path / "new.dng"
    write_new_dng(path, mosaic, "GBRG", black, 16383, AS_SHOT_NEUTRAL, COLOR_MATRIX, iso=200, make="ZTE", model="A1")
    assert np.array_equal(dcraw_mosaic(path), mosaic)
    tags = exif(path)
    assert (tags["Make"], tags["Model"], tags["WhiteLevel"], tags["ISO"]) == ("ZTE", "A1", 16383, 200)
    assert str(tags["CFAPattern2"]) == "1 2 0 1" and tags["CFARepeatPatternDim"] == "2 2"
    np.testing.assert_allclose(numbers(tags["BlackLevel"]), black.ravel())
    np.testing.assert_allclose(numbers(tags["AsShotNeutral"]), AS_SHOT_NEUTRAL, atol=1e-4)
    np.testing.assert_allclose(numbers(tags["ColorMatrix1"]), COLOR_MATRIX.ravel(), atol=1e-4)

