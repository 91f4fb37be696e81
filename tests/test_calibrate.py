"""Noise calibration recovers known parameters from synthetic pairs; the CLI prints a table and ranges."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fixtures import BLACK, WHITE, write_frame

from denoise.dataset.calibrate import calibrate_frames, main
from denoise.raw.bayer import denormalize
from denoise.raw.noise import add_gaussian_noise


def _pair(a: float, b: float, seed: int = 0, clip_black: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) DN mosaics of a ramp from black to 60% of white with noise var = a*x + b."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.linspace(0.0, 0.6, 512), (384, 1))
    noisy = add_gaussian_noise(x, a, b, rng).astype(np.float64)
    dn = np.rint(noisy * (WHITE - BLACK) + BLACK)
    dn = np.clip(dn, BLACK if clip_black else 0, WHITE).astype(np.uint16)
    return dn, denormalize(x, BLACK, WHITE)


@pytest.mark.parametrize(("a", "b"), [(2e-3, 5e-5), (8e-3, 6e-4), (3e-4, 2e-5)])
def test_recovers_known_parameters_within_ten_percent(a, b):
    noisy, clean = _pair(a, b)
    fits = calibrate_frames(noisy, clean, "BGGR", np.full((2, 2), BLACK), WHITE)
    assert set(fits) == {"R", "Gr", "Gb", "B", "all"}
    for name, (fa, fb) in fits.items():
        tolerance = 0.1 if name == "all" else 0.2  # a single channel has a quarter of the samples
        assert abs(fa / a - 1) < tolerance and abs(fb / b - 1) < tolerance, (name, fa, fb)


def test_noisy_frames_clipped_at_black_still_give_the_shot_term():
    a, b = 4e-3, 1e-4
    noisy, clean = _pair(a, b, clip_black=True)
    fa, _ = calibrate_frames(noisy, clean, "BGGR", np.full((2, 2), BLACK), WHITE)["all"]
    assert abs(fa / a - 1) < 0.1


def test_cli_prints_a_row_per_pair_and_suggested_ranges(tmp_path, capsys):
    for key, (a, b) in enumerate([(1e-3, 1e-5), (4e-3, 3e-4)]):
        noisy, clean = _pair(a, b, seed=key)
        write_frame(tmp_path / f"noisy/{key}_noise.dng", noisy)
        write_frame(tmp_path / f"ground truth/{key}_gt.dng", clean)
    assert main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: [float(v) for v in line.split()[1:3]] for line in out[1:3]}
    assert abs(rows["0"][0] / 1e-3 - 1) < 0.1 and abs(rows["1"][1] / 3e-4 - 1) < 0.1
    ranges = out[-1]
    low, high = (float(v) for v in ranges.split("noise_a_range=[")[1].split("]")[0].split(","))
    assert low < 1e-3 < 4e-3 < high


def test_cli_bad_folder_exits_2_with_one_line(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing" in err and "\n" not in err


def test_pairs_that_cannot_be_fitted_are_named_not_crashed_on(tmp_path, capsys):
    """A 32 x 32 pair has 256 pixels a CFA channel, too few for two 64-pixel bins; a pair with no noise fits a = b
    = 0 and used to suggest ranges of 1e-8. Alone, each is one error line; beside a good pair, a warning."""
    small_noisy, small_clean = _pair(1e-3, 1e-5, seed=0)
    write_frame(tmp_path / "noisy/0_noise.dng", small_noisy[:32, :32])
    write_frame(tmp_path / "ground truth/0_gt.dng", small_clean[:32, :32])
    assert main(["--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "0_noise.dng: too few pixels to fit a line" in err and "Traceback" not in err
    _, clean = _pair(1e-3, 1e-5, seed=1)
    write_frame(tmp_path / "noisy/0_noise.dng", clean)
    write_frame(tmp_path / "ground truth/0_gt.dng", clean)
    assert main(["--data", str(tmp_path)]) == 2
    assert "0_noise.dng: no noise measured" in capsys.readouterr().err
    noisy, clean = _pair(2e-3, 1e-4, seed=2)
    write_frame(tmp_path / "noisy/1_noise.dng", noisy)
    write_frame(tmp_path / "ground truth/1_gt.dng", clean)
    assert main(["--data", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == f"warning: {tmp_path / 'noisy/0_noise.dng'}: no noise measured: the noisy frame equals " \
        "its clean one; left out of the suggested ranges"
    low, high = (float(v) for v in out.splitlines()[-1].split("noise_a_range=[")[1].split("]")[0].split(","))
    assert low < 2e-3 < high and low > 1e-4  # from the good pair alone
