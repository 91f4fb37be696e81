"""Estimate heteroscedastic noise ``var = a * x + b`` (normalised units) from one noisy packed frame alone.

The competition gives no noise parameters, so anything noise-aware at test time (classical baselines, a
k-sigma transform) must read them off the noisy frame. The method follows the usual "variance against mean on
smooth blocks" calibration (Foi et al. 2008, PMRID 2020), done blind:

1. high-pass each packed channel with the separable second difference ``[1, -2, 1] x [1, -2, 1] / 6``, which
   has unit noise gain and cancels any image that is locally a sum of a function of x and a function of y
   (constants, ramps, smooth shading), so on smooth content it leaves the noise only;
2. cut the channel into blocks; per block keep the mean of the noisy values and the mean square of the high-pass
   response, an unbiased estimate of the local noise variance on smooth blocks and an over-estimate on texture;
3. fit ``a`` and ``b`` robustly: a weighted line through the blocks that touch no clipped sample gives a start,
   then a maximum-likelihood fit of the *clipped* noise model refines it on all blocks, each round dropping
   blocks whose variance lies more than ``window`` standard deviations (of a smooth block's estimate) above
   the fit, since texture only ever adds variance, and scaling the kept ones for the smooth blocks the window
   drops as well (``kept_mean``). The default window, 3, keeps nearly every smooth block but also faint
   texture; 1 drops more of it: on the demo test set's textured photos the estimate then reads the noise std
   1.19x the truth at worst instead of 1.30x (``data.noise_estimate_window``).

Clipping matters: a dark, noisy frame clipped at black has hardly a block without clipped samples, and near the
limits clipping lowers the variance and shifts the mean. The model therefore predicts each block's mean and
variance as those of a clipped Gaussian (``clipped_moments``). The limits are read off the frame
(``clip_range``), as files differ: some clip noisy values at black, others keep them below.

Torch and the standard library only: a submission's ``network.py`` carries this file, so a judge's run estimates
exactly as the project does. Arrays may be NumPy or torch; the work is done in float64 on the CPU.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from denoise.raw.array_ops import TORCH_OPS, ArrayOps, to_float64
from denoise.raw.nelder_mead import nelder_mead

_HIGH_PASS_1D = (1.0, -2.0, 1.0)  # 2-D kernel is its outer product; L2 norm 6
_CLIP_MARGIN = 1e-6  # a noisy value this close to a clipping limit is taken as clipped
_LEVELS = torch.linspace(0.0, 1.0, 1024, dtype=torch.float64) ** 2  # where the clipped model is tabulated: dense near 0
REJECT_SIGMAS = 3.0  # default window: a block this many sigmas (of a smooth block's spread) above the fit is texture


class NoiseParams(NamedTuple):
    """Noise variance ``a * x + b`` of a normalised value whose clean level is ``x``.

    A named tuple rather than a dataclass, here and for ``ArrayOps``: a dataclass under ``from __future__ import
    annotations`` looks its module up in ``sys.modules``, which a ``network.py`` loaded by path is not in.
    """

    a: float
    b: float

    def variance(self, x: Any) -> Any:
        """Noise variance at clean level ``x`` (a number, numpy array or tensor), floored at 0."""
        v = self.a * x + self.b
        return v.clamp(min=0.0) if isinstance(v, Tensor) else v * (v > 0)

    def std_scaled(self, factor: float) -> NoiseParams:
        """The level whose noise std is ``factor`` times this one's (both terms of the variance times factor^2)."""
        return NoiseParams(self.a * factor**2, self.b * factor**2)

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict, for JSON."""
        return {"a": self.a, "b": self.b}


def clip_range(packed: Any) -> tuple[float, float]:
    """Where a normalised noisy frame's values were clipped: (min(0, frame min), max(1, frame max)).

    A file that clips at black has no value below 0, so the low limit is 0; one that keeps noise below black
    (down to DN 0) reaches its own floor, which the frame minimum then approximates.
    """
    return min(0.0, float(packed.min())), max(1.0, float(packed.max()))


def high_pass(channel: Any) -> Tensor:
    """Unit-gain separable second difference of an (h, w) channel; output (h-2, w-2), 'valid' positions only."""
    assert channel.ndim == 2 and min(channel.shape) >= 3, f"expected (h>=3, w>=3), got {tuple(channel.shape)}"
    x = to_float64(channel)
    k0, k1, k2 = _HIGH_PASS_1D
    rows = k0 * x[:-2] + k1 * x[1:-1] + k2 * x[2:]  # (h-2, w)
    both = k0 * rows[:, :-2] + k1 * rows[:, 1:-1] + k2 * rows[:, 2:]  # (h-2, w-2)
    return both / math.sqrt(sum((p * q) ** 2 for p in _HIGH_PASS_1D for q in _HIGH_PASS_1D))


def block_dof(block: int) -> float:
    """Effective degrees of freedom of the mean square of ``high_pass`` white noise over a block x block area.

    Neighbouring high-pass outputs are correlated (their supports overlap), so a block of n outputs carries
    fewer than n independent squares: n^2 / (sum over all pairs in the block of their squared correlation).
    """
    k = _HIGH_PASS_1D
    norm = sum(v * v for v in k)
    auto = {lag: sum(k[i] * k[i + lag] for i in range(3 - lag)) / norm for lag in range(3)}  # lags 0..2
    pairs_1d = sum(auto.get(abs(i - j), 0.0) ** 2 for i in range(block) for j in range(block))
    return float(block * block) ** 2 / pairs_1d**2  # the 2-D correlation is separable


def _gamma_series(a: float, x: float) -> float:
    """sum over n >= 0 of x^n / ((a + 1)(a + 2)...(a + n)): the regularised lower incomplete gamma function is
    P(a, x) = x^a e^-x / Gamma(a + 1) times this sum."""
    total, term, n = 1.0, 1.0, 0
    while term > 1e-17 * total:
        n += 1
        term *= x / (a + n)
        total += term
    return total


def kept_mean(window: float, dof: float) -> float:
    """Mean of a smooth block's variance estimate, in units of the true variance, given that it was kept.

    The estimate is ~ chi2(dof) / dof; blocks above ``1 + window * sqrt(2 / dof)`` are dropped as texture, so the
    kept ones average E[X | X <= t] = P(chi2(dof + 2) <= t dof) / P(chi2(dof) <= t dof), below 1 for a tight
    window. Fits divide the kept variances by it, which keeps them unbiased on pure noise. In plain Python from the
    series of the incomplete gamma function: torch's ``gammainc`` is off by 1e-8 here, SciPy's by 1e-16.
    """
    a, x = dof / 2, (1.0 + window * (2.0 / dof) ** 0.5) * dof / 2
    return x / (a + 1) * _gamma_series(a + 1, x) / _gamma_series(a, x)


def block_statistics(
    channel: Any, block: int = 16, clip: tuple[float, float] = (0.0, 1.0)
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-block mean of noisy values, mean square of the high-pass, and fraction of outputs touching clipping.

    Blocks are block x block high-pass outputs of an (h, w) channel; the mean is over the same samples' centres.
    An output "touches" clipping when a sample of its 3x3 support lies within a hair of the ``clip`` limits.
    All three are float64 tensors of one value per block.
    """
    assert channel.ndim == 2, f"expected (h, w), got {tuple(channel.shape)}"
    full = to_float64(channel)
    d = high_pass(full)  # (h-2, w-2), d[i, j] centred on channel[i+1, j+1]
    hb, wb = d.shape[0] // block, d.shape[1] // block
    if hb == 0 or wb == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, empty, empty

    def blocks(x: Tensor) -> Tensor:  # (hb * wb, block * block)
        x = x[: hb * block, : wb * block].reshape(hb, block, wb, block)
        return x.permute(0, 2, 1, 3).reshape(hb * wb, block * block)

    full = full[: hb * block + 2, : wb * block + 2]
    clipped = (full <= clip[0] + _CLIP_MARGIN) | (full >= clip[1] - _CLIP_MARGIN)
    touched = torch.zeros((hb * block, wb * block), dtype=torch.bool)
    for dy in range(3):
        for dx in range(3):
            touched |= clipped[dy : dy + hb * block, dx : dx + wb * block]
    centre = full[1:-1, 1:-1]
    return blocks(centre).mean(dim=-1), (blocks(d) ** 2).mean(dim=-1), blocks(touched.double()).mean(dim=-1)


def clipped_moments(x: Any, params: NoiseParams, clip: tuple[float, float], ops: ArrayOps = TORCH_OPS) -> tuple:
    """Mean and variance of clip(z) for z ~ N(x, a x + b), in closed form (truncated-normal moments)."""
    x = ops.asarray(x)
    std = ops.sqrt(ops.maximum(params.variance(x), 1e-30))
    lo, hi = (clip[0] - x) / std, (clip[1] - x) / std
    p_lo, p_hi = ops.ndtr(lo), ops.ndtr(hi)
    phi_lo, phi_hi = ops.exp(-0.5 * lo**2) / math.sqrt(2 * math.pi), ops.exp(-0.5 * hi**2) / math.sqrt(2 * math.pi)
    inside = p_hi - p_lo
    # Within the limits, E[z 1{in}] and E[z^2 1{in}] of the unclipped normal; outside, the limit itself.
    first = x * inside + std * (phi_lo - phi_hi)
    second = x * x * inside + 2 * x * std * (phi_lo - phi_hi) + std**2 * (inside + lo * phi_lo - hi * phi_hi)
    mean = clip[0] * p_lo + clip[1] * (1 - p_hi) + first
    square = clip[0] ** 2 * p_lo + clip[1] ** 2 * (1 - p_hi) + second
    return mean, ops.maximum(square - mean**2, 0.0)


def fit_line(x: Any, y: Any, w: Any) -> tuple[float, float]:
    """Weighted least-squares (slope, intercept) of y on x, constrained to slope >= 0 and intercept >= 0: the one
    fit of a noise variance ``a * x + b`` (here, to pairs in ``raw.noise`` and to calibration bins). NumPy arrays
    or tensors; no weight at all gives (0, 0)."""
    sw, sx, sy = float(w.sum()), float((w * x).sum()), float((w * y).sum())
    if sw <= 0:
        return 0.0, 0.0
    sxx, sxy = float((w * x * x).sum()), float((w * x * y).sum())
    det = sw * sxx - sx * sx
    if det > 1e-30 * max(sw * sxx, 1e-300):
        slope = (sw * sxy - sx * sy) / det
        intercept = (sy - slope * sx) / sw
        if slope >= 0 and intercept >= 0:
            return slope, intercept
    # On the boundary of the constraint: the better of a line through the origin and a constant.
    slope0 = max(sxy / sxx, 0.0) if sxx > 0 else 0.0
    const = max(sy / sw, 0.0)
    err_slope = float((w * (y - slope0 * x) ** 2).sum())
    err_const = float((w * (y - const) ** 2).sum())
    return (slope0, 0.0) if err_slope <= err_const else (0.0, const)


def _initial_fit(means: Tensor, variances: Tensor, bins: int = 12) -> tuple[float, float]:
    """Starting line through the lower quartile of block variance in equal-count brightness bins."""
    order = torch.argsort(means, stable=True)
    count = min(bins, len(order))
    sizes = [len(order) // count + (i < len(order) % count) for i in range(count)]  # the first ones one longer
    groups = [g for g in torch.split(order, sizes) if len(g)]
    x = torch.stack([torch.quantile(means[g], 0.5) for g in groups])
    y = torch.stack([torch.quantile(variances[g], 0.25) for g in groups])
    return fit_line(x, y, torch.ones_like(x))


def fit_noise_params(
    means: Any, variances: Any, dof: float, iterations: int = 8, window: float = REJECT_SIGMAS
) -> NoiseParams:
    """Robust fit of ``variance = a * mean + b`` to block statistics whose noise-only spread has ``dof`` dof.

    A smooth block's variance estimate is ~ v * chi2(dof) / dof, so its standard deviation is v * sqrt(2 / dof):
    blocks above the fit by more than ``window`` of that are treated as texture and dropped, and the kept ones
    are scaled by ``1 / kept_mean`` for the noise-only blocks the window drops too. A tight window (1) drops
    more texture, which only ever adds variance, at the price of fewer blocks; the default (3) keeps nearly all
    noise-only blocks.
    """
    means, variances = to_float64(means), to_float64(variances)
    assert means.shape == variances.shape and means.ndim == 1, f"bad shapes {means.shape}, {variances.shape}"
    if len(means) < 2:
        raise ValueError(f"need at least 2 blocks to fit noise, got {len(means)}")
    a, b = _initial_fit(means, variances)
    limit, kept = 1.0 + window * (2.0 / dof) ** 0.5, kept_mean(window, dof)
    for _ in range(iterations):
        fit = (a * means + b).clamp(min=1e-12)
        keep = variances <= fit * limit
        if int(keep.sum()) < 2:
            break
        a, b = fit_line(means[keep], variances[keep] / kept, 1.0 / fit[keep] ** 2)
    return NoiseParams(a=a, b=b)


def _predicted_variance(params: NoiseParams, means: Any, clip: tuple[float, float], ops: ArrayOps) -> Any:
    """Variance the clipped model predicts for blocks of observed ``means`` (each mapped back to its level)."""
    levels = ops.asarray(_LEVELS)
    mean, var = clipped_moments(levels, params, clip, ops)
    return ops.maximum(ops.interp(ops.interp(means, ops.cummax(mean), levels), levels, var), 1e-14)


def fit_noise_params_clipped(
    means: Any,
    variances: Any,
    dof: float,
    clip: tuple[float, float],
    start: NoiseParams,
    rounds: int = 3,
    window: float = REJECT_SIGMAS,
    ops: ArrayOps = TORCH_OPS,
) -> NoiseParams:
    """Maximum-likelihood (a, b) of the clipped noise model, from ``start``, ignoring texture-inflated blocks.

    A smooth block's variance estimate is ~ v * chi2(dof) / dof about the model's v, whose negative
    log-likelihood is sum(observed / v + log v) up to constants; it is minimised over (log a, log b). Blocks are
    kept and scaled as in ``fit_noise_params``. ``ops``: the arrays the likelihood is computed on.
    """
    means, variances = ops.asarray(means), ops.asarray(variances)
    log_ab = [math.log(max(start.a, 1e-8)), math.log(max(start.b, 1e-10))]
    limit, kept = 1.0 + window * (2.0 / dof) ** 0.5, kept_mean(window, dof)
    for _ in range(rounds):
        predicted = _predicted_variance(NoiseParams(*(math.exp(p) for p in log_ab)), means, clip, ops)
        keep = variances <= predicted * limit
        if int(keep.sum()) < 2:
            break
        m, v = means[keep], variances[keep] / kept

        def nll(p: list[float], m: Any = m, v: Any = v) -> float:
            pred = _predicted_variance(NoiseParams(math.exp(p[0]), math.exp(p[1])), m, clip, ops)
            return float((v / pred + ops.log(pred)).sum())

        log_ab = nelder_mead(nll, log_ab)
    return NoiseParams(a=math.exp(log_ab[0]), b=math.exp(log_ab[1]))


def _check_packed(packed: Any) -> Tensor:
    assert packed.ndim == 3 and packed.shape[0] == 4, f"expected a packed (4, h, w) frame, got {tuple(packed.shape)}"
    return to_float64(packed)


def fit_blocks(
    means: Tensor,
    variances: Tensor,
    touched: Tensor,
    dof: float,
    clip: tuple[float, float],
    window: float = REJECT_SIGMAS,
    ops: ArrayOps = TORCH_OPS,
) -> NoiseParams:
    """(a, b) from block statistics: a line through the unclipped blocks, refined by the clipped model.

    Blocks mostly made of clipped samples say little and are dropped; when too few blocks are free of clipping
    for a line, the line is fitted to all remaining blocks and only serves as a start.
    """
    means, variances, touched = to_float64(means), to_float64(variances), to_float64(touched)
    usable = touched <= 0.5
    clean = touched == 0
    if int(usable.sum()) < 2:
        raise ValueError(f"need at least 2 blocks not mostly clipped to estimate noise, got {int(usable.sum())}")
    line_set = clean if int(clean.sum()) >= 8 else usable
    start = fit_noise_params(means[line_set], variances[line_set], dof, window=window)
    if not bool((touched[usable] > 0).any()):
        return start
    return fit_noise_params_clipped(means[usable], variances[usable], dof, clip, start, window=window, ops=ops)


def estimate_noise(
    packed: Any, block: int = 16, window: float = REJECT_SIGMAS, ops: ArrayOps = TORCH_OPS
) -> NoiseParams:
    """One (a, b) for a normalised (4, h, w) noisy frame, fitted to the blocks of all 4 channels pooled.

    ``window``: see ``fit_noise_params``; ``ops``: see ``ArrayOps``.
    """
    packed = _check_packed(packed)
    clip = clip_range(packed)
    stats = [block_statistics(c, block, clip) for c in packed]
    means, variances, touched = (torch.cat([s[i] for s in stats]) for i in range(3))
    return fit_blocks(means, variances, touched, block_dof(block), clip, window, ops)


def estimate_frame_noise(packed: Any, window: float = REJECT_SIGMAS) -> NoiseParams:
    """``estimate_noise`` of a normalised (4, h, w) frame, with smaller blocks when the frame is too small for 16."""
    for block in (16, 8, 4):
        try:
            return estimate_noise(packed, block=block, window=window)
        except ValueError as err:
            reason = str(err)
    raise ValueError(f"cannot estimate the noise level of a {packed.shape[-2]}x{packed.shape[-1]} frame: {reason}")


def profile_noise(profile: tuple[float, ...]) -> NoiseParams:
    """One (a, b) from a DNG NoiseProfile: its (S, O) pairs, one for all planes or one per plane.

    S and O are the variance's slope and offset on linear values scaled to [0, 1], as ``a`` and ``b`` here. With
    three planes (R, G, B) green counts twice, as it covers two of the four packed channels; other counts weigh
    their planes equally.
    """
    assert len(profile) >= 2 and len(profile) % 2 == 0, f"NoiseProfile holds (S, O) pairs, got {len(profile)} values"
    pairs = [(float(profile[i]), float(profile[i + 1])) for i in range(0, len(profile), 2)]
    weights = [1.0, 2.0, 1.0] if len(pairs) == 3 else [1.0] * len(pairs)
    return NoiseParams(*(sum(w * p[k] for w, p in zip(weights, pairs, strict=True)) / sum(weights) for k in (0, 1)))
