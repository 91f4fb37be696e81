"""One process or many: torchrun/DistributedDataParallel setup, rank-0-only side effects, metric reduction.

``torchrun`` sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything here degrades to a single process
and every collective is the identity. NCCL joins GPU processes, gloo CPU processes.
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from denoise.model.runtime import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job and which device it trains on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    # A gloo group beside NCCL for host-side flags (stop requests), so agreeing on them never waits for a GPU.
    control: object = None

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) logs, validates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group joins several processes."""
        return self.world_size > 1


def setup_distributed(requested_device: str = "auto", timeout_minutes: int = 60) -> DistInfo:
    """Join the torchrun process group when there is one, and choose this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Rank 0 validates alone while the others wait, so the default collective timeout can be too short.
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    control = dist.new_group(backend="gloo") if world_size > 1 and device.type == "cuda" else None
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device, control=control)


def compute_threads(requested: int, loader_workers: int) -> int:
    """Intra-op threads for this process: ``requested`` when above 0, else the cores it may run on, shared with
    the other processes of its node (torchrun's LOCAL_WORLD_SIZE) and less one per loader worker, at least 1.

    A thread for every core stalls every step once another job takes one of them (each parallel region waits
    for its slowest thread): on 2 cores with one other busy process, 2 threads trained the quality recipe at 27.7
    samples/s against 87.4 idle, 1 thread at 68.2 against 70.8 (docs/benchmarks.md).
    """
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(cores // local - loader_workers, 1)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined.

    A DistributedDataParallel wrapper sits in a reference cycle, so dropping it frees nothing until the cycle
    collector runs; its reducer holds the group. Collecting here tears the group down now, while every rank is
    still alive and the interpreter whole, rather than at some later collection or during shutdown, where a rank
    that had finished cleanly once aborted on CI ("terminate called without an active exception", torch 2.13).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.distributed:
        dist.barrier()


def reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of each named scalar over all processes (the same dict for one process)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def any_true(flags: list[bool], info: DistInfo) -> list[bool]:
    """Element-wise logical OR of host ``flags`` over all processes, so that every rank takes the same branch.

    The flags travel as a CPU tensor (over the gloo control group beside NCCL), so no GPU work is waited for.
    """
    if not info.distributed:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], dtype=torch.float32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=info.control)
    return [bool(v > 0) for v in t.tolist()]


def broadcast_str(text: str, info: DistInfo) -> str:
    """Rank 0's ``text`` on every process (e.g. the run folder or checkpoint it chose)."""
    if not info.distributed:
        return text
    holder = [text]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: object, info: DistInfo) -> list:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` for one process)."""
    if not info.distributed:
        return [obj]
    holder: list = [None] * info.world_size
    dist.all_gather_object(holder, obj)
    return holder


def read_on_every_rank(path: str, info: DistInfo, read: Callable[[str], T]) -> T:
    """``read(path)`` on every process; where some process cannot see the file (node-local disks on a multi-node
    run, say), rank 0 reads it and sends it to all."""
    if not info.distributed or not any_true([not Path(path).is_file()], info)[0]:
        return read(path)
    holder = [read(path) if info.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
