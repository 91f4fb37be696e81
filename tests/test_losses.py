"""Each training loss against an independent computation, plus the sRGB renderer's building blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from denoise.raw.bayer import pack_bayer
from denoise.raw.dng import RawFrame
from denoise.raw.render import camera_to_srgb, demosaic_bilinear, render_srgb, srgb_gamma, white_balance_gains
from denoise.train.losses import adjacent_loss, combined_loss, fourier_loss, hann_window_2d, l1_loss, psnr_loss


def _pair(seed: int = 0, shape: tuple[int, ...] = (2, 4, 8, 12)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g)
    return (target + 0.05 * torch.randn(shape, generator=g)).clamp(0, 1), target


def test_l1_matches_numpy() -> None:
    pred, target = _pair()
    expected = np.abs(pred.numpy().astype(np.float64) - target.numpy()).mean()
    assert l1_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_psnr_loss_is_minus_skimage_psnr_per_image() -> None:
    pred, target = _pair(1)
    pairs = zip(pred.numpy(), target.numpy(), strict=True)
    per_image = [peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in pairs]
    expected = np.mean(per_image)
    value = psnr_loss(pred, target).item()
    assert value < 0  # negative by design
    assert value == pytest.approx(-expected, abs=1e-4)


def test_fourier_loss_zero_iff_equal() -> None:
    pred, target = _pair(2)
    assert fourier_loss(target, target.clone()).item() == 0.0
    assert fourier_loss(pred, target).item() > 0.0
    # A change in one border pixel of one channel must still be seen (the taper never reaches zero).
    moved = target.clone()
    moved[1, 3, 0, 0] += 0.1
    assert fourier_loss(moved, target).item() > 0.0


def test_fourier_loss_matches_numpy_fft() -> None:
    pred, target = _pair(3)
    window = hann_window_2d(pred.shape[-2], pred.shape[-1]).numpy().astype(np.float64)
    fp = np.fft.fft2(pred.numpy().astype(np.float64) * window, norm="ortho")
    ft = np.fft.fft2(target.numpy().astype(np.float64) * window, norm="ortho")
    amp_phase = np.abs(np.abs(fp) - np.abs(ft)).mean() + np.abs(np.angle(fp * np.conj(ft))).mean()
    assert fourier_loss(pred, target).item() == pytest.approx(amp_phase, rel=1e-4)


def test_fourier_loss_gradient_is_finite_on_flat_inputs() -> None:
    # Flat images have exactly zero spectra away from DC, where the phase is undefined.
    pred = torch.full((1, 4, 8, 8), 0.5, requires_grad=True)
    loss = fourier_loss(pred, torch.full((1, 4, 8, 8), 0.25))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and loss.item() > 0


def test_adjacent_loss_on_hand_made_mosaic() -> None:
    # Target mosaic: rows 0..3 increase by 1 along rows, constant along columns; prediction is flat.
    target_mosaic = np.repeat(np.arange(4, dtype=np.float32)[:, None], 4, axis=1)  # (4, 4)
    pred_mosaic = np.zeros((4, 4), dtype=np.float32)
    target = torch.from_numpy(pack_bayer(target_mosaic, "RGGB"))[None]  # (1, 4, 2, 2)
    pred = torch.from_numpy(pack_bayer(pred_mosaic, "RGGB"))[None]
    # Row differences: every one of the 3x4 target differences is 1, the prediction's 0 -> mean 1; column
    # differences are 0 in both, so they add nothing.
    assert adjacent_loss(pred, target).item() == pytest.approx(1.0)
    # A constant offset changes no difference.
    assert adjacent_loss(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-6)


def test_adjacent_loss_sees_true_mosaic_neighbours() -> None:
    # One bright mosaic pixel (a B site of RGGB) differs from its 4 neighbours.
    mosaic = np.zeros((6, 6), dtype=np.float32)
    mosaic[1, 1] = 1.0
    pred = torch.from_numpy(pack_bayer(mosaic, "RGGB"))[None]
    target = torch.zeros_like(pred)
    # 2 row differences and 2 column differences touch the pixel: each mean is 2 / (5 * 6), and they add up.
    assert adjacent_loss(pred, target).item() == pytest.approx(4 / 30)
    assert adjacent_loss(pred.transpose(-1, -2), target).item() == pytest.approx(4 / 30)


def test_combined_loss_weights_and_parts() -> None:
    pred, target = _pair(4)
    weights = {"l1": 1.0, "fourier": 0.5, "psnr": 0.01, "adjacent": 0.0}
    total, parts = combined_loss(pred, target, weights)
    assert set(parts) == {"l1", "fourier", "psnr"}  # a zero weight is not computed
    expected = parts["l1"] + 0.5 * parts["fourier"] + 0.01 * parts["psnr"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(AssertionError):
        combined_loss(pred, target, {"l2": 1.0})


def test_losses_backward_under_bf16_autocast_inputs() -> None:
    pred, target = _pair(5)
    pred = pred.to(torch.bfloat16).requires_grad_(True)
    total, _ = combined_loss(pred, target, {"l1": 1.0, "fourier": 1.0, "psnr": 1.0, "adjacent": 1.0})
    total.backward()
    assert total.dtype == torch.float32 and torch.isfinite(pred.grad.float()).all()


def test_render_pieces() -> None:
    assert np.allclose(white_balance_gains(np.array([0.5, 1.0, 0.25])), [2.0, 1.0, 4.0])
    assert srgb_gamma(np.array([0.0, 1.0]))[1] == pytest.approx(1.0)
    # A flat grey mosaic demosaics to flat grey in every channel, for every pattern.
    for pattern in ("RGGB", "BGGR", "GRBG", "GBRG"):
        rgb = demosaic_bilinear(np.full((8, 10), 0.25, dtype=np.float32), pattern)
        assert rgb.shape == (8, 10, 3) and np.allclose(rgb, 0.25)
    # Red only at the R sites of a BGGR mosaic renders red, at full and at half size.
    mosaic = np.full((8, 8), 1024, dtype=np.uint16)
    mosaic[1::2, 1::2] = 16383
    for half, shape in ((False, (8, 8, 3)), (True, (4, 4, 3))):
        like = RawFrame(mosaic, "BGGR", np.full((2, 2), 1024.0), 16383, None, None, None, Path("grey.dng"))
        img = render_srgb(mosaic, like, half=half)
        assert img.shape == shape and img.dtype == np.uint8
        assert (img[..., 0] > 100).all() and (img[..., 1] == 0).all() and (img[..., 2] == 0).all()


def test_colour_matrix_keeps_white_and_undoes_the_camera_mixing() -> None:
    xyz_to_cam = np.array([[1.0, -0.4, -0.07], [-0.02, 1.0, 0.01], [0.34, -0.2, 0.4]])
    m = camera_to_srgb(xyz_to_cam)
    assert np.allclose(m @ np.ones(3), 1.0, atol=1e-5)  # white-balanced white stays white
    assert np.allclose(camera_to_srgb(None), np.eye(3))
    # The camera's response to pure linear sRGB red, mapped back, is pure red again.
    srgb_to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.072175],
                            [0.0193339, 0.119192, 0.9503041]])
    cam = xyz_to_cam @ srgb_to_xyz
    cam_red = (cam / cam.sum(axis=1, keepdims=True)) @ np.array([1.0, 0.0, 0.0])
    assert np.allclose(m @ cam_red, [1.0, 0.0, 0.0], atol=1e-5)
