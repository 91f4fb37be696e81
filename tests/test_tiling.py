"""Tile grid ownership, tile starts, and tiled inference equal to whole-frame inference for local models."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from denoise.inference.tiling import denoise_packed, tile_grid
from denoise.model import NAFNet
from denoise.raw.tiles import centre_box, tile_starts


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(37, 53, 16, 4), (16, 16, 16, 0), (10, 70, 32, 8), (64, 64, 24, 23), (5, 9, 0, 0)],
)
def test_grid_owns_every_pixel_once(height: int, width: int, tile: int, overlap: int) -> None:
    owner = torch.zeros(height, width, dtype=torch.int64)
    for t in tile_grid(height, width, tile, overlap):
        assert t.y >= 0 and t.y + t.height <= height and t.x >= 0 and t.x + t.width <= width
        assert t.y <= t.own_y0 < t.own_y1 <= t.y + t.height and t.x <= t.own_x0 < t.own_x1 <= t.x + t.width
        owner[t.own_y0 : t.own_y1, t.own_x0 : t.own_x1] += 1
    assert (owner == 1).all()


def test_owned_pixels_keep_half_the_overlap_from_inner_edges() -> None:
    height, width, tile, overlap = 100, 77, 32, 10
    for t in tile_grid(height, width, tile, overlap):
        if t.y > 0:
            assert t.own_y0 - t.y >= overlap // 2
        if t.y + t.height < height:
            assert t.y + t.height - t.own_y1 >= overlap // 2
        if t.x > 0:
            assert t.own_x0 - t.x >= overlap // 2
        if t.x + t.width < width:
            assert t.x + t.width - t.own_x1 >= overlap // 2


def test_tile_starts_cover_with_overlap() -> None:
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in itertools.pairwise(starts))


def _local_model(kernel: int, layers: int) -> nn.Module:
    torch.manual_seed(0)
    convs = [nn.Conv2d(4, 4, kernel, padding=kernel // 2) for _ in range(layers)]
    return nn.Sequential(*convs).eval()


@pytest.mark.parametrize(("kernel", "layers", "overlap"), [(1, 1, 0), (3, 1, 2), (3, 2, 4), (5, 1, 5)])
def test_tiled_equals_whole_frame_for_local_models(kernel: int, layers: int, overlap: int) -> None:
    # Receptive radius (kernel // 2) * layers fits in overlap // 2, so every kept pixel saw its full context.
    model = _local_model(kernel, layers)
    packed = torch.rand(4, 45, 38)
    whole = denoise_packed(model, packed, tile=0, overlap=0)
    tiled = denoise_packed(model, packed, tile=16, overlap=overlap, batch_size=3)
    assert torch.allclose(tiled, whole, atol=1e-6, rtol=0)


def test_too_small_overlap_shows_seams() -> None:
    model = _local_model(3, 2)
    packed = torch.rand(4, 40, 40)
    whole = denoise_packed(model, packed, tile=0, overlap=0)
    tiled = denoise_packed(model, packed, tile=16, overlap=0)
    assert (tiled - whole).abs().max() > 1e-3


def test_batched_frames_and_progress() -> None:
    model = _local_model(3, 1)
    packed = torch.rand(2, 4, 30, 30)
    done = []
    out = denoise_packed(model, packed, tile=12, overlap=4, batch_size=4, progress=done.append)
    grid = tile_grid(30, 30, 12, 4)
    assert sum(done) == 2 * len(grid) and max(done) <= 4
    for n in range(2):
        assert torch.allclose(out[n], denoise_packed(model, packed[n], tile=0, overlap=0), atol=1e-6, rtol=0)


def test_frames_of_any_size_use_the_networks_own_padding() -> None:
    # Tiling hands the network its tile as it is; NAFNet pads to its stride and crops back itself.
    torch.manual_seed(0)
    net = NAFNet(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)).eval()
    packed = torch.rand(4, 13, 7)
    out = denoise_packed(net, packed, tile=0, overlap=0)
    with torch.no_grad():
        direct = net(packed[None])[0]
    assert out.shape == packed.shape and torch.allclose(out, direct, atol=1e-6, rtol=0)


def test_bf16_close_to_fp32() -> None:
    model = _local_model(3, 1)
    packed = torch.rand(4, 24, 24)
    fp32 = denoise_packed(model, packed, tile=0, overlap=0)
    bf16 = denoise_packed(model, packed, tile=0, overlap=0, precision="bf16")
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.05


@pytest.mark.parametrize(
    ("height", "width", "box"), [(10, 14, (4, 6)), (11, 13, (4, 5)), (8, 8, (20, 3)), (9, 7, (9, 7))]
)
def test_centre_box_is_centred_at_even_offsets(height: int, width: int, box: tuple[int, int]) -> None:
    y0, y1, x0, x1 = centre_box(height, width, *box)
    assert (y1 - y0, x1 - x0) == (min(box[0], height), min(box[1], width))
    assert y0 % 2 == 0 and x0 % 2 == 0 and y1 <= height and x1 <= width
    # Centred but for the rounding down to an even origin: the far margin exceeds the near one by 0 to 3.
    assert 0 <= (height - y1) - y0 <= 3 and 0 <= (width - x1) - x0 <= 3


def test_centre_box_known_values() -> None:
    assert centre_box(10, 14, 4, 6) == (2, 6, 4, 10)  # margins 3 and 4 rounded down to even origins
    assert centre_box(100, 100, 200, 50) == (0, 100, 24, 74)
