"""Pair discovery, the errors that list offending files, and the train/validation split."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fixtures import write_frame, write_pairs

from denoise.config import DataConfig
from denoise.dataset.frames import build_val_frames, load_split
from denoise.dataset.pairs import DatasetError, Pair, discover_pairs, split_pairs

DEFAULTS = DataConfig()


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _discover(root, **kwargs):
    args = {"noisy_glob": DEFAULTS.noisy_glob, "clean_glob": DEFAULTS.clean_glob, "key_regex": DEFAULTS.key_regex}
    return discover_pairs(root, **{**args, **kwargs})


def test_competition_layout_needs_no_configuration(tmp_path):
    for i in (0, 2, 10, 1):
        _touch(tmp_path, f"noisy/{i}_noise.dng", f"ground truth/{i}_gt.dng")
    pairs = _discover(tmp_path)
    assert [p.key for p in pairs] == ["0", "1", "2", "10"]  # natural order
    assert pairs[3] == Pair("10", tmp_path / "noisy/10_noise.dng", tmp_path / "ground truth/10_gt.dng")


def test_custom_layout_from_globs_and_key_regex(tmp_path):
    _touch(tmp_path, "a/scene_b_noisy.dng", "a/scene_b_clean.dng", "a/scene_a_noisy.dng", "a/scene_a_clean.dng")
    pairs = discover_pairs(tmp_path, "a/*_noisy.dng", "a/*_clean.dng", r"^scene_(\w+?)_(?:noisy|clean)\.dng$")
    assert [(p.key, p.noisy.name, p.clean.name) for p in pairs] == [
        ("a", "scene_a_noisy.dng", "scene_a_clean.dng"),
        ("b", "scene_b_noisy.dng", "scene_b_clean.dng"),
    ]


def test_clean_only_dataset_has_no_noisy_paths(tmp_path):
    _touch(tmp_path, "ground truth/3_gt.dng")
    assert _discover(tmp_path, noisy_glob="") == [Pair("3", None, tmp_path / "ground truth/3_gt.dng")]


def test_unpaired_files_are_all_listed(tmp_path):
    _touch(tmp_path, "noisy/0_noise.dng", "ground truth/0_gt.dng", "noisy/5_noise.dng", "ground truth/7_gt.dng")
    with pytest.raises(DatasetError) as err:
        _discover(tmp_path)
    message = str(err.value)
    assert "2 unusable" in message and "5_noise.dng" in message and "7_gt.dng" in message
    assert "0_noise.dng" not in message and "\n" not in message


def test_names_the_regex_cannot_key_are_errors(tmp_path):
    _touch(tmp_path, "noisy/0_noise.dng", "ground truth/0_gt.dng", "noisy/x_noise.dng")
    with pytest.raises(DatasetError, match=r"x_noise\.dng.*key_regex"):
        _discover(tmp_path)


def test_a_folder_or_a_link_loop_matched_by_a_glob_is_named(tmp_path):
    _touch(tmp_path, "noisy/0_noise.dng", "ground truth/0_gt.dng")
    (tmp_path / "noisy" / "1_noise.dng").mkdir()
    (tmp_path / "ground truth" / "1_gt.dng").symlink_to(tmp_path / "ground truth" / "1_gt.dng")
    with pytest.raises(DatasetError) as err:
        _discover(tmp_path)
    message = str(err.value)
    assert "1_noise.dng (not a regular file)" in message and "1_gt.dng (not a regular file)" in message


@pytest.mark.parametrize("layout", ["empty", "missing"])
def test_no_pairs_is_an_error(tmp_path, layout):
    root = tmp_path / "data"
    if layout == "empty":
        root.mkdir()
    with pytest.raises(DatasetError, match="no pairs found" if layout == "empty" else "does not exist"):
        _discover(root)


def test_regex_without_group_is_an_error(tmp_path):
    _touch(tmp_path, "noisy/0_noise.dng", "ground truth/0_gt.dng")
    with pytest.raises(DatasetError, match="group"):
        _discover(tmp_path, key_regex=r"\d+")


def _pairs(n):
    return [Pair(str(i), None, None) for i in range(n)]


def test_val_count_spreads_keys_evenly_and_is_deterministic():
    train, val = split_pairs(_pairs(100), 5, [])
    assert [p.key for p in val] == ["10", "30", "50", "70", "90"]  # one per block of 20 consecutive keys
    assert len(train) == 95 and not {p.key for p in train} & {p.key for p in val}
    assert split_pairs(_pairs(100), 5, []) == (train, val)
    assert len(split_pairs(_pairs(4), 3, [])[1]) == 3


def test_val_keys_override_count_and_unknown_keys_fail():
    train, val = split_pairs(_pairs(6), 2, ["4", "1"])
    assert [p.key for p in val] == ["1", "4"] and len(train) == 4
    with pytest.raises(DatasetError, match="9"):
        split_pairs(_pairs(6), 0, ["9"])
    with pytest.raises(DatasetError, match="val_count"):
        split_pairs(_pairs(3), 3, [])


def _config(root, **kwargs):
    return DataConfig(root=str(root), cache_dir=str(root / "cache"), val_count=0, **kwargs)


@pytest.mark.parametrize("problem", ["dimensions", "pattern", "black", "white"])
def test_pairs_whose_frames_disagree_are_listed_before_training(tmp_path, problem):
    write_pairs(tmp_path, count=2, shape=(24, 32))
    mosaic = np.full((24, 32), 2000, np.uint16)
    bad = tmp_path / "noisy/1_noise.dng"
    if problem == "dimensions":
        write_frame(bad, np.full((24, 34), 2000, np.uint16))
    elif problem == "pattern":
        write_frame(bad, mosaic, pattern="RGGB")
    elif problem == "black":
        write_frame(bad, mosaic, black=512)
    else:
        write_frame(bad, mosaic, white=4095)
    with pytest.raises(DatasetError) as err:
        load_split(_config(tmp_path))
    assert "1_noise.dng" in str(err.value) and "1_gt.dng" in str(err.value) and "0_noise" not in str(err.value)


def test_unreadable_files_are_listed(tmp_path):
    write_pairs(tmp_path, count=3, shape=(24, 32))
    (tmp_path / "noisy/0_noise.dng").write_text("not a raw file")
    (tmp_path / "ground truth/2_gt.dng").write_bytes(b"II*\x00garbage")
    with pytest.raises(DatasetError, match="2 problem") as err:
        load_split(_config(tmp_path))
    assert "0_noise.dng" in str(err.value) and "2_gt.dng" in str(err.value)


def test_clean_only_dataset_has_no_noisy_frames(tmp_path):
    write_pairs(tmp_path, count=2, shape=(24, 32))
    train, _ = load_split(_config(tmp_path, noisy_glob="", synthetic_fraction=1.0))
    assert [p.noisy for p in train] == [None, None]


def test_a_validation_root_keeps_every_training_pair_and_picks_its_own(tmp_path):
    write_pairs(tmp_path / "data", count=3)
    for key in ("0", "1", "2", "3"):  # the demo's validation layout: noisy{N}.dng beside val_gt/gt{N}.dng
        write_frame(tmp_path / "val" / "val" / f"noisy{key}.dng", np.full((24, 32), 2000, np.uint16))
        write_frame(tmp_path / "val" / "val_gt" / f"gt{key}.dng", np.full((24, 32), 2100, np.uint16))
    layout = dict(val_root=str(tmp_path / "val"), val_noisy_glob="val/noisy*.dng", val_clean_glob="val_gt/gt*.dng",
                  val_key_regex=r"^(?:noisy|gt)(\d+)\.dng$")
    train, val = load_split(_config(tmp_path / "data", **layout))
    assert [p.key for p in train] == ["0", "1", "2"]  # nothing held out of the training folder
    assert [p.key for p in val] == ["0", "1", "2", "3"] and val[3].clean.source.name == "gt3.dng"
    train, val = load_split(_config(tmp_path / "data", val_keys=["3", "1"], **layout))
    assert len(train) == 3 and [p.key for p in val] == ["1", "3"]
    with pytest.raises(DatasetError, match="val_keys not in the dataset: 7"):
        load_split(_config(tmp_path / "data", val_keys=["7"], **layout))
    (frame,) = build_val_frames(_config(tmp_path / "data", val_keys=["2"], **layout))
    assert frame.key == "2" and frame.noisy.path.name == "noisy2.dng" and (frame.clean_mosaic == 2100).all()
    with pytest.raises(DatasetError, match=r"1_noise\.dng: a validation frame is also a training frame .* 2 shared"):
        load_split(_config(tmp_path / "data", val_root=str(tmp_path / "data"), val_keys=["1"]))
    with pytest.raises(DatasetError, match="val: no pairs found"):  # the training globs find nothing there
        load_split(_config(tmp_path / "data", val_root=str(tmp_path / "val")))
