"""Crops, tiles, the training dataset and loader, synthetic pairs, and validation frames."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from dataset_fixtures import BLACK, WHITE, write_frame, write_pairs

from denoise.config import DataConfig
from denoise.dataset.frames import build_val_frames, load_split
from denoise.dataset.loader import PairDataset, build_train_loader
from denoise.dataset.pairs import DatasetError
from denoise.dataset.samples import random_crop, tile_crops, tile_origins
from denoise.raw.bayer import normalize, pack_bayer
from denoise.raw.noise import add_noise


@pytest.mark.parametrize(("height", "width", "size", "overlap"), [(20, 20, 8, 2), (37, 16, 16, 5), (9, 30, 9, 0)])
def test_tiles_cover_the_frame_exactly_with_at_least_the_overlap(height, width, size, overlap):
    grid = tile_origins(height, width, size, overlap)
    hits = np.zeros((height, width), int)
    for y, x in grid:
        assert 0 <= y <= height - size and 0 <= x <= width - size
        hits[y : y + size, x : x + size] += 1
    assert (hits >= 1).all()
    ys, xs = sorted({y for y, _ in grid}), sorted({x for _, x in grid})
    for starts in (ys, xs):
        assert starts[0] == 0 and all(0 < b - a <= size - overlap for a, b in itertools.pairwise(starts))
    assert len(grid) == len(ys) * len(xs) and grid == sorted(grid)


def test_random_crops_stay_inside_and_reach_every_corner():
    rng = np.random.default_rng(0)
    crops = [random_crop(rng, 0, 10, 13, 4) for _ in range(2000)]
    ys, xs = {c.y for c in crops}, {c.x for c in crops}
    assert ys == set(range(7)) and xs == set(range(10))


@pytest.fixture
def dataset_root(tmp_path):
    frames = write_pairs(tmp_path / "data", count=3, shape=(24, 32))
    return tmp_path / "data", frames


def _cfg(root, **kwargs):
    return DataConfig(**{"root": str(root), "val_count": 1, "num_workers": 0, **kwargs})


def test_tiles_mode_yields_exactly_the_grid_of_every_training_frame(dataset_root):
    root, frames = dataset_root
    train, val = load_split(_cfg(root))
    assert [p.key for p in train] == ["0", "2"] and [p.key for p in val] == ["1"]
    dataset = PairDataset(train, DataConfig(patch_size=6, sampling="tiles", tile_overlap=2, augment_flips=False))
    expected = tile_crops([(12, 16), (12, 16)], 6, 2)
    assert len(dataset) == len(expected) == 2 * 3 * 4
    for index, crop in enumerate(expected):
        item = dataset[index]
        noisy, clean = frames[train[crop.frame].key]
        for name, mosaic in (("noisy", noisy), ("clean", clean)):
            packed = pack_bayer(normalize(mosaic, BLACK, WHITE), "BGGR")
            np.testing.assert_allclose(item[name].numpy(), packed[:, crop.y : crop.y + 6, crop.x : crop.x + 6],
                                       atol=1e-6)


def test_random_mode_crops_are_regions_of_the_pair(dataset_root):
    root, frames = dataset_root
    train, _ = load_split(_cfg(root))
    dataset = PairDataset(train, DataConfig(patch_size=5, samples_per_epoch=7, augment_flips=False), seed=3)
    assert len(dataset) == 7
    packed = {k: [pack_bayer(normalize(m, BLACK, WHITE), "BGGR") for m in frames[k]] for k in ("0", "2")}
    for index in range(7):
        item = dataset[index]
        hits = [(k, y, x) for k, (noisy, clean) in packed.items() for y in range(8) for x in range(12)
                if np.allclose(item["clean"].numpy(), clean[:, y : y + 5, x : x + 5], atol=1e-6)]
        assert len(hits) == 1
        k, y, x = hits[0]
        np.testing.assert_allclose(item["noisy"].numpy(), packed[k][0][:, y : y + 5, x : x + 5], atol=1e-6)


def test_loader_batches_are_packed_float32_and_reproducible(dataset_root):
    root, _ = dataset_root
    cfg = _cfg(root, patch_size=8, batch_size=3, samples_per_epoch=9)
    batches = [next(iter(build_train_loader(cfg, seed=5))) for _ in range(2)]
    assert set(batches[0]) == {"noisy", "clean"}
    assert batches[0]["noisy"].shape == (3, 4, 8, 8) and batches[0]["clean"].dtype == torch.float32
    assert torch.equal(batches[0]["noisy"], batches[1]["noisy"])
    other = next(iter(build_train_loader(cfg, seed=6)))
    assert not torch.equal(batches[0]["noisy"], other["noisy"])


def test_batches_do_not_depend_on_workers_and_each_epoch_draws_new_crops(dataset_root):
    root, _ = dataset_root
    cfg = _cfg(root, patch_size=8, batch_size=4, samples_per_epoch=16, num_workers=2)
    loader = build_train_loader(cfg, seed=0)
    assert loader.persistent_workers
    first = torch.cat([b["clean"] for b in loader])
    second = torch.cat([b["clean"] for b in loader])
    assert len({t.numpy().tobytes() for t in first}) == 16  # workers do not repeat each other's crops
    assert not torch.equal(first, second)  # nor do epochs
    in_process = build_train_loader(dataclasses.replace(cfg, num_workers=0), seed=0)
    assert torch.equal(torch.cat([b["clean"] for b in in_process]), first)
    in_process.sampler.set_epoch(1)
    assert torch.equal(torch.cat([b["clean"] for b in in_process]), second)


def test_synthetic_pairs_follow_the_requested_noise(tmp_path):
    clean = np.full((64, 64), BLACK + 0.25 * (WHITE - BLACK), np.uint16)
    write_frame(tmp_path / "data/ground truth/0_gt.dng", clean)
    write_frame(tmp_path / "data/ground truth/1_gt.dng", clean)
    a, b = 4e-3, 2e-4
    cfg = _cfg(tmp_path / "data", noisy_glob="", synthetic_fraction=1.0, noise_a_range=(a, a), noise_b_range=(b, b),
               patch_size=16, batch_size=8, samples_per_epoch=64)
    residual = torch.cat([batch["noisy"] - batch["clean"] for batch in build_train_loader(cfg, seed=0)])
    x = float(normalize(clean[:1, :1], BLACK, WHITE)[0, 0])
    assert abs(residual.var().item() / (a * x + b) - 1) < 0.03
    val = build_val_frames(cfg)  # clean-only validation frames get deterministic synthetic noise
    assert [f.key for f in val] == ["1"] and val[0].noisy.mosaic.dtype == np.uint16
    np.testing.assert_array_equal(val[0].noisy.mosaic, build_val_frames(cfg)[0].noisy.mosaic)


def test_brightness_augmentation_scales_the_clean_crop(tmp_path):
    clean = np.full((32, 32), BLACK + 0.2 * (WHITE - BLACK), np.uint16)
    write_frame(tmp_path / "data/ground truth/0_gt.dng", clean)
    cfg = _cfg(tmp_path / "data", noisy_glob="", synthetic_fraction=1.0, val_count=0, brightness_range=(2.0, 2.0),
               patch_size=8, batch_size=2, samples_per_epoch=2)
    batch = next(iter(build_train_loader(cfg, seed=0)))
    np.testing.assert_allclose(batch["clean"].numpy(), 2 * normalize(clean[:2, :2], BLACK, WHITE)[0, 0], atol=1e-6)


@pytest.mark.parametrize("shape", [(24, 32), (25, 33)])
def test_val_frames_hold_the_whole_frame(tmp_path, shape):
    frames = write_pairs(tmp_path / "data", count=2, shape=shape)
    val = build_val_frames(_cfg(tmp_path / "data"))
    noisy, clean = frames["1"]
    assert [f.key for f in val] == ["1"]
    frame = val[0]
    np.testing.assert_array_equal(frame.clean_mosaic, clean)
    np.testing.assert_array_equal(frame.noisy.mosaic, noisy)
    assert frame.noisy.pattern == "BGGR" and frame.noisy.white_level == WHITE
    np.testing.assert_array_equal(frame.noisy.black_level, np.full((2, 2), BLACK))
    np.testing.assert_allclose(frame.noisy.as_shot_neutral, [0.5, 1.0, 0.6], atol=1e-4)


def test_a_patch_larger_than_a_frame_is_an_error_naming_it(dataset_root):
    root, _ = dataset_root
    with pytest.raises(ValueError, match=r"0_gt\.dng"):
        build_train_loader(_cfg(root, patch_size=16), seed=0)  # 16 + 1 spare pixel > 12 packed rows


def test_synthetic_fraction_mixes_real_and_synthesised_pairs(tmp_path):
    flat = np.full((24, 32), 5000, np.uint16)
    for i in range(2):  # real pairs without noise, so any residual comes from synthesis
        write_frame(tmp_path / f"data/noisy/{i}_noise.dng", flat)
        write_frame(tmp_path / f"data/ground truth/{i}_gt.dng", flat)
    cfg = _cfg(tmp_path / "data", val_count=0, synthetic_fraction=0.5, patch_size=4, batch_size=50,
               samples_per_epoch=400)
    residual = torch.cat([(b["noisy"] - b["clean"]).abs().amax(dim=(1, 2, 3)) for b in build_train_loader(cfg, 0)])
    assert abs((residual > 0).float().mean().item() - 0.5) < 0.08


def test_an_unwritable_cache_folder_is_a_dataset_error(dataset_root, tmp_path):
    root, _ = dataset_root
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DatasetError, match="cache"):
        load_split(_cfg(root, cache_dir=str(tmp_path / "file/cache")))


@pytest.mark.parametrize(("a", "level"), [(1e-4, "low"), (1.5e-3, "mid"), (8e-3, "high")])
def test_val_frames_know_their_noise_level_paired_or_synthesised(tmp_path, a, level):
    rng = np.random.default_rng(1)
    ramp = np.linspace(0.05, 0.9, 128)[None, :] * np.ones((128, 1))
    clean = ramp * (WHITE - BLACK) + BLACK
    noisy = add_noise(ramp, a, a / 50, rng) * (WHITE - BLACK) + BLACK
    write_frame(tmp_path / "data/noisy/0_noise.dng", np.clip(np.rint(noisy), 0, WHITE).astype(np.uint16))
    write_frame(tmp_path / "data/ground truth/0_gt.dng", np.rint(clean).astype(np.uint16))
    write_frame(tmp_path / "data/noisy/1_noise.dng", np.rint(clean).astype(np.uint16))
    write_frame(tmp_path / "data/ground truth/1_gt.dng", np.rint(clean).astype(np.uint16))
    (frame,) = build_val_frames(_cfg(tmp_path / "data", val_keys=["0"]))
    assert frame.level == level
    # A clean-only frame's level is that of the noise it was given, drawn from noise_a_range.
    (frame,) = build_val_frames(_cfg(tmp_path / "data", noisy_glob="", synthetic_fraction=1.0, val_keys=["0"],
                                     noise_a_range=(a, a)))
    assert frame.level == level
