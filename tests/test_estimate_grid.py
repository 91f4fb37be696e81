"""The table of what the blind noise estimate reads off a frame at each noise level, and the synthetic samples
that report it (``noise_level_report: estimate_grid``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_fixtures import BLACK, WHITE, write_frame
from train_data import make_pairs

from denoise.config import DataConfig
from denoise.dataset import synthetic_pairs
from denoise.dataset.estimate_grid import EstimateGrid, grid_nodes, measure_grid
from denoise.dataset.loader import build_train_dataset, build_train_loader

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("low", "high", "per_decade"), [(1e-4, 1e-2, 2), (1e-6, 1e-3, 2), (3e-5, 7e-3, 3)])
def test_grid_nodes_span_the_range_at_the_asked_density(low, high, per_decade):
    nodes = grid_nodes(low, high, per_decade)
    assert nodes[0] == pytest.approx(np.log10(low)) and nodes[-1] == pytest.approx(np.log10(high))
    assert np.all(np.diff(nodes) <= 1.0 / per_decade + 1e-12) and np.all(np.diff(nodes) > 0)


def _affine_grid() -> tuple[EstimateGrid, callable]:
    """A grid whose excess is affine in (log10 a, log10 b), which bilinear interpolation reproduces exactly."""
    log_a, log_b = grid_nodes(1e-4, 1e-2), grid_nodes(1e-6, 1e-3)

    def excess(la: float, lb: float) -> tuple[float, float]:
        return 1e-5 * (la + 5.0) + 2e-6 * (lb + 7.0), 3e-7 * (la + 5.0) - 1e-7 * (lb + 7.0) + 1e-6

    table = np.array([[excess(la, lb) for lb in log_b] for la in log_a])
    return EstimateGrid(log_a, log_b, table), excess


@pytest.mark.parametrize(("a", "b"), [(1e-4, 1e-6), (3.7e-4, 2.2e-5), (8.1e-3, 4.4e-4), (1e-2, 1e-3)])
def test_reported_level_interpolates_the_excess_between_grid_levels(a, b):
    grid, excess = _affine_grid()
    ea, eb = excess(np.log10(a), np.log10(b))
    assert grid.reported(a, b) == pytest.approx((a + ea, b + eb), rel=1e-9)


def test_reported_level_is_clamped_at_the_grid_edges_and_scales_with_the_gain():
    grid, excess = _affine_grid()
    ea, eb = excess(-4.0, -3.0)  # a and b below and above the grid: the nearest edge's excess
    assert grid.reported(1e-5, 5e-2) == pytest.approx((1e-5 + ea, 5e-2 + eb), rel=1e-9)
    # A crop made g times brighter reads like the frame with noise (a / g, b / g^2), scaled back by g and g^2.
    g, a, b = 1.6, 2e-3, 3e-5
    ea, eb = excess(np.log10(a / g), np.log10(b / g**2))
    assert grid.reported(a, b, gain=g) == pytest.approx((a + g * ea, b + g**2 * eb), rel=1e-9)


def test_reported_level_stays_positive_when_the_estimate_reads_low():
    log_a, log_b = grid_nodes(1e-4, 1e-2), grid_nodes(1e-6, 1e-3)
    grid = EstimateGrid(log_a, log_b, np.full((len(log_a), len(log_b), 2), -1.0))  # reads far below the truth
    a, b = grid.reported(1e-3, 1e-5)
    assert a == pytest.approx(1e-6) and b == pytest.approx(1e-8)


def test_a_fixed_level_makes_a_degenerate_grid_that_still_answers():
    nodes = grid_nodes(2e-3, 2e-3)
    grid = EstimateGrid(nodes, grid_nodes(1e-5, 1e-5), np.full((2, 2, 2), 1e-6))
    assert grid.reported(2e-3, 1e-5) == pytest.approx((2e-3 + 1e-6, 1e-5 + 1e-6))


def _smooth_frame(shape=(4, 128, 128)) -> np.ndarray:
    """A packed frame of gentle ramps (no texture): the estimate should read only the noise put on it."""
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]] / max(shape[1:])
    return np.stack([0.1 + 0.5 * xx + 0.1 * c * yy for c in range(shape[0])]).astype(np.float32)


def test_measure_grid_reads_pure_noise_as_its_level():
    log_a, log_b = np.log10([3e-4, 3e-3]), np.log10([1e-5, 1e-4])
    grid = measure_grid(_smooth_frame(), log_a, log_b, np.random.default_rng(0), window=3.0)
    for i, la in enumerate(log_a):
        for j, lb in enumerate(log_b):
            a, b = 10**la, 10**lb
            ea, eb = grid.excess[i, j]
            assert (a + ea) * 0.35 + b + eb == pytest.approx(a * 0.35 + b, rel=0.06)  # at the frame's mean


def test_measure_grid_sees_white_texture_and_quantisation_as_noise():
    # White "texture" of variance v adds v at every level; rounding to a step q adds q^2 / 12 (the texture is
    # wide enough against q for Sheppard's correction to hold): both are known values, apart from the code.
    rng = np.random.default_rng(1)
    v, white = 4e-5, np.full(4, 100.0)  # 100 DN from black to white: q = 0.01, q^2 / 12 = 8.3e-6
    textured = _smooth_frame() + rng.normal(0.0, v**0.5, (4, 128, 128)).astype(np.float32)
    log_a, log_b = np.log10([1e-5, 3e-5]), np.log10([1e-6, 3e-6])
    for steps, expected in ((None, v), (white, v + 0.01**2 / 12.0)):
        grid = measure_grid(textured, log_a, log_b, rng, window=3.0, steps=steps)
        for ea, eb in grid.excess.reshape(-1, 2):
            assert ea * 0.35 + eb == pytest.approx(expected, rel=0.1)


def test_estimate_grid_report_carries_the_estimates_reading_with_the_same_noise(tmp_path):
    # Frames whose clean values carry white "texture" of variance 4e-5: at every level the blind estimate of the
    # whole noisy frame reads that much more than the drawn level, and the samples report it; crops and noise
    # are those of the drawn-level report.
    rng = np.random.default_rng(3)
    texture = 0.3 + rng.normal(0.0, 4e-5**0.5, (128, 192))
    clean = np.rint(BLACK + texture * (WHITE - BLACK)).astype(np.uint16)
    write_frame(tmp_path / "data" / "ground truth" / "0_gt.dng", clean)
    base = dict(root=str(tmp_path / "data"), noisy_glob="", val_count=0, num_workers=0, patch_size=4,
                batch_size=128, samples_per_epoch=128, synthetic_fraction=1.0,
                noise_a_range=(1e-4, 1e-3), noise_b_range=(1e-6, 1e-4))  # fmt: skip
    drawn = next(iter(build_train_loader(DataConfig(**base), seed=0, noise_levels=True)))
    cfg = DataConfig(**base, noise_level_report="estimate_grid", noise_estimate_window=3.0)
    reported = next(iter(build_train_loader(cfg, seed=0, noise_levels=True)))
    assert torch.equal(drawn["noisy"], reported["noisy"]) and torch.equal(drawn["clean"], reported["clean"])
    extra = ((reported["a"] - drawn["a"]) * 0.3 + reported["b"] - drawn["b"]).double()
    assert extra.median().item() == pytest.approx(4e-5, rel=0.15)
    faint = (drawn["a"] * 0.3 + drawn["b"]) < 4e-4  # where the texture is at least a tenth of the variance
    assert faint.sum() > 20 and torch.allclose(extra[faint], torch.full_like(extra[faint], 4e-5), rtol=0.35)
    # and each is the frame's table read at that sample's drawn level
    (grid,) = build_train_dataset(cfg, seed=0, noise_levels=True).grids
    table = torch.tensor([grid.reported(a, b) for a, b in zip(drawn["a"].tolist(), drawn["b"].tolist(), strict=True)])
    assert torch.allclose(torch.stack([reported["a"], reported["b"]], 1), table.float(), rtol=1e-5)


def test_estimate_grid_covers_the_levels_that_brightness_maps_to(tmp_path):
    clean = np.full((64, 96), (BLACK + WHITE) // 3, dtype=np.uint16)
    write_frame(tmp_path / "data" / "ground truth" / "0_gt.dng", clean)
    cfg = DataConfig(root=str(tmp_path / "data"), noisy_glob="", val_count=0, num_workers=0, patch_size=4,
                     batch_size=4, samples_per_epoch=4, synthetic_fraction=1.0, brightness_range=(0.5, 2.0),
                     noise_level_report="estimate_grid")  # fmt: skip
    (grid,) = build_train_dataset(cfg, seed=0, noise_levels=True).grids
    # gain g is looked up at (a / g, b / g^2): from the lowest level at the brightest to the highest at the dimmest
    assert (grid.log_a[0], grid.log_a[-1]) == pytest.approx(np.log10([1e-4 / 2.0, 1e-2 / 0.5]))
    assert (grid.log_b[0], grid.log_b[-1]) == pytest.approx(np.log10([1e-6 / 2.0**2, 1e-3 / 0.5**2]))


def test_a_warm_start_reads_levels_and_grids_from_the_cache(tmp_path, monkeypatch):
    # The second dataset over the same files estimates nothing and gets exactly the first one's levels and grids;
    # another window is other settings and is computed afresh.
    data = make_pairs(tmp_path / "data", count=2, size=32)
    cfg = DataConfig(root=str(data), val_count=0, num_workers=0, patch_size=8, batch_size=2, samples_per_epoch=4,
                     synthetic_fraction=0.5, noise_level_report="estimate_grid")  # fmt: skip
    cold = build_train_dataset(cfg, seed=0, noise_levels=True)
    calls = []
    real = synthetic_pairs.estimate_noise
    monkeypatch.setattr(synthetic_pairs, "estimate_noise", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(synthetic_pairs, "measure_grid", lambda *a, **k: calls.append(1) or measure_grid(*a, **k))
    warm = build_train_dataset(cfg, seed=0, noise_levels=True)
    assert calls == [] and warm.frame_noise == cold.frame_noise
    for a, b in zip(warm.grids, cold.grids, strict=True):
        assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("log_a", "log_b", "excess"))
    build_train_dataset(DataConfig(**{**cfg.__dict__, "noise_estimate_window": 1.0}), seed=0, noise_levels=True)
    assert len(calls) == 4  # two levels and two grids
