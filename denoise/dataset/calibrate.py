"""Measure a camera's noise: from noisy/clean pairs, or from the sensor's own dark and flat frames.

    python -m denoise.dataset.calibrate --data data/zte/train [--bins 32] [--limit N]
    python -m denoise.dataset.calibrate --dark DNG... [--flat DNG...] [--json FILE]

Pairs: the residual ``noisy - clean`` is binned by clean intensity and a line ``var = a*x + b`` (normalised units)
is fitted to the per-bin variances, weighted with each bin's sampling precision; the table lists every pair and
the last lines suggest ``data.noise_a_range`` / ``data.noise_b_range`` that cover what was found.

Sensor: dark frames (lens capped, one setting) give the black offset per CFA channel, the read noise (std and
tails), row noise and fixed pattern (``denoise.raw.sensor``); flat frames, given in pairs of one exposure (first
and second, third and fourth, ...), give the shot-noise gain. ``--json`` writes it all, in DN, with the
normalised ``a`` and ``b`` a training config takes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from denoise.atomic import write_text_atomic
from denoise.config import CliParser, DataConfig, run_cli
from denoise.dataset.pairs import DatasetError, discover_pairs
from denoise.raw import dng
from denoise.raw.bayer import CHANNELS, even_shape, normalize, pack_bayer
from denoise.raw.noise_estimation import fit_line
from denoise.raw.sensor import dark_statistics, photon_transfer

MIN_BIN_COUNT = 64


def binned_variance(clean: np.ndarray, residual: np.ndarray, bins: int, keep: np.ndarray | None = None):
    """(bin mean of clean, variance of residual, count) over ``bins`` equal-width bins of clean values."""
    assert clean.shape == residual.shape, f"shapes differ: {clean.shape} vs {residual.shape}"
    x, r = clean.ravel().astype(np.float64), residual.ravel().astype(np.float64)
    if keep is not None:
        x, r = x[keep.ravel()], r[keep.ravel()]
    if x.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    edges = np.linspace(x.min(), x.max() + 1e-12, bins + 1)
    index = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    sum_x, sum_r = np.bincount(index, x, bins), np.bincount(index, r, bins)
    sum_r2 = np.bincount(index, r * r, bins)
    ok = count >= MIN_BIN_COUNT
    n = count[ok]
    var = (sum_r2[ok] - sum_r[ok] ** 2 / n) / (n - 1)
    return sum_x[ok] / n, var, n


def fit_variance_line(x: np.ndarray, var: np.ndarray, count: np.ndarray, iterations: int = 4) -> tuple[float, float]:
    """(a, b) of ``var = a*x + b``, both at least 0 (``fit_line``); bins weighted by the inverse variance of a
    sample variance, 2 v^2 / (n - 1), re-weighted with the fitted variance.

    Fewer than two populated bins give (nan, nan).
    """
    if len(x) < 2:
        return float("nan"), float("nan")
    weights = np.ones_like(x)
    a, b = 0.0, 0.0
    for _ in range(iterations):
        a, b = fit_line(x, var, weights)
        predicted = np.maximum(a * x + b, 1e-12)  # re-weight with the fitted variance, as the precision depends on it
        weights = (count - 1) / (2 * predicted**2)
    return float(a), float(b)


def calibrate_frames(noisy: np.ndarray, clean: np.ndarray, pattern: str, black: np.ndarray, white: int,
                     bins: int = 32) -> dict[str, tuple[float, float]]:
    """{channel name or "all": (a, b)} for one pair of (H, W) DN mosaics."""
    height, width = even_shape(*clean.shape)
    x = pack_bayer(normalize(clean[:height, :width], black, white), pattern)  # (4, h, w)
    y = pack_bayer(normalize(noisy[:height, :width], black, white), pattern)
    keep = x < 0.98  # saturated pixels have no noise left
    if not (y < 0).any() and (y <= 0).mean() > 1e-3:
        # Noisy values clipped at black: drop the pixels where clipping biases the variance.
        keep &= x > _clip_threshold(x, y)
    fits = {}
    for index, name in enumerate(CHANNELS):
        fits[name] = fit_variance_line(*binned_variance(x[index], y[index] - x[index], bins, keep[index]))
    fits["all"] = fit_variance_line(*binned_variance(x, y - x, bins, keep))
    return fits


def _clip_threshold(x: np.ndarray, y: np.ndarray) -> float:
    """Clean level below which clipping at black visibly cuts the noise: 3 local noise deviations above 0."""
    first = fit_variance_line(*binned_variance(x, y - x, 16, x > np.quantile(x, 0.5)))
    a, b = max(first[0], 0.0), max(first[1], 0.0)
    # Solve x = 3 * sqrt(a*x + b) for the positive root.
    return float((9 * a + np.sqrt(81 * a * a + 36 * b)) / 2)


def suggested_ranges(fits: list[tuple[float, float]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Ranges for ``noise_a_range`` / ``noise_b_range`` covering the fitted values with a 25% margin; ``fits``
    holds finite fits with some noise (``usable_fit``)."""
    assert fits, "no usable fit"
    a = np.maximum(np.array([f[0] for f in fits]), 1e-8)
    b = np.maximum(np.array([f[1] for f in fits]), 1e-8)  # a slightly negative intercept means b ~ 0
    return (float(a.min() / 1.25), float(a.max() * 1.25)), (float(b.min() / 1.25), float(b.max() * 1.25))


def usable_fit(fit: tuple[float, float]) -> str | None:
    """Why a pair's (a, b) cannot inform the ranges, or None when it can."""
    if not np.isfinite(fit).all():
        return (f"too few pixels to fit a line (a brightness bin needs {MIN_BIN_COUNT} pixels of a CFA channel, and "
                "two bins are needed)")
    if fit[0] <= 0 and fit[1] <= 0:
        return "no noise measured: the noisy frame equals its clean one"
    return None


def read_matching(paths: list[str], what: str) -> list[dng.RawFrame]:
    """The frames at ``paths``, which must share one shape and CFA pattern (a DatasetError says which differs)."""
    frames = [dng.read_dng(p) for p in paths]
    for frame in frames[1:]:
        if frame.mosaic.shape != frames[0].mosaic.shape or frame.pattern != frames[0].pattern:
            ours, theirs = (frame.mosaic.shape, frame.pattern), (frames[0].mosaic.shape, frames[0].pattern)
            raise DatasetError(f"{frame.path}: {what} frames differ in size or CFA pattern from {frames[0].path} "
                               f"({ours} vs {theirs})")
    return frames


def sensor_calibration(dark_paths: list[str], flat_paths: list[str]) -> dict:
    """The JSON-ready calibration of one camera setting from its dark frames and pairs of flat frames."""
    if len(flat_paths) % 2:
        raise DatasetError(f"{flat_paths[-1]}: flat frames come in pairs of one exposure; this one has no partner")
    darks = read_matching(dark_paths, "dark")
    first = darks[0]
    result = dark_statistics([f.mosaic for f in darks], first.pattern)
    result["white"] = int(first.white_level)
    scale = first.white_level - sum(result["black"]) / 4  # DN from black to white
    result["b"] = result["read_std"] ** 2 / scale**2  # normalised read variance, as data.noise_b_range takes it
    read = max(result["read_std"], 1e-12)
    result["structure"] = [result["row_std"] / read, result["row_pair_corr"], (result["fpn_std"] or 0.0) / read]
    if flat_paths:
        flats = read_matching(flat_paths, "flat")
        if flats[0].mosaic.shape != first.mosaic.shape or flats[0].pattern != first.pattern:
            raise DatasetError(f"{flats[0].path}: flat frames differ in size or CFA pattern from the dark frames")
        pairs = [(flats[i].mosaic, flats[i + 1].mosaic) for i in range(0, len(flats), 2)]
        transfer = photon_transfer(pairs, first.pattern, result["black"])
        if transfer["gain"] <= 0:
            raise DatasetError(f"{flat_paths[0]}: the flat frames' noise does not grow with their level; "
                               "are they lit, and each pair one exposure?")
        result["gain"] = transfer["gain"]  # DN of variance per DN of signal
        result["a"] = transfer["gain"] / scale  # normalised, as data.noise_a_range takes it
        result["photon_transfer"] = {k: transfer[k] for k in ("levels", "variances", "channels", "read_var")}
    return result


def print_sensor(result: dict) -> None:
    print(f"frames: {result['frames']} dark, pattern {result['pattern']}, white {result['white']}")
    print("black (DN):     " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CHANNELS, result["black"], strict=True)))
    print(f"read noise:     {result['read_std']:.4g} DN (kurtosis {result['read_kurtosis']:+.3g}, "
          f"Tukey lambda {result['read_tukey_lambda']:.3g})")
    print(f"row noise:      {result['row_std']:.4g} DN")
    if result["fpn_std"] is not None:
        print(f"fixed pattern:  {result['fpn_std']:.4g} DN per pixel, {result['column_std']:.4g} DN per column")
    print("data.noise_structure=[{:.3g},{:.3g},{:.3g}]  (rows, their pair correlation, fixed pattern; / read)"
          .format(*result["structure"]))
    if result.get("row_spectrum"):
        print(f"{spectrum_setting(result['row_spectrum'])}  (the rows' power, slow to fast; white rows: equal)")
    if "gain" in result:
        print(f"shot-noise gain: {result['gain']:.4g} DN per DN of signal; normalised a = {result['a']:.4g}, "
              f"b = {result['b']:.4g}")


def spectrum_setting(spectrum: list[float]) -> str:
    """The override that gives training a calibration's row spectrum (its band shares, 3 significant digits)."""
    return f"data.noise_row_spectrum=[{','.join(f'{v:.3g}' for v in spectrum)}]"


def no_photos_command(result: dict, path: str) -> str:
    """The command that trains a denoiser for this camera with no photo (configs/no_photos.yaml): its levels from
    ``path``, the noise ranges about the measured ``a`` and ``b`` (25% either side), its structure and row spectrum
    as measured."""
    (a_lo, a_hi), (b_lo, b_hi) = suggested_ranges([(result.get("a", 1.0), result["b"])])  # a: without flats, unused
    noise = [f"'data.noise_a_range=[{a_lo:.3g},{a_hi:.3g}]'"] if "a" in result else []
    noise.append(f"'data.noise_b_range=[{b_lo:.3g},{b_hi:.3g}]'")
    structure = "'data.noise_structure=[{:.3g},{:.3g},{:.3g}]'".format(*result["structure"])
    if result.get("row_spectrum"):
        structure += f" '{spectrum_setting(result['row_spectrum'])}'"
    no_validation = "data.val_root= data.val_noisy_glob= data.val_clean_glob= data.val_key_regex="
    unmeasured = "" if "a" in result else "; no flat frames: the config's shot-noise range stays"
    return (f"to train without photos (this setting only; widen the ranges to cover your other ISOs{unmeasured}):\n"
            f"  python -m denoise.train --config configs/no_photos.yaml data.camera={shlex.quote(path)} "
            f"{no_validation} {' '.join(noise)} {structure}")


def calibrate_pairs(args: argparse.Namespace) -> int:
    """The pairs' table and the suggested ranges (``--data``)."""
    pairs = discover_pairs(args.data, args.noisy_glob, args.clean_glob, args.key_regex)
    if any(p.noisy is None for p in pairs):
        raise DatasetError(f"{args.data}: calibration needs noisy frames (noisy glob is empty)")
    pairs = pairs[: args.limit] if args.limit > 0 else pairs
    print(f"{'key':>8} {'a':>10} {'b':>10}  " + "  ".join(f"{'a_' + c:>9} {'b_' + c:>9}" for c in CHANNELS))
    overall, skipped = [], []
    for pair in pairs:
        noisy, clean = dng.read_dng(pair.noisy), dng.read_dng(pair.clean)
        if noisy.mosaic.shape != clean.mosaic.shape or noisy.pattern != clean.pattern:
            raise DatasetError(f"{pair.noisy} vs {pair.clean}: dimensions or CFA patterns differ")
        fits = calibrate_frames(noisy.mosaic, clean.mosaic, clean.pattern, clean.black_level,
                                clean.white_level, args.bins)
        if (problem := usable_fit(fits["all"])) is not None:
            skipped.append(f"{pair.noisy}: {problem}")
        else:
            overall.append(fits["all"])
        cells = "  ".join(f"{fits[c][0]:9.3g} {fits[c][1]:9.3g}" for c in CHANNELS)
        print(f"{pair.key:>8} {fits['all'][0]:10.4g} {fits['all'][1]:10.4g}  {cells}", flush=True)
    if not overall:
        more = f" (and the {len(skipped) - 1} other pair(s) as well)" if len(skipped) > 1 else ""
        raise DatasetError(f"{skipped[0]}{more}")
    for line in skipped:
        print(f"warning: {line}; left out of the suggested ranges", file=sys.stderr)
    (a_lo, a_hi), (b_lo, b_hi) = suggested_ranges(overall)
    print(f"\nsuggested synthesis ranges over {len(overall)} pair(s):")
    print(f"  data.noise_a_range=[{a_lo:.3g},{a_hi:.3g}] data.noise_b_range=[{b_lo:.3g},{b_hi:.3g}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    defaults = DataConfig()
    parser = CliParser(prog="python -m denoise.dataset.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset root holding noisy and clean frames (calibrate from pairs)")
    parser.add_argument("--dark", nargs="+", default=[], metavar="DNG", help="dark frames of one camera setting")
    parser.add_argument("--flat", nargs="+", default=[], metavar="DNG",
                        help="flat frames, in pairs of one exposure, for the shot-noise gain (with --dark)")
    parser.add_argument("--json", help="write the sensor calibration here (with --dark)")
    parser.add_argument("--noisy-glob", default=defaults.noisy_glob, help="noisy files under --data (data.noisy_glob)")
    parser.add_argument("--clean-glob", default=defaults.clean_glob, help="clean files under --data (data.clean_glob)")
    parser.add_argument("--key-regex", default=defaults.key_regex,
                        help="pairs a noisy file with its clean one by the first group's match (data.key_regex)")
    parser.add_argument("--bins", type=int, default=32, help="brightness bins of the variance-against-mean fit")
    parser.add_argument("--limit", type=int, default=0, help="calibrate only the first N pairs (0: all)")
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.dark):
        parser.error("give either --data (noisy/clean pairs) or --dark (the sensor's dark frames)")
    if (args.flat or args.json) and not args.dark:
        parser.error("--flat and --json go with --dark")
    if args.json and Path(args.json).is_dir():
        parser.error(f"--json {args.json}: is a folder, not a file")
    try:
        if args.data:
            return calibrate_pairs(args)
        result = sensor_calibration(args.dark, args.flat)
    except (DatasetError, dng.DngError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_sensor(result)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}\n\n{no_photos_command(result, args.json)}")
    return 0

if __name__ == "__main__":
    sys.exit(run_cli(main))
