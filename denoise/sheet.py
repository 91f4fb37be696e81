"""A PNG contact sheet of sRGB-rendered crops: noisy, denoised and clean side by side, one row per frame.

    python -m denoise.sheet --noisy data/demo/test --pred result/data --gt data/demo/test_gt --out runs/sheet.png
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import imageio.v3
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from denoise.atomic import atomic_path
from denoise.config import CliParser, run_cli
from denoise.raw.dng import DngError, RawFrame, read_dng
from denoise.raw.render import auto_exposure, render_srgb
from denoise.raw.tiles import centre_box

GAP = 8  # white pixels between tiles
TOP = 24  # height of the band naming the columns
COLUMNS = ("noisy", "denoised", "clean")


def centre_crop(frame: RawFrame, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of the mosaic (even sides, even origin, so the CFA phase holds)."""
    height, width = frame.mosaic.shape
    size = min(size, height // 2 * 2, width // 2 * 2)
    y0, y1, x0, x1 = centre_box(height, width, size, size)
    return frame.mosaic[y0:y1, x0:x1]


def sheet_row(frames: Sequence[RawFrame], size: int) -> np.ndarray:
    """Render crops of ``frames`` (noisy, denoised, clean) with one exposure taken from the last. (h, w, 3) uint8."""
    reference = frames[-1]
    crops = [centre_crop(f, size) for f in frames]
    gain = auto_exposure(crops[-1], reference)
    tiles = [render_srgb(c, reference, exposure=gain) for c in crops]
    gap = np.full((tiles[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)


def build_sheet(triples: Sequence[Sequence[RawFrame]], size: int = 256) -> np.ndarray:
    """Stack one rendered row per (noisy, denoised, clean) triple. (H, W, 3) uint8."""
    assert triples, "no frames to show"
    rows = [sheet_row(t, size) for t in triples]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)[:-GAP]


def label_sheet(sheet: np.ndarray, columns: Sequence[str], rows: Sequence[str]) -> np.ndarray:
    """``sheet`` with a band above naming each of its equal-width columns and a band on the left naming each of its
    equal-height rows (tiles ``GAP`` apart), in black on white. (H + TOP, W + LEFT, 3) uint8."""
    font = ImageFont.load_default()
    left = max(int(font.getlength(text)) for text in rows) + 2 * GAP
    height, width = sheet.shape[:2]
    canvas = Image.new("RGB", (width + left, height + TOP), "white")
    canvas.paste(Image.fromarray(sheet), (left, TOP))
    draw = ImageDraw.Draw(canvas)
    tile_w, tile_h = (width - GAP * (len(columns) - 1)) // len(columns), (height - GAP * (len(rows) - 1)) // len(rows)
    for n, text in enumerate(columns):
        draw.text((left + n * (tile_w + GAP) + tile_w // 2, TOP // 2), text, fill="black", font=font, anchor="mm")
    for n, text in enumerate(rows):
        draw.text((GAP, TOP + n * (tile_h + GAP) + tile_h // 2), text, fill="black", font=font, anchor="lm")
    return np.asarray(canvas)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.sheet", description=__doc__.splitlines()[0])
    parser.add_argument("--noisy", type=Path, required=True, help="folder of noisy{N}.dng")
    parser.add_argument("--pred", type=Path, required=True, help="folder of denoise{N}.dng")
    parser.add_argument("--gt", type=Path, required=True, help="folder of gt{N}.dng")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 5, 9], help="frame numbers to show")
    parser.add_argument("--size", type=int, default=256, help="crop size in mosaic pixels")
    args = parser.parse_args(argv)
    try:
        triples = [
            [read_dng(args.noisy / f"noisy{n}.dng"), read_dng(args.pred / f"denoise{n}.dng"),
             read_dng(args.gt / f"gt{n}.dng")]
            for n in args.frames
        ]
    except DngError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    picture = label_sheet(build_sheet(triples, args.size), COLUMNS, [f"frame {n}" for n in args.frames])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        imageio.v3.imwrite(tmp, picture, extension=".png")
    print(f"comparison sheet (columns: {', '.join(COLUMNS)}; a row per frame, labelled): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
