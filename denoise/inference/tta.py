"""x8 self-ensemble on the Bayer mosaic: flip/transpose with the CFA phase kept, denoise, invert, average.

Flipping the packed 4-channel tensor would swap which colour sits at each CFA position relative to its
neighbours (entrants found it lowers the score); flipping the mosaic and shifting it by one reflected sample
(``bayer_transform(mode="pad")``) keeps the phase, so every view is a frame the network could have been
trained on, and ``bayer_transform_inverse`` maps each output back exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from denoise.inference.tiling import denoise_packed, tile_grid
from denoise.raw.bayer import (
    IDENTITY,
    Flags,
    all_transforms,
    bayer_transform,
    bayer_transform_inverse,
    pack_bayer,
    unpack_bayer,
)

Array = np.ndarray | torch.Tensor
NO_TTA: tuple[Flags, ...] = (IDENTITY,)  # the one view of a single pass


def transforms_for(tta: bool) -> tuple[Flags, ...]:
    """All eight dihedral transforms with TTA, else the identity alone."""
    return tuple(all_transforms()) if tta else NO_TTA


def view_shape(height: int, width: int, pattern: str, flags: Flags) -> tuple[int, int]:
    """Mosaic (H, W) of one transformed view of an (height, width) mosaic (transposed, maybe padded by 2)."""
    probe = torch.empty(0, height, width)
    return tuple(bayer_transform(probe, pattern, *flags, mode="pad").shape[-2:])


def count_tiles(height: int, width: int, pattern: str, tile: int, overlap: int, transforms: Sequence[Flags]) -> int:
    """Tiles run for one (height, width) mosaic over all views, for progress bars."""
    total = 0
    for flags in transforms:
        h, w = view_shape(height, width, pattern, flags)
        total += len(tile_grid(h // 2, w // 2, tile, overlap))
    return total


def self_ensemble(
    denoise_packed_view: Callable[[Array], Array], mosaic: Array, pattern: str, transforms: Sequence[Flags]
) -> Array:
    """Mean over ``transforms`` of ``denoise_packed_view`` run on each view of a normalised (H, W) mosaic.

    Each view is transformed on the mosaic, packed with the unchanged ``pattern``, denoised as a (4, h', w')
    frame, unpacked and transformed back, so the average is over aligned pixels of the same colour. NumPy or
    torch in, the same out (float64 for NumPy, float32 for torch); any packed denoiser fits, model or classical.
    """
    assert mosaic.ndim == 2, f"expected an (H, W) mosaic, got {tuple(mosaic.shape)}"
    assert mosaic.shape[0] % 2 == 0 and mosaic.shape[1] % 2 == 0, f"needs even sides, got {tuple(mosaic.shape)}"
    assert len(transforms) > 0, "at least one transform is needed"
    total = None
    for flags in transforms:
        view = bayer_transform(mosaic, pattern, *flags, mode="pad")  # (H', W'), same CFA phase as ``mosaic``
        out = denoise_packed_view(pack_bayer(view, pattern))  # (4, H'/2, W'/2)
        restored = bayer_transform_inverse(unpack_bayer(out, pattern), pattern, *flags)  # (H, W)
        restored = restored.double() if isinstance(restored, torch.Tensor) else np.asarray(restored, np.float64)
        total = restored if total is None else total + restored
    mean = total / len(transforms)
    return mean.float() if isinstance(mean, torch.Tensor) else mean


def denoise_mosaic(
    model: torch.nn.Module,
    mosaic: torch.Tensor,
    pattern: str,
    tile: int,
    overlap: int,
    transforms: Sequence[Flags] = NO_TTA,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Denoise a normalised (H, W) mosaic (even sides) with ``model``, tile by tile, over ``transforms``."""

    def run(packed: torch.Tensor) -> torch.Tensor:
        return denoise_packed(model, packed, tile, overlap, batch_size, device, precision, progress)

    return self_ensemble(run, mosaic, pattern, transforms)
