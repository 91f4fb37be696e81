"""Overlap-tile inference over packed frames: the tile grid, which tile owns which pixel, batched tiled denoising.

Neighbouring tiles overlap; every output pixel is taken from the one tile that owns it, the boundary between
two tiles lying in the middle of their overlap. An owned pixel is therefore at least ``overlap // 2`` pixels
from its tile's inner edges, so a network whose receptive field fits in that margin gives exactly the
whole-frame result, and a larger one gives no visible seams.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from denoise.model.runtime import autocast, prepare_input
from denoise.raw.tiles import tile_starts


class Tile(NamedTuple):
    """One tile: its window in the frame and the part of the frame it owns, in packed pixels."""

    y: int
    x: int
    height: int
    width: int
    own_y0: int
    own_y1: int
    own_x0: int
    own_x1: int


def _owned_ranges(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """For tiles of ``size`` at ``starts`` covering [0, length), the [begin, end) each owns: cut mid-overlap."""
    cuts = [(nxt + cur + size) // 2 for cur, nxt in itertools.pairwise(starts)]
    return list(zip([0, *cuts], [*cuts, length], strict=True))


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """The tiles covering an (height, width) packed frame, row-major; ``tile`` 0 means one whole-frame tile."""
    assert height > 0 and width > 0, f"empty frame {height}x{width}"
    if tile == 0:
        return [Tile(0, 0, height, width, 0, height, 0, width)]
    th, tw = min(tile, height), min(tile, width)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    rows, cols = _owned_ranges(ys, th, height), _owned_ranges(xs, tw, width)
    return [
        Tile(y, x, th, tw, oy0, oy1, ox0, ox1)
        for y, (oy0, oy1) in zip(ys, rows, strict=True)
        for x, (ox0, ox1) in zip(xs, cols, strict=True)
    ]


def _paste(out: torch.Tensor, tile_out: torch.Tensor, t: Tile) -> None:
    """Copy the part of one tile's output that the tile owns into ``out`` (C, h, w)."""
    oy0, oy1, ox0, ox1 = t.own_y0 - t.y, t.own_y1 - t.y, t.own_x0 - t.x, t.own_x1 - t.x
    out[:, t.own_y0 : t.own_y1, t.own_x0 : t.own_x1] = tile_out[:, oy0:oy1, ox0:ox1]


def _batches(grid: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(grid), batch_size):
        yield grid[i : i + batch_size]


@torch.no_grad()
def denoise_packed(
    model: torch.nn.Module,
    packed: torch.Tensor,
    tile: int,
    overlap: int,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run ``model`` over a packed frame (4, h, w) or frames (N, 4, h, w) tile by tile; float32 on the CPU.

    Only ``batch_size`` tiles are on the device at once, so memory is bounded by the tile size, not the frame.
    ``progress`` is called with the number of tiles finished after each batch.
    """
    assert packed.ndim in (3, 4) and packed.shape[-3] == 4, f"expected (4, h, w) or (N, 4, h, w), got {packed.shape}"
    assert batch_size > 0, f"batch_size must be positive, got {batch_size}"
    if packed.ndim == 3:
        return denoise_packed(model, packed[None], tile, overlap, batch_size, device, precision, progress)[0]
    device = torch.device(device)
    height, width = packed.shape[-2:]
    grid = tile_grid(height, width, tile, overlap)
    out = torch.empty(packed.shape, dtype=torch.float32)
    for n, frame in enumerate(packed):
        for batch in _batches(grid, batch_size):
            x = torch.stack([frame[:, t.y : t.y + t.height, t.x : t.x + t.width] for t in batch])
            x = prepare_input(x.float(), device)  # (b, 4, th, tw); the network pads to its stride itself
            with autocast(device, precision):
                y = model(x)
            y = y.float().cpu()
            for tile_out, t in zip(y, batch, strict=True):
                _paste(out[n], tile_out, t)
            if progress is not None:
                progress(len(batch))
    return out
