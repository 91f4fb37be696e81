"""Sensor calibration from dark and flat frames: generated frames of known noise, and a real dark frame."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import load_module
from scipy import stats

from denoise.config import load_config
from denoise.dataset.calibrate import main as calibrate
from denoise.raw.dng import read_dng, write_new_dng
from denoise.raw.sensor import (
    dark_signature,
    dark_statistics,
    photon_transfer,
    rounded_moments,
    rounding_gain,
    synthesize_dark,
)

SHARED = Path(__file__).parents[2] / "shared" / "dng"
BLACK = np.array([[64.0, 66.0], [62.0, 65.0]])  # per CFA position of an RGGB mosaic: R, Gr / Gb, B
H, W = 512, 768


def dark_frames(count: int, read: float, row: float, fpn: float, seed: int = 0, tails: float | None = None):
    """Dark frames of known noise: a fixed per-pixel offset (std ``fpn``), per frame a row offset (``row``) and
    read noise (``read``, Gaussian or Tukey-lambda of shape ``tails`` scaled to that std), rounded to DN."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, fpn, (H, W))
    black = np.tile(BLACK, (H // 2, W // 2))
    frames = []
    for _ in range(count):
        if tails is None:
            noise = rng.normal(0, read, (H, W))
        else:
            noise = stats.tukeylambda.rvs(tails, size=(H, W), random_state=rng)
            noise *= read / np.sqrt(stats.tukeylambda.var(tails))
        frames.append(np.rint(black + offsets + noise + rng.normal(0, row, (H, 1))))
    return frames


def test_dark_frames_give_back_their_black_read_row_and_fixed_pattern():
    s = dark_statistics(dark_frames(3, read=2.0, row=0.5, fpn=0.8), "RGGB")
    np.testing.assert_allclose(s["black"], [64, 66, 62, 65], atol=0.05)  # R, Gr, Gb, B
    assert s["read_std"] == pytest.approx(np.sqrt(2.0**2 + 1 / 12), rel=0.02)  # rounding to DN adds 1/12 DN^2
    assert s["row_std"] == pytest.approx(0.5, rel=0.1)
    assert s["fpn_std"] == pytest.approx(0.8, rel=0.05)
    assert s["column_std"] < 0.1 and s["frames"] == 3


def test_one_dark_frame_counts_the_fixed_pattern_as_read_noise():
    s = dark_statistics(dark_frames(1, read=2.0, row=0.5, fpn=0.8), "RGGB")
    assert s["read_std"] == pytest.approx(np.sqrt(2.0**2 + 0.8**2 + 1 / 12), rel=0.02)
    assert s["fpn_std"] is None and s["column_std"] is None


def test_heavy_tails_show_in_the_tukey_lambda_shape_and_the_kurtosis():
    gaussian = dark_statistics(dark_frames(2, read=3.0, row=0.0, fpn=0.0), "RGGB")
    heavy = dark_statistics(dark_frames(2, read=3.0, row=0.0, fpn=0.0, tails=-0.15), "RGGB")
    assert gaussian["read_tukey_lambda"] == pytest.approx(0.14, abs=0.04) and abs(gaussian["read_kurtosis"]) < 0.1
    assert heavy["read_tukey_lambda"] < 0.0 and heavy["read_kurtosis"] > 1.0


def test_photon_transfer_recovers_the_gain_whatever_the_pixels_fixed_gains():
    rng = np.random.default_rng(3)
    gain, read = 0.5, 2.0  # DN per electron, DN
    prnu = 1 + 0.02 * rng.standard_normal((H, W))  # 2% fixed gain differences: cancel in a pair's difference
    black = np.tile(BLACK, (H // 2, W // 2))

    def flat(level: float) -> np.ndarray:
        electrons = rng.poisson(level / gain * prnu)
        return np.rint(black + gain * electrons + rng.normal(0, read, (H, W)))

    fit = photon_transfer([(flat(v), flat(v)) for v in (40.0, 200.0, 700.0)], "RGGB", [64, 66, 62, 65])
    assert fit["gain"] == pytest.approx(gain, rel=0.03)
    assert fit["read_var"] == pytest.approx(read**2 + 1 / 12, rel=0.1)


def test_the_real_imx296_dark_frame():
    frame = read_dng(SHARED / "imx296_dark_frame.dng")
    s = dark_statistics([frame.mosaic], frame.pattern)
    mosaic = frame.mosaic.astype(np.float64)
    r, gr, gb, b = mosaic[1::2, 1::2], mosaic[1::2, 0::2], mosaic[0::2, 1::2], mosaic[0::2, 0::2]  # BGGR
    np.testing.assert_allclose(s["black"], [r.mean(), gr.mean(), gb.mean(), b.mean()], rtol=1e-12)
    assert s["read_std"] == pytest.approx(0.44, abs=0.02)  # MANIFEST.md: about 0.44 DN per CFA phase
    assert 0.02 < s["row_std"] < 0.06  # rows' means spread 0.053-0.055 DN, of which 0.016 is read noise


def _write(path: Path, mosaic: np.ndarray) -> Path:
    write_new_dng(path, np.clip(mosaic, 0, 4095).astype(np.uint16), "RGGB", BLACK, 4095)
    return path


def test_the_calibrate_command_writes_the_sensors_json(tmp_path, capsys):
    """Three dark frames and two pairs of flats of a camera with known noise, through DNG files and the command."""
    rng = np.random.default_rng(8)
    darks = [_write(tmp_path / f"dark{i}.dng", m) for i, m in enumerate(dark_frames(3, read=2.0, row=0.5, fpn=0.8))]
    black = np.tile(BLACK, (H // 2, W // 2))
    flats = [_write(tmp_path / f"flat{i}.dng", np.rint(black + 0.5 * rng.poisson(level / 0.5, (H, W))
                                                        + rng.normal(0, 2.0, (H, W))))
             for i, level in enumerate((100.0, 100.0, 900.0, 900.0))]  # fmt: skip
    out = tmp_path / "camera.json"
    assert calibrate(["--dark", *map(str, darks), "--flat", *map(str, flats), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    np.testing.assert_allclose(result["black"], [64, 66, 62, 65], atol=0.05)
    assert result["read_std"] == pytest.approx(np.sqrt(4 + 1 / 12), rel=0.02)
    assert result["row_std"] == pytest.approx(0.5, rel=0.1) and result["fpn_std"] == pytest.approx(0.8, rel=0.05)
    assert result["gain"] == pytest.approx(0.5, rel=0.05)
    scale = 4095 - 64.25  # DN from the mean black to white
    assert result["a"] == pytest.approx(result["gain"] / scale, rel=1e-3)
    assert result["b"] == pytest.approx(result["read_std"] ** 2 / scale**2, rel=1e-3)
    printed = capsys.readouterr().out
    assert "read noise" in printed
    # The last line is a training command for this camera with no photo, which the config rules accept.
    command = shlex.split(printed.strip().splitlines()[-1])
    assert command[:5] == ["python", "-m", "denoise.train", "--config", "configs/no_photos.yaml"]
    cfg = load_config(Path(__file__).parents[1] / "configs" / "no_photos.yaml", command[5:])
    assert cfg.data.camera == str(out) and cfg.data.val_root == ""
    assert cfg.data.noise_a_range[0] < result["a"] < cfg.data.noise_a_range[1]
    assert cfg.data.noise_b_range[0] < result["b"] < cfg.data.noise_b_range[1]
    assert cfg.data.noise_structure == pytest.approx(result["structure"], rel=1e-2)
    assert cfg.data.noise_row_spectrum == pytest.approx(result["row_spectrum"], rel=1e-2)


def test_the_calibrate_command_on_the_real_dark_frame(tmp_path):
    out = tmp_path / "imx296.json"
    assert calibrate(["--dark", str(SHARED / "imx296_dark_frame.dng"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pattern"] == "BGGR" and len(result["black"]) == 4 and result["white"] == 1023
    assert result["read_std"] == pytest.approx(0.44, abs=0.02) and "gain" not in result


@pytest.mark.parametrize("problem", ["odd flats", "mixed sizes", "corrupt"])
def test_the_calibrate_command_refuses_bad_frames_with_one_line(tmp_path, capsys, problem):
    dark = _write(tmp_path / "dark.dng", dark_frames(1, read=2.0, row=0.0, fpn=0.0)[0])
    args = {"odd flats": ["--dark", str(dark), "--flat", str(dark)],
            "mixed sizes": ["--dark", str(dark), str(_write(tmp_path / "small.dng", np.full((64, 64), 70.0)))],
            "corrupt": ["--dark", str(dark), str(SHARED / "bad" / "truncated.dng")]}[problem]  # fmt: skip
    out = tmp_path / "camera.json"
    assert calibrate([*args, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and not out.exists()


def test_rounded_moments_match_rounding_samples():
    """The exact std and kurtosis of rounded Tukey-lambda noise against a million rounded draws."""
    rng = np.random.default_rng(9)
    for std, shape, offset in ((0.4, 0.14, 0.08), (0.7, -0.1, 0.5), (2.0, 0.0, 0.3)):
        x = stats.tukeylambda.rvs(shape, size=1_000_000, random_state=rng) * std / np.sqrt(stats.tukeylambda.var(shape))
        rounded = np.rint(offset + x) - offset
        ours = rounded_moments(std, shape, offset)
        assert ours[0] == pytest.approx(rounded.std(), rel=0.005)
        assert ours[1] == pytest.approx(stats.kurtosis(rounded), abs=0.06 * max(1.0, abs(ours[1])))  # tails: noisy


@pytest.mark.parametrize("read, kurtosis, row", [(2.0, 0.0, 0.5), (1.5, 2.0, 0.5), (0.45, 1.9, 0.05)])
def test_a_synthetic_dark_frame_has_its_calibrations_statistics(read, kurtosis, row):
    """A dark frame drawn from a calibration, measured again: black, read std and tails, rows, fixed pattern."""
    calibration = {"pattern": "GRBG", "black": [64.0, 66.1, 62.05, 65.08], "read_std": read, "read_kurtosis": kurtosis,
                   "row_std": row, "row_pair_corr": 0.5, "fpn_std": None, "white": 4095}  # fmt: skip
    frame = synthesize_dark((1024, 1024), calibration, np.random.default_rng(10))
    s = dark_statistics([frame], "GRBG")
    np.testing.assert_allclose(s["black"], calibration["black"], atol=0.08)  # 512 row offsets of 0.5 DN: 0.02
    assert s["read_std"] == pytest.approx(read, rel=0.03)
    assert s["read_kurtosis"] == pytest.approx(kurtosis, abs=0.25 + 0.1 * kurtosis)
    assert s["row_std"] == pytest.approx(row, rel=0.15) and s["row_pair_corr"] == pytest.approx(0.5, abs=0.2)


def test_a_synthetic_dark_frame_matches_the_held_out_half_of_the_real_one_in_level_and_read_noise():
    """Calibrated on the IMX296 frame's lower half, a synthetic frame matches the upper half's per-channel means and
    read noise; its rows share their offset in pairs (a measured fact of this sensor, kept by the synthesis). The
    row noise and kurtosis of the two real halves differ by 20% and 10% themselves (docs/experiments.md)."""
    frame = read_dng(SHARED / "imx296_dark_frame.dng")
    mosaic = frame.mosaic.astype(np.float64)
    calibration = dark_statistics([mosaic[544:]], frame.pattern)
    assert calibration["row_pair_corr"] > 0.95
    real = dark_signature([mosaic[:544]], frame.pattern)
    synthetic = dark_signature([synthesize_dark((544, mosaic.shape[1]), calibration, np.random.default_rng(11))],
                               frame.pattern)  # fmt: skip
    for channel in ("R", "Gr", "Gb", "B"):
        assert synthetic[f"black {channel}"] == pytest.approx(real[f"black {channel}"], abs=0.01)
    assert synthetic["read_std"] == pytest.approx(real["read_std"], rel=0.03)


def _no_row_noise(rng: np.random.Generator) -> np.ndarray:
    """A 128 x 64 dark frame whose rows all hold one row's values, shuffled within each CFA column parity: every
    channel's row means are equal, so it measures no row noise at all."""
    base = np.rint(64 + rng.normal(0, 2, 64))
    rows = [np.empty(64) for _ in range(128)]
    for row in rows:
        row[0::2], row[1::2] = rng.permutation(base[0::2]), rng.permutation(base[1::2])
    return np.stack(rows).astype(np.uint16)


@pytest.mark.parametrize("case", ["too short for the bands", "no row noise"])
def test_a_dark_frame_without_a_row_spectrum_to_measure_has_none_and_calibrate_prints_none(tmp_path, capsys, case):
    rng = np.random.default_rng(20)
    frame = (np.rint(64 + rng.normal(0, 2, (24, 32))).astype(np.uint16) if case == "too short for the bands"
             else _no_row_noise(rng))  # 12 packed rows; or 64 without row noise  # fmt: skip
    write_new_dng(tmp_path / "dark.dng", frame, "RGGB", 64, 1023)
    assert calibrate(["--dark", str(tmp_path / "dark.dng"), "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["row_spectrum"] is None
    command = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert not any("noise_row_spectrum" in word for word in command)
    load_config(Path(__file__).parents[1] / "configs" / "no_photos.yaml", command[5:])  # accepted as printed


def test_a_row_spectrum_is_recorded_only_for_row_noise_above_the_read_noises_share_of_the_row_means():
    # 64 packed rows of 32 pixels, read noise 2 DN: a row mean's variance from it alone is 4 / 32, and its estimate
    # over 4 channels of 63 degrees of freedom has a standard error of 0.011 DN^2 with no row noise at all.
    def spectrum(row: float, seed: int):
        rng = np.random.default_rng(seed)
        frame = 64 + rng.normal(0, 2, (128, 64)) + np.repeat(rng.normal(0, row, 128)[:, None], 64, axis=1)
        return dark_statistics([np.rint(frame).astype(np.uint16)], "RGGB")["row_spectrum"]

    assert sum(spectrum(0.0, seed) is not None for seed in range(20)) <= 1  # past 4 standard errors: rare
    assert all(spectrum(0.33, seed) is not None for seed in range(20))  # a row variance of 10 standard errors


def test_calibrate_reads_the_simulated_cameras_structure_off_its_dark_frames(tmp_path):
    """scripts/simulate_camera.py on a small demo-like source, then calibrate --dark on the dark frames it wrote."""
    simulate_camera = load_module(Path(__file__).parents[1] / "scripts" / "simulate_camera.py")
    source = tmp_path / "demo"
    (source / "test_gt").mkdir(parents=True)
    clean = np.tile(np.linspace(1100, 9000, 256), (256, 1))
    write_new_dng(source / "test_gt" / "gt0.dng", clean.astype(np.uint16), "BGGR", 1024, 16383)
    meta = {"test": [{"key": "0", "a": 1e-3, "b": 1e-4, "noise": "poisson_gaussian"}]}
    (source / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "camera"
    assert simulate_camera.main(["--source", str(source), "--out", str(out), "--structure", "0.5", "1.0", "0.3",
                                 "--dark", "3"]) == 0  # fmt: skip
    noisy = read_dng(out / "test" / "noisy0.dng")
    assert noisy.mosaic.shape == clean.shape and json.loads((out / "meta.json").read_text())["camera_structure"]
    assert calibrate(["--dark", *map(str, sorted((out / "dark").glob("*.dng"))), "--json", str(out / "c.json")]) == 0
    row, pair, fixed = json.loads((out / "c.json").read_text())["structure"]
    assert row == pytest.approx(0.5, rel=0.15) and pair == pytest.approx(1.0, abs=0.05)
    assert fixed == pytest.approx(0.3, rel=0.1)


def _tukey(rng, shape, std, size):
    return stats.tukeylambda.rvs(shape, size=size, random_state=rng) * std / np.sqrt(stats.tukeylambda.var(shape))


def test_rounding_gain_is_the_slope_of_the_rounded_mean():
    """Against two million rounded draws at offsets 0.01 DN apart (common random numbers)."""
    rng = np.random.default_rng(14)
    for std, shape, offset in ((0.36, 0.38, 0.08), (0.36, -0.07, 0.08), (0.2, 0.14, 0.3), (2.0, 0.14, 0.3)):
        x = _tukey(rng, shape, std, 2_000_000)
        slope = (np.rint(offset + 0.005 + x).mean() - np.rint(offset - 0.005 + x).mean()) / 0.01
        assert rounding_gain(std, shape, offset) == pytest.approx(slope, abs=0.02)
    assert rounding_gain(2.0, 0.14, 0.3) == pytest.approx(1.0, abs=1e-6)  # wide noise dithers fully


def test_rounded_moments_with_row_offsets_match_rows_measured_about_their_means():
    """Rows of 4096 rounded values, each row moved by a Gaussian offset, each taken about its own mean."""
    rng = np.random.default_rng(15)
    std, shape, offset, smear = 0.36, 0.1, 0.08, 0.15
    rows = np.rint(offset + rng.normal(0, smear, (500, 1)) + _tukey(rng, shape, std, (500, 4096)))
    about = rows - rows.mean(axis=1, keepdims=True)
    ours = rounded_moments(std, shape, offset, smear)
    assert ours[0] == pytest.approx(about.std(), rel=0.005)
    assert ours[1] == pytest.approx(stats.kurtosis(about.ravel()), rel=0.05)
    assert abs(ours[1] - rounded_moments(std, shape, offset)[1]) > 0.2  # the offsets matter at this size


def test_a_synthetic_dark_frame_gives_its_calibration_back_row_spectrum_and_tails_included():
    """A frame of slow banding (a random walk of rows), sub-DN Tukey-lambda read noise, black at 0.1 DN past a
    whole DN: calibrated, synthesised and calibrated again, every number comes back within its sampling error."""
    rng = np.random.default_rng(16)
    banding = np.cumsum(rng.normal(0, 0.02, 1024))
    banding = np.repeat(0.08 * (banding - banding.mean()) / banding.std(), 2)[:, None]  # rows in pairs, 0.08 DN
    mosaic = np.rint(60.1 + banding + _tukey(rng, -0.05, 0.35, (2048, 1024)))
    calibration = dark_statistics([mosaic], "BGGR") | {"white": 1023}
    assert calibration["row_spectrum"][0] > 0.5  # slow banding: most of the power in the first band of eight
    again = [dark_statistics([synthesize_dark(mosaic.shape, calibration, np.random.default_rng(i))], "BGGR")
             for i in range(6)]
    for key, rel in (("read_std", 0.01), ("read_kurtosis", 0.05), ("row_std", 0.1)):
        assert np.median([a[key] for a in again]) == pytest.approx(calibration[key], rel=rel), key
    np.testing.assert_allclose(np.median([a["row_spectrum"] for a in again], axis=0), calibration["row_spectrum"],
                               atol=0.1)


def test_a_dark_frame_drawn_at_another_black_rounds_the_same_sensor_noise_there():
    """Two sessions of one sensor, black 0.08 DN and 0.4 DN past a whole DN: calibrated on the first, a frame drawn
    at the second's black matches the second's read std and kurtosis, which differ from the first's."""
    rng = np.random.default_rng(17)
    sessions = [np.rint(level + _tukey(rng, 0.1, 0.36, (1024, 1024))) for level in (60.08, 60.4)]
    first, second = (dark_statistics([m], "RGGB") | {"white": 1023} for m in sessions)
    assert second["read_std"] / first["read_std"] > 1.1 and second["read_kurtosis"] < first["read_kurtosis"] - 1
    drawn = dark_statistics([synthesize_dark((1024, 1024), first, np.random.default_rng(18), second["black"])],
                            "RGGB")  # fmt: skip
    assert drawn["read_std"] == pytest.approx(second["read_std"], rel=0.02)
    assert drawn["read_kurtosis"] == pytest.approx(second["read_kurtosis"], abs=0.1)


def test_the_holdout_script_compares_the_real_frames_halves_and_refuses_a_bad_file(tmp_path, capsys):
    holdout = load_module(Path(__file__).parents[1] / "scripts" / "dark_holdout.py")
    out = tmp_path / "holdout.json"
    assert holdout.main([str(SHARED / "imx296_dark_frame.dng"), "--frames", "2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 and all("half" in name for name in results)  # one frame: its halves, both ways
    for rows in results.values():
        assert rows["read_std"]["median"] == pytest.approx(rows["read_std"]["real"], rel=0.03)
        assert rows["black R"]["median"] == pytest.approx(rows["black R"]["real"], abs=0.02)
    assert "upper half -> lower half" in capsys.readouterr().out
    assert holdout.main([str(SHARED / "imx296_dark_frame.dng"), str(SHARED / "bad" / "truncated.dng")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "truncated.dng" in err and len(err.splitlines()) == 1


def test_a_frame_drawn_at_another_black_keeps_the_sensors_row_noise():
    """Row offsets of 0.15 DN before rounding: measured after it they differ between blacks 0.08 and 0.45 DN past a
    whole DN; drawn from the first at the second's black, the second's row std comes back."""
    rng = np.random.default_rng(19)
    sessions = [np.rint(level + rng.normal(0, 0.15, (2048, 1)) + _tukey(rng, 0.14, 0.36, (2048, 512)))
                for level in (60.08, 60.45)]  # fmt: skip
    first, second = (dark_statistics([m], "RGGB") | {"white": 1023} for m in sessions)
    drawn = [dark_statistics([synthesize_dark((2048, 512), first, np.random.default_rng(i), second["black"])],
                             "RGGB")["row_std"] for i in range(4)]  # fmt: skip
    assert np.median(drawn) == pytest.approx(second["row_std"], rel=0.08)


def test_a_dark_frame_of_noise_mostly_within_one_dn_is_calibrated_and_drawn():
    """Read noise of 0.15 DN: nearly every value one DN, no Tukey shape to fit; the calibration and a frame drawn
    from it still work and agree."""
    mosaic = np.rint(60.3 + np.random.default_rng(20).normal(0, 0.15, (512, 512)))
    calibration = dark_statistics([mosaic], "RGGB") | {"white": 1023}
    drawn = dark_statistics([synthesize_dark((512, 512), calibration, np.random.default_rng(21))], "RGGB")
    assert drawn["read_std"] == pytest.approx(calibration["read_std"], rel=0.1)
    np.testing.assert_allclose(drawn["black"], calibration["black"], atol=0.01)
