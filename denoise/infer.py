"""Denoise DNG files with a trained checkpoint: ``python -m denoise.infer [--checkpoint] [--input] [--output]``.

With no arguments it takes the newest run's ``best.pth`` under ``runs/`` (a run that finished without validation:
its ``last.pth``) and that checkpoint's own ``infer`` section (test and output folders, tiling, precision), and
says what it chose; ``--config`` supplies another ``infer`` section. ``noisy{N}.dng`` becomes ``denoise{N}.dng``;
any other name ``{stem}_denoised.dng``. A bad input is reported and skipped; the exit status is 2 if any file
failed. The work is ``denoise.inference.files``'.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from denoise.config import CliParser, Config, ConfigError, InferConfig, add_infer_options, infer_flags, load_config
from denoise.inference.files import (
    InferError,
    Interrupted,
    collect_inputs,
    failure_line,
    infer_settings,
    newest_checkpoint,
    plan_jobs,
    run_jobs,
    settings_line,
    summary_line,
)
from denoise.model.checkpoint import CheckpointError, checkpoint_config, model_from_checkpoint, read_checkpoint


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="python -m denoise.infer", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path,
                        help="trained model (default: the newest run's best.pth under runs/ or --config's "
                             "infer.runs_dir; last.pth for a run that finished without validation)")
    parser.add_argument("--input", nargs="+", help="DNG files or folders (default: the checkpoint's infer.test_dir)")
    parser.add_argument("--output", type=Path, help="output folder (default: the checkpoint's infer.output_dir)")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing existing files in input folders")
    add_infer_options(parser)
    return parser.parse_args(argv)


def chosen_line(checkpoint: Path, runs_dir: str) -> str:
    """Why ``checkpoint`` was taken by default."""
    if checkpoint.name == "best.pth":
        return f" (the newest run's best.pth under {runs_dir}/)"
    return f" (the newest run under {runs_dir}/ to finish without validation: its last.pth)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        named = load_config(args.config) if args.config is not None else Config()
        infer_settings(named, infer_flags(args))  # flags wrong on their own are refused before the checkpoint is read
        runs_dir = named.infer.runs_dir if args.config is not None else InferConfig.runs_dir
        checkpoint = args.checkpoint or newest_checkpoint(runs_dir)
        if checkpoint is None:
            raise InferError(f"no --checkpoint given and no run under {runs_dir}/ with a best.pth, nor one that "
                             "finished without validation: train first, or name a last.pth")
        ckpt = read_checkpoint(checkpoint)
        trained = checkpoint_config(ckpt, checkpoint)
        cfg = named if args.config is not None else trained
        settings = infer_settings(cfg, infer_flags(args))
        inputs = collect_inputs(args.input or [cfg.infer.test_dir])
        output_dir = args.output or Path(cfg.infer.output_dir)
        jobs = plan_jobs(inputs, output_dir, args.overwrite)
        print(f"checkpoint: {checkpoint}{'' if args.checkpoint else chosen_line(checkpoint, runs_dir)}")
        print(f"input: {', '.join(args.input or [cfg.infer.test_dir])} ({len(inputs)} file(s)); output: {output_dir}")
        print(f"settings: {settings_line(settings)}, from {args.config or 'the checkpoint'}'s infer section and flags")
        model = model_from_checkpoint(ckpt, trained, checkpoint, settings.device)
    except (InferError, CheckpointError, ConfigError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary = run_jobs(model, jobs, settings)
    except Interrupted as stop:
        print(f"interrupted: {stop.done} of {len(jobs)} file(s) written to {output_dir}, each complete; the rest not",
              file=sys.stderr)  # fmt: skip
        return 130
    print(summary_line(summary, settings))
    if summary.failures:
        print(f"error: {failure_line(summary)}", file=sys.stderr)
    return 2 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
