"""Validation on full frames with the tiled inference ``denoise.infer`` uses, scored like the competition."""

from __future__ import annotations

import numpy as np
import torch

from denoise.dataset.bayer import denormalize, unpack_bayer
from denoise.inference.noise_map import condition_on_noise
from denoise.inference.pipeline import InferSettings
from denoise.inference.tiling import denoise_packed
from denoise.metrics import ImageScores, mean_scores, score_image
from denoise.render import auto_exposure, render_srgb


@torch.no_grad()
def denoise_val_frame(model: torch.nn.Module, frame, settings: InferSettings) -> np.ndarray:
    """The denoised (H, W) uint16 mosaic of a validation frame; an odd last row/column keeps its noisy value.

    A noise-aware model gets the noise level estimated from the noisy frame alone, as at test time. Validation
    runs one pass (no TTA).
    """
    assert not settings.tta, "validation runs without TTA"
    model = condition_on_noise(model, frame.noisy, window=settings.noise_window)
    packed = denoise_packed(
        model, frame.noisy, settings.tile, settings.overlap, settings.batch_size, settings.device, settings.precision
    )  # (4, h, w)
    mosaic = unpack_bayer(packed, frame.pattern)  # (2h, 2w) float32, normalised
    out = np.array(frame.noisy_mosaic, dtype=np.uint16, copy=True)
    height, width = mosaic.shape
    out[:height, :width] = denormalize(mosaic, frame.black_level, frame.white_level)
    return out


def validate(model: torch.nn.Module, frames: list, settings: InferSettings) -> tuple[ImageScores, np.ndarray]:
    """Mean metrics over ``frames`` and the first frame's denoised mosaic (for the pictures)."""
    was_training = model.training
    model.eval()
    scores, first = [], None
    for frame in frames:
        pred = denoise_val_frame(model, frame, settings)
        scores.append(score_image(frame.clean_mosaic, pred, data_range=frame.white_level))
        first = pred if first is None else first
    model.train(was_training)
    return mean_scores(scores), first


def noisy_scores(frames: list) -> ImageScores:
    """Mean metrics of the noisy inputs themselves: the baseline a denoiser must beat."""
    return mean_scores(score_image(f.clean_mosaic, f.noisy_mosaic, data_range=f.white_level) for f in frames)


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a central crop of at most ``size`` with even offsets, so the CFA phase is kept."""
    ch, cw = min(size, height) // 2 * 2, min(size, width) // 2 * 2
    y0, x0 = (height - ch) // 4 * 2, (width - cw) // 4 * 2
    return y0, y0 + ch, x0, x0 + cw


def crop_pictures(frame, denoised: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """sRGB (h, w, 3) uint8 renderings of the same central crop of noisy, denoised and clean, same exposure."""
    y0, y1, x0, x1 = center_crop_box(*frame.clean_mosaic.shape, size)
    crops = {
        "noisy": frame.noisy_mosaic[y0:y1, x0:x1],
        "denoised": denoised[y0:y1, x0:x1],
        "clean": frame.clean_mosaic[y0:y1, x0:x1],
    }
    levels = (frame.pattern, frame.black_level, frame.white_level, frame.as_shot_neutral)
    exposure = auto_exposure(crops["clean"], *levels)
    matrix = getattr(frame, "color_matrix", None)  # used when the validation frame carries it
    return {key: render_srgb(m, *levels, exposure=exposure, color_matrix=matrix) for key, m in crops.items()}
