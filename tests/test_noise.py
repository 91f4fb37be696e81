"""Noise models: variance against the requested model, true Poisson shot noise, the k-sigma transform."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.raw.noise import add_noise, log_uniform, noise_variance, quantize

N = 200_000


@pytest.mark.parametrize("model", ["gaussian", "poisson_gaussian"])
@pytest.mark.parametrize(("x", "a", "b"), [(0.05, 1e-2, 1e-3), (0.5, 1e-4, 1e-6), (0.2, 3e-3, 1e-5)])
def test_noise_has_the_requested_mean_and_variance(model, x, a, b):
    clean = np.full(N, x, np.float32)
    noisy = add_noise(clean, a, b, np.random.default_rng(0), model)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    expected = a * x + b
    assert abs(noisy.var() / expected - 1) < 0.02
    assert abs(noisy.mean() - x) < 4 * np.sqrt(expected / N)


def test_poisson_shot_noise_counts_whole_electrons():
    a = 1 / 50  # 50 electrons at white
    noisy = add_noise(np.full(1000, 0.3, np.float32), a, 0.0, np.random.default_rng(1), "poisson_gaussian")
    electrons = noisy.astype(np.float64) / a
    np.testing.assert_allclose(electrons, np.rint(electrons), atol=1e-4)
    assert (noisy >= 0).all()


def test_variance_ignores_negative_clean_values_and_unknown_models_fail():
    np.testing.assert_allclose(noise_variance(np.array([-0.1, 0.0, 0.5]), 0.01, 0.001), [0.001, 0.001, 0.006])
    with pytest.raises(ValueError, match="unknown noise model"):
        add_noise(np.zeros(4), 1e-3, 1e-4, np.random.default_rng(0), "laplace")


def test_log_uniform_stays_in_range_with_median_at_the_geometric_mean():
    rng = np.random.default_rng(3)
    draws = np.array([log_uniform(rng, 1e-6, 1e-3) for _ in range(4000)])
    assert draws.min() >= 1e-6 and draws.max() <= 1e-3
    assert abs(np.log10(np.median(draws)) + 4.5) < 0.1


def test_quantize_rounds_each_channel_to_whole_dn_within_black_and_white():
    rng = np.random.default_rng(0)
    noisy = rng.uniform(-0.2, 1.2, (4, 6, 7))
    steps = np.array([15359.0, 100.0, 37.0, 1.0])
    out = quantize(noisy, steps)
    dn = out.astype(np.float64) * steps[:, None, None]
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert np.allclose(dn, np.round(dn), atol=1e-3)  # whole DN per channel
    inside = (noisy > 0) & (noisy < 1)
    assert np.all(np.abs(dn - noisy * steps[:, None, None])[inside] <= 0.5 + 1e-3)  # the nearest DN


def test_fit_line_is_weighted_least_squares_within_the_constraint():
    from scipy.optimize import lsq_linear

    from denoise.raw.noise_estimation import fit_line

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 50)
    w = rng.uniform(0.5, 2.0, 50)
    for slope, intercept in ((2e-3, 1e-4), (2e-3, -3e-4), (-1e-3, 5e-4)):  # inside, and both kinds of boundary
        y = slope * x + intercept + rng.normal(0, 1e-5, 50)
        design = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
        expected = lsq_linear(design, y * np.sqrt(w), bounds=(0, np.inf), tol=1e-14).x  # an independent solver
        assert fit_line(x, y, w) == pytest.approx(tuple(expected), rel=1e-6, abs=1e-9)  # values ~1e-4
    assert fit_line(x, x, np.zeros_like(x)) == (0.0, 0.0)  # no weight: no line


def test_fit_pair_noise_survives_a_frame_with_nothing_inside_the_levels():
    from denoise.raw.noise import fit_pair_noise

    dark = np.full((4, 8, 8), 0.001)
    a, b = fit_pair_noise(dark + np.random.default_rng(0).normal(0, 0.01, dark.shape), dark)
    assert (a, b) == (1e-8, 1e-10)  # every sample within 3 std of black: nothing to fit, the floors
