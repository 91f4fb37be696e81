"""What the blind noise estimate reads off one frame at each noise level: a table for synthetic samples' reports.

A noise-aware model is fed, at test time, the level ``estimate_noise`` reads off the whole noisy frame. That
reading carries the frame's fine texture, and how much of it depends on the noise level itself: the estimate's
texture window is measured in units of the noise, so fainter noise lets less texture through but what passes
weighs more, so the clean frame's own reading added to the drawn level misses the interplay (an option that did
so was removed; docs/experiments.md). ``EstimateGrid`` measures it instead: the whole frame is given noise at
a grid of levels, the estimate is run on each, and a synthetic sample reports its drawn level plus the estimate's
excess over it, interpolated between grid levels (``noise_level_report: estimate_grid``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denoise.raw.noise import NO_STRUCTURE, Structure, add_noise, add_structure, quantize
from denoise.raw.noise_estimation import estimate_noise

POINTS_PER_DECADE = 2  # grid density in log10 of a and of b: the excess varies smoothly at this scale


def grid_nodes(low: float, high: float, per_decade: int = POINTS_PER_DECADE) -> np.ndarray:
    """Log10 grid nodes evenly spaced from ``low`` to ``high``, at least ``per_decade`` per decade (at least 2)."""
    assert 0 < low <= high, f"grid range needs 0 < low <= high, got ({low}, {high})"
    count = max(2, int(np.ceil(np.log10(high / low) * per_decade)) + 1)
    return np.linspace(np.log10(low), np.log10(high), count)


def _bracket(nodes: np.ndarray, value: float) -> tuple[int, float]:
    """Index ``i`` and weight ``t`` with value = (1 - t) nodes[i] + t nodes[i + 1], clamped to the grid."""
    value = float(np.clip(value, nodes[0], nodes[-1]))
    i = int(np.clip(np.searchsorted(nodes, value, side="right") - 1, 0, len(nodes) - 2))
    width = nodes[i + 1] - nodes[i]
    return i, (value - nodes[i]) / width if width > 0 else 0.0  # a fixed level: both nodes are the same


@dataclass(frozen=True)
class EstimateGrid:
    """The estimate's excess over the true level, ``(a_est - a, b_est - b)``, at grid levels of one frame.

    ``log_a`` (n_a,) and ``log_b`` (n_b,) are log10 of the grid's levels, ``excess`` (n_a, n_b, 2) float64.
    """

    log_a: np.ndarray
    log_b: np.ndarray
    excess: np.ndarray

    def __post_init__(self) -> None:
        assert self.log_a.ndim == 1 and len(self.log_a) >= 2, "need at least two grid levels of a"
        assert self.log_b.ndim == 1 and len(self.log_b) >= 2, "need at least two grid levels of b"
        assert self.excess.shape == (len(self.log_a), len(self.log_b), 2), (
            f"excess must be ({len(self.log_a)}, {len(self.log_b)}, 2), got {self.excess.shape}"
        )

    def reported(self, a: float, b: float, gain: float = 1.0) -> tuple[float, float]:
        """(a, b) the estimate would read at the drawn level, for a frame scaled by ``gain`` before the noise.

        The frame ``g * x`` with noise ``a, b`` is ``g`` times the frame ``x`` with noise ``a / g, b / g^2``, so
        its excess is the grid's at that level, times ``g`` for ``a`` and ``g^2`` for ``b``. Bilinear in log10 of
        the level, clamped at the grid's edges; the reported values are floored at a thousandth of the drawn.
        """
        assert a > 0 and b > 0 and gain > 0, f"level and gain must be positive, got a={a}, b={b}, gain={gain}"
        i, s = _bracket(self.log_a, np.log10(a / gain))
        j, t = _bracket(self.log_b, np.log10(b / gain**2))
        e = self.excess
        ea, eb = (1 - s) * (1 - t) * e[i, j] + s * (1 - t) * e[i + 1, j] + (1 - s) * t * e[i, j + 1] + s * t * e[
            i + 1, j + 1
        ]
        return max(a + gain * float(ea), 1e-3 * a), max(b + gain**2 * float(eb), 1e-3 * b)


def measure_grid(
    clean: np.ndarray,
    log_a: np.ndarray,
    log_b: np.ndarray,
    rng: np.random.Generator,
    window: float,
    model: str = "gaussian",
    steps: np.ndarray | None = None,
    structure: Structure = NO_STRUCTURE,
) -> EstimateGrid:
    """Run the blind estimate on ``clean`` (4, h, w) normalised, with fresh noise at every grid level.

    ``steps`` (4,) is each packed channel's white - black in DN: the noisy frame is rounded and clipped as
    its DNG would store it, as the synthetic crops are; ``structure``, a camera's row and fixed-pattern noise, is
    added as to them. A level the estimate cannot read (a frame almost all clipped, say) counts as read exactly
    (excess 0).
    """
    assert clean.ndim == 3 and clean.shape[0] == 4, f"expected a packed (4, h, w) frame, got {clean.shape}"
    excess = np.zeros((len(log_a), len(log_b), 2))
    for i, la in enumerate(log_a):
        for j, lb in enumerate(log_b):
            a, b = 10.0**la, 10.0**lb
            noisy = add_structure(add_noise(clean, a, b, rng, model), b, structure, rng)
            if steps is not None:
                noisy = quantize(noisy, steps)
            try:
                params = estimate_noise(noisy, window=window)
            except ValueError:
                continue
            excess[i, j] = params.a - a, params.b - b
    return EstimateGrid(np.asarray(log_a, dtype=np.float64), np.asarray(log_b, dtype=np.float64), excess)
