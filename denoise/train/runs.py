"""Run folders: ``runs/<name>-<UTC timestamp>/`` holding config.yaml, tb/ and checkpoints/; finding the run to
resume.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import yaml
from torch.utils.tensorboard import SummaryWriter

from denoise.atomic import remove_stale_temps, unwritable_reason, write_text_atomic
from denoise.config import Config, ConfigError, dump_config


def check_runs_dir(runs_dir: str | Path) -> None:
    """Refuse, before any data is read, a ``train.runs_dir`` that is a file or lies in a folder this process cannot
    write (read-only, no permission)."""
    path = Path(runs_dir)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"train.runs_dir={runs_dir}: {existing} is a file, not a folder")
    if (reason := unwritable_reason(existing)) is not None:
        raise ConfigError(f"train.runs_dir={runs_dir}: cannot write in {existing} ({reason})")


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Create and return a fresh ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>`` folder (suffixed if that exists)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(1000):
        run = root / (f"{name}-{stamp}" if k == 0 else f"{name}-{stamp}-{k}")
        try:
            run.mkdir()
        except FileExistsError:
            continue
        (run / "checkpoints").mkdir()
        (run / "tb").mkdir()
        return run
    raise RuntimeError(f"{root}: could not create a run folder for {name!r}")


def run_name(run: Path) -> str | None:
    """The experiment name stored in a run folder's config.yaml, or None when it has none."""
    try:
        data = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get("name") if isinstance(data, dict) else None


def newest_run(runs_dir: str | Path, name: str) -> Path | None:
    """The run of experiment ``name`` under ``runs_dir`` started or resumed last (each start writes its
    config.yaml), or None."""
    root = Path(runs_dir)
    runs = [run for run in root.glob(f"{name}-*") if run_name(run) == name] if root.is_dir() else []
    return max(runs, key=lambda run: (run / "config.yaml").stat().st_mtime, default=None)


def latest_checkpoint(runs_dir: str | Path, name: str) -> Path | None:
    """``last.pth`` of the newest run of experiment ``name``, or None when that run has none yet (it was stopped
    before its first checkpoint, and is started again in its own folder)."""
    run = newest_run(runs_dir, name)
    last = run / "checkpoints" / "last.pth" if run is not None else None
    return last if last is not None and last.is_file() else None


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint lives in (``<run>/checkpoints/x.pth``), or None for a loose file."""
    parent = Path(checkpoint).resolve().parent
    if parent.name == "checkpoints" and (parent.parent / "config.yaml").is_file():
        return parent.parent
    return None


def resolve_resume(cfg: Config, resume: str | None) -> Path | None:
    """``--resume`` to a checkpoint path: "auto" is the newest run of this config's name, or None to start."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(cfg.train.runs_dir, cfg.name)
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint to resume from")
    return path


def continued_run(cfg: Config, resume: str | None, ckpt_path: str | None) -> Path | None:
    """The existing run folder this training writes into (the checkpoint's, or a ``--resume auto`` run's that has
    no checkpoint yet), or None when it starts a new one."""
    if ckpt_path:
        return run_dir_of(ckpt_path)
    return newest_run(cfg.train.runs_dir, cfg.name) if resume == "auto" else None


def open_run(cfg: Config, resume: str | None, ckpt_path: str | None, step: int,
             noisy: dict[str, float] | None) -> tuple[Path, SummaryWriter]:
    """Rank 0's run folder (the checkpoint's, a ``--resume auto`` run's that has none yet, or a new one) with the
    resolved config written and a TensorBoard writer that drops what a killed attempt logged after ``step``; a
    new run logs ``noisy``, the validation inputs' own scores."""
    tc = cfg.train
    run_dir = continued_run(cfg, resume, ckpt_path) or new_run_dir(tc.runs_dir, cfg.name)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    for name in ("last.pth", "best.pth"):  # what a kill -9 mid-save left behind
        remove_stale_temps(run_dir / "checkpoints" / name)
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step)
    writer.add_text("config", "    " + dump_config(cfg).replace("\n", "\n    "), step)
    for key, value in (noisy or {}).items():
        writer.add_scalar(f"val_noisy/{key}", value, 0)
    print(f"run folder: {run_dir}" + (f" (resumed from {ckpt_path}, step {step})" if ckpt_path else ""), flush=True)
    if tc.loss_psnr:
        print("note: the psnr loss is minus the PSNR in dB, negative by design", flush=True)
    return run_dir, writer
