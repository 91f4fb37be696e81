"""Validation on whole frames through inference's own ``denoise_frame``, scored like the competition.

Under torchrun every rank denoises and scores its share of the frames on its own device (the metrics in torch on a
GPU, equal to scikit-image's), and rank 0 gathers the scores, so no GPU idles while one process validates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from denoise.config import InferConfig
from denoise.dataset.cache import digest
from denoise.dataset.frames import ValFrame
from denoise.inference.pipeline import denoise_frame
from denoise.raw.metrics import ImageScores, mean_scores, score_image, score_image_torch
from denoise.raw.noise import LEVEL_NAMES
from denoise.raw.render import auto_exposure, render_srgb
from denoise.raw.tiles import centre_box
from denoise.train import distributed as dd


@dataclass(frozen=True)
class ValSummary:
    """What one validation pass measured: the mean metrics, the mean score per noise level, the worst frame."""

    mean: ImageScores
    levels: dict[str, float]  # mean score of the frames at each level present, low to high
    worst_gain: float  # the lowest score gain over the noisy input: negative where a frame got worse
    worst_frame: str  # that frame's key

    @property
    def score(self) -> float:
        return self.mean.score

    def line(self) -> str:
        """One line for the log."""
        levels = ", ".join(f"{name} {score:.2f}" for name, score in self.levels.items())
        return (f"val score {self.mean.score:.3f} ({levels}; worst {self.worst_gain:+.2f}, frame {self.worst_frame}), "
                f"PSNR {self.mean.psnr:.3f} dB, SSIM {self.mean.ssim:.4f} (2-D {self.mean.ssim_2d:.4f})")


def summarise_frames(frames: list[ValFrame], scores: list[ImageScores]) -> ValSummary:
    """The summary of ``scores``, one per frame of ``frames`` in order."""
    assert len(frames) == len(scores), f"{len(scores)} scores for {len(frames)} frames"
    pairs = list(zip(frames, scores, strict=True))
    levels = {name: float(np.mean([s.score for f, s in pairs if f.level == name]))
              for name in LEVEL_NAMES if any(f.level == name for f in frames)}  # fmt: skip
    gains = [s.score - f.noisy_scores.score for f, s in pairs]
    worst = int(np.argmin(gains))
    return ValSummary(mean_scores(scores), levels, gains[worst], frames[worst].key)


def frames_id(frames: list[ValFrame]) -> str:
    """An identity of the validation set (keys and files): a best score is only comparable within one set."""
    return digest(*(f"{f.key}={f.noisy.path}" for f in frames))


def score_on(device: torch.device, clean: np.ndarray, pred: np.ndarray, white_level: int) -> ImageScores:
    """The competition's metrics of one frame, computed on ``device``: torch on a GPU, scikit-image on the CPU
    (where it is the faster of the two)."""
    if device.type == "cpu":
        return score_image(clean, pred, data_range=white_level)
    gt, out = (torch.from_numpy(m.astype(np.int32)).to(device) for m in (clean, pred))
    return score_image_torch(gt, out, data_range=white_level)


def validate(
    model: torch.nn.Module, frames: list[ValFrame], settings: InferConfig, info: dd.DistInfo | None = None
) -> tuple[ValSummary | None, np.ndarray | None]:
    """The scores' summary over ``frames`` and the first frame's denoised mosaic (for the pictures), on rank 0.

    Each frame is denoised exactly as ``denoise.infer`` would (a noise-aware model gets the level estimated from
    the noisy frame alone), one pass without TTA. Rank r takes frames r, r + world, ...; ranks other than 0
    return (None, None).
    """
    assert not settings.tta, "validation runs without TTA"
    rank, world = (info.rank, info.world_size) if info is not None else (0, 1)
    was_training = model.training
    model.eval()
    mine, first = {}, None
    for i in range(rank, len(frames), world):
        frame = frames[i]
        pred = denoise_frame(model, frame.noisy, settings)  # (H, W) uint16
        scores = score_on(torch.device(settings.device), frame.clean_mosaic, pred, frame.noisy.white_level)
        mine[i] = scores.as_dict()
        first = pred if i == 0 else first
    model.train(was_training)
    gathered = dd.gather_objects(mine, info) if info is not None else [mine]
    if rank != 0:
        return None, None
    merged = {i: ImageScores(**s) for part in gathered for i, s in part.items()}
    return summarise_frames(frames, [merged[i] for i in range(len(frames))]), first


def validate_and_log(
    model: torch.nn.Module, frames: list[ValFrame], settings: InferConfig, info: dd.DistInfo,
    writer: SummaryWriter | None, step: int, epoch: int, image_crop: int,
) -> ValSummary | None:  # fmt: skip
    """``validate``, then on rank 0 the scalars (val/*, time/val_s), pictures and a line; returns rank 0's scores."""
    started = time.perf_counter()
    scores, denoised = validate(model, frames, settings, info)
    if scores is None or writer is None:
        return scores
    writer.add_scalar("time/val_s", time.perf_counter() - started, step)
    for key, value in scores.mean.as_dict().items():
        writer.add_scalar(f"val/{key}", value, step)
    for name, value in scores.levels.items():
        writer.add_scalar(f"val/score_{name}", value, step)
    writer.add_scalar("val/worst_gain", scores.worst_gain, step)
    if image_crop > 0:
        for key, picture in crop_pictures(frames[0], denoised, image_crop).items():
            writer.add_image(f"images/{key}", picture, step, dataformats="HWC")
    tqdm.write(f"epoch {epoch}: {scores.line()}")
    return scores


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
