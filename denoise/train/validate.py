"""Validation on whole frames through inference's own ``denoise_frame``, scored like the competition."""

from __future__ import annotations

import numpy as np
import torch

from denoise.dataset.frames import ValFrame
from denoise.inference.pipeline import InferSettings, denoise_frame
from denoise.raw.metrics import ImageScores, mean_scores, score_image
from denoise.raw.render import auto_exposure, render_srgb
from denoise.raw.tiles import centre_box


def validate(model: torch.nn.Module, frames: list[ValFrame], settings: InferSettings) -> tuple[ImageScores, np.ndarray]:
    """Mean metrics over ``frames`` and the first frame's denoised mosaic (for the pictures).

    Each frame is denoised exactly as ``denoise.infer`` would (a noise-aware model gets the level estimated from
    the noisy frame alone); validation runs one pass, without TTA.
    """
    assert not settings.tta, "validation runs without TTA"
    was_training = model.training
    model.eval()
    scores, first = [], None
    for frame in frames:
        pred = denoise_frame(model, frame.noisy, settings)  # (H, W) uint16
        scores.append(score_image(frame.clean_mosaic, pred, data_range=frame.noisy.white_level))
        first = pred if first is None else first
    model.train(was_training)
    return mean_scores(scores), first


def noisy_scores(frames: list[ValFrame]) -> ImageScores:
    """Mean metrics of the noisy inputs themselves: the baseline a denoiser must beat (cached with the frames)."""
    return mean_scores(f.noisy_scores for f in frames)


def crop_pictures(frame: ValFrame, denoised: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """sRGB (h, w, 3) uint8 renderings of the same central crop of noisy, denoised and clean, same exposure."""
    height, width = frame.clean_mosaic.shape
    y0, y1, x0, x1 = centre_box(height, width, min(size, height) // 2 * 2, min(size, width) // 2 * 2)
    crops = {
        "noisy": frame.noisy.mosaic[y0:y1, x0:x1],
        "denoised": denoised[y0:y1, x0:x1],
        "clean": frame.clean_mosaic[y0:y1, x0:x1],
    }
    exposure = auto_exposure(crops["clean"], frame.noisy)
    return {key: render_srgb(m, frame.noisy, exposure=exposure) for key, m in crops.items()}
