"""What a run reports as it goes: where each step's time goes, and the means of each logging window.

The step clock sums seconds per phase over a logging window. By default it reads host time only, which costs
nothing and shows where the host waits: a phase that blocks on the GPU (a ``.item()``, say) stands out. With
``sync`` (``train.sync_timing``, for ``scripts/bench_train.py``) it drains the device at every boundary, so GPU
work is charged to the phase that queued it; that stalls the pipeline and is for measuring only.
"""

from __future__ import annotations

import time

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from denoise.train import distributed as dd

PHASES = ("data", "forward", "backward", "optimizer", "ema", "log")


class StepClock:
    """Seconds spent in each of ``PHASES`` since the last ``take``."""

    def __init__(self, device: torch.device, sync: bool) -> None:
        self.sync = sync and device.type == "cuda"
        self.device = device
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def restart(self) -> None:
        """Start timing afresh (after validation or checkpointing, which are not step time)."""
        self._drain()
        self.last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase``."""
        self._drain()
        now = time.perf_counter()
        self.totals[phase] += now - self.last
        self.last = now

    def take(self) -> dict[str, float]:
        """The sums so far, and reset them."""
        totals, self.totals = self.totals, dict.fromkeys(PHASES, 0.0)
        return totals

    def _drain(self) -> None:
        if self.sync:
            torch.cuda.synchronize(self.device)


def new_window(device: torch.device) -> dict:
    """Sums over one logging window: steps and samples, and skipped steps and loss parts on the device."""
    return {"count": 0, "samples": 0, "skipped": torch.zeros((), device=device), "sums": {}}


def log_window(window: dict, phases: dict[str, float], grad_norm: torch.Tensor, lr: float, step: int,
               writer: SummaryWriter | None, bar: tqdm, info: dd.DistInfo) -> None:
    """Write one window's means (reduced over ranks) to TensorBoard and the progress bar: the one host sync.

    ``phases`` is the step clock's seconds over the window, so samples/s counts loading and training time, not
    validation or checkpointing.
    """
    skipped, *sums = torch.stack([window["skipped"], *window["sums"].values()]).tolist()  # one read from the device
    kept = max(window["count"] - skipped, 1)
    means = dd.reduce_mean({**{k: v / kept for k, v in zip(window["sums"], sums, strict=True)}, "skipped": skipped},
                           info)  # fmt: skip
    rate = window["samples"] / max(sum(phases.values()), 1e-9)
    bar.set_postfix(loss=f"{means['total']:.4g}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
    if writer is None:
        return
    for name, value in means.items():
        tag = {"total": "train/loss", "skipped": "train/skipped_steps"}.get(name, f"train/loss_{name}")
        writer.add_scalar(tag, value, step)
    writer.add_scalar("train/lr", lr, step)
    writer.add_scalar("train/grad_norm", grad_norm.item(), step)
    writer.add_scalar("train/samples_per_s", rate, step)
    for phase, seconds in phases.items():
        writer.add_scalar(f"time/{phase}_ms", 1000 * seconds / window["count"], step)
    if means["skipped"]:
        tqdm.write(f"step {step}: {means['skipped']:g} of the last {window['count']} steps skipped (non-finite)")
