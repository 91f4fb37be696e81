"""The texture check of a blind noise estimate: the evidence (what a denoiser removed follows what it kept), the
read-noise gate, and the graded factor between them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from denoise.raw.noise import add_gaussian_noise
from denoise.raw.noise_estimation import (
    HEDGE,
    RAMP,
    NoiseParams,
    estimate_frame_noise,
    graded_factor,
    read_noise_share,
    removed_structure,
    texture_std_scale,
)


def test_removed_structure_tells_noise_from_removed_texture():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:96, 0:128]
    smooth = 0.3 + 0.2 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    texture = 0.05 * rng.standard_normal((4, 96, 128))
    scene = smooth[None] + texture
    noisy = scene + rng.normal(0, 0.01, scene.shape)
    # a denoiser that removed just the noise leaves a residual unrelated to the image it kept
    assert removed_structure(noisy, scene) < 0.05
    # one that also smoothed the texture away leaves a residual that follows the image's structure
    blurred = (scene + np.roll(scene, 1, 1) + np.roll(scene, -1, 1) + np.roll(scene, 1, 2) + np.roll(scene, -1, 2)) / 5
    assert removed_structure(noisy, blurred) > 0.3
    assert removed_structure(noisy, noisy) == 0.0  # nothing removed


def test_texture_std_scale_keeps_hedges_or_lowers_the_level():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:96, 0:128]
    scene = (0.3 + 0.2 * np.sin(xx / 9.0) * np.cos(yy / 13.0))[None] + 0.05 * rng.standard_normal((4, 96, 128))
    noisy = scene + rng.normal(0, 0.01, scene.shape)
    blurred = (scene + np.roll(scene, 1, 1) + np.roll(scene, -1, 1) + np.roll(scene, 1, 2) + np.roll(scene, -1, 2)) / 5
    no_read, read = NoiseParams(1e-3, 0.0), NoiseParams(1e-3, 1e-3)  # read shares 0 and about 0.77 at the mean
    assert texture_std_scale(noisy, blurred, no_read, 0.3, 0.1, 0.125) == 0.125  # texture read as noise
    assert texture_std_scale(noisy, scene, no_read, 0.3, 0.1, 0.125) == HEDGE  # little read noise, plain residual
    assert texture_std_scale(noisy, blurred, read, 0.3, 0.1, 0.125) == 1.0  # a level with read noise is trusted
    assert texture_std_scale(noisy, blurred, no_read, 0.0, 0.1, 0.125) == 1.0  # the check off
    assert 0.125 < HEDGE < 1.0
    # A correlation half-way up the ramp below the threshold: the geometric mean of HEDGE and the scale.
    middle = removed_structure(noisy, blurred) + RAMP / 2
    assert texture_std_scale(noisy, blurred, no_read, middle, 0.1, 0.125) == pytest.approx(math.sqrt(HEDGE * 0.125))


def test_graded_factor_falls_from_the_hedge_to_the_scale_without_a_jump():
    assert graded_factor(0.0, 0.3, 0.125) == HEDGE
    assert graded_factor(0.3 - RAMP, 0.3, 0.125) == pytest.approx(HEDGE)
    assert graded_factor(0.3, 0.3, 0.125) == pytest.approx(0.125)
    assert graded_factor(0.9, 0.3, 0.125) == pytest.approx(0.125)
    assert graded_factor(0.3 - RAMP / 4, 0.3, 0.125) == pytest.approx(HEDGE ** 0.25 * 0.125 ** 0.75)
    steps = [graded_factor(0.2 + i * 1e-3, 0.3, 0.125) for i in range(150)]
    assert all(b <= a for a, b in itertools.pairwise(steps))  # never rises with the evidence
    # 0.001 of correlation moves it by a constant ratio inside the ramp, never more.
    assert max(a / b for a, b in itertools.pairwise(steps)) == pytest.approx((HEDGE / 0.125) ** (1e-3 / RAMP))


def test_read_noise_share_is_b_over_the_variance_at_the_level():
    assert read_noise_share(NoiseParams(1e-3, 1e-4), 0.4) == pytest.approx(1e-4 / (1e-3 * 0.4 + 1e-4))
    assert read_noise_share(NoiseParams(2e-3, 0.0), 0.2) == 0.0
    assert read_noise_share(NoiseParams(2e-3, 1e-5), -0.1) == 1.0  # a level below black holds read noise alone
    assert read_noise_share(NoiseParams(0.0, 0.0), 0.3) == 1.0


def test_texture_leaves_the_estimate_no_read_noise_and_a_high_level_plenty():
    # The premise of the check's gate, through the real estimate: white texture whose std is proportional to the
    # brightness (a reflectance pattern) over faint noise reads as a large `a` with `b` near 0; pure noise at the
    # demo's second-highest level keeps its read-noise share (6e-4 against 8e-3 * mean).
    rng = np.random.default_rng(5)
    ramp = np.linspace(0.05, 0.6, 256)[None, None, :].repeat(4, 0).repeat(192, 1)  # (4, 192, 256)
    textured = ramp * (1 + 0.15 * rng.standard_normal(ramp.shape))
    faint = add_gaussian_noise(textured, 1e-4, 1e-6, rng)
    loud = add_gaussian_noise(ramp, 8e-3, 6e-4, rng)
    for frame, low in ((faint, True), (loud, False)):
        params = estimate_frame_noise(frame.astype(np.float32), 1.0)
        share = read_noise_share(params, float(frame.mean()))
        truth = 6e-4 / (8e-3 * ramp.mean() + 6e-4)
        assert share < 0.02 if low else abs(share - truth) < 0.5 * truth, (params, share, truth)
