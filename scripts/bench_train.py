"""End-to-end training throughput and where a step's time goes, per config and variant.

    python scripts/bench_train.py [--configs configs/demo.yaml configs/nafnet.yaml] [--steps 30]
        [--variants fp32 bf16+compile fp32+sync ...] [--threads 1 2] [--busy 0 1] [--epochs-with-val N]
        [key=value ...]

Each config runs ``denoise.train``'s real loop for ``--steps`` optimiser steps (loading, augmentation, forward,
backward, optimiser, EMA) into a temporary run folder, once per variant; a variant is a ``+``-joined set of
``fp32``/``bf16``/``fp16`` (autocast), ``compile`` (``train.compile``) and ``sync`` (``train.sync_timing``: the
device is drained at every phase boundary, so GPU time is charged to the phase that queued it; without it the
phases are host time, and a phase that waits on the GPU shows where the host blocks). The table gives the median
samples/s over the logged windows after the first, the median milliseconds per step of each phase, the time from
launch to the first batch (start-up: caches, noise estimates, loader workers) and to the end of the first step,
and the run's wall time.

``--threads`` times each row with those ``train.threads``, and ``--busy`` with that many other processes spinning
on the CPU meanwhile, as when another job shares the machine. ``--epochs-with-val N`` instead runs N short epochs
of ``--steps`` steps each with validation after every one, and adds the share of the wall time spent validating
(each rank scores its share of the frames).
Overrides apply to every config, e.g. ``data.root=data/demo/train data.patch_size=128`` to run the competition
model on the demo data when ``data/zte`` is absent.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from denoise.config import CliParser, ConfigError, load_config
from denoise.train.loop import train
from denoise.train.progress import PHASES

PRECISIONS = ("fp32", "bf16", "fp16")


def variant_overrides(variant: str) -> list[str]:
    """Config overrides for a variant such as ``bf16+compile+sync``."""
    parts = variant.split("+")
    unknown = [p for p in parts if p not in (*PRECISIONS, "compile", "sync")]
    if unknown or sum(p in PRECISIONS for p in parts) > 1:
        raise ConfigError(f"variant {variant!r}: join at most one of {'/'.join(PRECISIONS)} with compile and sync")
    precision = next((p for p in parts if p in PRECISIONS), "fp32")
    return [f"train.precision={precision}", f"train.compile={'compile' in parts}",
            f"train.sync_timing={'sync' in parts}"]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar series a run logged, in step order."""
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def steady(values: list[float]) -> float:
    """Median over the logged windows after the first (which holds warm-up and compiling)."""
    return statistics.median(values[1:] or values) if values else float("nan")


@contextlib.contextmanager
def busy_processes(count: int):
    """``count`` other processes each keeping a core busy, for as long as the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def bench(path: str, variant: str, steps: int, val_epochs: int, overrides: list[str]) -> dict:
    """One run of ``path`` as ``variant``; the figures of one table row."""
    with tempfile.TemporaryDirectory() as runs:
        if val_epochs:  # short epochs, each followed by validation
            schedule = [f"train.epochs={val_epochs}", "train.val_every=1", "train.max_steps=0", "train.image_crop=0"]
            bs = load_config(path, overrides).data.batch_size
            schedule.append(f"data.samples_per_epoch={steps * bs}")
        else:
            schedule = [f"train.max_steps={steps}", "train.val_every=0"]
        cfg = load_config(path, [*overrides, *variant_overrides(variant), f"train.runs_dir={runs}", *schedule,
                                 f"train.log_every={max(1, steps // 6)}"])
        start = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - start
        logged = scalars(result.run_dir)
    row = {"config": path, "variant": variant, "batch": cfg.data.batch_size, "threads": cfg.train.threads, "wall": wall,
           "samples/s": steady(logged.get("train/samples_per_s", [])),
           "first batch s": logged.get("time/first_batch_s", [float("nan")])[0],
           "first step s": logged.get("time/first_step_s", [float("nan")])[0],
           **{f"{phase} ms": steady(logged.get(f"time/{phase}_ms", [])) for phase in PHASES}}
    if val_epochs:
        row["val s"] = statistics.median(logged.get("time/val_s", [float("nan")]))
        row["val share"] = sum(logged.get("time/val_s", [])) / wall
    return row


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/demo.yaml", "configs/nafnet.yaml"],
                        help="experiment YAMLs to time, each on synthetic frames of its patch size")
    parser.add_argument("--variants", nargs="+", default=["fp32"], help="e.g. fp32 bf16 bf16+compile fp32+sync")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run (per epoch with validation)")
    parser.add_argument("--threads", type=int, nargs="+", default=[],
                        help="train.threads values to time (default: the config's)")
    parser.add_argument("--busy", type=int, nargs="+", default=[0], help="other busy processes during each run")
    parser.add_argument("--epochs-with-val", type=int, default=0, metavar="N",
                        help="run N epochs of --steps steps, validating after each, and report validation's share")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every config")
    args = parser.parse_args(argv)
    try:
        for variant in args.variants:
            variant_overrides(variant)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    columns = ["samples/s", "first batch s", "first step s", *(f"{p} ms" for p in PHASES), "wall"]
    if args.epochs_with_val:
        columns += ["val s", "val share"]
    rows = []
    threads = [[f"train.threads={n}"] for n in args.threads] or [[]]
    for path in args.configs:
        for variant in args.variants:
            for extra in threads:
                for busy in args.busy:
                    with busy_processes(busy):
                        row = bench(path, variant, args.steps, args.epochs_with_val, [*args.overrides, *extra])
                    rows.append({**row, "busy": busy})
                    print(f"done: {path} {variant} {' '.join(extra)} busy {busy}", flush=True)
    print("\n| config | variant | batch | threads | busy | " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.0%}" if c == "val share" else f"{row[c]:.1f}" for c in columns]
        print(f"| {row['config']} | {row['variant']} | {row['batch']} | {row['threads']} | {row['busy']} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
