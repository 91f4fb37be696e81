"""Every real DNG in ../shared/dng: good files read as rawpy and MANIFEST.md say and round-trip through the
writer; each file in bad/ gets its specific DngError. Skipped when ../shared is absent (a fresh clone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from conftest import changed_pixels, dcraw_mosaic, exif, needs_dcraw, needs_exiftool, numbers

from denoise.raw.dng import (
    DngCorruptError,
    DngError,
    DngNotBayerError,
    DngTooLargeError,
    read_dng,
    write_dng,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "dng"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent (real DNG files live beside the repo)")

# (visible shape, pattern, black, white, write mode) from MANIFEST.md and LibRaw 0.22.
GOOD = {
    "bad-exif-type.dng": ((32, 32), "RGGB", 0, 65535, "patch"),
    "canon_colorchart.dng": ((1156, 1734), "RGGB", 2056, 15000, "rebuild"),
    "imx296_bggr.dng": ((1088, 1456), "BGGR", 60, 1023, "rebuild"),
    "imx296_dark_frame.dng": ((1088, 1456), "BGGR", 60, 1023, "rebuild"),
    "imx296_subifd_preview.dng": ((1088, 1456), "BGGR", 60, 1023, "patch"),
    "oiio_bayer_bggr16.dng": ((172, 256), "BGGR", 2048, 16383, "patch"),
    "rpi_gbrg_tiled.dng": ((480, 640), "GBRG", 0, 1023, "rebuild"),
    "valid-32x32.dng": ((32, 32), "RGGB", 0, 65535, "patch"),
}
BAD = {
    "bomb-32000x32000.dng": DngTooLargeError,
    "truncated.dng": DngCorruptError,
    "canon_lj92_stripped.dng": DngCorruptError,
    "iphone_linear_raw_stripped.dng": DngNotBayerError,
}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.dng")) if folder.is_dir() else []


@pytest.mark.parametrize("name", _files(SHARED) or list(GOOD))
def test_good_file_reads_as_rawpy_reports(name):
    frame = read_dng(SHARED / name)
    with rawpy.imread(str(SHARED / name)) as raw:
        pattern = "".join(chr(raw.color_desc[i]) for i in raw.raw_pattern.ravel())
        expected = (raw.raw_image_visible.shape, pattern, raw.white_level)
        black = np.asarray(raw.black_level_per_channel, dtype=np.float64)[raw.raw_pattern]
    assert (frame.mosaic.shape, frame.pattern, frame.white_level) == expected
    assert np.array_equal(frame.black_level, black)
    if name in GOOD:  # a new file without an entry is still checked against rawpy above
        shape, pattern, black_value, white, _ = GOOD[name]
        assert (frame.mosaic.shape, frame.pattern, frame.white_level) == (shape, pattern, white)
        assert np.array_equal(frame.black_level, np.full((2, 2), black_value))


@pytest.mark.parametrize("name", _files(SHARED) or list(GOOD))
def test_good_file_round_trips_through_the_writer(tmp_path, name):
    source = SHARED / name
    frame = read_dng(source)
    unchanged = tmp_path / f"same-{name}"
    write_dng(source, unchanged, frame.mosaic)
    assert np.array_equal(read_dng(unchanged).mosaic, frame.mosaic)  # exact, below black (read noise) too
    noise = np.random.default_rng(0).integers(-3, 4, frame.mosaic.shape)
    expected = np.clip(frame.mosaic.astype(np.int64) + noise, 0, 65535)
    dest = tmp_path / name
    mode = write_dng(source, dest, expected)
    if name in GOOD:
        assert mode == GOOD[name][4]
    back = read_dng(dest)
    assert np.array_equal(back.mosaic, expected.astype(np.uint16))
    assert (back.pattern, back.white_level) == (frame.pattern, frame.white_level)
    assert np.array_equal(back.black_level, frame.black_level)
    if mode == "patch":
        changed = changed_pixels(source, dest)
        assert len(changed) == np.count_nonzero(expected != frame.mosaic)
    else:
        with tifffile.TiffFile(dest) as tiff:
            page = tiff.pages[0]
            assert (page.photometric, page.compression, page.bitspersample) == (32803, 1, 16)


REBUILT = [name for name, entry in GOOD.items() if entry[4] == "rebuild"]


@needs_dcraw
@needs_exiftool
@pytest.mark.parametrize("name", REBUILT)
def test_rebuilt_file_matches_for_dcraw_and_exiftool(tmp_path, name):
    source, dest = SHARED / name, tmp_path / name
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    frame = read_dng(source)
    write_dng(source, dest, frame.mosaic)
    assert np.array_equal(dcraw_mosaic(dest), frame.mosaic)  # dark-frame pixels below black kept as they were
    before, after = exif(source), exif(dest)
    for key in ("Make", "Model"):
        assert after.get(key) == before.get(key), key
    # Absent tags take their DNG defaults, which the rebuilt file states explicitly.
    np.testing.assert_allclose(numbers(after["BlackLevel"]), numbers(before.get("BlackLevel", 0)) * np.ones(4))
    assert after["WhiteLevel"] == before.get("WhiteLevel", frame.white_level)
    for key in ("AsShotNeutral", "ColorMatrix1"):
        if key in before:
            np.testing.assert_allclose(numbers(after[key]), numbers(before[key]), atol=1e-4, err_msg=key)


@pytest.mark.parametrize("name", _files(SHARED / "bad") or list(BAD))
def test_bad_file_gets_its_error(tmp_path, name):
    error = BAD.get(name, DngError)
    with pytest.raises(error) as caught:
        read_dng(SHARED / "bad" / name)
    assert name in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(error):
        write_dng(SHARED / "bad" / name, tmp_path / name, np.zeros((32, 32), np.uint16))
    assert list(tmp_path.iterdir()) == []
