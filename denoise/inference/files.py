"""Denoise a list of DNG files into a folder: find the inputs, name and check the outputs before any work, run the
frames through ``denoise_frame``, and sum up what it cost and what failed. ``denoise.infer`` and ``denoise.submit``
are its command lines.
"""

from __future__ import annotations

import errno
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from denoise.atomic import remove_stale_temps, unwritable_reason
from denoise.config import Config, InferConfig, load_config, validate_config
from denoise.inference.pipeline import denoise_frame, frame_tiles, noise_source
from denoise.model import resolve_device
from denoise.model.checkpoint import CheckpointError, finished_unvalidated, read_checkpoint
from denoise.model.nafnet import NoiseAwareNAFNet
from denoise.raw.dng import DngError, read_dng, write_dng


class InferError(ValueError):
    """A request that cannot be run as given (missing input, refused output); the message says why."""


@dataclass(frozen=True)
class Job:
    """One input file and the file its denoised frame goes to."""

    source: Path
    dest: Path


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_jobs``: ``done`` files were written whole before it."""

    def __init__(self, done: int) -> None:
        super().__init__(done)
        self.done = done


@dataclass(frozen=True)
class RunSummary:
    """What a batch of files cost and which failed (path, reason)."""

    done: int
    megapixels: float
    seconds: float
    failures: tuple[tuple[Path, str], ...]
    stopped: int = 0  # files not attempted after the disk filled up


def _natural_key(path: Path) -> list[object]:
    """Sort key putting noisy2 before noisy10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def collect_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The DNG files named by ``paths``: files as given, folders expanded to their *.dng files in natural order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            named = [p for p in path.iterdir() if p.suffix.lower() == ".dng"]
            odd = sorted(p.name for p in named if not p.is_file())  # folders, links to nothing or to themselves
            if odd:
                raise InferError(f"{path}: {', '.join(odd)}: named like DNG files but not regular files")
            files = sorted(named, key=_natural_key)
            if not files:
                raise InferError(f"{path}: folder holds no .dng files")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise InferError(f"{path}: no such file or folder")
    return found


def output_name(source: Path) -> str:
    """``noisy{N}.dng`` -> ``denoise{N}.dng`` (the competition's naming); anything else -> ``{stem}_denoised.dng``."""
    match = re.fullmatch(r"noisy(\d+)", source.stem)
    return f"denoise{match.group(1)}.dng" if match else f"{source.stem}_denoised.dng"


def plan_jobs(inputs: Sequence[Path], output_dir: Path, overwrite: bool = False) -> list[Job]:
    """Pair each input with its output, refusing to write over an input or, without ``overwrite``, over an
    existing file in an input's folder; checked for every file before anything runs."""
    sources = {p.resolve() for p in inputs}
    input_dirs = {p.resolve().parent for p in inputs}
    jobs, seen = [], {}
    for source in inputs:
        dest = output_dir / output_name(source)
        key = dest.resolve()
        if key in sources:
            raise InferError(f"{dest}: is an input itself; refusing to overwrite it with the output of {source.name}")
        if key in seen:
            raise InferError(f"{dest}: both {seen[key]} and {source} would be written there")
        if key.exists() and key.parent in input_dirs and not overwrite:
            raise InferError(f"{dest}: already exists in an input folder; pass --overwrite to replace it")
        seen[key] = source
        jobs.append(Job(source, dest))
    check_writable(output_dir)
    return jobs


def check_writable(folder: Path) -> None:
    """Make ``folder`` if needed and prove a file can be written in it, before any frame is denoised (a frame of
    the competition takes about a minute on a CPU)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InferError(f"{folder}: cannot write output there ({err.strerror or err})") from None
    if (reason := unwritable_reason(folder)) is not None:
        raise InferError(f"{folder}: cannot write output there ({reason})")


def disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, says the device or the user's quota is full."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err = err.__cause__ or err.__context__
    return False


def run_jobs(
    model: torch.nn.Module,
    jobs: Sequence[Job],
    settings: InferConfig,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Denoise every job; a failing file is logged and the rest still run, except on a full disk, where every
    later file would fail too: the run stops there. A bar per file on a terminal, none in a log file."""
    failures: list[tuple[Path, str]] = []
    megapixels, start, stopped = 0.0, time.perf_counter(), 0
    bars = sys.stderr.isatty()
    for n, job in enumerate(jobs):
        try:
            frame = read_dng(job.source)
            with tqdm(total=frame_tiles(frame, settings), desc=job.source.name, unit="tile", leave=False,
                      disable=not bars) as bar:  # fmt: skip
                mosaic = denoise_frame(model, frame, settings, progress=bar.update)
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(job.dest)  # an earlier run's, killed while writing this file
            mode = write_dng(job.source, job.dest, mosaic)
        except KeyboardInterrupt:
            raise Interrupted(n - len(failures)) from None  # the files before this one are complete
        except (DngError, OSError, ValueError) as err:
            # DngError messages already start with the file; others get it prepended.
            reason = str(err) if str(err).startswith(str(job.source)) else f"{job.source}: {err}"
            failures.append((job.source, reason))
            log(f"FAILED {reason}")
            if disk_full(err):
                stopped = len(jobs) - n - 1
                break
            continue
        megapixels += mosaic.size / 1e6
        level = f"; noise level {noise_source(frame, settings)}" if isinstance(model, NoiseAwareNAFNet) else ""
        log(f"{job.source.name} -> {job.dest.name} ({mode}{level})")
    seconds = time.perf_counter() - start
    return RunSummary(len(jobs) - len(failures) - stopped, megapixels, seconds, tuple(failures), stopped)


def failure_line(summary: RunSummary) -> str:
    """The one error line for a run with failures: the failure itself when alone, else how many and the first."""
    first = summary.failures[0][1]
    if summary.stopped:
        return f"{first}: out of disk space, stopped with {summary.stopped} file(s) not denoised"
    if len(summary.failures) == 1:
        return first
    return f"{len(summary.failures)} files failed (each listed above as FAILED), the first: {first}"


def settings_line(settings: InferConfig) -> str:
    """Tiling, TTA, precision and device in a few words."""
    tile = "whole frame" if settings.tile == 0 else f"tile {settings.tile}, overlap {settings.overlap}"
    return f"{tile}, tta {'x8' if settings.tta else 'off'}, {settings.precision} on {settings.device}"


def summary_line(summary: RunSummary, settings: InferConfig) -> str:
    """One line: files, megapixels, time per megapixel, settings, failures."""
    rate = f"{summary.seconds / summary.megapixels:.2f} s/MP" if summary.megapixels else "n/a s/MP"
    return (
        f"denoised {summary.done} file(s), {summary.megapixels:.2f} MP in {summary.seconds:.1f} s ({rate}); "
        f"{settings_line(settings)}; {len(summary.failures)} failed"
    )


def newest_checkpoint(runs_dir: str | Path) -> Path | None:
    """The model the newest run under ``runs_dir`` hands you, or None: its ``best.pth``, or the ``last.pth`` of a run
    that finished without validation (which writes no ``best.pth``). A run is as new as its newest checkpoint; a run
    with neither (one that is still to validate, or was stopped before) is passed over for the next newest."""
    written: dict[Path, float] = {}  # each run folder: when its newest checkpoint was written
    for path in Path(runs_dir).rglob("*.pth") if Path(runs_dir).is_dir() else []:
        try:
            if path.name in ("best.pth", "last.pth"):
                written[path.parent] = max(written.get(path.parent, float("-inf")), path.stat().st_mtime)
        except OSError:  # removed meanwhile: does not count
            continue
    for folder in sorted(written, key=written.__getitem__, reverse=True):  # read only until a run has a model
        if (folder / "best.pth").is_file():
            return folder / "best.pth"
        last = folder / "last.pth"
        try:
            if finished_unvalidated(read_checkpoint(last), last):
                return last
        except (CheckpointError, OSError):  # unreadable or not a run's checkpoint: no run's model
            continue
    return None


def defaults_config(path: Path | None, trained: Config) -> Config:
    """The config whose ``infer`` section supplies defaults: ``path`` when given (it must exist), else the one the
    checkpoint was trained with, so that a model is denoised as it was validated."""
    return load_config(path) if path is not None else trained


def infer_settings(cfg: Config, flags: dict[str, object]) -> InferConfig:
    """The config's ``infer`` section with the command line's ``flags`` (infer keys, None = not given) over it,
    validated with the config's own rules, the device resolved ("auto" named)."""
    infer = replace(cfg.infer, **{key: value for key, value in flags.items() if value is not None})
    validate_config(replace(cfg, infer=infer))
    return replace(infer, device=str(resolve_device(infer.device)))
