"""Training content: procedural dead-leaves scenes (determinism, the size and spectrum laws they follow, their
share of the samples) and the per-crop variation of synthetic samples (channel gains, zoom-out)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from dataset_fixtures import WHITE, write_pairs

from denoise.config import ConfigError, DataConfig, load_config
from denoise.dataset import leaves, procedural
from denoise.dataset.frames import load_split
from denoise.dataset.loader import PairDataset, build_train_dataset
from denoise.dataset.pairs import DatasetError


def test_a_scene_is_a_pure_function_of_its_seed_and_stays_in_range():
    first = leaves.leaves_scene(np.random.default_rng(7), 96, 128)
    again = leaves.leaves_scene(np.random.default_rng(7), 96, 128)
    other = leaves.leaves_scene(np.random.default_rng(8), 96, 128)
    assert first.shape == (96, 128, 3) and np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.min() >= 0.0 and first.max() <= 1.0
    # Natural-looking spread: neither flat nor binary, and the three channels not identical (colour).
    assert 0.1 < first.std() < 0.4 and np.abs(first[..., 0] - first[..., 2]).mean() > 0.01


def test_radii_follow_the_inverse_cube_density_between_their_limits():
    lo = 2.0
    radii = leaves.shape_radii(np.random.default_rng(0), 200_000, lo, 100.0)
    assert radii.min() >= lo and radii.max() <= 100.0
    # Distribution function of density ~ r^-3 on [lo, hi]: (lo^-2 - r^-2) / (lo^-2 - hi^-2).
    for r in (3.0, 10.0, 40.0):
        expected = (lo**-2 - r**-2) / (lo**-2 - 100.0**-2)
        assert abs(np.mean(radii <= r) - expected) < 0.005


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5])
def test_fractal_fields_have_unit_variance_and_the_requested_spectral_slope(beta):
    field = leaves.fractal_field(np.random.default_rng(1), 256, 256, beta)
    assert abs(field.mean()) < 1e-9 and abs(field.std() - 1.0) < 1e-9
    power = np.abs(np.fft.fft2(field)) ** 2
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    bands = np.geomspace(0.02, 0.4, 9)
    centres = np.sqrt(bands[:-1] * bands[1:])
    means = [power[(freq >= a) & (freq < b)].mean() for a, b in itertools.pairwise(bands)]
    slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
    assert abs(slope + 2 * beta) < 0.15  # power ~ f^(-2 beta)


def test_every_fill_kind_and_the_full_edge_and_amplitude_ranges_are_drawn():
    # Each kind drawn in the proportion configured; texture and stripe amplitudes reach both ends of their range.
    rng = np.random.default_rng(3)
    kinds = rng.choice(len(leaves.FILLS), size=20_000, p=leaves.FILL_WEIGHTS)
    assert np.allclose(np.bincount(kinds) / kinds.size, leaves.FILL_WEIGHTS, atol=0.01)
    box = (slice(0, 64), slice(0, 64))
    fields = [leaves.fractal_field(rng, 64, 64, 0.5)]
    spreads = [leaves._fill(rng, "stripes", box, fields, 30.0)[..., 1].std() * np.sqrt(2) for _ in range(400)]
    low, high = leaves.AMPLITUDE_RANGE
    assert min(spreads) < low * 1.5 and max(spreads) > high * 0.8
    flat = leaves._fill(rng, "flat", box, fields, 30.0)
    assert flat.shape == (3,) and flat.min() >= 0.0 and flat.max() <= 1.0


def test_a_procedural_mosaic_is_the_scene_through_a_camera_in_the_pattern_given():
    mosaic = procedural.procedural_mosaic(seed=0, index=2, shape=(64, 96), pattern="RGGB")
    again = procedural.procedural_mosaic(seed=0, index=2, shape=(64, 96), pattern="RGGB")
    assert mosaic.shape == (64, 96) and np.array_equal(mosaic, again)
    assert mosaic.min() >= 0.0 and mosaic.max() <= 1.0 and mosaic.mean() > 0.01
    assert not np.array_equal(mosaic, procedural.procedural_mosaic(seed=1, index=2, shape=(64, 96), pattern="RGGB"))


def test_a_gray_scene_has_camera_channels_in_one_ratio_and_a_coloured_one_is_untouched(monkeypatch):
    coloured = [procedural.procedural_mosaic(0, i, (64, 96), "RGGB") for i in range(12)]
    seen = []  # the linear camera RGB each scene is mosaicked from
    real_mosaic = procedural.mosaic_rgb
    monkeypatch.setattr(procedural, "mosaic_rgb", lambda rgb, pattern: seen.append(rgb) or real_mosaic(rgb, pattern))
    some = [procedural.procedural_mosaic(0, i, (64, 96), "RGGB", gray=0.5) for i in range(12)]
    kept = [np.array_equal(a, b) for a, b in zip(coloured, some, strict=True)]
    assert 2 <= sum(kept) <= 10  # about half lose their colour; the others are the same scene and camera
    for rgb, same in zip(seen, kept, strict=True):
        lit = (rgb.min(axis=2) > 0.01) & (rgb.max(axis=2) < 0.99)  # not clipped
        ratios = rgb[lit] / rgb[lit][:, 1:2]  # each channel over green
        assert (ratios.std(axis=0).max() < 1e-9) != same  # grey: one fixed multiple per channel, the camera's


@pytest.fixture
def small_scenes(monkeypatch):
    monkeypatch.setattr(procedural, "SCENE_SHAPE", (48, 64))


def test_scenes_are_cached_once_with_the_training_frames_levels(tmp_path, small_scenes):
    write_pairs(tmp_path / "data", count=2, shape=(24, 32), pattern="GRBG")
    train, _ = load_split(DataConfig(root=str(tmp_path / "data"), val_count=0))
    cache = tmp_path / "cache"
    pairs = procedural.procedural_pairs(2, 5, train[0].clean, cache)
    assert [p.key for p in pairs] == ["procedural0", "procedural1"] and all(p.noisy is None for p in pairs)
    frame = pairs[0].clean
    assert frame.pattern == "GRBG" and frame.white_level == WHITE and frame.shape == (48, 64)
    stamps = sorted(p.stat().st_mtime_ns for p in cache.glob("procedural-*.npy"))
    assert len(stamps) == 2
    again = procedural.procedural_pairs(2, 5, train[0].clean, cache)  # found in the cache, not made again
    assert sorted(p.stat().st_mtime_ns for p in cache.glob("procedural-*.npy")) == stamps
    expected = procedural.procedural_mosaic(5, 0, (48, 64), "GRBG")
    steps = frame.white_level - frame.channel_black()
    stored = np.asarray(again[0].clean.load())  # (4, 24, 32), normalised and rounded to whole DN
    from denoise.raw.bayer import pack_bayer

    assert np.allclose(stored, np.rint(pack_bayer(expected, "GRBG") * steps[:, None, None]) / steps[:, None, None],
                       atol=1e-6)


def test_the_procedural_fraction_of_samples_comes_from_the_scenes(tmp_path, small_scenes):
    write_pairs(tmp_path / "data", count=2, shape=(24, 32))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=0, patch_size=4, samples_per_epoch=2000,
                     procedural_scenes=2, procedural_fraction=0.3, synthetic_fraction=0.0, augment_flips=False)
    dataset = build_train_dataset(cfg, seed=0)
    scenes = [np.asarray(f.clean.load()) for f in dataset.frames[dataset.photo_count :]]
    photos = [np.asarray(f.clean.load()) for f in dataset.frames[: dataset.photo_count]]

    def found_in(crop: np.ndarray, frames: list[np.ndarray], tolerance: float) -> bool:
        for frame in frames:
            h, w = frame.shape[1:]
            windows = np.lib.stride_tricks.sliding_window_view(frame, (4, 4), axis=(1, 2))[:, : h - 3, : w - 3]
            if (np.abs(windows - crop[:, None, None]).max(axis=(0, 3, 4)) < tolerance).any():
                return True
        return False

    sources = []
    black = dataset.frames[0].clean.channel_black()[:, None, None]
    for i in range(200):
        clean = dataset[i]["clean"].numpy()
        in_scene = found_in(clean, scenes, 1e-6)
        in_photo = found_in(clean * (WHITE - black) + black, photos, 0.01)  # photos are stored in DN
        assert in_scene != in_photo
        sources.append(in_scene)
    assert abs(np.mean(sources) - 0.3) < 0.1
    # Scene samples always get synthetic noise, even though the dataset's own pairs are never synthesised.
    sample = next(dataset[i] for i in range(200) if sources[i])
    assert not torch.equal(sample["noisy"], sample["clean"])


def test_without_scenes_the_samples_are_unchanged(tmp_path):
    write_pairs(tmp_path / "data", count=2, shape=(24, 32))
    train, _ = load_split(DataConfig(root=str(tmp_path / "data"), val_count=0))
    sampling = DataConfig(patch_size=4, samples_per_epoch=20, procedural_fraction=0.5)
    plain = PairDataset(train, replace(sampling, procedural_fraction=0.0), seed=4)
    with_none = PairDataset(train, sampling, seed=4, procedural=[])  # no scenes: no draw for them either
    for i in range(20):
        assert torch.equal(plain[i]["noisy"], with_none[i]["noisy"])


@pytest.mark.parametrize(("overrides", "key"), [
    (["data.procedural_fraction=1.5", "data.procedural_scenes=4"], "procedural_fraction"),
    (["data.procedural_fraction=0.5", "data.procedural_scenes=0"], "procedural_fraction"),
    (["data.procedural_scenes=-1"], "procedural_scenes"),
])
def test_bad_procedural_settings_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"data.{key}"):
        load_config("configs/demo.yaml", overrides)


def _block_detail(image: np.ndarray, block: int = 16) -> np.ndarray:
    """Per-block rms of the green plane's separable second difference (zero on flat and linear content)."""
    g = image[..., 1]
    d = g[:-2] - 2 * g[1:-1] + g[2:]
    d = d[:, :-2] - 2 * d[:, 1:-1] + d[:, 2:]
    h, w = (s // block for s in d.shape)
    return np.sqrt((d[: h * block, : w * block].reshape(h, block, w, block) ** 2).mean(axis=(1, 3)))


def test_grain_scenes_leave_no_smooth_block_and_others_keep_some(monkeypatch):
    monkeypatch.setattr(leaves, "GRAIN_PROBABILITY", 0.0)
    monkeypatch.setattr(leaves, "MIN_RADIUS_RANGE", (16.0, 16.0))
    plain = leaves.leaves_scene(np.random.default_rng(2), 256, 256)
    assert _block_detail(plain).min() < 1e-3  # large flat and shaded shapes leave smooth blocks
    monkeypatch.setattr(leaves, "GRAIN_PROBABILITY", 1.0)
    monkeypatch.setattr(leaves, "GRAIN_AMPLITUDE", (0.01, 0.01))
    grainy = leaves.leaves_scene(np.random.default_rng(2), 256, 256)
    assert _block_detail(grainy).min() > 0.002


def test_scene_level_draws_cover_their_configured_ranges(monkeypatch):
    # The smallest radius and the grain are drawn once per scene: record the draws of many small scenes.
    radii, betas = [], []
    real_radii, real_field = leaves.shape_radii, leaves.fractal_field

    def spy_radii(rng, count, min_radius, max_radius):
        radii.append(min_radius)
        return real_radii(rng, count, min_radius, max_radius)

    def spy_field(rng, height, width, beta):
        betas[-1].append(beta)
        return real_field(rng, height, width, beta)

    monkeypatch.setattr(leaves, "shape_radii", spy_radii)
    monkeypatch.setattr(leaves, "fractal_field", spy_field)
    monkeypatch.setattr(leaves, "MAX_SHAPES", 8)
    for seed in range(300):
        betas.append([])
        leaves.leaves_scene(np.random.default_rng(seed), 16, 16)
    lo, hi = leaves.MIN_RADIUS_RANGE
    assert lo <= min(radii) < lo * 1.1 and hi / 1.1 < max(radii) <= hi
    assert abs(np.mean(np.log(radii)) - np.log(lo * hi) / 2) < 0.15  # log-uniform
    # Each scene draws its texture fields, then (with GRAIN_PROBABILITY) one grain field.
    assert all(len(b) in (leaves.FIELDS, leaves.FIELDS + 1) for b in betas)
    textures = [beta for b in betas for beta in b[: leaves.FIELDS]]
    grain = [b[-1] for b in betas if len(b) > leaves.FIELDS]
    assert abs(len(grain) / 300 - leaves.GRAIN_PROBABILITY) < 0.08
    for values, (low, high) in ((textures, leaves.BETA_RANGE), (grain, leaves.GRAIN_BETA)):
        span = high - low
        assert low <= min(values) < low + 0.05 * span and high - 0.05 * span < max(values) <= high


def _camera_file(path, pattern="RGGB", black=(60.0, 61.0, 62.0, 63.0), white=1023):
    path.write_text(json.dumps({"pattern": pattern, "black": list(black), "white": white, "read_std": 0.4}))
    return path


def test_a_camera_calibration_sets_the_scenes_pattern_and_levels(tmp_path):
    # GBRG: Gb B on the first row, R Gr on the second (Gr shares the red row); black in R, Gr, Gb, B order.
    like = procedural.camera_like(_camera_file(tmp_path / "cam.json", "GBRG"))
    assert like.pattern == "GBRG" and like.white_level == 1023
    np.testing.assert_array_equal(like.black_level, [[62.0, 63.0], [60.0, 61.0]])
    np.testing.assert_array_equal(like.channel_black(), [60.0, 61.0, 62.0, 63.0])


@pytest.mark.parametrize("content", [
    "not json", "[1, 2]", '{"pattern": "RGGB", "black": [60, 60, 60], "white": 1023}',
    '{"pattern": "RGBG", "black": [60, 60, 60, 60], "white": 1023}',
    '{"pattern": "RGGB", "black": [60, 60, 60, 60], "white": 50}',
    '{"pattern": "RGGB", "black": [60, 60, 60, 60], "white": 1023.5}',
    '{"pattern": "RGGB", "black": [60, NaN, 60, 60], "white": 1023}',
    '{"pattern": "RGGB", "black": [60, 60, 60, -Infinity], "white": 1023}',
    '{"pattern": "RGGB", "black": [-500, 60, 60, 60], "white": 1023}',
    '{"pattern": "RGGB", "black": [true, 60, 60, 60], "white": 1023}',
    '{"pattern": "RGGB", "black": [0, 0, 0, 0], "white": true}',
])
def test_a_file_that_is_not_a_calibration_is_named_with_the_problem(tmp_path, content):
    path = tmp_path / "cam.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}: "):
        procedural.camera_like(path)
    with pytest.raises(DatasetError, match="cannot read"):
        procedural.camera_like(tmp_path / "missing.json")


def test_without_photos_every_sample_is_a_noisy_crop_of_a_scene_made_like_the_camera(tmp_path, small_scenes):
    camera = _camera_file(tmp_path / "cam.json", "GRBG", black=(64.0, 64.0, 64.0, 64.0))
    cfg = DataConfig(root="", camera=str(camera), patch_size=8, samples_per_epoch=40, procedural_scenes=2,
                     procedural_fraction=1.0, synthetic_fraction=1.0, augment_flips=False)
    dataset = build_train_dataset(cfg, seed=1)
    assert dataset.photo_count == 0 and len(dataset) == 40 and len(dataset.frames) == 2
    assert all(f.clean.pattern == "GRBG" and f.clean.white_level == 1023 for f in dataset.frames)
    assert sorted(p.name for p in (tmp_path / ".cache").iterdir())[0].startswith("procedural-")  # beside the camera
    # The scenes, stored normalised in whole DN of the camera's levels: (v * 959) is a whole number.
    stored = np.concatenate([np.asarray(f.clean.load()).ravel() for f in dataset.frames]) * (1023 - 64)
    assert np.abs(stored - np.rint(stored)).max() < 1e-3
    scenes = [np.asarray(f.clean.load()) for f in dataset.frames]
    for i in range(40):
        sample = dataset[i]
        clean = sample["clean"].numpy()
        windows = [np.lib.stride_tricks.sliding_window_view(s, (4, 8, 8))[0] for s in scenes]
        assert any((np.abs(w - clean).max(axis=(2, 3, 4)) < 1e-6).any() for w in windows)
        assert not torch.equal(sample["noisy"], sample["clean"])


def test_an_unwritable_scene_cache_is_one_error_naming_it(tmp_path, small_scenes):
    camera = _camera_file(tmp_path / "cam.json")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    cfg = DataConfig(root="", camera=str(camera), cache_dir=str(blocked / "cache"), samples_per_epoch=8,
                     procedural_scenes=1, procedural_fraction=1.0, synthetic_fraction=1.0)
    with pytest.raises(DatasetError, match="cannot write the frame cache"):
        build_train_dataset(cfg)


@pytest.mark.parametrize(("overrides", "key"), [
    (["data.root=", "data.camera="], "data.root"),
    (["data.camera=cam.json"], "data.camera"),
    (["data.root=", "data.camera=cam.json", "data.procedural_fraction=0.5"], "data.procedural_fraction"),
    (["data.root=", "data.camera=cam.json", "data.procedural_fraction=1", "data.samples_per_epoch=0"],
     "data.samples_per_epoch"),
])
def test_no_photos_settings_that_cannot_train_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config("configs/demo.yaml", overrides)
    load_config("configs/no_photos.yaml", [])  # the shipped recipe passes every rule
