"""``python -m denoise.train --config FILE [key.sub=value ...] [--print-config] [--resume auto|PATH]``.

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel. Bad input (config,
data, checkpoint) prints one line and exits with status 2; a diverged run exits with 1; a run stopped by
SIGINT/SIGTERM saves last.pth and exits with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields

from denoise.config import CliParser, Config, ConfigError, dump_config, load_config
from denoise.dataset.pairs import DatasetError
from denoise.lock import FolderInUse
from denoise.model.checkpoint import CheckpointError
from denoise.raw.dng import DngError

# ValueError: the model and data builders' refusal of values the config schema cannot rule out (sizes, names).
BAD_INPUT = (ConfigError, CheckpointError, DatasetError, DngError, ValueError, FolderInUse)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: a config file, overrides, and what to do with them."""
    sections = ", ".join(f.name for f in fields(Config) if f.name != "name")
    epilog = (f"The config's sections: {sections} (every key and its default: --print-config, or\n"
              "denoise/config/schema.py). Overrides are key.sub=value, YAML values, applied after the file, e.g.\n"
              "  python -m denoise.train --config configs/demo.yaml train.epochs=2 data.batch_size=4 "
              "'model.enc_blocks=[1,1,2]'")
    parser = CliParser(prog="python -m denoise.train", description="Train a raw denoiser.", epilog=epilog,
)
    parser.add_argument("--config", required=True, help="YAML file of overrides of the dataclass defaults")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides applied after the YAML file (see below)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--resume", help="'auto' (newest run of this config's name) or a checkpoint path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    from denoise.train.checkpoint import CheckpointSaveError
    from denoise.train.loop import TrainingDiverged, train  # imported late so that --print-config stays quick

    try:
        result = train(cfg, resume=args.resume)
    except BAD_INPUT as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrainingDiverged, CheckpointSaveError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.interrupted in ("SIGINT", "SIGTERM"):
        return 128 + int(getattr(signal, result.interrupted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
