"""What a camera's dark and flat frames say about its noise, in DN: the black offset of each CFA channel, the read
noise (its std and its tails), row noise, the fixed pattern, and the shot-noise gain.

Real sensors are not Poisson-Gaussian: rows share an offset that changes from frame to frame (banding), pixels
keep a fixed offset of their own, and the read noise has heavier tails than a Gaussian (ELD, Wei et al., CVPR
2020). A dark frame (lens capped, the shortest exposure) holds all of these and no signal; a pair of flat frames
(an even grey field, twice at one exposure) gives the gain, as their difference cancels the scene and the pixels'
fixed gains (the photon transfer method, EMVA 1288).

Statistics are per packed CFA channel (``bayer.CHANNELS`` order) and pooled; everything is in DN of the raw file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from denoise.raw.bayer import CHANNELS, even_shape, pack_bayer, unpack_bayer
from denoise.raw.noise import sensor_row_offsets
from denoise.raw.noise_estimation import fit_line

TAIL_SAMPLE = 20_000  # read-noise values the Tukey-lambda shape is fitted to (evenly strided)
SPECTRUM_BANDS = 3  # the row means' power spectrum compared in this many equal bands of frequency
ROW_SPECTRUM_BANDS = 8  # ... and measured in this many by a calibration, which the synthesis draws rows from


def packed_frames(mosaics: Sequence[np.ndarray], pattern: str) -> np.ndarray:
    """(n, 4, h, w) float64 DN of same-shaped (H, W) mosaics, cut to even sizes."""
    shapes = {m.shape for m in mosaics}
    assert len(shapes) == 1, f"frames of different shapes: {sorted(shapes)}"
    height, width = even_shape(*mosaics[0].shape)
    return np.stack([pack_bayer(np.asarray(m, dtype=np.float64)[:height, :width], pattern) for m in mosaics])


def dark_statistics(mosaics: Sequence[np.ndarray], pattern: str) -> dict:
    """The noise of dark frames (a list of (H, W) DN mosaics of one camera and setting), as a JSON-ready dict.

    - ``black``: each channel's mean (DN), ``CHANNELS`` order;
    - ``read_std``: std of what is left once each pixel's offset and each row's are taken away, pooled over
      channels (``read_std_per_channel`` each); with a single frame the pixels' fixed offsets are in it;
    - ``row_std``: std of the row offsets, each row mean's variance less the read noise's share of it, ``1 / w``;
      ``row_pair_corr``: how much of it the two sensor rows of a packed row share (1 where read out together);
    - ``column_std``: the same for columns, of the fixed part (the mean over frames) with two frames or more;
    - ``fpn_std``: std of the pixels' fixed offsets (the mean over frames, less its temporal share), None with
      one frame;
    - ``read_kurtosis`` (excess, 0 for a Gaussian; ``read_kurtosis_per_channel`` each) and ``read_tukey_lambda``:
      the tails; a Tukey-lambda shape under 0.14 means heavier tails than a Gaussian (ELD's read-noise model);
    - ``row_spectrum``: how the row offsets' power spreads over frequency (the function ``row_spectrum`` in
      ``ROW_SPECTRUM_BANDS`` bands, the read noise's share taken away, as fractions summing to 1; None for a frame
      of too few rows to fill the bands, or when the row noise is too small to tell from the read noise's share
      of the row means): slow banding puts more in the first bands, independent rows spread it evenly.
    """
    return packed_dark_statistics(packed_frames(mosaics, pattern), pattern)


def packed_dark_statistics(packed: np.ndarray, pattern: str) -> dict:
    """``dark_statistics`` of frames already packed, (n, 4, h, w) float64 DN."""
    n, channels, h, w = packed.shape
    black = packed.mean(axis=(0, 2, 3))
    fixed = packed.mean(axis=0)  # (4, h, w): each pixel's offset, with 1/n of the temporal noise
    temporal = (packed - fixed) * np.sqrt(n / (n - 1)) if n > 1 else packed - black[:, None, None]
    rows = temporal.mean(axis=3, keepdims=True)  # (n, 4, h, 1)
    read = temporal - rows
    read_var = read.var(axis=(0, 2, 3)) * w / (w - 1)  # the row means took one degree of freedom a row
    row_var = rows[..., 0].var(axis=2, ddof=1).mean(axis=0) - read_var / w
    # Rows of a pair (the two sensor rows one packed row holds) may share their offset: some sensors read them
    # together. The correlation of the two rows' offsets, from the channels of one against those of the other.
    upper, lower = rows[:, :2, :, 0].mean(axis=1), rows[:, 2:, :, 0].mean(axis=1)  # (n, h) each
    shared = ((upper - upper.mean(axis=1, keepdims=True)) * (lower - lower.mean(axis=1, keepdims=True))).mean()
    result = {
        "pattern": pattern,
        "frames": n,
        "black": black.tolist(),
        "read_std": float(np.sqrt(read_var.mean())),
        "read_std_per_channel": np.sqrt(read_var).tolist(),
        "row_std": float(np.sqrt(max(row_var.mean(), 0.0))),
        "row_pair_corr": float(np.clip(shared / max(row_var.mean(), 1e-30), 0.0, 1.0)),
        "column_std": None,
        "fpn_std": None,
    }
    if n > 1:
        offsets = fixed - black[:, None, None]
        temporal_share = (read_var + row_var.clip(min=0)) / n  # of each pixel's mean over n frames
        result["fpn_std"] = float(np.sqrt(max((offsets.var(axis=(1, 2)) - temporal_share).mean(), 0.0)))
        columns = offsets.mean(axis=1)  # (4, w)
        result["column_std"] = float(np.sqrt(max((columns.var(axis=1, ddof=1) - offsets.var(axis=(1, 2)) / h).mean(),
                                                 0.0)))  # fmt: skip
    values = read.ravel()
    result["read_kurtosis"] = float(stats.kurtosis(values))
    result["read_kurtosis_per_channel"] = [float(stats.kurtosis(read[:, c].ravel())) for c in range(4)]
    # None when there are too few packed rows for the bands (twice as many are needed), or no row noise measurable
    # to shape: a row variance within 4 standard errors of 0, the errors of its estimate with read noise alone.
    floor = read_var.mean() / w  # the read noise's share of a row mean's variance
    error = floor * np.sqrt(2 / ((h - 1) * channels * n))
    result["row_spectrum"] = None
    if h // 2 >= ROW_SPECTRUM_BANDS and row_var.mean() > 4 * error:
        power = np.array(row_spectrum(temporal, ROW_SPECTRUM_BANDS)) - floor  # the read noise's share out
        power = power.clip(min=0.05 * max(power.max(), 1e-30))  # no band at 0: a floor keeps the shape drawable
        result["row_spectrum"] = (power / power.sum()).tolist()
    sample = np.sort(values[:: max(1, len(values) // TAIL_SAMPLE)])
    try:
        result["read_tukey_lambda"] = float(stats.ppcc_max(sample, brack=(-0.5, 0.5), dist="tukeylambda"))
    except (RuntimeError, ValueError):  # nearly every value one DN: no shape to fit
        result["read_tukey_lambda"] = None
    return result


def photon_transfer(pairs: Sequence[tuple[np.ndarray, np.ndarray]], pattern: str,
                    black: Sequence[float]) -> dict:  # fmt: skip
    """The shot-noise gain from pairs of flat frames, each pair two exposures of one even field.

    Per pair and channel, half the variance of the difference of the two frames is the temporal noise at that
    pair's mean level above black (the scene and the pixels' fixed gains cancel); a line through (level,
    variance) over all pairs and channels has slope ``gain`` (DN of variance per DN of signal: the DN one
    electron makes) and intercept ``read_var`` (DN^2). Pairs at two levels or more pin the line.
    """
    black = np.asarray(black, dtype=np.float64)[:, None]
    levels, variances = [], []
    for first, second in pairs:
        a, b = packed_frames([first, second], pattern)  # (4, h, w) each
        levels.append((0.5 * (a + b)).reshape(4, -1).mean(axis=1) - black[:, 0])
        variances.append(0.5 * (a - b).reshape(4, -1).var(axis=1, ddof=1))
    x, y = np.concatenate(levels), np.concatenate(variances)
    gain, read_var = fit_line(x, y, 1.0 / np.maximum(y, 1e-12) ** 2)
    return {"gain": float(gain), "read_var": float(read_var), "levels": x.tolist(), "variances": y.tolist(),
            "channels": [CHANNELS[i % 4] for i in range(len(x))]}  # fmt: skip


# ---- Synthesis: dark frames (and later noise on clean frames) drawn from a calibration ----


def tukey_scale(std: float, shape: float) -> float:
    """The scale that gives Tukey-lambda noise of ``shape`` the std ``std``."""
    return float(std / np.sqrt(stats.tukeylambda.var(shape)))


def rounded_moments(std: float, shape: float, offset: float, smear: float = 0.0) -> tuple[float, float, float]:
    """(std, excess kurtosis, mean) of round(offset + x) - offset for x Tukey-lambda of ``shape`` scaled to ``std``:
    what a raw file's whole DN make of continuous read noise (exact, from the distribution's CDF). The mean is
    rounding's bias: narrow noise just past a whole DN mostly rounds down to it.

    ``smear``: the std of a Gaussian offset shared by each row (row noise), which moves where the rounding falls
    from row to row; std and kurtosis are then those of every row's values about its own mean, over the rows (by
    Gauss-Hermite quadrature), as ``dark_statistics`` measures them.
    """
    scale = tukey_scale(std, shape)
    span = int(np.ceil(12 * std + 6 * smear)) + 2
    nodes, weights = np.polynomial.hermite_e.hermegauss(9) if smear > 0 else (np.zeros(1), np.ones(1))
    second = fourth = bias = 0.0
    for node, weight in zip(nodes, weights / weights.sum(), strict=True):
        where = offset + smear * node
        base = np.floor(where + 0.5)
        k = np.arange(-span, span + 1, dtype=np.float64)  # whole DN about the row's own DN
        cdf = stats.tukeylambda.cdf((np.append(k - 0.5, k[-1] + 0.5) + base - where) / scale, shape)
        p = np.diff(cdf)
        p /= p.sum()
        mean = (p * k).sum()
        second += weight * (p * (k - mean) ** 2).sum()
        fourth += weight * (p * (k - mean) ** 4).sum()
        bias += weight * (mean + base - where)
    if second < 1e-12:  # every value one DN: no spread, and no tails to speak of
        return 0.0, 0.0, float(bias)
    return float(np.sqrt(second)), float(fourth / second**2 - 3), float(bias)


def rounding_gain(std: float, shape: float, offset: float) -> float:
    """How much of a small shift before rounding survives in the rounded values' mean: d E[round(offset + x)] /
    d offset, the density of the read noise at the rounding thresholds summed. 1 for noise wide enough to dither
    the rounding; under 1 when it rarely reaches a threshold (a row offset measured after rounding was larger
    before), over 1 when a threshold lies close to the level; 0 when none is within reach."""
    scale = tukey_scale(std, shape)
    span = int(np.ceil(12 * std)) + 2
    thresholds = np.arange(-span, span + 1) + 0.5 + np.floor(offset + 0.5) - offset
    return float(stats.tukeylambda.pdf(thresholds / scale, shape).sum() / scale)


def level_for_mean(std: float, shape: float, mean: float, smear: float = 0.0) -> float:
    """The level before rounding whose rounded values average ``mean`` (DN): rounding's bias taken back."""
    whole = np.floor(mean)
    offset = mean - whole

    def misfit(p: np.ndarray) -> np.ndarray:
        return np.array([p[0] + rounded_moments(std, shape, p[0], smear)[2] - offset])

    return float(whole + least_squares(misfit, [offset], bounds=([offset - 0.5], [offset + 0.5])).x[0])


def continuous_read_noise(read_std: float, kurtosis: float, mean: float, smear: float = 0.0) -> tuple[float, ...]:
    """(std, Tukey-lambda shape, level) of the continuous read noise whose whole-DN rounding has the measured
    ``read_std``, excess ``kurtosis`` and ``mean`` (a channel's black, DN; with row offsets of std ``smear``
    moving where the rounding falls): a dark frame of a fraction of a DN of noise is mostly one value, and its
    rounding, not the sensor, makes most of its spread and tails, and moves its mean toward the nearest DN."""
    whole = np.floor(mean)

    def misfit(p: np.ndarray) -> np.ndarray:
        std, kurt, bias = rounded_moments(p[0], p[1], p[2], smear)
        return np.array([std / read_std - 1, (kurt - kurtosis) / max(abs(kurtosis), 1.0),
                         (p[2] + bias - (mean - whole)) / 0.01])  # fmt: skip

    offset = mean - whole
    start = [float(np.sqrt(max(read_std**2 - 1 / 12, 0.25 * read_std**2))), 0.14, offset]
    fit = least_squares(misfit, start, bounds=([1e-3, -0.2, offset - 0.5], [10 * read_std + 1, 1.0, offset + 0.5]))
    return float(fit.x[0]), float(fit.x[1]), float(whole + fit.x[2])


class DarkModel(NamedTuple):
    """What a dark frame is drawn from, fitted once from a calibration (``dark_model``): per channel the continuous
    read noise (std, Tukey-lambda shape) and its level before rounding, DN; the row offsets before rounding."""

    pattern: str
    read: list[tuple[float, float, float]]  # (std, shape, level) per channel, CHANNELS order
    row_std: float
    row_pair_corr: float
    row_spectrum: list[float] | None
    fpn_std: float | None
    white: float


def dark_model(calibration: dict, black: Sequence[float] | None = None) -> DarkModel:
    """The continuous noise behind a ``dark_statistics`` calibration: read noise of the measured std and tails
    before rounding (``continuous_read_noise``, per channel when measured so, the row offsets moving where the
    rounding falls) and the row offsets before rounding (the measured ones over ``rounding_gain``).

    ``black`` (4 values, ``CHANNELS`` order) sets the levels at other black offsets than the calibration's: the
    continuous noise and row offsets are the sensor's, but the black level drifts between sessions, and where it
    falls within a DN sets how rounding to whole DN shapes the noise (its std, its tails, the rows).
    """
    measured, row_std = np.asarray(calibration["black"], dtype=np.float64), calibration["row_std"]
    stds = calibration.get("read_std_per_channel") or [calibration["read_std"]] * 4
    kurtoses = calibration.get("read_kurtosis_per_channel") or [calibration["read_kurtosis"]] * 4
    read, smears = [], []
    for channel in range(4):  # each channel's own rounding: its black's fraction of a DN
        smear = row_std  # the row offsets before rounding: what was measured after it over rounding_gain
        for _ in range(2):
            std, tails, level = continuous_read_noise(stds[channel], kurtoses[channel], measured[channel], smear)
            smear = row_std / max(rounding_gain(std, tails, level % 1.0), 0.1)
        smears.append(smear)  # at the calibration's own black: the sensor's row offsets, whatever the black now
        if black is not None:
            level = level_for_mean(std, tails, float(black[channel]), smear)
        read.append((std, tails, level))
    return DarkModel(calibration["pattern"], read, float(np.mean(smears)), calibration.get("row_pair_corr", 0.0),
                     calibration.get("row_spectrum"), calibration.get("fpn_std"), calibration.get("white", np.inf))


def draw_dark(shape: tuple[int, int], model: DarkModel, rng: np.random.Generator) -> np.ndarray:
    """An (H, W) dark frame in whole DN drawn from ``model``: each channel's read noise about its level, an offset
    per sensor row (spread over frequency as ``row_spectrum`` when measured; the two rows of a packed row share
    ``row_pair_corr`` of it), a fixed offset per pixel (``fpn_std``, when measured), rounded and clipped to
    [0, white]."""
    height, width = even_shape(*shape)
    read = np.empty((4, height // 2, width // 2))
    for channel, (std, tails, level) in enumerate(model.read):
        draw = stats.tukeylambda.rvs(tails, size=read.shape[1:], random_state=rng)
        read[channel] = level + draw * tukey_scale(std, tails)
    mosaic = unpack_bayer(read, model.pattern)
    rows = sensor_row_offsets(rng, height // 2, model.row_std, model.row_pair_corr, model.row_spectrum)
    mosaic += rows.T.reshape(height, 1)  # the upper and lower sensor row of each pair, in turn
    if model.fpn_std:
        mosaic += rng.normal(0.0, model.fpn_std, (height, width))
    return np.clip(np.rint(mosaic), 0, model.white)


def synthesize_dark(shape: tuple[int, int], calibration: dict, rng: np.random.Generator,
                    black: Sequence[float] | None = None) -> np.ndarray:  # fmt: skip
    """An (H, W) dark frame in whole DN drawn from a ``dark_statistics`` calibration (``dark_model`` and
    ``draw_dark``; fit once with ``dark_model`` to draw many)."""
    return draw_dark(shape, dark_model(calibration, black), rng)


def row_spectrum(packed: np.ndarray, bands: int = SPECTRUM_BANDS) -> list[float]:
    """Mean power (DN^2) of the row means' spectrum in ``bands`` equal bands of frequency (DC left out), over packed
    frames (n, 4, h, w) and their channels: white row noise gives equal bands, slow banding a heavy first one."""
    rows = packed.mean(axis=3)
    rows -= rows.mean(axis=2, keepdims=True)
    power = np.abs(np.fft.rfft(rows, axis=2)[..., 1:]) ** 2 / rows.shape[2]  # (n, 4, h // 2)
    return [float(band.mean()) for band in np.array_split(power, bands, axis=2)]


def dark_signature(mosaics: Sequence[np.ndarray], pattern: str) -> dict[str, float]:
    """The numbers a synthetic dark frame must match a real one in: per-channel means, read std, row std, read
    kurtosis and the row means' spectrum in bands."""
    packed = packed_frames(mosaics, pattern)
    s = packed_dark_statistics(packed, pattern)
    signature = {f"black {c}": v for c, v in zip(CHANNELS, s["black"], strict=True)}
    signature.update(read_std=s["read_std"], row_std=s["row_std"], read_kurtosis=s["read_kurtosis"])
    signature.update({f"row spectrum {i + 1}": v for i, v in enumerate(row_spectrum(packed))})
    return signature
