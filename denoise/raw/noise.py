"""Noise models on normalised raw values: heteroscedastic Gaussian and Poisson-Gaussian, and DNG quantisation.

Both models have variance ``a*x + b`` at clean intensity ``x`` (normalised so black = 0, white = 1): ``a`` is
the shot-noise gain (K) and ``b`` the read-noise variance (sigma^2). The Gaussian form is what the ZTE
organisers used; the Poisson form draws whole electrons, which matters in the darkest regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from denoise.raw.noise_estimation import NoiseParams, fit_line

# Thirds of the competition's log-range of a, [1e-4, 1e-2]: the shot-noise gain sets how noisy a frame looks.
LEVEL_EDGES = (10**-3.333, 10**-2.667)
LEVEL_NAMES = ("low", "mid", "high")


def noise_level(a: float) -> str:
    """low / mid / high by the shot-noise gain ``a``."""
    return LEVEL_NAMES[int(np.searchsorted(LEVEL_EDGES, a))]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A value whose logarithm is uniform on [log low, log high]."""
    assert 0 < low <= high, f"log-uniform range needs 0 < low <= high, got ({low}, {high})"
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def noise_variance(clean: np.ndarray, a: float, b: float) -> np.ndarray:
    """Variance ``a*x + b`` of the noise at each clean value (negative values count as 0)."""
    return a * np.clip(clean, 0.0, None) + b


def add_gaussian_noise(clean: np.ndarray, a: float, b: float, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic Gaussian noise: ``clean + N(0, a*x + b)``, float32, same shape."""
    std = np.sqrt(noise_variance(clean.astype(np.float64), a, b))
    return (clean + std * rng.standard_normal(clean.shape)).astype(np.float32)


def add_poisson_gaussian_noise(clean: np.ndarray, a: float, b: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise: ``a * Poisson(x / a) + N(0, b)``, float32, same shape.

    ``1/a`` is the number of electrons at white, so the shot noise is truly Poisson at the sensor's scale.
    """
    assert a > 0, f"shot-noise gain must be positive, got {a}"
    electrons = rng.poisson(np.clip(clean.astype(np.float64), 0.0, None) / a)
    return (a * electrons + np.sqrt(b) * rng.standard_normal(clean.shape)).astype(np.float32)


def add_noise(clean: np.ndarray, a: float, b: float, rng: np.random.Generator, model: str = "gaussian") -> np.ndarray:
    """Noise of ``model`` ("gaussian" or "poisson_gaussian") with variance ``a*x + b``."""
    if model == "gaussian":
        return add_gaussian_noise(clean, a, b, rng)
    if model == "poisson_gaussian":
        return add_poisson_gaussian_noise(clean, a, b, rng)
    raise ValueError(f"unknown noise model {model!r} (expected 'gaussian' or 'poisson_gaussian')")


class Structure(NamedTuple):
    """A camera's noise beyond Poisson-Gaussian (ELD, Wei et al., CVPR 2020), each std a multiple of the read
    noise's, sqrt(b): an offset per sensor row, of which the two sensor rows of a packed row share ``pair_corr`` (R
    and Gr lie on one, Gb and B on the other), both parts spread over frequency as ``spectrum`` (fractions in equal
    bands, a calibration's ``row_spectrum``, which measures them together; white rows without), and a fixed offset
    per pixel, drawn afresh for every crop since a crop's place on the sensor is unknown. ``calibrate --dark``
    measures them; all 0 (the default) adds nothing."""

    row: float = 0.0
    pair_corr: float = 0.0
    fixed: float = 0.0
    spectrum: tuple[float, ...] = ()


NO_STRUCTURE = Structure()


def row_offsets(rng: np.random.Generator, count: int, std: float, spectrum: Sequence[float] | None) -> np.ndarray:
    """``count`` row offsets of expected std ``std``, with power spread over frequency as ``spectrum`` says: the
    mean power per frequency in equal bands from slow to fast, DC left out, as ``sensor.row_spectrum`` measures it
    (a calibration's ``row_spectrum``). Independent (white) rows without one, or for fewer rows than twice the
    bands (too few frequencies to lay them out); drawn as ``rng.normal(0, std, count)`` draws them."""
    bins = count // 2 + 1
    power = np.zeros(bins)
    if spectrum and count // 2 >= len(spectrum):  # every band holds a frequency, as calibrate measures them
        for share, band in zip(spectrum, np.array_split(np.arange(1, bins), len(spectrum)), strict=True):
            power[band] = share
    if not power.any():
        return rng.normal(0.0, std, count)
    amplitude = np.sqrt(power)
    draw = amplitude * (rng.standard_normal(bins) + 1j * rng.standard_normal(bins))
    nyquist = count % 2 == 0
    if nyquist:  # a real term: its real part alone, with an inner frequency's expected power
        draw[-1] = np.sqrt(2.0) * draw[-1].real
    # Each row's variance: an inner frequency gives 4 |amplitude|^2 / count^2, the Nyquist term 2 |amplitude|^2.
    inner = power[1:-1] if nyquist else power[1:]
    variance = (4 * inner.sum() + (2 * power[-1] if nyquist else 0.0)) / count**2
    return np.fft.irfft(draw, n=count) * std / np.sqrt(variance)


def sensor_row_offsets(rng: np.random.Generator, count: int, std: float, pair_corr: float,
                       spectrum: Sequence[float] | None) -> np.ndarray:
    """The row offsets of ``count`` pairs of sensor rows (the two that one packed row holds), (2, count): of
    expected std ``std``, ``pair_corr`` of it shared by the two rows of a pair and the rest each row's own, both
    parts spread over frequency as ``spectrum`` says (``row_offsets``). Row 0 is the upper sensor row of each
    pair (R and Gr in an RGGB frame), row 1 the lower."""
    shared = row_offsets(rng, count, std * np.sqrt(pair_corr), spectrum)
    own_std = std * np.sqrt(1.0 - pair_corr)
    return shared + np.stack([row_offsets(rng, count, own_std, spectrum) for _ in range(2)])


def add_structure(noisy: np.ndarray, b: float, structure: Structure, rng: np.random.Generator,
                  sensor: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """A packed (4, h, w) noisy frame with ``structure``'s row and fixed-pattern offsets added, float32. The fixed
    pattern is ``sensor`` (a standard-normal (4, h, w) array: one camera's own, the same on each of its frames) or,
    without it, drawn afresh. Draws from ``rng`` only what it adds, so a plain noise model's stream is unchanged."""
    if structure.row == 0 and structure.fixed == 0:
        return noisy
    assert noisy.ndim == 3 and noisy.shape[0] == 4, f"expected a packed (4, h, w) frame, got {noisy.shape}"
    read, h = float(np.sqrt(b)), noisy.shape[1]
    rows = sensor_row_offsets(rng, h, structure.row * read, structure.pair_corr, structure.spectrum)[..., None]
    out = noisy + rows[[0, 0, 1, 1]]  # R and Gr on one sensor row, Gb and B on the other
    if structure.fixed > 0:
        pattern = rng.standard_normal(noisy.shape) if sensor is None else sensor
        out = out + structure.fixed * read * pattern
    return out.astype(np.float32)


def quantize(noisy: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A normalised packed frame (4, h, w) rounded to whole DN and clipped to [black, white], as a DNG stores it.

    ``steps`` (4,) is each channel's white - black in DN. float32, same shape.
    """
    assert noisy.ndim == 3 and noisy.shape[0] == 4, f"expected a packed (4, h, w) frame, got {noisy.shape}"
    scale = np.asarray(steps, dtype=np.float64).reshape(4, 1, 1)
    return (np.clip(np.rint(noisy * scale), 0.0, scale) / scale).astype(np.float32)


def fit_pair_noise(noisy: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(a, b) of a pair by least squares of the squared residual on the clean value (``fit_line``).

    Only samples whose clean value lies 3 noise std inside [0, 1] count, so clipping does not bias the fit; the
    std comes from a first fit over the samples not clipped.
    """
    x, r2 = clean.astype(np.float64).ravel(), ((noisy.astype(np.float64) - clean) ** 2).ravel()
    inside = (noisy.ravel() > 0.0) & (noisy.ravel() < 1.0)
    for _ in range(2):
        a, b = fit_line(x[inside], r2[inside], np.ones(int(inside.sum())))
        a, b = max(a, 1e-8), max(b, 1e-10)
        std = np.sqrt(a * np.clip(x, 0.0, None) + b)
        inside = (x - 3 * std > 0.0) & (x + 3 * std < 1.0)
    return a, b


def profile_noise(profile: tuple[float, ...]) -> NoiseParams:
    """One (a, b) from a DNG NoiseProfile: its (S, O) pairs, one for all planes or one per plane.

    S and O are the variance's slope and offset on linear values scaled to [0, 1], as ``a`` and ``b`` here. With
    three planes (R, G, B) green counts twice, as it covers two of the four packed channels; other counts weigh
    their planes equally.
    """
    assert len(profile) >= 2 and len(profile) % 2 == 0, f"NoiseProfile holds (S, O) pairs, got {len(profile)} values"
    pairs = [(float(profile[i]), float(profile[i + 1])) for i in range(0, len(profile), 2)]
    weights = [1.0, 2.0, 1.0] if len(pairs) == 3 else [1.0] * len(pairs)
    return NoiseParams(*(sum(w * p[k] for w, p in zip(weights, pairs, strict=True)) / sum(weights) for k in (0, 1)))
