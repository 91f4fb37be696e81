"""What a DNG's values may be: levels a frame can be normalised with at read, and samples kept as given at write
(rounded, below black and above white too), refused only where 16 bits cannot hold them; and its file name any
bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import random_mosaic, tiled_black

from denoise.raw.dng import DngFormatError, DngWriteError, read_dng, write_dng, write_new_dng

H, W = 40, 56


@pytest.mark.parametrize(("black", "white", "message"), [(2000, 1000, "not below the white level"),
                                                         (1000, 1000, "not below the white level"),
                                                         (70000, 1000, "outside the 16-bit")])
def test_levels_no_frame_can_be_normalised_with_are_refused_at_read(tmp_path, black, white, message):
    path = tmp_path / "levels.dng"
    write_new_dng(path, np.full((32, 32), 500, np.uint16), "RGGB", black, white)
    with pytest.raises(DngFormatError, match=message) as info:
        read_dng(path)
    assert str(path) in str(info.value)


def test_values_are_rounded_and_kept_below_black_and_above_white(make_dng, tmp_path):
    black = np.array([[100.0, 200.0], [300.0, 400.0]])
    source = make_dng("c.dng", random_mosaic(H, W, 400, 4095), black=tuple(black.ravel()), pattern="GRBG")
    wanted = np.random.default_rng(6).uniform(0, 5000, (H, W))  # below black and above white (4095) both
    assert (wanted < tiled_black(black, (H, W))).any() and (wanted > 4095).any()
    write_dng(source, tmp_path / "out.dng", wanted)
    assert np.array_equal(read_dng(tmp_path / "out.dng").mosaic, np.rint(wanted).astype(np.uint16))


@pytest.mark.parametrize("bad", [-1.0, 65535.6, 70000])
def test_values_16_bits_cannot_hold_are_refused(make_dng, tmp_path, bad):
    source = make_dng("c.dng", random_mosaic(H, W, 64, 4095))
    wanted = random_mosaic(H, W, 64, 4095).astype(np.float64)
    wanted[3, 5] = bad
    with pytest.raises(DngWriteError, match="outside the 16-bit samples"):
        write_dng(source, tmp_path / "out.dng", wanted)
    assert not (tmp_path / "out.dng").exists()


def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path: Path) -> None:
    """A Linux file name may hold any bytes; LibRaw takes only UTF-8 names, so such a file is read from its bytes."""
    mosaic = np.random.default_rng(3).integers(1100, 9000, (32, 48)).astype(np.uint16)
    plain = tmp_path / "noisy0.dng"
    write_new_dng(plain, mosaic, "RGGB", 1024, 16383)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/noisy\xff.dng"))
    odd.write_bytes(plain.read_bytes())
    frame = read_dng(odd)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    assert frame.pattern == "RGGB" and frame.path == odd
