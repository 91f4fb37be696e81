"""Interrupting and resuming a run ends with the weights of an uninterrupted run (CPU, fixed seed, no workers)."""

from __future__ import annotations

import os
import time
import types
from pathlib import Path

import pytest
import torch
from train_data import make_pairs, tiny_config

from denoise.config import ConfigError
from denoise.train import loop as train_loop
from denoise.train.loop import train
from denoise.train.runs import resolve_resume

# Random crops, Bayer-preserving flips, every loss, EMA and a decaying schedule: all the state a resume must carry.
SETTINGS = (
    "train.epochs=3",
    "train.ema=0.7",
    "train.loss_fourier=0.05",
    "train.loss_psnr=0.002",
    "train.loss_adjacent=0.5",
    "train.scheduler=step",
    "train.step_size=1",
    "train.gamma=0.7",
    "train.warmup_steps=3",
    "train.val_every=2",
    "train.image_crop=0",
    "train.log_every=3",
)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", count=3, size=48)
    whole = train(tiny_config(data, tmp_path / "a", *SETTINGS))

    runs = tmp_path / "b"
    first = train(tiny_config(data, runs, *SETTINGS, "train.max_steps=3"))  # stops mid-epoch 1 (4 steps each)
    assert first.interrupted == "max_steps" and first.step == 3
    last = first.run_dir / "checkpoints" / "last.pth"
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (0, 3, 3)

    # Resuming replays the data of the first 3 batches, then carries on across two epoch boundaries.
    third = train(tiny_config(data, runs, *SETTINGS), resume="auto")
    assert third.run_dir == first.run_dir and third.step == whole.step == 12 and third.interrupted is None

    _assert_same_state(third.model.state_dict(), whole.model.state_dict())
    a = torch.load(whole.run_dir / "checkpoints" / "last.pth", weights_only=True)
    b = torch.load(last, weights_only=True)
    _assert_same_state(a["ema"], b["ema"])
    _assert_same_state(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert a["scheduler"] == b["scheduler"] and a["best_score"] == pytest.approx(b["best_score"], abs=0)


def test_a_run_killed_mid_epoch_resumes_from_its_last_periodic_checkpoint(tmp_path: Path, monkeypatch) -> None:
    data = make_pairs(tmp_path / "data", count=3, size=48)
    every = (*SETTINGS, "train.checkpoint_every=2")
    whole = train(tiny_config(data, tmp_path / "a", *every))
    real, calls = train_loop.combined_loss, []

    def dies_in_step_7(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("killed")  # a hard kill: no handler runs, nothing is saved on the way out
        return real(*args, **kwargs)

    monkeypatch.setattr(train_loop, "combined_loss", dies_in_step_7)
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(data, tmp_path / "b", *every))
    (run,) = (tmp_path / "b").iterdir()
    state = torch.load(run / "checkpoints" / "last.pth", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)  # 4 steps an epoch: saved at step 6
    monkeypatch.setattr(train_loop, "combined_loss", real)
    resumed = train(tiny_config(data, tmp_path / "b", *every), resume="auto")
    assert resumed.step == whole.step == 12
    _assert_same_state(resumed.model.state_dict(), whole.model.state_dict())


def test_a_kill_between_the_epochs_two_checkpoints_keeps_best(tmp_path: Path, monkeypatch) -> None:
    data = make_pairs(tmp_path / "data", count=3, size=48)
    real, saved = train_loop.save_checkpoint, []

    def killed_after_the_second_best(state, path):
        real(state, path)
        saved.append(Path(path).name)
        if saved.count("best.pth") == 2:
            raise KeyboardInterrupt  # the process dies before last.pth records epoch 2 and its best score

    monkeypatch.setattr(train_loop, "save_checkpoint", killed_after_the_second_best)
    settings = (*SETTINGS[:-3], "train.val_every=1", "train.image_crop=0", "train.log_every=3")
    monkeypatch.setattr(train_loop, "validate_and_log", _rising_scores())
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data, tmp_path / "runs", *settings))
    (run,) = (tmp_path / "runs").iterdir()
    best, last = (torch.load(run / "checkpoints" / f"{n}.pth", weights_only=True) for n in ("best", "last"))
    assert (best["epoch"], last["epoch"]) == (2, 1)  # best went first
    left = run / "checkpoints" / ".last.pth.k1ll3d.tmp"  # what a kill -9 in the middle of a save leaves
    left.write_bytes(b"half a checkpoint")
    os.utime(left, (1, 1))
    monkeypatch.setattr(train_loop, "save_checkpoint", real)
    monkeypatch.setattr(train_loop, "validate_and_log", _rising_scores(skip=1))  # epoch 2 scores as it did
    done = train(tiny_config(data, tmp_path / "runs", *settings), resume="auto")
    assert done.run_dir == run and done.interrupted is None
    best, last = (torch.load(run / "checkpoints" / f"{n}.pth", weights_only=True) for n in ("best", "last"))
    assert best["best_score"] == last["best_score"] == 3.0 and best["epoch"] == 3
    assert not left.exists()


def _rising_scores(skip: int = 0):
    """A stand-in for validation scoring epoch k at k: every epoch improves on the last."""
    scores = iter(range(1 + skip, 100))

    def validate(*args, **kwargs):
        return types.SimpleNamespace(score=float(next(scores)))

    return validate


def test_resume_auto_picks_the_newest_run_of_that_name(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path / "runs")
    assert resolve_resume(cfg, "auto") is None  # nothing to resume: a new run starts
    paths = []
    for i, (folder, name) in enumerate([("tiny-1", "tiny"), ("tiny-2", "tiny"), ("tiny-x-3", "tiny-x")]):
        ckpt = tmp_path / "runs" / folder / "checkpoints" / "last.pth"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        (ckpt.parents[1] / "config.yaml").write_text(f"name: {name}\n")
        os.utime(ckpt.parents[1] / "config.yaml", (time.time() + i, time.time() + i))  # started in this order
        paths.append(ckpt)
    assert resolve_resume(cfg, "auto") == paths[1]  # tiny-x-3 is newer but another experiment
    with pytest.raises(ConfigError, match="no such checkpoint"):
        resolve_resume(cfg, str(tmp_path / "missing.pth"))


def test_resume_auto_starts_a_run_killed_before_its_first_checkpoint_again_in_its_folder(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    runs = tmp_path / "runs"
    cfg = tiny_config(data, runs, "train.max_steps=2", "train.val_every=0")
    first = train(cfg)
    killed = runs / "tiny-20000101-000000"  # a later start, killed before it saved anything
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "config.yaml").write_text("name: tiny\n")
    os.utime(killed / "config.yaml", (time.time() + 60, time.time() + 60))
    assert resolve_resume(cfg, "auto") is None  # the newest run has nothing to resume from
    again = train(cfg, resume="auto")
    assert again.run_dir == killed and (killed / "checkpoints" / "last.pth").is_file()
    assert sorted(p.name for p in runs.iterdir()) == sorted([first.run_dir.name, killed.name])  # no third folder


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    first = train(tiny_config(data, tmp_path / "runs", "train.max_steps=1", "train.val_every=0"))
    with pytest.raises(ConfigError, match=r"model\.width=4"):
        train(tiny_config(data, tmp_path / "runs", "model.width=8"), resume=str(first.run_dir / "checkpoints/last.pth"))


def test_a_best_score_from_other_validation_frames_is_not_kept(tmp_path: Path, monkeypatch, capsys) -> None:
    # A run validated on one held-out pair, resumed validating on two: its old best (2.0) was measured on other
    # frames, so the next score (0.5) makes best.pth even though it is lower.
    data = make_pairs(tmp_path / "data", count=4, size=48)
    settings = ("train.val_every=1", "train.image_crop=0")
    monkeypatch.setattr(train_loop, "validate_and_log", _rising_scores())
    first = train(tiny_config(data, tmp_path / "runs", *settings, "train.epochs=2"))
    assert first.best_score == 2.0
    monkeypatch.setattr(train_loop, "validate_and_log", lambda *a, **k: types.SimpleNamespace(score=0.5))
    same = train(tiny_config(data, tmp_path / "runs", *settings, "train.epochs=3"), resume="auto")
    assert same.best_score == 2.0  # the same frames: 0.5 is no improvement
    other = train(tiny_config(data, tmp_path / "runs", *settings, "train.epochs=4", "data.val_count=2"),
                  resume="auto")
    assert other.best_score == 0.5 and "best.pth is chosen afresh" in capsys.readouterr().out
    best = torch.load(other.run_dir / "checkpoints" / "best.pth", weights_only=True)
    assert (best["epoch"], best["best_score"]) == (4, 0.5)
