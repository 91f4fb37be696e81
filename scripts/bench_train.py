"""End-to-end training throughput: samples per second of the real training loop, per config.

    python scripts/bench_train.py [--configs configs/demo.yaml configs/nafnet.yaml] [--steps 30] [key=value ...]

Each config runs ``denoise.train``'s loop for ``--steps`` optimiser steps (loading, augmentation, forward,
backward, optimiser; no validation) into a temporary run folder, and the loop's own logged
``train/samples_per_s`` values are summarised (median over the logged windows after the first).
Overrides apply to every config, e.g. ``data.root=data/demo/train data.patch_size=128`` to run the
competition model on the demo data when ``data/zte`` is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from denoise.config import load_config
from denoise.train.loop import train


def logged_rates(run_dir: Path) -> list[float]:
    """The ``train/samples_per_s`` scalars a run logged, in step order."""
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars("train/samples_per_s")]


def bench_config(path: str, steps: int, overrides: list[str]) -> tuple[float, float, int, int]:
    """(median samples/s, wall seconds, parameters, batch size) of ``steps`` training steps."""
    with tempfile.TemporaryDirectory() as runs:
        cfg = load_config(path, [*overrides, f"train.runs_dir={runs}", f"train.max_steps={steps}",
                                 "train.val_every=0", f"train.log_every={max(1, steps // 6)}"])
        start = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - start
        rates = logged_rates(result.run_dir)
    params = sum(p.numel() for p in result.model.parameters())
    return statistics.median(rates[1:] or rates), wall, params, cfg.data.batch_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/demo.yaml", "configs/nafnet.yaml"])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every config")
    args = parser.parse_args(argv)
    rows = [(path, *bench_config(path, args.steps, args.overrides)) for path in args.configs]
    print(f"\n{'config':<24} {'params':>11} {'batch':>6} {'samples/s':>10} {'steps/s':>8} {'wall s':>8}")
    for path, rate, wall, params, batch in rows:
        print(f"{path:<24} {params:>11,} {batch:>6} {rate:>10.2f} {rate / batch:>8.3f} {wall:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
