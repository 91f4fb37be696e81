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

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from denoise.raw.bayer import CHANNELS, even_shape, pack_bayer, unpack_bayer
from denoise.raw.noise_estimation import fit_line

TAIL_SAMPLE = 20_000  # read-noise values the Tukey-lambda shape is fitted to (evenly strided)


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
    - ``read_kurtosis`` (excess, 0 for a Gaussian) and ``read_tukey_lambda``: the tails; a Tukey-lambda shape
      under 0.14 means heavier tails than a Gaussian (ELD's read-noise model).
    """
    return packed_dark_statistics(packed_frames(mosaics, pattern), pattern)


def packed_dark_statistics(packed: np.ndarray, pattern: str) -> dict:
    """``dark_statistics`` of frames already packed, (n, 4, h, w) float64 DN."""
    n, _, h, w = packed.shape
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
    sample = np.sort(values[:: max(1, len(values) // TAIL_SAMPLE)])
    result["read_tukey_lambda"] = float(stats.ppcc_max(sample, brack=(-0.5, 0.5), dist="tukeylambda"))
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

SPECTRUM_BANDS = 3  # the row means' power spectrum compared in this many equal bands of frequency


def rounded_moments(std: float, shape: float, offset: float) -> tuple[float, float]:
    """Std and excess kurtosis of round(offset + x) - offset for x Tukey-lambda of ``shape`` scaled to ``std``:
    what a raw file's whole DN make of continuous read noise (exact, from the distribution's CDF)."""
    scale = std / np.sqrt(stats.tukeylambda.var(shape))
    span = int(np.ceil(12 * std)) + 2
    k = np.arange(-span, span + 1, dtype=np.float64)  # whole DN about the offset's own DN
    base = np.floor(offset + 0.5)
    cdf = stats.tukeylambda.cdf((np.append(k - 0.5, k[-1] + 0.5) + base - offset) / scale, shape)
    p = np.diff(cdf)
    p /= p.sum()
    values = k + base - offset
    mean = (p * values).sum()
    var = (p * (values - mean) ** 2).sum()
    return float(np.sqrt(var)), float((p * (values - mean) ** 4).sum() / var**2 - 3)


def continuous_read_noise(read_std: float, kurtosis: float, offset: float) -> tuple[float, float]:
    """(std, Tukey-lambda shape) of the continuous read noise whose whole-DN rounding has the measured ``read_std``
    and excess ``kurtosis`` (at the black level's fractional ``offset``): a dark frame of a fraction of a DN of
    noise is mostly one value, and its rounding, not the sensor, makes most of its spread and tails."""
    def misfit(p: np.ndarray) -> np.ndarray:
        std, kurt = rounded_moments(p[0], p[1], offset)
        return np.array([std / read_std - 1, (kurt - kurtosis) / max(abs(kurtosis), 1.0)])

    start = [float(np.sqrt(max(read_std**2 - 1 / 12, 0.01 * read_std**2))), 0.14]
    fit = least_squares(misfit, start, bounds=([1e-3, -0.2], [10 * read_std + 1, 1.0]))
    return float(fit.x[0]), float(fit.x[1])


def synthesize_dark(shape: tuple[int, int], calibration: dict, rng: np.random.Generator) -> np.ndarray:
    """An (H, W) dark frame in whole DN drawn from a ``dark_statistics`` calibration: each channel's black, an
    offset per sensor row (``row_std``; the two rows of a packed row share ``row_pair_corr`` of it), a fixed offset
    per pixel (``fpn_std``, when measured) and read noise of the measured std and tails, continuous before rounding
    (``continuous_read_noise``, which takes the row offsets as small beside a DN, as a real sensor's are), clipped
    to [0, white]."""
    height, width = even_shape(*shape)
    black = np.asarray(calibration["black"], dtype=np.float64)
    read = np.empty((4, height // 2, width // 2))
    for channel, level in enumerate(black):  # each channel's own rounding: its black's fraction of a DN
        std, tails = continuous_read_noise(calibration["read_std"], calibration["read_kurtosis"], float(level % 1.0))
        draw = stats.tukeylambda.rvs(tails, size=read.shape[1:], random_state=rng)
        read[channel] = level + draw * std / np.sqrt(stats.tukeylambda.var(tails))
    mosaic = unpack_bayer(read, calibration["pattern"])
    shared = calibration.get("row_pair_corr", 0.0)  # the two sensor rows of a packed row: this much in common
    pairs = np.repeat(rng.normal(0.0, calibration["row_std"] * np.sqrt(shared), (height // 2, 1)), 2, axis=0)
    mosaic += pairs + rng.normal(0.0, calibration["row_std"] * np.sqrt(1 - shared), (height, 1))
    if calibration.get("fpn_std"):
        mosaic += rng.normal(0.0, calibration["fpn_std"], (height, width))
    return np.clip(np.rint(mosaic), 0, calibration.get("white", np.inf))


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
