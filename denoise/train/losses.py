"""Training losses on packed, normalised Bayer tensors (N, 4, h, w): L1, Fourier, PSNR and adjacent-pixel.

``combined_loss`` weighs them and returns every component, so each can be logged separately. All losses are
computed in float32 whatever the autocast dtype, and work on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from denoise.raw.bayer import unpack_bayer


def _check(pred: Tensor, target: Tensor) -> None:
    assert pred.shape == target.shape, f"shape mismatch: prediction {tuple(pred.shape)}, target {tuple(target.shape)}"
    assert pred.ndim == 4 and pred.shape[1] == 4, f"expected (N, 4, h, w), got {tuple(pred.shape)}"


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over every element."""
    _check(pred, target)
    return (pred - target).abs().mean()


def hann_window_2d(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Separable (height, width) Hann taper, strictly positive: the border pixels still count, only less.

    It damps the borders so the FFT sees no wrap-around edge; the zero end points of a textbook Hann window are
    dropped so that no pixel is ignored and the Fourier loss is zero only for equal inputs.
    """
    wy = torch.hann_window(height + 2, periodic=False, dtype=torch.float32, device=device)[1:-1]
    wx = torch.hann_window(width + 2, periodic=False, dtype=torch.float32, device=device)[1:-1]
    return wy[:, None] * wx[None, :]


def fourier_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between the 2-D spectra of Hann-windowed prediction and target, per channel (all 4 channels).

    The sum of the mean L1 of the amplitudes and of the wrapped phase differences; zero iff the windowed inputs
    are equal.
    """
    _check(pred, target)
    window = hann_window_2d(pred.shape[-2], pred.shape[-1], pred.device)
    fp = torch.fft.fft2(pred.float() * window, norm="ortho")  # (N, 4, h, w) complex
    ft = torch.fft.fft2(target.float() * window, norm="ortho")
    amplitude = (fp.abs() - ft.abs()).abs().mean()
    # The phase of fp * conj(ft) is the phase difference wrapped to (-pi, pi], so 2*pi apart counts as equal.
    ratio = fp * ft.conj()
    # Where either spectrum vanishes the phase is undefined; count it as zero and keep atan2's gradient finite.
    defined = ratio.abs() > 1e-12
    re = torch.where(defined, ratio.real, torch.ones_like(ratio.real))
    im = torch.where(defined, ratio.imag, torch.zeros_like(ratio.imag))
    phase = torch.atan2(im, re).abs().mean()
    return amplitude + phase


def psnr_loss(pred: Tensor, target: Tensor, data_range: float = 1.0, eps: float = 1e-10) -> Tensor:
    """Minus the per-image PSNR in dB, averaged over the batch: negative by design, lower is better."""
    _check(pred, target)
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)  # (N,)
    return -(10.0 * torch.log10(data_range**2 / (mse + eps))).mean()


def adjacent_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between target and prediction of the differences of neighbouring mosaic pixels, rows plus columns.

    The packed tensors are unpacked to the Bayer mosaic first, so neighbours are true sensor neighbours: each row
    is compared with the next one, and each column with the next one.
    """
    _check(pred, target)
    mp = unpack_bayer(pred.float(), "RGGB")  # (N, 2h, 2w)
    mt = unpack_bayer(target.float(), "RGGB")
    rows = ((mp[:, 1:, :] - mp[:, :-1, :]) - (mt[:, 1:, :] - mt[:, :-1, :])).abs().mean()
    cols = ((mp[:, :, 1:] - mp[:, :, :-1]) - (mt[:, :, 1:] - mt[:, :, :-1])).abs().mean()
    return rows + cols


def combined_loss(pred: Tensor, target: Tensor, weights: dict[str, float]) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the losses named in ``weights`` (l1, fourier, psnr, adjacent); a zero weight skips one.

    Returns the total and the unweighted components that were computed.
    """
    unknown = set(weights) - {"l1", "fourier", "psnr", "adjacent"}
    assert not unknown, f"unknown loss names {sorted(unknown)}"
    pred, target = pred.float(), target.float()
    terms = {
        "l1": lambda: l1_loss(pred, target),
        "fourier": lambda: fourier_loss(pred, target),
        "psnr": lambda: psnr_loss(pred, target),
        "adjacent": lambda: adjacent_loss(pred, target),
    }
    parts = {name: terms[name]() for name, w in weights.items() if w != 0.0}
    assert parts, "every loss weight is zero"
    total = sum(weights[name] * value for name, value in parts.items())
    return total, parts
