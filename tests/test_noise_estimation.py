"""Blind noise estimation: the high-pass, the block statistics and the recovery of known (a, b)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise.raw.noise_estimation import (
    NoiseParams,
    block_dof,
    block_statistics,
    clip_range,
    clipped_moments,
    estimate_noise,
    fit_clipped,
    fit_noise_params,
    high_pass,
    kept_mean,
)

DN_STEP = 1.0 / (16383 - 1024)  # one raw DN in normalised units, as in the competition's files


def smooth_frame(h: int = 160, w: int = 160) -> np.ndarray:
    """A (4, h, w) clean frame of smooth shading spanning ~0.04..0.9, each channel a different gain."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.04 + 0.8 * (0.6 * xx + 0.4 * yy) + 0.05 * np.sin(2.5 * xx) * np.cos(1.7 * yy)
    return np.stack([base * g for g in (0.7, 1.0, 1.0, 0.85)]).astype(np.float32)


def add_noise(
    clean: np.ndarray, params: NoiseParams | list[NoiseParams], seed: int = 0, low: float = 0.0
) -> np.ndarray:
    """Gaussian noise of variance a x + b, quantised to DN and clipped to [low, 1] as a raw file would be."""
    rng = np.random.default_rng(seed)
    per_channel = params if isinstance(params, list) else [params] * clean.shape[0]
    std = np.stack([np.sqrt(p.variance(c)) for p, c in zip(per_channel, clean, strict=True)])
    noisy = clean + std * rng.standard_normal(clean.shape)
    return np.clip(np.rint(noisy / DN_STEP) * DN_STEP, low, 1.0).astype(np.float32)


def std_errors(est: NoiseParams, true: NoiseParams, clean: np.ndarray) -> np.ndarray:
    """Relative error of the predicted noise std at the 10th, 50th and 90th percentile clean level."""
    levels = np.quantile(clean, [0.1, 0.5, 0.9])
    return np.sqrt(est.variance(levels) / true.variance(levels)) - 1.0


def test_high_pass_cancels_additive_separable_images_and_has_unit_gain():
    rng = np.random.default_rng(1)
    rows, cols = rng.standard_normal(40), rng.standard_normal(50)
    assert high_pass(rows[:, None] + cols[None, :]).abs().max() < 1e-12
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    assert float((high_pass(delta) ** 2).sum()) == pytest.approx(1.0)


def test_block_dof_matches_monte_carlo_spread_of_white_noise_blocks():
    block = 8
    noise = np.random.default_rng(2).standard_normal((block * 96 + 2, block * 96 + 2))
    _, variances, touched = block_statistics(0.5 + 0.01 * noise, block)  # stays inside (0, 1): nothing clipped
    assert not touched.any()
    variances = variances.numpy()
    rel_var = np.var(variances) / np.mean(variances) ** 2
    assert rel_var == pytest.approx(2.0 / block_dof(block), rel=0.1)
    assert np.mean(variances) == pytest.approx(1e-4, rel=0.02)


def test_touched_fraction_counts_outputs_whose_support_holds_a_clipped_sample():
    channel = np.full((35, 35), 0.5)
    channel[5, 5] = 0.0  # inside the first block's support: 3x3 high-pass outputs see it
    channel[34, 34] = 1.0  # the last row/column feed no whole block
    means, _, touched = block_statistics(channel, 16)
    assert len(means) == 4
    np.testing.assert_allclose(touched, [9 / 256, 0, 0, 0])


def test_clipped_moments_match_monte_carlo():
    rng = np.random.default_rng(5)
    params, clip = NoiseParams(5e-3, 4e-4), (0.0, 1.0)
    for level in (0.0, 0.01, 0.05, 0.5, 0.99):
        z = np.clip(level + np.sqrt(params.variance(level)) * rng.standard_normal(1_000_000), *clip)
        mean, var = clipped_moments(np.array(level), params, clip)
        assert float(mean) == pytest.approx(z.mean(), abs=2e-4)
        assert float(var) == pytest.approx(z.var(), rel=0.01)


@pytest.mark.parametrize("window", [3.0, 1.0])
@pytest.mark.parametrize(
    "a, b",
    [(1e-4, 1e-6), (1e-4, 1e-3), (1e-3, 1e-5), (3e-3, 2e-4), (1e-2, 1e-6), (1e-2, 1e-3)],
)
def test_recovers_known_noise_on_a_smooth_frame(a, b, window):
    """Stated tolerance: predicted noise std within 5% over the frame's range of levels."""
    clean = smooth_frame()
    true = NoiseParams(a, b)
    est = estimate_noise(add_noise(clean, true), window=window)
    assert np.abs(std_errors(est, true, clean)).max() < 0.05, est


def test_dark_frame_with_noise_kept_below_black():
    """Files that keep noisy values below black (down to DN 0) must not lose their dark blocks as 'clipped'."""
    clean = 0.2 * smooth_frame()  # levels ~0.008..0.18: the read noise b is visible
    true = NoiseParams(2e-3, 4e-4)
    noisy = add_noise(clean, true, low=-1024 * DN_STEP)
    assert noisy.min() < 0 and clip_range(noisy) == (float(noisy.min()), 1.0)
    est = estimate_noise(noisy)
    assert np.abs(std_errors(est, true, clean)).max() < 0.05, est
    clipped_at_black = estimate_noise(np.maximum(noisy, 0.0))  # same frame clipped: dark blocks are dropped
    assert np.abs(std_errors(clipped_at_black, true, clean)).max() < 0.1, clipped_at_black


@pytest.mark.parametrize("window", [3.0, 1.0])
def test_dark_noisy_frame_clipped_at_black(window):
    """Most blocks touch clipped samples here; the clipped model must still find the noise."""
    clean = 0.08 * smooth_frame()  # levels ~0.003..0.07, read noise std 0.02: a third of samples clip at 0
    true = NoiseParams(6e-3, 4.6e-4)
    noisy = add_noise(clean, true)
    assert (noisy == 0).mean() > 0.1
    est = estimate_noise(noisy, window=window)
    assert np.abs(std_errors(est, true, clean)).max() < 0.05, est


def test_fit_ignores_textured_blocks():
    rng = np.random.default_rng(4)
    dof = block_dof(16)
    means = rng.uniform(0.05, 0.9, 2000)
    true = NoiseParams(2e-3, 5e-5)
    variances = true.variance(means) * rng.chisquare(dof, means.size) / dof
    textured = rng.random(means.size) < 0.4
    variances[textured] += rng.uniform(1e-3, 1e-2, textured.sum())  # texture only ever adds variance
    est = fit_noise_params(means, variances, dof)
    assert est.a == pytest.approx(true.a, rel=0.05)
    assert est.b == pytest.approx(true.b, rel=0.25)


@pytest.mark.parametrize("window", [0.5, 1.0, 3.0])
def test_kept_mean_matches_monte_carlo(window):
    dof = block_dof(16)
    x = np.random.default_rng(7).chisquare(dof, 2_000_000) / dof  # a smooth block's variance / the true one
    kept = x[x <= 1.0 + window * (2.0 / dof) ** 0.5]
    assert kept_mean(window, dof) == pytest.approx(kept.mean(), rel=1e-3)


def _block_variances(texture: float, seed: int = 4) -> tuple[np.ndarray, np.ndarray, NoiseParams, float]:
    """Block means and variance estimates of a = 2e-3, b = 5e-5 noise; 60% of blocks scaled up by texture."""
    rng = np.random.default_rng(seed)
    dof = block_dof(16)
    means = rng.uniform(0.05, 0.9, 20_000)
    true = NoiseParams(2e-3, 5e-5)
    variances = true.variance(means) * rng.chisquare(dof, means.size) / dof
    textured = rng.random(means.size) < 0.6
    variances[textured] *= 1.0 + rng.uniform(0.0, texture, textured.sum())
    return means, variances, true, dof


@pytest.mark.parametrize("window", [0.5, 1.0, 3.0])
def test_fit_is_unbiased_on_pure_noise_whatever_the_window(window):
    # Without the kept-mean scaling a window of 1 would read the variance 5% low, one of 0.5 8% low.
    means, variances, true, dof = _block_variances(texture=0.0)
    est = fit_noise_params(means, variances, dof, window=window)
    assert est.a == pytest.approx(true.a, rel=0.01)
    assert est.b == pytest.approx(true.b, rel=0.05)


def test_a_tight_window_reads_faint_texture_less():
    # Texture adding up to 100% of the noise variance to most blocks, too faint for the loose window to drop.
    means, variances, true, dof = _block_variances(texture=1.0)
    loose = fit_noise_params(means, variances, dof, window=3.0)
    tight = fit_noise_params(means, variances, dof, window=1.0)
    assert loose.a > 1.1 * true.a  # the default window counts much of the texture as noise
    assert abs(tight.a / true.a - 1) < 0.06 and abs(tight.a / true.a - 1) < 0.5 * abs(loose.a / true.a - 1)


def test_accepts_torch_and_rejects_wrong_layout():
    noisy = add_noise(smooth_frame(64, 64), NoiseParams(2e-3, 1e-4))
    assert estimate_noise(torch.from_numpy(noisy)) == estimate_noise(noisy)
    with pytest.raises(AssertionError, match="packed"):
        estimate_noise(noisy[:3])
    with pytest.raises(ValueError, match="not mostly clipped"):
        estimate_noise(np.zeros((4, 64, 64), dtype=np.float32))  # everything clipped at black


def _dark_blocks(params: NoiseParams, clip: tuple[float, float], rng: np.random.Generator, noisy: bool):
    """Block means and variances of a dark clipped frame under the clipped model at ``params``: exact (the model's
    own prediction) or with each variance drawn as v chi2(dof) / dof, as smooth blocks' estimates are."""
    levels = torch.from_numpy(np.exp(rng.uniform(np.log(2e-3), np.log(0.3), 400)))
    means, variances = clipped_moments(levels, params, clip)
    if noisy:
        variances = variances * torch.from_numpy(rng.chisquare(DOF, len(levels)) / DOF)
    return means, variances


DOF = block_dof(16)


def test_the_compass_search_lands_on_the_likelihoods_minimum():
    """Where every block's variance is the model's own prediction, the likelihood is least at the true level; from a
    start off by 2x in a and 1/3 in b the search returns it to within its last step (1e-3 in log)."""
    true, clip = NoiseParams(8e-3, 2e-4), (0.0, 1.0)
    means, variances = _dark_blocks(true, clip, np.random.default_rng(0), noisy=False)
    fit = fit_clipped(means, variances, DOF, clip, NoiseParams(1.6e-2, 6.7e-5), rounds=1, window=1e6)
    assert fit.a == pytest.approx(true.a, rel=2e-3) and fit.b == pytest.approx(true.b, rel=2e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_compass_search_does_as_well_as_scipys_nelder_mead(seed):
    """On noisy block variances, the compass search's negative log-likelihood is no worse than SciPy's Nelder-Mead
    run to tight tolerances from the same start, and both read the noise std at mid-level alike."""
    from scipy.optimize import minimize

    from denoise.raw.noise_estimation import _predicted_variance

    rng = np.random.default_rng(seed)
    true, clip = NoiseParams(3e-3, 1e-4), (0.0, 1.0)
    means, variances = _dark_blocks(true, clip, rng, noisy=True)
    start = NoiseParams(4e-3, 1.5e-4)

    def nll(log_ab) -> float:
        predicted = _predicted_variance(torch.as_tensor(log_ab, dtype=torch.float64)[None], means, clip)[0]
        return float((variances / predicted + predicted.log()).sum())

    ours = fit_clipped(means, variances, DOF, clip, start, rounds=1, window=1e6)
    theirs = minimize(nll, [np.log(start.a), np.log(start.b)], method="Nelder-Mead",
                      options={"xatol": 1e-8, "fatol": 1e-10}).x  # fmt: skip
    assert nll([np.log(ours.a), np.log(ours.b)]) <= nll(theirs) + 1e-3
    theirs_params = NoiseParams(*np.exp(theirs))
    assert np.sqrt(ours.variance(0.05)) == pytest.approx(np.sqrt(theirs_params.variance(0.05)), rel=1e-3)


def test_the_compass_search_climbs_from_a_line_with_no_read_noise():
    """A dark frame's line fit often has b = 0 (the blocks free of clipping are few and bright); the search starts at
    its floor, 1e-10, and must climb 15 units of log b to the true read noise, as its first rounds do on such frames:
    where the read noise is left at the floor, the texture check's gate mistakes the frame for texture."""
    true, clip = NoiseParams(8e-3, 2e-4), (0.0, 1.0)
    means, variances = _dark_blocks(true, clip, np.random.default_rng(5), noisy=False)
    fit = fit_clipped(means, variances, DOF, clip, NoiseParams(1.2e-2, 0.0), rounds=1, window=1e6)
    assert fit.a == pytest.approx(true.a, rel=2e-3) and fit.b == pytest.approx(true.b, rel=2e-3)


def test_the_compass_search_stays_inside_its_bounds():
    """Blocks with no read noise at all, down to the darkest levels, pull b down without end; the search stops at
    its floor, 1e-10."""
    levels = torch.from_numpy(np.geomspace(1e-3, 0.9, 300))
    means, variances = clipped_moments(levels, NoiseParams(8e-3, 0.0), (0.0, 1.0))
    fit = fit_clipped(means, variances, DOF, (0.0, 1.0), NoiseParams(8e-3, 1e-6), rounds=1, window=1e6)
    assert fit.b == pytest.approx(1e-10, rel=1e-9) and fit.a == pytest.approx(8e-3, rel=1e-3)


def test_pooling_keeps_every_blocks_count_and_variance_and_leaves_few_blocks_alone():
    from denoise.raw.noise_estimation import _pooled

    rng = np.random.default_rng(6)
    means, variances = torch.from_numpy(rng.uniform(0, 0.5, 5000)), torch.from_numpy(rng.uniform(1e-4, 1e-3, 5000))
    m, v, count = _pooled(means, variances, groups=2048)
    assert len(m) == 2048 and float(count.sum()) == 5000 and float(count.max() - count.min()) == 1
    assert float(v.sum()) == pytest.approx(float(variances.sum()), rel=1e-12)
    assert bool((m[1:] >= m[:-1]).all())  # groups of neighbouring means, in order
    assert float((m * count).sum()) == pytest.approx(float(means.sum()), rel=1e-12)
    few = _pooled(means[:900], variances[:900], groups=2048)
    assert torch.equal(few[0], means[:900])
    assert torch.equal(few[1], variances[:900]) and torch.equal(few[2], torch.ones(900, dtype=torch.float64))
