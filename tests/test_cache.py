"""The decode-once cache: contents, reuse, invalidation, atomic writes, and epochs that never decode a DNG."""

from __future__ import annotations

import multiprocessing
import os
from collections import namedtuple

import numpy as np
import pytest
import torch.distributed as dist
from dataset_fixtures import BLACK, WHITE, write_frame, write_pairs
from torch.utils.data import DistributedSampler

from denoise.config import DataConfig
from denoise.dataset import cache
from denoise.dataset import frames as frames_module
from denoise.dataset import loader as loader_module
from denoise.dataset.cache import cache_frame, cached_mosaic, normalized_region
from denoise.dataset.frames import build_val_frames
from denoise.dataset.loader import build_train_loader, die_with_parent
from denoise.dataset.pairs import DatasetError
from denoise.raw import dng
from denoise.raw.bayer import normalize, pack_bayer
from denoise.raw.metrics import score_image


@pytest.fixture
def decodes(monkeypatch):
    """Counts calls of ``dng.read_dng`` (the only decoder the pipeline uses)."""
    calls = []
    real = dng.read_dng

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(dng, "read_dng", counting)
    return calls


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_entry_holds_the_packed_normalised_frame(tmp_path, dtype):
    mosaic = np.random.default_rng(1).integers(0, WHITE, size=(24, 32), dtype=np.uint16)
    mosaic = np.maximum(mosaic, BLACK)
    source = write_frame(tmp_path / "f.dng", mosaic, "GRBG")
    frame, decoded = cache_frame(source, tmp_path / "cache", dtype)
    assert decoded and frame.pattern == "GRBG" and frame.shape == (24, 32) and frame.white_level == WHITE
    expected = pack_bayer(normalize(mosaic, BLACK, WHITE), "GRBG")
    region = normalized_region(frame, frame.load(), 2, 3, 8, 9)
    np.testing.assert_allclose(region, expected[:, 2:10, 3:12], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cached_mosaic(frame), mosaic)
    assert isinstance(frame.load(), np.memmap)


def test_second_use_reads_the_cache_and_a_changed_source_is_decoded_again(tmp_path, decodes):
    source = write_frame(tmp_path / "f.dng", np.full((24, 32), 3000, np.uint16))
    first, decoded = cache_frame(source, tmp_path / "cache")
    assert decoded and len(decodes) == 1
    again, decoded = cache_frame(source, tmp_path / "cache")
    assert not decoded and len(decodes) == 1 and again.array_path == first.array_path
    write_frame(source, np.full((24, 32), 5000, np.uint16))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # a distinct mtime
    changed, decoded = cache_frame(source, tmp_path / "cache")
    assert decoded and len(decodes) == 2
    assert int(cached_mosaic(changed)[0, 0]) == 5000
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [changed.array_path.name, changed.array_path.with_suffix(".json").name]
    )  # the stale entry is gone


def test_derived_results_are_computed_once_and_go_with_their_entry(tmp_path):
    source = write_frame(tmp_path / "f.dng", np.full((24, 32), 3000, np.uint16))
    frame, _ = cache_frame(source, tmp_path / "cache")
    calls = []

    def compute():
        calls.append(1)
        return {"a": 0.1 + 0.2, "levels": [1e-300, 3.0]}  # floats that must survive the round trip exactly

    first = cache.derived(frame, "noise-k1", compute)
    again = cache.derived(frame, "noise-k1", compute)
    assert first == again == {"a": 0.1 + 0.2, "levels": [1e-300, 3.0]} and len(calls) == 1
    cache.derived(frame, "noise-k2", compute)  # other settings: another result
    assert len(calls) == 2
    cache_frame(source, tmp_path / "cache")  # reusing the entry keeps what was derived from it
    assert cache.derived(frame, "noise-k1", compute) == first and len(calls) == 2
    write_frame(source, np.full((24, 32), 5000, np.uint16))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    changed, decoded = cache_frame(source, tmp_path / "cache")
    assert decoded
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [changed.array_path.name, changed.array_path.with_suffix(".json").name]
    )  # the stale entry's derived results went with it


def test_a_cache_that_cannot_be_written_still_serves_derived_results(tmp_path, monkeypatch):
    source = write_frame(tmp_path / "f.dng", np.full((24, 32), 3000, np.uint16))
    frame, _ = cache_frame(source, tmp_path / "cache")

    def refuse(*_):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(cache, "write_text_atomic", refuse)
    assert cache.derived(frame, "noise-k", lambda: {"a": 1.5}) == {"a": 1.5}
    assert not list((tmp_path / "cache").glob("*.noise-k.json"))  # computed, not kept
    assert not list((tmp_path / "cache").glob(".*"))  # and no temporary file left behind


def test_a_failed_write_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    source = write_frame(tmp_path / "f.dng", np.full((24, 32), 3000, np.uint16))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache.np, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        cache_frame(source, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert cache_frame(source, tmp_path / "cache")[1]


def test_an_array_without_its_json_is_not_trusted(tmp_path, decodes):
    source = write_frame(tmp_path / "f.dng", np.full((24, 32), 3000, np.uint16))
    frame, _ = cache_frame(source, tmp_path / "cache")
    frame.array_path.with_suffix(".json").unlink()  # as if a writer died between the two files
    assert cache_frame(source, tmp_path / "cache")[1] and len(decodes) == 2


@pytest.mark.parametrize("damage", ["truncated array", "broken json", "foreign array"])
def test_a_damaged_entry_is_named_and_rebuilt(tmp_path, decodes, capsys, damage):
    """A kill or a full disk outside the atomic writes (or a user's copy) can leave a damaged file: it is named on
    stderr and the entry decoded again, here when the training loader is built, not inside a loader worker."""
    write_pairs(tmp_path / "data", count=3, shape=(24, 32))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=1, patch_size=4, batch_size=2, num_workers=0)
    build_train_loader(cfg, seed=0)
    assert len(decodes) == 6
    victim = sorted((tmp_path / "data" / ".cache").glob("*.npy"))[0]
    good = np.load(victim)
    if damage == "truncated array":
        victim.write_bytes(victim.read_bytes()[:-40])
    elif damage == "broken json":
        victim.with_suffix(".json").write_text('{"version": 1, "sha')
    else:
        np.save(victim, np.zeros((4, 3, 3), np.uint16))
    capsys.readouterr()
    batch = next(iter(build_train_loader(cfg, seed=0)))
    assert len(decodes) == 7 and batch is not None
    named = victim.with_suffix(".json") if damage == "broken json" else victim
    err = capsys.readouterr().err
    assert f"warning: {named}: damaged cache file" in err and "rebuilding the entry" in err
    np.testing.assert_array_equal(np.load(victim), good)


def test_epochs_after_the_first_pass_never_decode(tmp_path, decodes):
    write_pairs(tmp_path / "data", count=3, shape=(24, 32))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=1, patch_size=4, batch_size=2, num_workers=0)
    loader = build_train_loader(cfg, seed=0)
    assert len(decodes) == 6  # every frame once, validation included
    assert loader.worker_init_fn is die_with_parent  # workers, when there are some, go with a killed trainer
    for _ in range(2):
        assert sum(batch["noisy"].shape[0] for batch in loader) == len(loader) * 2
    build_val_frames(cfg)
    build_train_loader(cfg, seed=1)  # a second run finds everything cached
    assert len(decodes) == 6
    assert (tmp_path / "data/.cache").is_dir()  # the default cache folder sits inside the dataset root


def _fill(paths, cache_dir, queue):
    queue.put([cache_frame(p, cache_dir)[0].array_path.name for p in paths])


def test_processes_filling_one_cache_at_once_agree(tmp_path):
    paths = [write_frame(tmp_path / f"{i}.dng", np.full((24, 32), 2000 + i, np.uint16)) for i in range(6)]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_fill, args=(paths[::step], tmp_path / "cache", queue)) for step in (1, -1)]
    for worker in workers:
        worker.start()
    names = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(names[0]) == sorted(names[1])
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json"] * 6 + [".npy"] * 6  # no temp files
    for i, path in enumerate(paths):
        frame, decoded = cache_frame(path, tmp_path / "cache")
        assert not decoded and int(cached_mosaic(frame)[5, 5]) == 2000 + i


def test_distributed_loader_splits_each_epoch_between_ranks(tmp_path):
    write_pairs(tmp_path / "data", count=3, shape=(24, 32))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=1, patch_size=4, batch_size=2, num_workers=0,
                     samples_per_epoch=10)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = build_train_loader(cfg, seed=0, distributed=True)
    finally:
        dist.destroy_process_group()
    assert isinstance(loader.sampler, DistributedSampler) and len(loader) == 5
    with pytest.raises(AssertionError, match="initialised"):
        build_train_loader(cfg, seed=0, distributed=True)


def test_validation_input_scores_are_computed_once(tmp_path, monkeypatch):
    write_pairs(tmp_path / "data", count=3, shape=(24, 32))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=2, patch_size=4, batch_size=2, num_workers=0)
    first = build_val_frames(cfg)
    for f in first:  # the stored scores are the input's own, exactly
        assert f.noisy_scores == score_image(f.clean_mosaic, f.noisy.mosaic, data_range=f.noisy.white_level)
    calls = []
    monkeypatch.setattr(frames_module, "score_image", lambda *a, **k: calls.append(1) or score_image(*a, **k))
    again = build_val_frames(cfg)
    assert calls == [] and [f.noisy_scores for f in again] == [f.noisy_scores for f in first]


def test_loader_workers_that_would_overflow_shared_memory_are_refused(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    cfg = DataConfig(root=str(tmp_path), patch_size=256, batch_size=8, num_workers=6)
    need = 6 * 2 * 8 * 2 * 4 * 256 * 256 * 4  # workers x prefetch x batch x (noisy, clean) x planes x pixels x bytes
    monkeypatch.setattr(loader_module.shutil, "disk_usage", lambda _: usage(64 << 20, 0, 64 << 20))
    with pytest.raises(DatasetError, match=r"data\.num_workers=6 .* 192 MB .* 64 MB free"):
        loader_module.check_shared_memory(cfg, str(tmp_path))
    monkeypatch.setattr(loader_module.shutil, "disk_usage", lambda _: usage(2 * need, 0, 2 * need))
    loader_module.check_shared_memory(cfg, str(tmp_path))  # enough
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # but not for eight processes on the machine
    with pytest.raises(DatasetError, match="x 8 process"):
        loader_module.check_shared_memory(cfg, str(tmp_path))
    monkeypatch.setattr(loader_module.shutil, "disk_usage", lambda _: usage(0, 0, 0))
    loader_module.check_shared_memory(DataConfig(root=str(tmp_path), num_workers=0), str(tmp_path))  # no workers
