"""Camera noise beyond Poisson-Gaussian as training draws it: row offsets (shared by sensor-row pairs, spread over
frequency as a calibration's spectrum) and a fixed pattern, checked against written-out draws and calibrate's own
measure of a frame's rows."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.config import DataConfig
from denoise.dataset.synthetic_pairs import synthesize
from denoise.raw.noise import Structure, add_structure, row_offsets
from denoise.raw.sensor import row_spectrum


def test_no_structure_adds_nothing_and_draws_nothing():
    noisy, rng = np.zeros((4, 8, 8), dtype=np.float32), np.random.default_rng(12)
    assert add_structure(noisy, 1e-4, Structure(), rng) is noisy
    assert rng.random() == np.random.default_rng(12).random()  # the stream of a plain noise model is untouched


@pytest.mark.parametrize("pair_corr", [1.0, 0.0])
def test_structure_adds_row_offsets_shared_as_told_and_a_fixed_pattern(pair_corr):
    b = 1e-4  # read std 0.01
    out = add_structure(np.zeros((4, 2048, 256), dtype=np.float32), b, Structure(0.5, pair_corr, 0.3),
                        np.random.default_rng(13)).astype(np.float64)  # fmt: skip
    rows = out.mean(axis=2)  # (4, h): each channel's row offsets, plus the fixed pattern's share
    pattern_only = np.sqrt(2) * 0.3 * 0.01 / np.sqrt(256)  # what the fixed pattern leaves between two row means
    assert (rows[0] - rows[1]).std() == pytest.approx(pattern_only, rel=0.1)  # R and Gr: one sensor row
    assert (rows[2] - rows[3]).std() == pytest.approx(pattern_only, rel=0.1)  # Gb and B: the other
    assert np.corrcoef(rows[0], rows[2])[0, 1] == pytest.approx(pair_corr, abs=0.06)
    assert rows.std() == pytest.approx(0.5 * 0.01, rel=0.05)
    assert (out - rows[..., None]).std() == pytest.approx(0.3 * 0.01, rel=0.02)


def test_structure_without_a_spectrum_draws_as_it_always_has():
    """Against the draws written out: shared rows, each sensor row's own, the fixed pattern, in that order."""
    b, structure = 4e-4, Structure(0.5, 0.6, 0.3)
    out = add_structure(np.zeros((4, 16, 8), dtype=np.float32), b, structure, np.random.default_rng(17))
    rng, read = np.random.default_rng(17), 0.02
    shared = rng.normal(0.0, 0.5 * read * np.sqrt(0.6), (16, 1))
    own = rng.normal(0.0, 0.5 * read * np.sqrt(0.4), (2, 16, 1))
    expected = (shared + own)[[0, 0, 1, 1]] + 0.3 * read * rng.standard_normal((4, 16, 8))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("told", [(0.150, 0.120, 0.133, 0.130, 0.118, 0.115, 0.115, 0.120),  # the IMX296's
                                  (0.55, 0.15, 0.1, 0.1, 0.05, 0.05),  # slow banding
                                  ()])  # white rows
@pytest.mark.parametrize("pair_corr", [1.0, 0.5])
def test_structure_rows_carry_the_spectrum_calibrate_measures_in_a_training_crop(told, pair_corr):
    """Crops of 64 packed rows, measured as calibrate measures a dark frame's rows (shared and own parts together):
    the shares asked for come back, white rows' evenly."""
    rng = np.random.default_rng(18)
    structure = Structure(1.0, pair_corr, 0.0, told)
    crops = np.stack([add_structure(np.zeros((4, 64, 4), dtype=np.float32), 1e-4, structure, rng)
                      for _ in range(2000)])  # fmt: skip
    assert np.sqrt((crops.astype(np.float64) ** 2).mean()) == pytest.approx(0.01, rel=0.02)  # the row std asked
    bands = len(told) or 4
    measured = np.array(row_spectrum(crops, bands))
    np.testing.assert_allclose(measured / measured.sum(), told or [0.25] * 4, rtol=0.05)


def test_training_crops_get_the_configured_structure_and_row_spectrum():
    """synthesize, as training calls it, on a black crop 256 pixels wide: rows in the slowest quarter of
    frequencies move together from one row to the next; white rows do not."""
    clean = np.zeros((4, 64, 256), dtype=np.float32)
    for spectrum, low, high in (((1.0, 0.0, 0.0, 0.0), 0.8, 1.0), ((), -0.3, 0.3)):
        synth = DataConfig(noise_a_range=(1e-8, 1e-8), noise_b_range=(1e-4, 1e-4), noise_structure=(1.0, 1.0, 0.0),
                           noise_row_spectrum=spectrum)  # fmt: skip
        rng = np.random.default_rng(19)
        rows = np.stack([synthesize(clean, rng, synth)[0][0].mean(axis=1) for _ in range(50)]).astype(np.float64)
        assert rows.std() == pytest.approx(0.01, rel=0.1)  # the row std, read noise's 0.01 times 1
        lag = np.mean([np.corrcoef(r[:-1], r[1:])[0, 1] for r in rows])
        assert low < lag < high


@pytest.mark.parametrize("spectrum", [[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.3, 0.4]])
def test_row_offsets_have_the_std_and_the_spectrum_asked_for(spectrum):
    rows = np.stack([row_offsets(np.random.default_rng(i), 512, 0.3, spectrum) for i in range(200)])
    assert np.sqrt((rows**2).mean()) == pytest.approx(0.3, rel=0.02)  # the std asked for, on average ...
    assert rows.std(axis=1).std() > 0.005  # ... each frame's own varying about it, as a real frame's does
    power = (np.abs(np.fft.rfft(rows, axis=1)[:, 1:]) ** 2).mean(axis=0)
    bands = np.array([band.sum() for band in np.array_split(power, len(spectrum))])
    np.testing.assert_allclose(bands / bands.sum(), spectrum, rtol=0.1)
    white = np.stack([row_offsets(np.random.default_rng(i), 512, 0.3, None) for i in range(200)])
    assert white.std() == pytest.approx(0.3, rel=0.01)


@pytest.mark.parametrize("count", [4, 5, 8, 9])
def test_row_offsets_have_the_std_asked_for_with_all_power_at_the_fastest_frequencies(count):
    """The Nyquist term of an even count (a real term) and the last inner term of an odd one, each alone: their
    variance is what the normalisation assumes."""
    spectrum = (0.0,) * (count // 2 - 1) + (1.0,)  # one band a frequency, power only in the fastest
    rows = np.stack([row_offsets(np.random.default_rng(i), count, 0.3, spectrum) for i in range(20000)])
    assert np.sqrt((rows**2).mean()) == pytest.approx(0.3, rel=0.015)
    if count % 2 == 0:  # at the Nyquist frequency alone, rows alternate exactly
        np.testing.assert_allclose(rows[:, 1:], -rows[:, :-1], atol=1e-12)


def test_too_few_rows_for_the_bands_draw_white_rows_as_calibrate_measures_none():
    fast = (0.0,) * 7 + (1.0,)  # power only at the fastest frequencies: neighbouring rows opposite where it applies

    def lag(count: int) -> float:
        rows = [row_offsets(np.random.default_rng(i), count, 1.0, fast) for i in range(300)]
        return float(np.mean([np.corrcoef(r[:-1], r[1:])[0, 1] for r in rows]))

    assert lag(32) < -0.8 and abs(lag(14)) < 0.1
    np.testing.assert_array_equal(row_offsets(np.random.default_rng(5), 14, 1.0, fast),
                                  np.random.default_rng(5).normal(0.0, 1.0, 14))
