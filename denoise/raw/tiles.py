"""Tile geometry shared by training crops and tiled inference: where overlapping tiles start along one axis."""

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
