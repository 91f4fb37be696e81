"""How well a dark frame synthesised from a calibration matches real dark frames it was not calibrated on.

    python scripts/dark_holdout.py DNG [DNG...] [--frames 20] [--json FILE]

Each real dark frame is calibrated (``raw.sensor.dark_statistics``), its noise model fitted once
(``dark_model``) and ``--frames`` synthetic frames drawn from it (``draw_dark``); they are measured like the frame
held out (``dark_signature``: per-channel means, read std and kurtosis, row std, the row means' spectrum in bands),
which is: the other half of the same frame (upper against lower, both ways), and each other frame, the synthetic
ones drawn at that frame's black (the black level drifts between sessions; the continuous read noise is the
sensor's). Printed per statistic: the real frame
held out, how far the calibrated frame itself is from it, and the synthetic frames' median and 10-90% range.
"""

from __future__ import annotations

import json
import sys
from itertools import permutations

import numpy as np

from denoise.atomic import write_text_atomic
from denoise.config import CliParser
from denoise.raw.bayer import CHANNELS
from denoise.raw.dng import DngError, read_dng
from denoise.raw.sensor import dark_model, dark_signature, dark_statistics, draw_dark


def holdout(source: np.ndarray, held_out: np.ndarray, pattern: str, white: int, frames: int,
            at_black: bool) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per statistic: the held-out real value, the source's and the synthetic frames' median and 10-90% range."""
    calibration = dark_statistics([source], pattern) | {"white": white}
    real, own = dark_signature([held_out], pattern), dark_signature([source], pattern)
    model = dark_model(calibration, [real[f"black {c}"] for c in CHANNELS] if at_black else None)  # fitted once
    drawn = [dark_signature([draw_dark(held_out.shape, model, np.random.default_rng(i))], pattern)
             for i in range(frames)]  # fmt: skip
    rows = {}
    for key, value in real.items():
        synthetic = np.array([d[key] for d in drawn])
        rows[key] = {"real": value, "source": own[key], "median": float(np.median(synthetic)),
                     "p10": float(np.percentile(synthetic, 10)), "p90": float(np.percentile(synthetic, 90))}
    return rows


def print_case(name: str, rows: dict[str, dict[str, float]]) -> None:
    """One comparison: relative differences from the held-out frame, but in DN for the black levels (whose
    differences of hundredths of a DN vanish beside a black of tens of DN)."""
    print(f"\n{name}\n{'statistic':16} {'held out':>10} {'calibrated on':>14} {'synthetic':>10}  10-90% of synthetic")
    for key, r in rows.items():
        if key.startswith("black"):
            d = {k: r[k] - r["real"] for k in ("source", "median", "p10", "p90")}
            print(f"{key:16} {r['real']:10.5g} {d['source']:+11.3f} DN {d['median']:+7.3f} DN  "
                  f"{d['p10']:+.3f} .. {d['p90']:+.3f} DN")
            continue
        rel = {k: r[k] / r["real"] - 1 if r["real"] else float("nan") for k in ("source", "median", "p10", "p90")}
        print(f"{key:16} {r['real']:10.5g} {rel['source']:+14.1%} {rel['median']:+10.1%}  "
              f"{rel['p10']:+.1%} .. {rel['p90']:+.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="scripts/dark_holdout.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dark", nargs="+", metavar="DNG", help="real dark frames of one camera and setting")
    parser.add_argument("--frames", type=int, default=20, help="synthetic frames per comparison")
    parser.add_argument("--json", help="write every comparison here")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    try:
        darks = [read_dng(path) for path in args.dark]
    except DngError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, frame in zip(args.dark[1:], darks[1:], strict=True):
        if frame.mosaic.shape != darks[0].mosaic.shape or frame.pattern != darks[0].pattern:
            print(f"error: {path}: size or CFA pattern differs from {args.dark[0]}", file=sys.stderr)
            return 2
    pattern, white = darks[0].pattern, int(darks[0].white_level)
    mosaics = [frame.mosaic.astype(np.float64) for frame in darks]
    half = mosaics[0].shape[0] // 4 * 2  # an even row count: whole CFA cells in each half
    cases = {f"{args.dark[0]}: upper half -> lower half": (mosaics[0][:half], mosaics[0][half:], False),
             f"{args.dark[0]}: lower half -> upper half": (mosaics[0][half:], mosaics[0][:half], False)}
    for i, j in permutations(range(len(mosaics)), 2):
        cases[f"{args.dark[i]} -> {args.dark[j]}, at its black"] = (mosaics[i], mosaics[j], True)
    results = {}
    for name, (source, held_out, at_black) in cases.items():
        try:
            results[name] = holdout(source, held_out, pattern, white, args.frames, at_black)
        except (ValueError, RuntimeError) as err:  # a frame whose noise no fit can describe
            print(f"error: {name}: cannot calibrate or draw ({err})", file=sys.stderr)
            return 2
        print_case(name, results[name])
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
