"""The competition metrics against independent NumPy computations and hand-computed scores."""

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import structural_similarity

from denoise.raw.metrics import (
    competition_score,
    mean_scores,
    psnr,
    score_image,
    score_image_torch,
    ssim_2d,
    ssim_competition,
)

WHITE = 16383


def _pair(seed: int, shape=(40, 24)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(1024, WHITE + 1, size=shape).astype(np.uint16)
    noise = rng.normal(0, 400, size=shape)
    pred = np.clip(np.rint(gt + noise), 1024, WHITE).astype(np.uint16)
    return gt, pred


def _columnwise_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float, win: int = 7) -> float:
    """1-D SSIM down each column over fully-inside windows, sample (co)variances, K1=0.01, K2=0.03."""
    x = sliding_window_view(gt.astype(np.float64), win, axis=0)  # (H-win+1, W, win)
    y = sliding_window_view(pred.astype(np.float64), win, axis=0)
    mx, my = x.mean(-1), y.mean(-1)
    vx, vy = x.var(-1, ddof=1), y.var(-1, ddof=1)
    cov = ((x - mx[..., None]) * (y - my[..., None])).sum(-1) / (win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_psnr_matches_definition():
    gt, pred = _pair(0)
    mse = np.mean((gt.astype(np.float64) - pred.astype(np.float64)) ** 2)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(WHITE**2 / mse), rel=1e-12)


def test_competition_ssim_is_mean_of_columnwise_1d_ssim():
    gt, pred = _pair(1)
    assert ssim_competition(gt, pred) == pytest.approx(_columnwise_ssim(gt, pred, WHITE), rel=1e-9)


def test_competition_ssim_differs_from_2d_ssim():
    gt, pred = _pair(2)
    direct_2d = structural_similarity(gt.astype(np.float64), pred.astype(np.float64), data_range=WHITE)
    assert ssim_2d(gt, pred) == pytest.approx(direct_2d, rel=1e-12)
    assert abs(ssim_competition(gt, pred) - ssim_2d(gt, pred)) > 1e-4


def test_identical_images_score_perfect_ssim_and_infinite_psnr():
    gt, _ = _pair(3)
    assert ssim_competition(gt, gt) == pytest.approx(1.0)
    assert np.isinf(psnr(gt, gt))


@pytest.mark.parametrize(
    ("p", "s", "expected"),
    [
        (40.0, 0.9, 100 * (0.8 * 10 / 30 + 0.2 * 0.1 / 0.2)),
        (25.0, 0.7, 0.0),
        (30.0, 1.0, 20.0),
        (60.0, 0.8, 80.0),
        (45.0, 0.95, 40.0 + 15.0),
    ],
)
def test_competition_score_formula(p, s, expected):
    assert competition_score(p, s) == pytest.approx(expected)


def test_score_image_and_mean():
    pairs = [_pair(seed) for seed in (4, 5)]
    scores = [score_image(gt, pred) for gt, pred in pairs]
    for (gt, pred), sc in zip(pairs, scores, strict=True):
        assert sc.score == pytest.approx(competition_score(psnr(gt, pred), ssim_competition(gt, pred)))
    mean = mean_scores(scores)
    assert mean.psnr == pytest.approx((scores[0].psnr + scores[1].psnr) / 2)
    assert mean.score == pytest.approx((scores[0].score + scores[1].score) / 2)


def test_shape_mismatch_is_refused():
    gt, pred = _pair(6)
    with pytest.raises(AssertionError, match="shape mismatch"):
        psnr(gt, pred[:-2])


def _frames(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth scene with edges and texture at competition levels, and a noisy, clipped estimate of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    scene = 3000 + 4000 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 6000 * (xx > shape[1] // 2)
    scene = scene + rng.normal(0, 300, shape)
    gt = np.clip(np.rint(scene), 1024, 16383).astype(np.uint16)
    pred = np.clip(gt + rng.normal(0, 80 + 200 * rng.random(), shape), 0, 16383).astype(np.uint16)
    return gt, pred


@pytest.mark.parametrize(("shape", "seed"), [((64, 96), 0), ((131, 77), 1), ((512, 768), 2), ((7, 40), 3)])
def test_torch_metrics_equal_scikit_image(shape, seed):
    # Validation scores on the training device must be the competition's numbers, not an approximation of them.
    gt, pred = _frames(shape, seed)
    ref = score_image(gt, pred)
    got = score_image_torch(torch.from_numpy(gt.astype(np.int32)), torch.from_numpy(pred.astype(np.int32)))
    for key in ("psnr", "ssim", "ssim_2d", "score"):
        assert abs(getattr(got, key) - getattr(ref, key)) < 1e-9, key
    assert abs(score_image_torch(torch.from_numpy(gt), torch.from_numpy(gt)).ssim - 1.0) < 1e-12
    assert score_image_torch(torch.from_numpy(gt), torch.from_numpy(gt)).psnr == float("inf")
