"""The embedded demo dataset: layout, DNG tags, noise levels, disjoint photos, determinism, CLI refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from denoise.config import DataConfig
from denoise.dataset.calibrate import sensor_calibration
from denoise.dataset.pairs import discover_pairs
from denoise.dataset.synth import (
    DARK_FRAMES,
    EVAL_LEVELS,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    VAL_PHOTOS,
    VAL_SCENES,
    build_demo,
    main,
    plan,
    validation_scene,
)
from denoise.raw.bayer import normalize
from denoise.raw.dng import read_dng
from denoise.raw.render import inverse_gamma, inverse_tone_curve, mosaic_rgb

SIZES = {"train_size": (64, 96), "test_size": (64, 64)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    meta = build_demo(out, seed=3, n_train=3, n_test=3, n_val=2, **SIZES)
    return out, meta


def test_layout_matches_the_competition_and_default_discovery(demo):
    out, meta = demo
    pairs = discover_pairs(out / "train", DataConfig.noisy_glob, DataConfig.clean_glob, DataConfig.key_regex)
    assert [p.key for p in pairs] == ["0", "1", "2"]
    assert sorted(p.name for p in (out / "test").iterdir()) == ["noisy0.dng", "noisy1.dng", "noisy2.dng"]
    assert sorted(p.name for p in (out / "test_gt").iterdir()) == ["gt0.dng", "gt1.dng", "gt2.dng"]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["noisy0.dng", "noisy1.dng"]
    assert sorted(p.name for p in (out / "val_gt").iterdir()) == ["gt0.dng", "gt1.dng"]
    assert json.loads((out / "meta.json").read_text()) == json.loads(json.dumps(meta))


def test_frames_read_back_as_14_bit_bggr_with_the_white_balance(demo):
    out, meta = demo
    cases = ((out / "train/noisy/1_noise.dng", meta["train"][1]), (out / "test_gt/gt2.dng", meta["test"][2]))
    for path, recipe in cases:
        frame = read_dng(path)
        assert frame.pattern == "BGGR" and frame.white_level == 16383
        np.testing.assert_array_equal(frame.black_level, np.full((2, 2), 1024.0))
        assert frame.mosaic.shape == tuple(recipe["crop"][2:])
        assert frame.mosaic.min() >= 1024 and frame.mosaic.max() <= 16383
        np.testing.assert_allclose(frame.as_shot_neutral, 1 / np.array(recipe["wb_gains"]), rtol=1e-4)


def test_noise_matches_the_recorded_levels(demo):
    out, meta = demo
    frames = [(part, index, recipe) for part in ("test", "val") for index, recipe in enumerate(meta[part])]
    for part, index, recipe in frames:
        noisy, clean = read_dng(out / f"{part}/noisy{index}.dng"), read_dng(out / f"{part}_gt/gt{index}.dng")
        x = normalize(clean.mosaic, 1024, 16383)
        residual = normalize(noisy.mosaic, 1024, 16383) - x
        variance = recipe["a"] * x + recipe["b"]
        unclipped = x > 3 * np.sqrt(variance)  # away from the clip at black
        count = unclipped.sum()
        assert count >= 10
        tolerance = max(0.1, 4 * np.sqrt(2 / count))  # four standard errors of a sample variance
        assert abs(np.mean(residual[unclipped] ** 2 / variance[unclipped]) - 1) < tolerance
    assert {r["noise"] for r in meta["test"] + meta["val"]} == {"poisson_gaussian"}
    assert {r["noise"] for r in meta["train"]} == {"gaussian"}


def test_evaluation_grids_hold_every_scene_at_every_level_with_noise_rising():
    shapes = {name: (512, 512) for name in TRAIN_PHOTOS + VAL_PHOTOS + TEST_PHOTOS + VAL_SCENES}
    photo_grid = len(EVAL_LEVELS) * len(VAL_PHOTOS)
    recipes = plan(0, 14, len(EVAL_LEVELS) * len(TEST_PHOTOS), photo_grid + len(EVAL_LEVELS) * len(VAL_SCENES),
                   (64, 96), (64, 64), shapes)  # fmt: skip
    parts = (("test", recipes["test"], TEST_PHOTOS), ("val photos", recipes["val"][:photo_grid], VAL_PHOTOS),
             ("val scenes", recipes["val"][photo_grid:], VAL_SCENES))  # fmt: skip
    for part, frames, photos in parts:
        cells = [(r.photo, (r.a, r.b)) for r in frames]
        assert sorted(cells) == sorted((p, level) for p in photos for level in EVAL_LEVELS), part  # each once
        levels = [(r.a, r.b) for r in frames]
        assert levels == sorted(levels) and levels[0] == (1e-4, 1e-6) and levels[-1] == (1e-2, 1e-3), part
    assert [r.key for r in recipes["val"]] == [str(i) for i in range(len(recipes["val"]))]
    # The scenes come after the photos, from a stream of their own: adding them moves no photo frame.
    photos_only = plan(0, 14, 1, photo_grid, (64, 96), (64, 64), shapes)["val"]
    assert photos_only == recipes["val"][:photo_grid]
    assert len(set(TEST_PHOTOS)) >= 6 and len(recipes["test"]) >= 30  # the benchmark's size


def test_validation_scenes_are_textured_frames_of_their_own_seed(tmp_path):
    photo_grid = len(EVAL_LEVELS) * len(VAL_PHOTOS)
    meta = build_demo(tmp_path / "demo", seed=3, n_train=1, n_test=1, n_val=photo_grid + 1, **SIZES)
    assert meta["val"][-1]["photo"] == VAL_SCENES[0] and tuple(meta["val"][-1]["crop"]) == (0, 0, *SIZES["test_size"])
    clean = read_dng(tmp_path / f"demo/val_gt/gt{photo_grid}.dng").mosaic
    assert clean.shape == SIZES["test_size"] and clean.std() > 100  # DN: a scene, not a flat frame
    scene = validation_scene(3, VAL_SCENES[0], (64, 64))
    assert np.array_equal(scene, validation_scene(3, VAL_SCENES[0], (64, 64)))
    assert not np.allclose(scene, validation_scene(4, VAL_SCENES[0], (64, 64)))
    assert not np.allclose(scene, validation_scene(3, VAL_SCENES[1], (64, 64)))


def test_no_photo_is_in_two_parts(demo):
    _, meta = demo
    parts = (set(TRAIN_PHOTOS), set(VAL_PHOTOS) | set(VAL_SCENES), set(TEST_PHOTOS))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for part, photos in zip(("train", "val", "test"), parts, strict=True):
        assert {r["photo"] for r in meta[part]} <= photos


def test_same_seed_same_bytes_other_seed_other_frames(tmp_path, demo):
    out, _ = demo
    build_demo(tmp_path / "again", seed=3, n_train=3, n_test=3, n_val=2, **SIZES)
    build_demo(tmp_path / "other", seed=4, n_train=3, n_test=3, n_val=2, **SIZES)
    name = "train/ground truth/0_gt.dng"
    assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    assert not np.array_equal(read_dng(tmp_path / "other" / name).mosaic, read_dng(out / name).mosaic)


def test_camera_pipeline_steps_invert_the_forward_ones():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(3 * inverse_tone_curve(x) ** 2 - 2 * inverse_tone_curve(x) ** 3, x, atol=1e-9)
    linear = inverse_gamma(x)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(encoded, x, atol=1e-9)
    rgb = np.stack([np.full((4, 4), v) for v in (0.1, 0.2, 0.3)], axis=-1)
    np.testing.assert_allclose(mosaic_rgb(rgb, "BGGR")[:2, :2], [[0.3, 0.2], [0.2, 0.1]])


def test_cli_refuses_a_non_empty_folder_and_bad_sizes(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert main(["--out", str(tmp_path / "new"), "--train-size", "63", "96"]) == 2
    assert (tmp_path / "out/keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()
    assert capsys.readouterr().err.count("error:") == 2


def _synth_until_staged(out: Path, *extra: str) -> subprocess.Popen:
    """A real ``dataset.synth`` process into ``out``, returned once a hidden build folder of its own exists."""
    before = set(out.parent.glob(f".{out.name}.*"))
    command = [sys.executable, "-m", "denoise.dataset.synth", "--out", str(out), "--train", "2", "--test", "1",
               "--val", "1", "--train-size", "64", "96", "--test-size", "64", "64", *extra]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not set(out.parent.glob(f".{out.name}.*")) - before and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    return proc


def test_a_killed_build_is_cleared_by_the_next_and_ctrl_c_says_what_was_kept(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    killed = _synth_until_staged(out)
    killed.kill()
    killed.wait()
    assert list(tmp_path.glob(".demo.*")) and not out.exists()  # what kill -9 leaves ...
    interrupted = _synth_until_staged(out)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines() == [f"interrupted: nothing written to {out} (the partial dataset was removed)"]
    assert not list(tmp_path.glob(".demo.*")) and not out.exists()  # ... the next run cleared
    assert main(["--out", str(out), "--train", "2", "--test", "1", "--val", "1", "--train-size", "64", "96",
                 "--test-size", "64", "64"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_dark_frames_give_the_demo_camera_back_through_calibrate(demo):
    out, _ = demo
    darks = sorted(str(p) for p in (out / "dark").glob("dark*.dng"))
    assert len(darks) == DARK_FRAMES
    result = sensor_calibration(darks, [])
    read = np.sqrt(EVAL_LEVELS[2][1]) * (16383 - 1024)  # the middle level's read noise, in DN
    assert result["pattern"] == "BGGR" and result["white"] == 16383
    # Black within four standard errors of a mean of 3 x 64 x 64 / 4 values per channel; read std within 3%.
    assert np.abs(np.array(result["black"]) - 1024).max() < 4 * read / np.sqrt(3 * 64 * 64 / 4)
    assert abs(result["read_std"] / read - 1) < 0.03
    assert not np.array_equal(read_dng(darks[0]).mosaic, read_dng(darks[1]).mosaic)
