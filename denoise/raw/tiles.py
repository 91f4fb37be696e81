"""Tile geometry: where overlapping tiles start along one axis (training crops, tiled inference), and centred boxes."""

from __future__ import annotations


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` overlapping by at least ``overlap`` that cover [0, length) exactly.

    The last tile is aligned with the end; a length not above ``tile`` gives one tile at 0 (it may be shorter).
    """
    assert length > 0 and tile > 0, f"length and tile must be positive, got {length}, {tile}"
    assert 0 <= overlap < tile, f"overlap must be in [0, tile), got {overlap} for tile {tile}"
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def centre_box(height: int, width: int, box_height: int, box_width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a box of at most the given size about a mosaic's centre, at even offsets.

    Even offsets keep the CFA phase, so a crop of a mosaic has the pattern of the whole.
    """
    h, w = min(box_height, height), min(box_width, width)
    y0, x0 = (height - h) // 4 * 2, (width - w) // 4 * 2
    return y0, y0 + h, x0, x0 + w
