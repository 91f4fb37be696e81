"""Estimate heteroscedastic noise ``var = a * x + b`` (normalised units) from one noisy packed frame alone.

The competition gives no noise parameters, so anything noise-aware at test time (classical baselines, a
k-sigma transform) must read them off the noisy frame. The method follows the usual "variance against mean on
smooth blocks" calibration (Foi et al. 2008, PMRID 2020), done blind:

1. high-pass each packed channel with the separable second difference ``[1, -2, 1] x [1, -2, 1] / 6``, which
   has unit noise gain and cancels any image that is locally a sum of a function of x and a function of y
   (constants, ramps, smooth shading), so on smooth content it leaves the noise only;
2. cut the channel into blocks; per block keep the mean of the noisy values and the mean square of the high-pass
   response, an unbiased estimate of the local noise variance on smooth blocks and an over-estimate on texture;
3. fit ``a`` and ``b`` by iteratively re-weighted least squares that drops blocks whose variance lies far above
   the current fit (texture only ever adds variance), with weights from the variance of a block estimate.

Blocks touching the clipping limits are left out: clipping shrinks the variance there. The limits are read
off the frame (see ``clip_range``), as files differ: some clip noisy values at black, others keep them below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_HIGH_PASS_1D = np.array([1.0, -2.0, 1.0])  # 2-D kernel is its outer product; L2 norm 6
_CLIP_MARGIN = 1e-6  # a noisy value this close to a clipping limit is taken as clipped


@dataclass(frozen=True)
class NoiseParams:
    """Noise variance ``a * x + b`` of a normalised value whose clean level is ``x``."""

    a: float
    b: float

    def variance(self, x: np.ndarray | float) -> np.ndarray | float:
        """Noise variance at clean level ``x`` (floored at 0)."""
        return np.maximum(self.a * np.asarray(x, dtype=np.float64) + self.b, 0.0)

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict, for JSON."""
        return {"a": self.a, "b": self.b}


def clip_range(packed: np.ndarray) -> tuple[float, float]:
    """Where a normalised noisy frame's values were clipped: (min(0, frame min), max(1, frame max)).

    A file that clips at black has no value below 0, so the low limit is 0; one that keeps noise below black
    (down to DN 0) reaches its own floor, which the frame minimum then approximates.
    """
    return min(0.0, float(packed.min())), max(1.0, float(packed.max()))


def high_pass(channel: np.ndarray) -> np.ndarray:
    """Unit-gain separable second difference of an (h, w) channel; output (h-2, w-2), 'valid' positions only."""
    assert channel.ndim == 2 and min(channel.shape) >= 3, f"expected (h>=3, w>=3), got {channel.shape}"
    x = channel.astype(np.float64)
    k = _HIGH_PASS_1D
    rows = k[0] * x[:-2] + k[1] * x[1:-1] + k[2] * x[2:]  # (h-2, w)
    both = k[0] * rows[:, :-2] + k[1] * rows[:, 1:-1] + k[2] * rows[:, 2:]  # (h-2, w-2)
    return both / float(np.sum(np.outer(k, k) ** 2) ** 0.5)


def block_dof(block: int) -> float:
    """Effective degrees of freedom of the mean square of ``high_pass`` white noise over a block x block area.

    Neighbouring high-pass outputs are correlated (their supports overlap), so a block of n outputs carries
    fewer than n independent squares: n^2 / (sum over all pairs in the block of their squared correlation).
    """
    auto = np.correlate(_HIGH_PASS_1D, _HIGH_PASS_1D, mode="full") / np.sum(_HIGH_PASS_1D**2)  # lags -2..2
    lags = np.arange(block)[:, None] - np.arange(block)[None, :]
    pairs_1d = float(np.sum(np.where(np.abs(lags) <= 2, auto[np.clip(lags + 2, 0, 4)], 0.0) ** 2))
    return float(block * block) ** 2 / pairs_1d**2  # the 2-D correlation is separable


def block_statistics(
    channel: np.ndarray, block: int = 16, clip: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Per-block (mean of noisy values, mean square of the high-pass) of an (h, w) channel, unclipped blocks only.

    Blocks are block x block high-pass outputs; the mean is taken over the same samples' centres. A block with
    any sample within a hair of the ``clip`` limits in its support is dropped.
    """
    assert channel.ndim == 2, f"expected (h, w), got {channel.shape}"
    d = high_pass(channel)  # (h-2, w-2), d[i, j] centred on channel[i+1, j+1]
    centre = channel[1:-1, 1:-1].astype(np.float64)
    hb, wb = d.shape[0] // block, d.shape[1] // block
    if hb == 0 or wb == 0:
        return np.zeros(0), np.zeros(0)

    def blocks(x: np.ndarray) -> np.ndarray:  # (hb, wb, block*block)
        x = x[: hb * block, : wb * block].reshape(hb, block, wb, block)
        return x.transpose(0, 2, 1, 3).reshape(hb, wb, block * block)

    # A clipped sample anywhere in the high-pass support poisons the block, so test the padded support.
    full = channel.astype(np.float64)[: hb * block + 2, : wb * block + 2]
    clipped = (full <= clip[0] + _CLIP_MARGIN) | (full >= clip[1] - _CLIP_MARGIN)
    touched = np.zeros(d[: hb * block, : wb * block].shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            touched |= clipped[dy : dy + hb * block, dx : dx + wb * block]
    keep = ~blocks(touched).any(axis=-1)
    means = blocks(centre).mean(axis=-1)[keep]
    variances = (blocks(d) ** 2).mean(axis=-1)[keep]
    return means, variances


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares (slope, intercept) of y on x, constrained to slope >= 0 and intercept >= 0."""
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if det > 1e-30 * max(sw * sxx, 1e-300):
        slope = (sw * sxy - sx * sy) / det
        intercept = (sy - slope * sx) / sw
        if slope >= 0 and intercept >= 0:
            return float(slope), float(intercept)
    # On the boundary of the constraint: the better of a line through the origin and a constant.
    slope0 = max(sxy / sxx, 0.0) if sxx > 0 else 0.0
    const = max(sy / sw, 0.0)
    err_slope = (w * (y - slope0 * x) ** 2).sum()
    err_const = (w * (y - const) ** 2).sum()
    return (float(slope0), 0.0) if err_slope <= err_const else (0.0, float(const))


def _initial_fit(means: np.ndarray, variances: np.ndarray, bins: int = 12) -> tuple[float, float]:
    """Starting line through the lower quartile of block variance in equal-count brightness bins."""
    order = np.argsort(means)
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    x = np.array([np.median(means[g]) for g in groups])
    y = np.array([np.percentile(variances[g], 25) for g in groups])
    return _weighted_line(x, y, np.ones_like(x))


def fit_noise_params(
    means: np.ndarray, variances: np.ndarray, dof: float, iterations: int = 8, reject_sigmas: float = 3.0
) -> NoiseParams:
    """Robust fit of ``variance = a * mean + b`` to block statistics whose noise-only spread has ``dof`` dof.

    A smooth block's variance estimate is ~ v * chi2(dof) / dof, so its standard deviation is v * sqrt(2 / dof):
    blocks above the fit by more than ``reject_sigmas`` of that are treated as texture and dropped.
    """
    assert means.shape == variances.shape and means.ndim == 1, f"bad shapes {means.shape}, {variances.shape}"
    if len(means) < 2:
        raise ValueError(f"need at least 2 smooth unclipped blocks to estimate noise, got {len(means)}")
    a, b = _initial_fit(means, variances)
    rel = (2.0 / dof) ** 0.5
    for _ in range(iterations):
        fit = np.maximum(a * means + b, 1e-12)
        keep = variances <= fit * (1.0 + reject_sigmas * rel)
        if keep.sum() < 2:
            break
        a, b = _weighted_line(means[keep], variances[keep], 1.0 / fit[keep] ** 2)
    return NoiseParams(a=a, b=b)


def _check_packed(packed: np.ndarray) -> np.ndarray:
    if hasattr(packed, "detach"):  # a torch tensor
        packed = packed.detach().cpu().numpy()
    assert packed.ndim == 3 and packed.shape[0] == 4, f"expected a packed (4, h, w) frame, got {packed.shape}"
    return packed


def estimate_noise_per_channel(packed: np.ndarray, block: int = 16) -> tuple[NoiseParams, ...]:
    """Separate (a, b) for each of the 4 packed channels of a normalised (4, h, w) noisy frame."""
    packed = _check_packed(packed)
    dof, clip = block_dof(block), clip_range(packed)
    return tuple(fit_noise_params(*block_statistics(c, block, clip), dof=dof) for c in packed)


def estimate_noise(packed: np.ndarray, block: int = 16) -> NoiseParams:
    """One (a, b) for a normalised (4, h, w) noisy frame, fitted to the blocks of all 4 channels pooled."""
    packed = _check_packed(packed)
    clip = clip_range(packed)
    stats = [block_statistics(c, block, clip) for c in packed]
    means = np.concatenate([m for m, _ in stats])
    variances = np.concatenate([v for _, v in stats])
    return fit_noise_params(means, variances, dof=block_dof(block))
