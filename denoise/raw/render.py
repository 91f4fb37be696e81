"""A simple camera colour pipeline, both ways.

Forward, for looking at mosaics: black/white levels, white balance from the file, bilinear (or half-size)
demosaic, the camera colour matrix when known, sRGB gamma. No tone curve, no denoising: it is for side-by-side
pictures (TensorBoard, comparison sheets), where rendering every image the same way is what matters.

Backwards (Brooks et al. 2019, "unprocessing"), for making raw frames out of sRGB photos and scenes: inverse tone
curve, inverse gamma, an sRGB -> camera matrix, inverse white balance and exposure, then one colour per pixel.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve

from denoise.raw.bayer import channel_offsets, even_shape, normalize, pack_bayer
from denoise.raw.dng import RawFrame
from denoise.raw.noise import log_uniform

# Linear sRGB (D65) -> CIE XYZ.
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)

# Normalised-convolution kernel: each missing sample becomes the weighted mean of its same-colour neighbours.
_BILINEAR = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)


def white_balance_gains(as_shot_neutral: np.ndarray | None) -> np.ndarray:
    """(3,) R, G, B gains that map the camera's neutral to grey, green fixed at 1; ones when unknown."""
    if as_shot_neutral is None:
        return np.ones(3, dtype=np.float32)
    neutral = np.asarray(as_shot_neutral, dtype=np.float32).reshape(3)
    assert (neutral > 0).all(), f"as-shot neutral must be positive, got {neutral}"
    return (neutral[1] / neutral).astype(np.float32)


def camera_to_srgb(color_matrix: np.ndarray | None) -> np.ndarray:
    """(3, 3) matrix from white-balanced camera RGB to linear sRGB, from the DNG ColorMatrix (XYZ -> camera).

    Rows of sRGB -> camera are scaled to sum to one so that white stays white; identity when the matrix is unknown.
    """
    if color_matrix is None:
        return np.eye(3, dtype=np.float32)
    cam_from_srgb = np.asarray(color_matrix, dtype=np.float64).reshape(3, 3) @ SRGB_TO_XYZ
    cam_from_srgb /= cam_from_srgb.sum(axis=1, keepdims=True)
    return np.linalg.inv(cam_from_srgb).astype(np.float32)


def demosaic_bilinear(x: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W) normalised mosaic with CFA ``pattern`` -> (H, W, 3) RGB by per-colour normalised convolution."""
    assert x.ndim == 2, f"expected an (H, W) mosaic, got {x.shape}"
    rgb = np.empty((*x.shape, 3), dtype=np.float32)
    r, gr, gb, b = channel_offsets(pattern)
    for colour, offsets in enumerate(((r,), (gr, gb), (b,))):
        mask = np.zeros(x.shape, dtype=np.float32)
        for dy, dx in offsets:
            mask[dy::2, dx::2] = 1.0
        weight = convolve(mask, _BILINEAR, mode="mirror")
        rgb[..., colour] = convolve(x * mask, _BILINEAR, mode="mirror") / weight
    return rgb


def demosaic_half(x: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W) normalised mosaic -> (H/2, W/2, 3) RGB, one pixel per 2x2 cell with the two greens averaged."""
    assert x.ndim == 2 and x.shape[0] % 2 == 0 and x.shape[1] % 2 == 0, f"expected even (H, W), got {x.shape}"
    packed = pack_bayer(x, pattern)  # (4, H/2, W/2) R, Gr, Gb, B
    return np.stack([packed[0], 0.5 * (packed[1] + packed[2]), packed[3]], axis=-1)


def srgb_gamma(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve on linear values in [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055)


def _white_balanced(mosaic: np.ndarray, like: RawFrame, half: bool) -> np.ndarray:
    """The even region of a uint16 (H, W) mosaic, normalised, demosaiced and white-balanced. (h, w, 3) float32."""
    assert mosaic.ndim == 2, f"expected an (H, W) mosaic, got {mosaic.shape}"
    height, width = even_shape(*mosaic.shape)
    x = normalize(np.asarray(mosaic)[:height, :width], like.black_level, like.white_level)  # (H, W) float32
    rgb = demosaic_half(x, like.pattern) if half else demosaic_bilinear(x, like.pattern)
    return rgb * white_balance_gains(like.as_shot_neutral)


def render_srgb(mosaic: np.ndarray, like: RawFrame, half: bool = False, exposure: float = 1.0) -> np.ndarray:
    """uint16 (H, W) mosaic -> uint8 sRGB picture, (H, W, 3) or (H/2, W/2, 3) with ``half``.

    The mosaic (a crop, say) is read with ``like``'s CFA pattern, levels, white balance and colour matrix; odd
    dimensions are cropped to even ones first. ``exposure`` multiplies the white-balanced linear values: use one
    value for every picture that is to be compared. Without a colour matrix the colours are the camera's own,
    usually duller.
    """
    rgb = _white_balanced(mosaic, like, half) * exposure
    rgb = rgb @ camera_to_srgb(like.color_matrix).T  # (..., 3) camera -> linear sRGB
    return np.round(srgb_gamma(rgb) * 255.0).astype(np.uint8)


def auto_exposure(mosaic: np.ndarray, like: RawFrame, percentile: float = 99.0, max_gain: float = 16.0) -> float:
    """An ``exposure`` that brings the white-balanced ``percentile`` of a (reference) mosaic up to white.

    Dark phone frames become visible; the gain never darkens and is capped at ``max_gain``.
    """
    level = float(np.percentile(_white_balanced(mosaic, like, half=True), percentile))
    return float(np.clip(1.0 / max(level, 1e-6), 1.0, max_gain))


def inverse_tone_curve(srgb: np.ndarray) -> np.ndarray:
    """Undo the smoothstep tone curve 3x^2 - 2x^3."""
    y = np.clip(srgb, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def inverse_gamma(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values to linear light."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def random_rgb_to_camera(rng: np.random.Generator) -> np.ndarray:
    """A plausible linear sRGB -> camera matrix: overlapping channel responses, rows summing to 1. (3, 3)."""
    matrix = np.eye(3) + rng.uniform(0.05, 0.3, size=(3, 3)) * (1 - np.eye(3))
    return matrix / matrix.sum(axis=1, keepdims=True)  # rows summing to 1 keep white neutral before WB


def apply_matrix(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Colour matrix applied to every pixel. (H, W, 3) -> (H, W, 3)."""
    assert image.shape[-1] == 3 and matrix.shape == (3, 3), f"bad shapes {image.shape}, {matrix.shape}"
    return image @ matrix.T


def mosaic_rgb(image: np.ndarray, pattern: str) -> np.ndarray:
    """Keep one colour per pixel following ``pattern``. (H, W, 3) -> (H, W)."""
    assert image.ndim == 3 and image.shape[-1] == 3, f"expected (H, W, 3), got {image.shape}"
    out = np.empty(image.shape[:2], dtype=image.dtype)
    for (r, c), colour in zip(channel_offsets(pattern), (0, 1, 1, 2), strict=True):
        out[r::2, c::2] = image[r::2, c::2, colour]
    return out


def unprocess(srgb: np.ndarray, rgb_to_cam: np.ndarray, wb_gains: np.ndarray, exposure: float) -> np.ndarray:
    """sRGB photo -> linear camera RGB before white balance, in [0, 1]. (H, W, 3)."""
    linear = inverse_gamma(inverse_tone_curve(srgb))
    camera = apply_matrix(linear, rgb_to_cam)
    return np.clip(camera * exposure / wb_gains, 0.0, 1.0)


def random_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(sRGB -> camera matrix, white-balance gains (R, G, B), exposure), drawn as for every demo frame."""
    gains = np.array([rng.uniform(1.9, 2.4), 1.0, rng.uniform(1.5, 1.9)])
    return random_rgb_to_camera(rng), gains, log_uniform(rng, 0.35, 1.0)


def xyz_to_camera(rgb_to_cam: np.ndarray, wb_gains: np.ndarray) -> np.ndarray:
    """The DNG ColorMatrix (XYZ -> camera, white-balanced to unit gains) of an ``unprocess`` camera. (3, 3)."""
    return np.diag(1.0 / wb_gains) @ rgb_to_cam @ np.linalg.inv(SRGB_TO_XYZ)
