"""Score denoised DNGs against ground truth: ``python -m denoise.evaluate --pred DIR --gt DIR [--noisy DIR]``.

Files pair by the number in their names (``denoise{N}`` with ``gt{N}`` and ``noisy{N}`` by default). Prints
PSNR, the competition's column-wise SSIM, the plain 2-D SSIM and the score per image and their mean; with
``--noisy`` the same for the noisy input, so the gain is visible.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denoise.atomic import unwritable_reason, write_text_atomic
from denoise.config import CliParser, run_cli
from denoise.raw.dng import DngError, RawFrame, read_dng
from denoise.raw.folders import FolderError, index_folder
from denoise.raw.metrics import ImageScores, mean_scores, score_image


class EvaluateError(ValueError):
    """Folders that cannot be scored against each other; the message names the files and the problem."""


@dataclass(frozen=True)
class Row:
    """Scores of one image: the prediction's, and the noisy input's when given."""

    key: str
    pred: ImageScores
    noisy: ImageScores | None = None


def _check_pair(gt: RawFrame, other: RawFrame) -> None:
    """Shapes and levels must agree, or the numbers would be meaningless."""
    if gt.mosaic.shape != other.mosaic.shape:
        raise EvaluateError(f"{other.path}: shape {other.mosaic.shape} differs from {gt.path}'s {gt.mosaic.shape}")
    if gt.white_level != other.white_level or not np.array_equal(gt.black_level, other.black_level):
        raise EvaluateError(
            f"{other.path}: levels (black {other.black_level.ravel().tolist()}, white {other.white_level}) differ "
            f"from {gt.path}'s (black {gt.black_level.ravel().tolist()}, white {gt.white_level})"
        )
    if gt.pattern != other.pattern:
        raise EvaluateError(f"{other.path}: CFA pattern {other.pattern} differs from {gt.path}'s {gt.pattern}")


def _score(gt: RawFrame, other: RawFrame) -> ImageScores:
    _check_pair(gt, other)
    return score_image(gt.mosaic, other.mosaic, data_range=gt.white_level)


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    noisy_dir: str | Path | None = None,
    pred_pattern: str = "denoise{N}",
    gt_pattern: str = "gt{N}",
    noisy_pattern: str = "noisy{N}",
) -> tuple[list[Row], list[str]]:
    """One row per prediction that could be scored, in order of N, and one message per prediction that could not
    (no ground truth, or no noisy input when asked for; an unreadable file; shapes or levels that differ)."""
    preds = index_folder(Path(pred_dir), pred_pattern)
    gts = index_folder(Path(gt_dir), gt_pattern)
    noisies = index_folder(Path(noisy_dir), noisy_pattern) if noisy_dir is not None else {}
    rows, failures = [], []
    for n in sorted(preds):
        try:
            if n not in gts:
                raise EvaluateError(f"{preds[n]}: no ground truth {gt_pattern.replace('{N}', str(n))}.dng in {gt_dir}")
            if noisy_dir is not None and n not in noisies:
                raise EvaluateError(
                    f"{preds[n]}: no noisy input {noisy_pattern.replace('{N}', str(n))}.dng in {noisy_dir}")
            gt = read_dng(gts[n])
            noisy = _score(gt, read_dng(noisies[n])) if noisy_dir is not None else None
            rows.append(Row(preds[n].stem, _score(gt, read_dng(preds[n])), noisy))
        except (EvaluateError, FolderError, DngError) as err:
            failures.append(str(err))
    if missing := [gts[n].name for n in sorted(gts) if n not in preds]:
        failures.append(f"{pred_dir}: no prediction for {len(missing)} of the {len(gts)} ground-truth frames "
                        f"({', '.join(missing)}): the mean would leave them out")  # fmt: skip
    return rows, failures


def check_json_destination(path: Path) -> None:
    """The scores' JSON file must be writable where asked, checked before anything is scored."""
    if path.is_dir():
        raise EvaluateError(f"--json {path}: is a folder; name a file")
    if not path.parent.is_dir():
        raise EvaluateError(f"--json {path}: folder {path.parent} does not exist")
    if (reason := unwritable_reason(path.parent)) is not None:
        raise EvaluateError(f"--json {path}: cannot write in {path.parent} ({reason})")


def mean_row(rows: Sequence[Row]) -> Row:
    """The per-metric mean over rows."""
    noisy = mean_scores(r.noisy for r in rows) if rows[0].noisy is not None else None
    return Row("mean", mean_scores(r.pred for r in rows), noisy)


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: one line per image and the mean; noisy columns when present."""
    has_noisy = rows[0].noisy is not None
    head = f"{'image':<16}{'PSNR':>9}{'SSIM':>9}{'SSIM-2D':>9}{'score':>8}"
    if has_noisy:
        head += f"  |{'in PSNR':>9}{'SSIM':>9}{'SSIM-2D':>9}{'score':>8}"

    def cells(s: ImageScores) -> str:
        return f"{s.psnr:>9.3f}{s.ssim:>9.5f}{s.ssim_2d:>9.5f}{s.score:>8.3f}"

    lines = [head, "-" * len(head)]
    for row in [*rows, mean_row(rows)]:
        if row.key == "mean":
            lines.append("-" * len(head))
        line = f"{row.key:<16}{cells(row.pred)}"
        if row.noisy is not None:
            line += f"  |{cells(row.noisy)}"
        lines.append(line)
    return "\n".join(lines)


def rows_as_json(rows: Sequence[Row]) -> dict[str, object]:
    """Rows and their mean as plain data."""

    def plain(row: Row) -> dict[str, object]:
        return {"pred": row.pred.as_dict(), "noisy": row.noisy.as_dict() if row.noisy else None}

    return {"images": {r.key: plain(r) for r in rows}, "mean": plain(mean_row(rows))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--pred", type=Path, required=True, help="folder of denoised DNGs")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth DNGs")
    parser.add_argument("--noisy", type=Path, help="folder of the noisy inputs, to score them too")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    parser.add_argument("--pred-pattern", default="denoise{N}", help="prediction file names, {N} the number")
    parser.add_argument("--gt-pattern", default="gt{N}", help="ground-truth file names")
    parser.add_argument("--noisy-pattern", default="noisy{N}", help="noisy input file names")
    args = parser.parse_args(argv)
    try:
        if args.json is not None:
            check_json_destination(args.json)
        rows, failures = evaluate_folders(
            args.pred, args.gt, args.noisy, args.pred_pattern, args.gt_pattern, args.noisy_pattern
        )
    except (EvaluateError, FolderError, DngError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rows:  # the frames that could be scored, even when others could not
        print(format_table(rows))
        if args.json is not None:
            try:
                write_text_atomic(args.json, json.dumps(rows_as_json(rows), indent=2) + "\n")
            except OSError as err:
                failures.append(f"--json {args.json}: not written ({err.strerror or err})")
            else:
                print(f"wrote {args.json}")
    for reason in failures:
        print(f"error: {reason}", file=sys.stderr)
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
