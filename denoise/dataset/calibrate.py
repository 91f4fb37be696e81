"""Fit the noise model ``var = a*x + b`` (normalised units) to noisy/clean pairs, per CFA channel.

    python -m denoise.dataset.calibrate --data data/zte/train [--bins 32] [--limit N]

For each pair the residual ``noisy - clean`` is binned by clean intensity; a line is fitted to the per-bin
variances by least squares weighted with each bin's sampling precision. The table lists every pair; the last
lines suggest ``data.noise_a_range`` / ``data.noise_b_range`` that cover what was found.
"""

from __future__ import annotations

import sys

import numpy as np

from denoise.config import CliParser, DataConfig, run_cli
from denoise.dataset.pairs import DatasetError, discover_pairs
from denoise.raw import dng
from denoise.raw.bayer import CHANNELS, even_shape, normalize, pack_bayer
from denoise.raw.noise_estimation import fit_line

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


def main(argv: list[str] | None = None) -> int:
    defaults = DataConfig()
    parser = CliParser(prog="python -m denoise.dataset.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset root holding the noisy and clean frames")
    parser.add_argument("--noisy-glob", default=defaults.noisy_glob, help="noisy files under --data (data.noisy_glob)")
    parser.add_argument("--clean-glob", default=defaults.clean_glob, help="clean files under --data (data.clean_glob)")
    parser.add_argument("--key-regex", default=defaults.key_regex,
                        help="pairs a noisy file with its clean one by the first group's match (data.key_regex)")
    parser.add_argument("--bins", type=int, default=32, help="brightness bins of the variance-against-mean fit")
    parser.add_argument("--limit", type=int, default=0, help="calibrate only the first N pairs (0: all)")
    args = parser.parse_args(argv)
    try:
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
    except (DatasetError, dng.DngError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (a_lo, a_hi), (b_lo, b_hi) = suggested_ranges(overall)
    print(f"\nsuggested synthesis ranges over {len(overall)} pair(s):")
    print(f"  data.noise_a_range=[{a_lo:.3g},{a_hi:.3g}] data.noise_b_range=[{b_lo:.3g},{b_hi:.3g}]")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
