"""Command-line conventions every entry point shares: ``--help`` shows each option's default, and a usage error
is one line naming the option, exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help text followed by "(default: X)", unless there is no value to show (None or False) or the text already
    says it; the description and epilog keep their own line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


class CliParser(argparse.ArgumentParser):
    """argparse with ``HelpFormatter`` and a one-line error: ``<prog>: error: <what>``, exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (--help lists the options)\n")
        sys.exit(2)


def run_cli(main: Callable[[], int]) -> int:
    """``main()``'s exit status; Ctrl-C becomes one line and status 130 instead of a traceback. For the commands
    whose outputs appear only whole at the end (renamed into place), so an interrupted one has written nothing."""
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130


def add_infer_options(parser: argparse.ArgumentParser) -> None:
    """The options ``infer`` and ``submit`` share, each an ``infer`` config key; unset ones (None) fall back to the
    config's ``infer`` section (``infer_flags`` collects them)."""
    own = "(default: infer.{} of the checkpoint or --config)"
    parser.add_argument("--config", type=Path,
                        help="YAML whose infer section gives the defaults (default: the checkpoint's own config)")
    parser.add_argument("--tile", type=int, help=f"packed tile side in pixels, 0 = whole frame {own.format('tile')}")
    parser.add_argument("--overlap", type=int,
                        help=f"packed pixels shared by neighbouring tiles {own.format('overlap')}")
    parser.add_argument("--batch-size", type=int, help=f"tiles per forward pass {own.format('batch_size')}")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help=f"x8 Bayer-preserving self-ensemble, 8x slower {own.format('tta')}")
    parser.add_argument("--device", help=f"cpu, cuda, cuda:1 or auto (cuda when there is one) {own.format('device')}")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                        help=f"inference arithmetic {own.format('precision')}")
    parser.add_argument("--noise-source", choices=("auto", "estimate"),
                        help="a noise-aware model's level: the DNG's NoiseProfile when it has one (auto), or always "
                        f"estimated from the frame {own.format('noise_source')}")


def infer_flags(args: argparse.Namespace) -> dict[str, object]:
    """The ``add_infer_options`` values by their ``infer`` key, None where not given."""
    keys = ("tile", "overlap", "batch_size", "tta", "device", "precision", "noise_source")
    return {key: getattr(args, key) for key in keys}
