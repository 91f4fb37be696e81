"""Command-line conventions every entry point shares: ``--help`` shows each option's default, and a usage error
is one line naming the option, exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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
