"""The competition's metrics on raw mosaics: PSNR, column-wise SSIM, plain 2-D SSIM and the score formula.

All metrics take the full 2-D Bayer mosaic in raw DN units (black level included) and use the white level as
``data_range``, as the organisers did. The competition's SSIM is column-wise: the organisers called scikit-image
0.17's SSIM with ``multichannel=True`` on the 2-D mosaic, which takes the last axis as channels, so their number is
the mean over the columns of a 1-D SSIM down each column; a plain 2-D SSIM is a different (higher) number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

COMPETITION_WHITE_LEVEL = 16383


def _check(gt: np.ndarray, pred: np.ndarray) -> None:
    assert gt.ndim == 2, f"expected a 2-D mosaic, got shape {gt.shape}"
    assert gt.shape == pred.shape, f"shape mismatch: ground truth {gt.shape}, prediction {pred.shape}"


def psnr(gt: np.ndarray, pred: np.ndarray, data_range: float = COMPETITION_WHITE_LEVEL) -> float:
    """PSNR in dB over the whole (H, W) mosaic, ``data_range`` being the white level."""
    _check(gt, pred)
    return float(peak_signal_noise_ratio(gt.astype(np.float64), pred.astype(np.float64), data_range=data_range))


def ssim_competition(gt: np.ndarray, pred: np.ndarray, data_range: float = COMPETITION_WHITE_LEVEL) -> float:
    """The organisers' SSIM: scikit-image with the last axis as channels, i.e. the mean 1-D SSIM down each column."""
    _check(gt, pred)
    return float(
        structural_similarity(
            gt.astype(np.float64), pred.astype(np.float64), channel_axis=-1, data_range=data_range
        )
    )


def ssim_2d(gt: np.ndarray, pred: np.ndarray, data_range: float = COMPETITION_WHITE_LEVEL) -> float:
    """Plain 2-D SSIM over the mosaic (7x7 uniform window); reported beside the competition's number."""
    _check(gt, pred)
    return float(structural_similarity(gt.astype(np.float64), pred.astype(np.float64), data_range=data_range))


def competition_score(psnr_db: float, ssim: float) -> float:
    """100 * (0.8 * max(PSNR - 30, 0) / 30 + 0.2 * max(SSIM - 0.8, 0) / 0.2)."""
    return 100.0 * (0.8 * max(psnr_db - 30.0, 0.0) / 30.0 + 0.2 * max(ssim - 0.8, 0.0) / 0.2)


@dataclass(frozen=True)
class ImageScores:
    """Metrics of one prediction against its ground truth."""

    psnr: float
    ssim: float  # the competition's column-wise SSIM, used for the score
    ssim_2d: float
    score: float

    def as_dict(self) -> dict[str, float]:
        """The scores as a plain dict, for JSON and TensorBoard."""
        return asdict(self)


def score_image(gt: np.ndarray, pred: np.ndarray, data_range: float = COMPETITION_WHITE_LEVEL) -> ImageScores:
    """All metrics for one (H, W) mosaic pair."""
    p = psnr(gt, pred, data_range)
    s = ssim_competition(gt, pred, data_range)
    return ImageScores(psnr=p, ssim=s, ssim_2d=ssim_2d(gt, pred, data_range), score=competition_score(p, s))


def mean_scores(scores: Iterable[ImageScores]) -> ImageScores:
    """Per-metric mean over images (the score is the mean of per-image scores, as inferred for the leaderboard)."""
    items = list(scores)
    assert items, "mean of no scores"
    return ImageScores(
        psnr=float(np.mean([s.psnr for s in items])),
        ssim=float(np.mean([s.ssim for s in items])),
        ssim_2d=float(np.mean([s.ssim_2d for s in items])),
        score=float(np.mean([s.score for s in items])),
    )


def _ssim_map(x: torch.Tensor, y: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor], points: int,
              data_range: float) -> torch.Tensor:
    """scikit-image's SSIM map over the windows that lie wholly inside the image (those it averages).

    ``pool`` is the window mean over ``points`` samples; float64 throughout, as scikit-image computes.
    """
    cov_norm = points / (points - 1)  # sample covariance, scikit-image's default
    ux, uy = pool(x), pool(y)
    vx = cov_norm * (pool(x * x) - ux * ux)
    vy = cov_norm * (pool(y * y) - uy * uy)
    vxy = cov_norm * (pool(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def score_image_torch(gt: torch.Tensor, pred: torch.Tensor, data_range: float = COMPETITION_WHITE_LEVEL) -> ImageScores:
    """``score_image`` computed with torch on the tensors' device (a GPU during training), equal to it to 1e-9.

    scikit-image filters with a 7-sample uniform window, reflecting at the borders, and then averages only the
    positions at least 3 samples from every border, whose windows never reach the reflection: a pooling without
    padding gives exactly those windows. The column-wise SSIM pools down each column (the mosaic's last axis is
    scikit-image's channel axis); the 2-D one over 7 x 7 squares, one axis after the other.
    """
    assert gt.ndim == 2 and gt.shape == pred.shape, f"expected two equal (H, W) mosaics, got {gt.shape}, {pred.shape}"
    x, y = gt.double()[None, None], pred.double()[None, None]  # (1, 1, H, W)
    mse = torch.mean((x - y) ** 2)
    def down(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, (7, 1), stride=1)

    def across(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, (1, 7), stride=1)

    columns = _ssim_map(x, y, down, 7, data_range)
    square = _ssim_map(x, y, lambda t: across(down(t)), 49, data_range)  # separable, as scikit-image filters
    # scikit-image's column-wise number is the mean over columns of each column's mean: with equal-length
    # columns that is the mean over the whole map.
    p = float(10 * torch.log10(data_range**2 / mse)) if mse > 0 else float("inf")
    s = float(columns.mean())
    return ImageScores(psnr=p, ssim=s, ssim_2d=float(square.mean()), score=competition_score(p, s))
