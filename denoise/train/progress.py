"""What a run reports as it goes: where each step's time goes, the means of each logging window, and how far the
run has come with the time it has left; and whether it has gone non-finite for too long.

The step clock sums seconds per phase over a logging window. By default it reads host time only, which costs
nothing and shows where the host waits: a phase that blocks on the GPU (a ``.item()``, say) stands out. With
``sync`` (``train.sync_timing``, for ``scripts/bench_train.py``) it drains the device at every boundary, so GPU
work is charged to the phase that queued it; that stalls the pipeline and is for measuring only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from denoise.train import distributed as dd
from denoise.train.checkpoint import TrainingDiverged

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


class RunProgress:
    """The progress display of rank 0: on a terminal a bar per epoch, redrawn in place; written to a file or a
    pipe (CI, nohup, a cluster job), a plain line at most every ``every_s`` seconds. Both show the whole run's
    estimated time left, from the pace of the steps this process has run (validation included)."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool, every_s: float = 30.0) -> None:
        self.total, self.start, self.enabled, self.every_s = total_steps, start_step, enabled, every_s
        self.plain = enabled and not sys.stderr.isatty()
        self.started = self.last_line = time.perf_counter()
        self.bar: tqdm | None = None
        self.desc = ""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.desc = f"epoch {epoch + 1}/{epochs}"
        self.bar = tqdm(total=steps, desc=self.desc, disable=not self.enabled or self.plain)

    def update(self, n: int = 1) -> None:
        assert self.bar is not None, "start_epoch first"
        self.bar.update(n)

    def eta(self, step: int) -> str:
        """The run's time left at ``step``, as "12 min 5 s"; "?" before this process has run a step."""
        done = step - self.start
        if done <= 0:
            return "?"
        left = (time.perf_counter() - self.started) / done * max(self.total - step, 0)
        hours, rest = divmod(int(left), 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"

    def show(self, step: int, loss: float, lr: float, rate: float) -> None:
        """A logging window's numbers: in the bar's postfix, or as a line when the output is not a terminal."""
        if not self.enabled:
            return
        eta = self.eta(step)
        if not self.plain:
            assert self.bar is not None, "start_epoch first"
            self.bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.2e}", sps=f"{rate:.1f}", left=eta)
        elif time.perf_counter() - self.last_line >= self.every_s or step >= self.total:
            self.last_line = time.perf_counter()
            self.write(f"{self.desc} step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%): "
                       f"loss {loss:.4g}, lr {lr:.2e}, {rate:.1f} samples/s, about {eta} left")

    def write(self, message: str) -> None:
        """A line that does not break the bar."""
        if self.enabled:
            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def new_window(device: torch.device) -> dict:
    """Sums over one logging window: steps and samples, and skipped steps and loss parts on the device."""
    return {"count": 0, "samples": 0, "skipped": torch.zeros((), device=device), "sums": {}}


def log_window(window: dict, phases: dict[str, float], grad_norm: torch.Tensor, lr: float, step: int,
               writer: SummaryWriter | None, progress: RunProgress, info: dd.DistInfo) -> None:
    """Write one window's means (reduced over ranks) to TensorBoard and the progress bar: the one host sync.

    ``phases`` is the step clock's seconds over the window, so samples/s counts loading and training time, not
    validation or checkpointing.
    """
    skipped, *sums = torch.stack([window["skipped"], *window["sums"].values()]).tolist()  # one read from the device
    kept = max(window["count"] - skipped, 1)
    means = dd.reduce_mean({**{k: v / kept for k, v in zip(window["sums"], sums, strict=True)}, "skipped": skipped},
                           info)  # fmt: skip
    rate = window["samples"] / max(sum(phases.values()), 1e-9)
    progress.show(step, means["total"], lr, rate)
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
        progress.write(f"step {step}: {means['skipped']:g} of the last {window['count']} steps skipped (non-finite)")


class DivergenceWatch:
    """Non-finite steps in a row, counted on the device and read only at log steps and epoch ends, so that a step
    that does not log never waits for the GPU."""

    def __init__(self, device: torch.device, limit: int) -> None:
        self.limit = limit
        self.run = torch.zeros((), dtype=torch.int64, device=device)
        self.longest = torch.zeros_like(self.run)  # since the last check, so no run between checks goes unseen

    def update(self, bad: torch.Tensor) -> None:
        """Count one step, ``bad`` when it was skipped."""
        self.run = (self.run + 1) * bad
        self.longest = torch.maximum(self.longest, self.run)

    def check(self, info: dd.DistInfo, epoch: int, step: int, run_dir: Path | None) -> None:
        """Raise TrainingDiverged once ``limit`` steps in a row were skipped on any rank (reads the device)."""
        run, self.longest = int(self.longest.item()), self.run.clone()
        if not dd.any_true([run >= self.limit], info)[0]:
            return
        last = run_dir / "checkpoints" / "last.pth" if run_dir else "last.pth"
        raise TrainingDiverged(
            f"stopped at epoch {epoch + 1} step {step}: {run} non-finite losses in a row, steps skipped "
            f"(train.max_nonfinite={self.limit}; try a lower train.lr, train.grad_clip or precision fp32); "
            f"last good checkpoint: {last}"
        )
