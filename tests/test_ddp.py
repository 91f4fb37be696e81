"""Two processes joined by gloo on the CPU train a few DDP steps: identical weights on both ranks, one run folder
with one checkpoint (only rank 0 writes)."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from train_data import make_pairs, tiny_config

from denoise.config import InferConfig
from denoise.dataset.frames import build_val_frames
from denoise.model import build_model
from denoise.train import distributed as dd
from denoise.train.loop import train
from denoise.train.validate import validate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then the ordinary training entry point."""
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    cfg = tiny_config(Path(tmp) / "data", Path(tmp) / "runs", "train.epochs=2", "train.ema=0.5")
    result = train(cfg)
    torch.save({"model": result.model.state_dict(), "step": result.step, "run_dir": str(result.run_dir)},
               Path(tmp) / f"rank{rank}.pt")


def test_two_gloo_processes_keep_identical_weights(tmp_path: Path) -> None:
    make_pairs(tmp_path / "data", count=3)
    # A fork server imports the training stack once, in a clean process, and forks both ranks from it.
    multiprocessing.get_context("forkserver").set_forkserver_preload(["denoise.train.loop"])
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="forkserver")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # 8 samples per epoch split over 2 ranks in batches of 2: 2 steps per epoch on each rank.
    assert r0["step"] == r1["step"] == 4
    for name, value in r0["model"].items():
        assert torch.equal(value, r1["model"][name]), name
    torch.manual_seed(0)  # the loop's initial weights come from the seed alone
    cfg = tiny_config(tmp_path / "data", tmp_path / "runs")
    initial = build_model(cfg.model).state_dict()
    assert any(not torch.equal(initial[k], r0["model"][k]) for k in initial)  # it did train
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and r1["run_dir"] == "None" and Path(r0["run_dir"]) == runs[0]
    assert sorted(p.name for p in (runs[0] / "checkpoints").iterdir()) == ["best.pth", "last.pth"]
    ckpt = torch.load(runs[0] / "checkpoints" / "last.pth", weights_only=True)
    assert ckpt["step"] == 4 and len(ckpt["rng"]) == 2  # every rank's RNG state, for an exact resume
    # the linear scaling rule: two processes' global batch takes twice the configured learning rate
    assert ckpt["scheduler"]["base_lrs"] == [2 * ckpt["config"]["train"]["lr"]]
    for name, value in r0["model"].items():
        assert torch.equal(value, ckpt["model"][name]), name


def _read_worker(rank: int, port: int, tmp: str) -> None:
    """Each rank in its own folder: only rank 0's holds ``state.pth``, as on a node-local disk."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})  # fmt: skip
    os.chdir(Path(tmp) / f"node{rank}")
    info = dd.setup_distributed("cpu")
    try:
        state = dd.read_on_every_rank("state.pth", info, lambda p: torch.load(p, weights_only=True))
    finally:
        dd.cleanup_distributed()
    torch.save(state, Path(tmp) / f"read{rank}.pt")


def test_a_checkpoint_only_rank_0_can_see_reaches_every_rank(tmp_path: Path) -> None:
    for rank in (0, 1):
        (tmp_path / f"node{rank}").mkdir()
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 7}
    torch.save(state, tmp_path / "node0" / "state.pth")
    mp.start_processes(_read_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"read{rank}.pt", weights_only=True)
        assert got["step"] == 7 and torch.equal(got["model"]["w"], state["model"]["w"])


def _validation_setup(tmp: str) -> tuple:
    """The same tiny network, validation frames and settings in every process."""
    cfg = tiny_config(Path(tmp) / "data", Path(tmp) / "runs", "data.val_count=3")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    settings = InferConfig(tile=0, overlap=0, tta=False, batch_size=1, device="cpu", precision="fp32")
    return model, build_val_frames(cfg.data), settings


def _plain(summary) -> dict:
    """A validation summary as plain data: mean metrics, per-level scores, the worst frame."""
    return {**summary.mean.as_dict(), **summary.levels, "worst": (summary.worst_gain, summary.worst_frame)}


def _validate_worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})  # fmt: skip
    info = dd.setup_distributed("cpu")
    try:
        scores, first = validate(*_validation_setup(tmp), info)
    finally:
        dd.cleanup_distributed()
    torch.save({"scores": None if scores is None else _plain(scores),
                "first": None if first is None else torch.from_numpy(first.astype(np.int32))},
               Path(tmp) / f"val{rank}.pt")  # fmt: skip


def test_ranks_share_validation_frames_and_rank_0_gets_everyones_scores(tmp_path: Path) -> None:
    make_pairs(tmp_path / "data", count=5, size=48)
    expected, first = validate(*_validation_setup(str(tmp_path)))  # one process, every frame
    mp.start_processes(_validate_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")  # fmt: skip
    r0, r1 = (torch.load(tmp_path / f"val{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["scores"] == _plain(expected)  # frames 0 and 2 scored on rank 0, frame 1 on rank 1
    assert np.array_equal(r0["first"].numpy(), first.astype(np.int32))
    assert r1["scores"] is None and r1["first"] is None


def _resume_worker(rank: int, port: int, tmp: str, runs: str, overrides: list[str], resume: str | None) -> None:
    faulthandler.enable()  # a rank that aborts prints where it was (once seen on CI at the end of a run)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})  # fmt: skip
    cfg = tiny_config(Path(tmp) / "data", Path(tmp) / runs, "train.epochs=3", "train.ema=0.5", "train.val_every=2",
                      "train.warmup_steps=2", "train.log_every=3", *overrides)  # fmt: skip
    result = train(cfg, resume=resume)
    torch.save({"model": result.model.state_dict(), "step": result.step}, Path(tmp) / f"{runs}{rank}.pt")


def test_two_process_run_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    make_pairs(tmp_path / "data", count=3)

    def launch(runs: str, overrides: list[str], resume: str | None) -> None:
        mp.start_processes(_resume_worker, args=(_free_port(), str(tmp_path), runs, overrides, resume), nprocs=2,
                           join=True, start_method="spawn")  # fmt: skip

    launch("whole", [], None)
    launch("parts", ["train.max_steps=3"], None)  # stops mid-epoch 2 (2 steps per epoch per rank)
    launch("parts", [], "auto")
    whole, parts = (torch.load(tmp_path / f"{r}0.pt", weights_only=True) for r in ("whole", "parts"))
    assert whole["step"] == parts["step"] == 6
    for name, value in whole["model"].items():
        assert torch.equal(value, parts["model"][name]), name
    for rank_file in ("whole1.pt", "parts1.pt"):  # and rank 1 holds the same weights
        other = torch.load(tmp_path / rank_file, weights_only=True)
        assert all(torch.equal(v, other["model"][k]) for k, v in whole["model"].items())
