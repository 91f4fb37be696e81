"""One raw frame in, one denoised uint16 mosaic out: normalise, denoise (tiled, maybe x8 TTA), denormalise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from denoise.config import InferConfig
from denoise.inference.tta import count_tiles, denoise_mosaic, transforms_for
from denoise.model.nafnet import NoiseAwareNAFNet
from denoise.model.runtime import resolve_device
from denoise.raw.bayer import cfa_black, clip_to_levels, denormalize, even_shape, normalize, pack_bayer, unpack_bayer
from denoise.raw.dng import RawFrame
from denoise.raw.noise import profile_noise
from denoise.raw.noise_estimation import NoiseParams


def noise_source(frame: RawFrame, settings: InferConfig) -> str:
    """Where a noise-aware model's level for ``frame`` comes from: "NoiseProfile" or "estimated"."""
    return "NoiseProfile" if settings.noise_source == "auto" and frame.noise_profile is not None else "estimated"


def frame_tiles(frame: RawFrame, settings: InferConfig) -> int:
    """Tiles ``denoise_frame`` will run for ``frame``, for a progress bar's total."""
    height, width = even_shape(*frame.mosaic.shape)
    transforms = transforms_for(settings.tta)
    return count_tiles(height, width, frame.pattern, settings.tile, settings.overlap, transforms)


def normalized_frame(frame: RawFrame) -> np.ndarray:
    """The frame's largest even region, normalised per CFA position (``normalize``): (H', W') float32."""
    mosaic = frame.mosaic
    assert mosaic.ndim == 2 and mosaic.dtype == np.uint16, f"expected an (H, W) mosaic, got {mosaic.shape}"
    height, width = even_shape(*mosaic.shape)
    assert height >= 2 and width >= 2, f"{frame.path}: frame {mosaic.shape} too small to pack"
    return normalize(mosaic[:height, :width], frame.black_level, frame.white_level)


def frame_mosaic(frame: RawFrame, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """The (H, W) uint16 mosaic of a denoised ``normalized_frame`` ``y``: in DN, an odd last row or column copied
    from ``frame``, all of it clipped to [black, white] per CFA position."""
    height, width = y.shape[-2:]
    assert (height, width) == even_shape(*frame.mosaic.shape), f"{(height, width)} is not {frame.mosaic.shape}'s"
    black = cfa_black(frame.black_level, np.float64)  # (2, 2), aligned with the mosaic's origin
    out = frame.mosaic.copy()
    out[:height, :width] = denormalize(y, black, frame.white_level)  # clipped already
    # An odd last row or column, copied: each starts at an even index, so the CFA phase is the frame's.
    out[height:] = clip_to_levels(out[height:], black, frame.white_level)
    out[:, width:] = clip_to_levels(out[:, width:], black, frame.white_level)
    return out


def denoise_frame(
    model: torch.nn.Module,
    frame: RawFrame,
    settings: InferConfig,
    progress: Callable[[int], None] | None = None,
    noise: NoiseParams | None = None,
) -> np.ndarray:
    """The denoised (H, W) uint16 mosaic of ``frame``, in [black, white] per CFA position.

    The network sees the largest even region; an odd last row or column is copied from the input (clipped to
    [black, white] like the rest).
    A noise-aware network gets ``noise`` when given, else the file's NoiseProfile when the settings allow it
    (``noise_source``), else the level read off this noisy frame alone (``denoise_blind``: estimate and texture
    check).
    """
    x = torch.from_numpy(normalized_frame(frame))  # (H', W')
    device = resolve_device(settings.device)  # "auto" is the GPU when there is one

    def run(net: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:  # (H', W'), the first run counted
        nonlocal progress
        y = denoise_mosaic(net, x, frame.pattern, settings.tile, settings.overlap, transforms_for(settings.tta),
                           settings.batch_size, device, settings.precision, progress)  # fmt: skip
        progress = None
        return y

    if not isinstance(model, NoiseAwareNAFNet):
        y = run(model)
    elif noise is not None or noise_source(frame, settings) == "NoiseProfile":
        y = run(model.at_level(noise or profile_noise(frame.noise_profile)))
    else:  # the model's own window and texture check, on packed planes
        packed = model.at_estimated_level(pack_bayer(x, frame.pattern),
                                          lambda level: pack_bayer(run(model.at_level(level)), frame.pattern))
        y = unpack_bayer(packed, frame.pattern)
    return frame_mosaic(frame, y)
