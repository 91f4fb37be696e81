"""The texture check of a blind noise estimate: did the level read off a frame count its fine texture as noise?

Torch and the standard library only, so a submission's ``network.py`` carries it with the estimate.
"""

from __future__ import annotations

import math
from typing import Any

from denoise.raw.array_ops import to_float64
from denoise.raw.noise_estimation import NoiseParams

# The std factor for a level with little read noise whose residual does not follow the image: such a level is
# still often read partly off fine texture, and no threshold on the residual tells those frames from the others.
# Chosen on the demo's validation set, where it lifted the two frames that fell below their input at the full
# level above it and cost any frame at most half a point (docs/experiments.md).
HEDGE = 0.85

# How far below the threshold the evidence starts to count: from ``threshold - RAMP`` up to ``threshold`` the factor
# falls from HEDGE to the check's ``scale`` along a geometric line. A hard threshold made one frame's score jump by
# 12-19 points between epochs as its correlation crossed 0.3 and back (docs/experiments.md); graded, a small move of
# the correlation moves the factor, and the score, a little. Chosen on the validation split: 0.03 costs the final
# models nothing there, 0.05 costs 0.04-0.13 of the mean gain.
RAMP = 0.03


def removed_structure(noisy: Any, denoised: Any) -> float:
    """How closely what a denoiser removed follows the structure of what it kept, for packed (4, h, w) frames.

    The mean over the planes of |corr(noisy - denoised, Laplacian of denoised)|. A residual of noise alone is
    unrelated to the image (near 0 when the level was right); when the level was read too high off fine texture,
    the network removes texture too, and the residual follows the image's edges. On the demo's validation set the
    first stays below 0.25 on every frame read right and exceeds 0.35 on each textured frame read 1.5-4x too high.
    """
    n, d = to_float64(noisy), to_float64(denoised)
    assert n.shape == d.shape and n.ndim == 3 and min(n.shape[1:]) >= 3, f"bad shapes {n.shape}, {d.shape}"
    residual = (n - d)[:, 1:-1, 1:-1]
    core = d[:, 1:-1, 1:-1]
    laplacian = 4 * core - d[:, :-2, 1:-1] - d[:, 2:, 1:-1] - d[:, 1:-1, :-2] - d[:, 1:-1, 2:]
    values = []
    for r, lap in zip(residual, laplacian, strict=True):
        r, lap = r - r.mean(), lap - lap.mean()
        norm = math.sqrt(float((r * r).sum()) * float((lap * lap).sum()))
        values.append(abs(float((r * lap).sum()) / norm) if norm > 0 else 0.0)
    return sum(values) / len(values)


def read_noise_share(params: NoiseParams, level: float) -> float:
    """The read-noise term's share ``b / (a * level + b)`` of the noise variance at the normalised ``level``.

    Every sensor has read noise, a few percent of the total at a frame's mean level even at its lowest ISO. A level
    read off fine texture, whose variance grows with the square of the brightness, is fitted by a line through the
    origin or below it, so ``b`` comes out near 0: on the demo's validation set every frame whose std was read 1.4x
    or more too high had a share under 0.09, and every frame at the two highest levels read within 1.2x over 0.11.
    """
    total = params.a * max(level, 0.0) + params.b
    return params.b / total if total > 0 else 1.0


def graded_factor(structure: float, threshold: float, scale: float) -> float:
    """The std factor for a frame under the read-noise gate whose ``removed_structure`` is ``structure``: HEDGE up to
    ``threshold - RAMP``, ``scale`` from ``threshold`` on, and between them ``HEDGE * (scale / HEDGE) ** t`` with ``t``
    the position of ``structure`` in that interval (0 to 1), so the factor never jumps."""
    t = min(max((structure - (threshold - RAMP)) / RAMP, 0.0), 1.0)
    return HEDGE * (scale / HEDGE) ** t


def texture_std_scale(noisy: Any, denoised: Any, params: NoiseParams, threshold: float, read_share: float,
                      scale: float) -> float:
    """The factor for the blind level ``params``'s noise std at which the packed (4, h, w) ``noisy`` frame is to be
    denoised, judged from its ``denoised`` result at that level: 1 keeps the result.

    When the estimate left little room for read noise (``read_noise_share`` at the frame's mean under
    ``read_share``), part of what it read may be texture: the more what was removed follows the image
    (``removed_structure``), the lower the factor, from ``HEDGE`` to ``scale`` as the correlation rises to
    ``threshold`` (``graded_factor``). ``threshold`` 0 turns the check off (factor 1).
    """
    if threshold <= 0 or read_noise_share(params, float(noisy.mean())) >= read_share:
        return 1.0
    return graded_factor(removed_structure(noisy, denoised), threshold, scale)
