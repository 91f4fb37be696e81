"""Loader throughput: training samples per second, cold (first decode into an empty cache) and warm (cache hit).

    python scripts/bench_data.py [--config configs/demo.yaml] [--data data/demo/train] [--batches 40] [key=value ...]

The cold run uses a fresh temporary cache folder, so the numbers never depend on what was cached before.
Compare the warm figure divided by the batch size with the model's steps per second (scripts/bench_model.py):
the loader keeps up when it is the larger. The cold build includes making procedural scenes when the config asks
for them (``data.procedural_scenes=60 data.procedural_fraction=0.5``); the warm one finds them in the cache.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time

from denoise.config import CliParser, ConfigError, load_config
from denoise.dataset.loader import build_train_loader
from denoise.dataset.pairs import DatasetError


def time_batches(cfg, batches: int, seed: int) -> tuple[float, float, float, int]:
    """(seconds to build the loader, to the first batch, for the rest, samples after the first batch)."""
    start = time.perf_counter()
    loader = build_train_loader(cfg, seed=seed)
    built = time.perf_counter()
    samples, first = 0, None
    while samples < batches * cfg.batch_size:
        for batch in loader:
            if first is None:
                first = time.perf_counter()
            else:
                samples += batch["noisy"].shape[0]
            if samples >= batches * cfg.batch_size:
                break
    end = time.perf_counter()
    return built - start, first - built, end - first, samples


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="experiment YAML whose data section is used")
    parser.add_argument("--data", default=None, help="dataset root (overrides data.root)")
    parser.add_argument("--batches", type=int, default=40, help="batches timed after the first")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides, e.g. data.num_workers=0")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides).data
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.data:
        cfg = dataclasses.replace(cfg, root=args.data)
    print(f"root {cfg.root}: patch {cfg.patch_size}, batch {cfg.batch_size}, workers {cfg.num_workers}, "
          f"sampling {cfg.sampling}, cache {cfg.cache_dtype}")
    with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as cache:
        cfg = dataclasses.replace(cfg, cache_dir=cache)
        try:
            for label in ("cold", "warm"):
                build, first, rest, samples = time_batches(cfg, args.batches, seed=0)
                total = samples + cfg.batch_size
                print(f"{label}: build {build:6.2f} s (decode + cache check), first batch {first:5.2f} s, "
                      f"then {samples / rest:7.1f} samples/s steady; {total / (build + first + rest):7.1f} samples/s "
                      f"including setup")
        except (DatasetError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
