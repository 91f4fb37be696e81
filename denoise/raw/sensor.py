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

from denoise.raw.bayer import CHANNELS, even_shape, pack_bayer
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
    - ``column_std``: the same for columns, of the fixed part (the mean over frames) with two frames or more;
    - ``fpn_std``: std of the pixels' fixed offsets (the mean over frames, less its temporal share), None with
      one frame;
    - ``read_kurtosis`` (excess, 0 for a Gaussian) and ``read_tukey_lambda``: the tails; a Tukey-lambda shape
      under 0.14 means heavier tails than a Gaussian (ELD's read-noise model).
    """
    packed = packed_frames(mosaics, pattern)  # (n, 4, h, w)
    n, _, h, w = packed.shape
    black = packed.mean(axis=(0, 2, 3))
    fixed = packed.mean(axis=0)  # (4, h, w): each pixel's offset, with 1/n of the temporal noise
    temporal = (packed - fixed) * np.sqrt(n / (n - 1)) if n > 1 else packed - black[:, None, None]
    rows = temporal.mean(axis=3, keepdims=True)  # (n, 4, h, 1)
    read = temporal - rows
    read_var = read.var(axis=(0, 2, 3)) * w / (w - 1)  # the row means took one degree of freedom a row
    row_var = rows[..., 0].var(axis=2, ddof=1).mean(axis=0) - read_var / w
    result = {
        "pattern": pattern,
        "frames": n,
        "black": black.tolist(),
        "read_std": float(np.sqrt(read_var.mean())),
        "read_std_per_channel": np.sqrt(read_var).tolist(),
        "row_std": float(np.sqrt(max(row_var.mean(), 0.0))),
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
