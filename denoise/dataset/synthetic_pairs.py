"""Pairs synthesised from clean crops, and the noise level each training sample reports to a noise-aware model.

A synthetic sample reports the level drawn for it, or (``noise_level_report: estimate_grid``) what the blind
estimate would read off its whole frame at that level; a real pair reports what the blind estimate reads off its
noisy frame, as inference will have to.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from denoise.config import DataConfig
from denoise.dataset import estimate_grid
from denoise.dataset.cache import CachedFrame, derived, digest, source_digest
from denoise.dataset.estimate_grid import EstimateGrid, grid_nodes, measure_grid
from denoise.dataset.frames import FramePair, whole_frame
from denoise.raw import bayer, noise, noise_estimation
from denoise.raw.noise import Structure, add_noise, add_structure, fit_pair_noise, log_uniform, quantize
from denoise.raw.noise_estimation import REJECT_SIGMAS, estimate_noise

GRID_STREAM = 0x6772  # third seed word of the estimate grid's noise, apart from the samples' (seed, index)
# Estimates cached beside the frame cache are keyed by the code that computes them, so a change to the estimate,
# the grid or the noise synthesis computes them afresh.
ESTIMATOR = source_digest(noise_estimation, estimate_grid, noise, bayer, sys.modules[__name__])


def structure_of(synth: DataConfig) -> Structure:
    """The camera noise beyond Poisson-Gaussian that ``synth`` adds to synthetic crops."""
    return Structure(*synth.noise_structure, spectrum=synth.noise_row_spectrum)


def quantize_like(noisy: np.ndarray, frame: CachedFrame) -> np.ndarray:
    """A normalised packed crop (4, h, w) rounded to whole DN and clipped to [black, white], as a DNG stores it."""
    return quantize(noisy, frame.white_level - frame.channel_black())


def synthesize(
    clean: np.ndarray,
    rng: np.random.Generator,
    synth: DataConfig,
    frame: CachedFrame | None = None,
    grid: EstimateGrid | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(noisy, clean, a, b) from a normalised clean crop: brightness scaled by a gain from ``synth``'s
    ``brightness_range``, then noise of its ``noise_model`` at a level drawn from its ``noise_a_range`` and
    ``noise_b_range``.

    Given the crop's ``frame``, the noisy crop is rounded and clipped like that frame's DNG values. The returned
    (a, b) is the level drawn or, given the frame's ``grid``, what the blind estimate reads off that frame there.
    """
    gain = rng.uniform(*synth.brightness_range)
    scale = np.full((4, 1, 1), gain, dtype=np.float32)
    clean = np.clip(clean * scale, 0.0, 1.0)  # brighter than white saturates, like a sensor
    a = log_uniform(rng, *synth.noise_a_range)
    b = log_uniform(rng, *synth.noise_b_range)
    noisy = add_structure(add_noise(clean, a, b, rng, synth.noise_model), b, structure_of(synth), rng)
    if frame is not None:
        noisy = quantize_like(noisy, frame)
    if grid is not None:
        a, b = grid.reported(a, b, gain)
    return noisy, clean, a, b


def frame_noise_level(pair: FramePair, window: float = REJECT_SIGMAS) -> tuple[float, float]:
    """(a, b) of a real pair, estimated from the noisy frame alone like inference does.

    A frame the blind estimate cannot read (almost all clipped, say) falls back to the fit against its clean twin.
    """
    noisy = whole_frame(pair.noisy, pair.packed_shape)  # (4, h, w)
    try:
        params = estimate_noise(noisy, window=window)
    except ValueError:
        return fit_pair_noise(noisy, whole_frame(pair.clean, pair.packed_shape))
    return params.a, params.b


def frame_estimate_grid(
    frame: CachedFrame, shape: tuple[int, int], synth: DataConfig, window: float, rng: np.random.Generator
) -> EstimateGrid:
    """The blind estimate's reading of a clean frame at grid levels covering ``synth``'s noise and brightness.

    A frame scaled by a gain g is looked up at (a / g, b / g^2), so the grid spans the ranges divided by the gains.
    """
    low, high = synth.brightness_range
    log_a = grid_nodes(synth.noise_a_range[0] / high, synth.noise_a_range[1] / low)
    log_b = grid_nodes(synth.noise_b_range[0] / high**2, synth.noise_b_range[1] / low**2)
    steps = frame.white_level - frame.channel_black()  # (4,) DN from black to white per packed channel
    return measure_grid(whole_frame(frame, shape), log_a, log_b, rng, window, synth.noise_model, steps,
                        structure_of(synth))


def real_noise_levels(frames: list[FramePair], window: float) -> list[tuple[float, float] | None]:
    """Each real pair's blind-estimate level (None for a clean-only frame), read once and cached with the frame."""
    bar = tqdm(frames, desc="estimating noise", unit="frame", leave=False, disable=None)
    levels = []
    for f in bar:
        if f.noisy is None:
            levels.append(None)
            continue
        key = digest("level", window, ESTIMATOR, f.clean.array_path.name)  # the fallback reads the clean twin
        levels.append(tuple(derived(f.noisy, f"noise-{key}", lambda f=f: frame_noise_level(f, window))))
    return levels


def estimate_grids(
    frames: list[FramePair], synth: DataConfig, window: float, seed: int
) -> list[EstimateGrid]:
    """Every frame's estimate grid, its noise seeded by (``seed``, frame index), so a resumed run rebuilds it.

    Grids are cached beside each frame's entry, keyed by everything they depend on; JSON keeps floats exactly,
    so a cached grid equals a computed one.
    """
    bar = tqdm(frames, desc="estimate at grid levels", unit="frame", leave=False, disable=None)
    grids = []
    for i, f in enumerate(bar):

        def compute(f: FramePair = f, i: int = i) -> dict:
            rng = np.random.default_rng([seed, i, GRID_STREAM])
            grid = frame_estimate_grid(f.clean, f.packed_shape, synth, window, rng)
            return {"log_a": grid.log_a.tolist(), "log_b": grid.log_b.tolist(), "excess": grid.excess.tolist()}

        ranges = [synth.noise_model, *synth.noise_a_range, *synth.noise_b_range, *synth.brightness_range]
        ranges += list(synth.noise_structure) if any(synth.noise_structure) else []  # old keys stay valid
        ranges += [list(synth.noise_row_spectrum)] if synth.noise_row_spectrum else []  # one item: no collision
        key = digest("grid", ranges, window, seed, i, ESTIMATOR)
        stored = derived(f.clean, f"grid-{key}", compute)
        grids.append(EstimateGrid(*(np.asarray(stored[k], dtype=np.float64) for k in ("log_a", "log_b", "excess"))))
    return grids
