"""x8 self-ensemble on the Bayer mosaic: flip/transpose with the CFA phase kept, denoise, invert, average.

Flipping the packed 4-channel tensor would swap which colour sits at each CFA position relative to its
neighbours (entrants found it lowers the score); flipping the mosaic and shifting it by one reflected sample
(``bayer_transform(mode="pad")``) keeps the phase, so every view is a frame the network could have been
trained on, and ``bayer_transform_inverse`` maps each output back exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from denoise.dataset.bayer import all_transforms, bayer_transform, bayer_transform_inverse, pack_bayer, unpack_bayer
from denoise.inference.tiling import denoise_packed, tile_grid

Flags = tuple[bool, bool, bool]  # (hflip, vflip, transpose)
IDENTITY: tuple[Flags, ...] = ((False, False, False),)


def transforms_for(tta: bool) -> tuple[Flags, ...]:
    """All eight dihedral transforms with TTA, else the identity alone."""
    return tuple(all_transforms()) if tta else IDENTITY


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


def denoise_mosaic(
    model: torch.nn.Module,
    mosaic: torch.Tensor,
    pattern: str,
    tile: int,
    overlap: int,
    transforms: Sequence[Flags] = IDENTITY,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Denoise a normalised (H, W) mosaic (even sides) as the mean over ``transforms`` of the inverted outputs.

    Each view is transformed on the mosaic, packed with the unchanged ``pattern``, denoised tile by tile,
    unpacked and transformed back, so the average is over aligned pixels of the same colour.
    """
    assert mosaic.ndim == 2, f"expected an (H, W) mosaic, got {tuple(mosaic.shape)}"
    assert mosaic.shape[0] % 2 == 0 and mosaic.shape[1] % 2 == 0, f"needs even sides, got {tuple(mosaic.shape)}"
    assert len(transforms) > 0, "at least one transform is needed"
    total = torch.zeros(mosaic.shape, dtype=torch.float64)
    for flags in transforms:
        view = bayer_transform(mosaic, pattern, *flags, mode="pad")  # (H', W'), same CFA phase as ``mosaic``
        packed = pack_bayer(view, pattern)  # (4, H'/2, W'/2)
        out = denoise_packed(model, packed, tile, overlap, batch_size, device, precision, progress)
        restored = bayer_transform_inverse(unpack_bayer(out, pattern), pattern, *flags)  # (H, W)
        total += restored.double()
    return (total / len(transforms)).float()
