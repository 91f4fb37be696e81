"""Training losses on packed, normalised Bayer tensors (N, 4, h, w): L1, Fourier, PSNR and adjacent-pixel.

``combined_loss`` weighs them and returns every component, so each can be logged separately. All losses are
computed in float32 whatever the autocast dtype, and work on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from denoise.dataset.bayer import unpack_bayer


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


def fourier_loss(pred: Tensor, target: Tensor, mode: str = "amp_phase") -> Tensor:
    """L1 between the 2-D spectra of Hann-windowed prediction and target, per channel (all 4 channels).

    mode "amp_phase" sums the mean L1 of the amplitudes and of the wrapped phase differences; "real_imag" the
    mean L1 of the real and of the imaginary parts. Zero iff the windowed inputs are equal.
    """
    _check(pred, target)
    assert mode in ("amp_phase", "real_imag"), f"unknown Fourier loss mode {mode!r}"
    window = hann_window_2d(pred.shape[-2], pred.shape[-1], pred.device)
    fp = torch.fft.fft2(pred.float() * window, norm="ortho")  # (N, 4, h, w) complex
    ft = torch.fft.fft2(target.float() * window, norm="ortho")
    if mode == "real_imag":
        return (fp.real - ft.real).abs().mean() + (fp.imag - ft.imag).abs().mean()
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


def adjacent_loss(pred: Tensor, target: Tensor, directions: Sequence[str] = ("rows", "cols")) -> Tensor:
    """L1 between target and prediction of the differences of neighbouring mosaic pixels, summed over directions.

    The packed tensors are unpacked to the Bayer mosaic first, so neighbours are true sensor neighbours; "rows"
    compares each row with the next one, "cols" each column with the next one.
    """
    _check(pred, target)
    assert directions and set(directions) <= {"rows", "cols"}, f"directions must be rows/cols, got {directions}"
    mp = unpack_bayer(pred.float(), "RGGB")  # (N, 2h, 2w)
    mt = unpack_bayer(target.float(), "RGGB")
    total = pred.new_zeros((), dtype=torch.float32)
    if "rows" in directions:
        total = total + ((mp[:, 1:, :] - mp[:, :-1, :]) - (mt[:, 1:, :] - mt[:, :-1, :])).abs().mean()
    if "cols" in directions:
        total = total + ((mp[:, :, 1:] - mp[:, :, :-1]) - (mt[:, :, 1:] - mt[:, :, :-1])).abs().mean()
    return total


def combined_loss(
    pred: Tensor,
    target: Tensor,
    weights: dict[str, float],
    fourier_mode: str = "amp_phase",
    adjacent_directions: Sequence[str] = ("rows", "cols"),
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the losses named in ``weights`` (l1, fourier, psnr, adjacent); a zero weight skips one.

    Returns the total and the unweighted components that were computed.
    """
    unknown = set(weights) - {"l1", "fourier", "psnr", "adjacent"}
    assert not unknown, f"unknown loss names {sorted(unknown)}"
    pred, target = pred.float(), target.float()
    terms = {
        "l1": lambda: l1_loss(pred, target),
        "fourier": lambda: fourier_loss(pred, target, fourier_mode),
        "psnr": lambda: psnr_loss(pred, target),
        "adjacent": lambda: adjacent_loss(pred, target, adjacent_directions),
    }
    parts = {name: terms[name]() for name, w in weights.items() if w != 0.0}
    assert parts, "every loss weight is zero"
    total = sum(weights[name] * value for name, value in parts.items())
    return total, parts
