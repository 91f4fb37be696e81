"""A dataset's frames, found, split and cached: the pairs training samples come from and the whole validation frames.

Every DNG is decoded once into the cache first, so bad files fail before training starts; afterwards only
memory-mapped arrays are read.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from denoise.config import DataConfig
from denoise.dataset import cache
from denoise.dataset.cache import (
    CachedFrame,
    cache_frame,
    cached_mosaic,
    derived,
    digest,
    normalized_region,
    source_digest,
)
from denoise.dataset.pairs import DatasetError, Pair, check_pair_metadata, discover_pairs, pick_keys, split_pairs
from denoise.raw import dng, metrics, noise, noise_estimation
from denoise.raw.bayer import cfa_black, normalize
from denoise.raw.metrics import ImageScores, score_image
from denoise.raw.noise import add_noise, log_uniform

# The noisy inputs' own scores are cached with the frames, keyed by the code that makes and scores them.
SCORING = source_digest(metrics, noise, sys.modules[__name__])
# A validation pair's measured noise level likewise, keyed by the code that normalises and fits it.
GAIN = source_digest(noise, noise_estimation, cache, sys.modules[__name__])  # the fit is noise_estimation's


@dataclass(frozen=True)
class FramePair:
    """A pair's cache entries; ``noisy`` is None in a clean-only dataset."""

    key: str
    noisy: CachedFrame | None
    clean: CachedFrame

    @property
    def packed_shape(self) -> tuple[int, int]:
        height, width = self.clean.shape
        return height // 2, width // 2


@dataclass(frozen=True)
class ValFrame:
    """A whole validation frame: the noisy frame as inference reads it, and the clean mosaic it is scored against.

    ``noisy`` carries no colour matrix (the cache keeps none), so its pictures are in camera colours. In a
    clean-only dataset its mosaic is the clean frame with seeded synthetic noise, and its path the clean DNG's.
    """

    key: str
    noisy: dng.RawFrame
    clean_mosaic: np.ndarray  # (H, W) uint16 DN
    noisy_scores: ImageScores  # the noisy input's own scores: the baseline a denoiser must beat
    level: str  # "low", "mid" or "high": the noise level of the pair (raw.noise.noise_level of its shot gain)


def cache_dir_for(cfg: DataConfig) -> Path:
    """The configured cache folder, or ``<root>/.cache`` (``.cache`` beside ``camera`` when there is no root)."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    return Path(cfg.root) / ".cache" if cfg.root else Path(cfg.camera).parent / ".cache"


def cache_pairs(pairs: list[Pair], cache_dir: Path, dtype: str) -> list[FramePair]:
    """Decode every frame of ``pairs`` into the cache (once) and check that each pair's frames agree."""
    problems: list[str] = []
    cached: dict[Path, CachedFrame] = {}
    paths = [p for pair in pairs for p in (pair.noisy, pair.clean) if p is not None]
    for path in tqdm(paths, desc="caching frames", unit="frame", leave=False, disable=None):
        try:
            cached[path] = cache_frame(path, cache_dir, dtype)[0]
        except dng.DngError as err:
            problems.append(str(err))
        except OSError as err:
            raise DatasetError(f"{cache_dir}: cannot write the frame cache ({err}); set data.cache_dir") from err
    frame_pairs = []
    for pair in pairs:
        if pair.clean not in cached or (pair.noisy is not None and pair.noisy not in cached):
            continue
        noisy = cached[pair.noisy] if pair.noisy is not None else None
        if noisy is not None:
            problems += check_pair_metadata(pair, noisy.meta(), cached[pair.clean].meta())
        frame_pairs.append(FramePair(pair.key, noisy, cached[pair.clean]))
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in the dataset: {'; '.join(problems[:20])}")
    return frame_pairs


def load_split(cfg: DataConfig) -> tuple[list[FramePair], list[FramePair]]:
    """Discover, split and cache the dataset: (train, val) pairs; val from ``val_root`` when it is set. With no
    ``root`` (procedural scenes only) there are no training pairs, and validation pairs only from ``val_root``."""
    pairs = discover_pairs(cfg.root, cfg.noisy_glob, cfg.clean_glob, cfg.key_regex) if cfg.root else []
    if cfg.val_root:
        train = pairs
        val_pairs = discover_pairs(cfg.val_root, cfg.val_noisy_glob or cfg.noisy_glob,
                                   cfg.val_clean_glob or cfg.clean_glob, cfg.val_key_regex or cfg.key_regex)
        val = pick_keys(val_pairs, cfg.val_keys) if cfg.val_keys else val_pairs
        trained = {p.resolve() for pair in train for p in (pair.noisy, pair.clean) if p is not None}
        shared = [p for pair in val for p in (pair.noisy, pair.clean) if p is not None and p.resolve() in trained]
        if shared:
            raise DatasetError(f"{shared[0]}: a validation frame is also a training frame (data.val_root and its "
                               f"globs must find other files than data.root's; {len(shared)} shared)")
    elif pairs:
        train, val = split_pairs(pairs, cfg.val_count, cfg.val_keys)
    else:
        train, val = [], []
    cached = cache_pairs(train + val, cache_dir_for(cfg), cfg.cache_dtype)
    return cached[: len(train)], cached[len(train) :]


def whole_frame(frame: CachedFrame, shape: tuple[int, int]) -> np.ndarray:
    """A cached frame of packed ``shape`` whole, normalised. (4, h, w)."""
    return normalized_region(frame, frame.load(), 0, 0, *shape)


def _val_noisy(frame: FramePair, clean_mosaic: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, float]:
    """A clean-only frame's noisy twin, with noise seeded by its key so every run validates on the same input, and
    the shot gain ``a`` it was drawn with."""
    rng = np.random.default_rng(int(hashlib.sha1(frame.key.encode()).hexdigest()[:8], 16))
    clean = frame.clean
    x = normalize(clean_mosaic, clean.black_level, clean.white_level)
    a, b = log_uniform(rng, *cfg.noise_a_range), log_uniform(rng, *cfg.noise_b_range)
    noisy = add_noise(x, a, b, rng, cfg.noise_model)
    black = np.tile(cfa_black(clean.black_level, np.float64), (x.shape[0] // 2 + 1, x.shape[1] // 2 + 1))
    black = black[: x.shape[0], : x.shape[1]]
    dn = np.rint(noisy * (clean.white_level - black) + black)
    return np.clip(dn, 0, clean.white_level).astype(np.uint16), a


def _full_mosaic(frame: CachedFrame) -> np.ndarray:
    """The whole mosaic: from the cache when even-sized, else decoded (the cache lacks the odd row/column)."""
    if frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0:
        return cached_mosaic(frame)
    return dng.read_dng(frame.source).mosaic


def _input_scores(pair: FramePair, noisy: dng.RawFrame, clean_mosaic: np.ndarray, cfg: DataConfig) -> ImageScores:
    """The noisy input's scores, seconds of work on a competition frame: computed once, then read from the cache."""
    made = pair.noisy.array_path.name if pair.noisy else repr((pair.key, cfg.noise_a_range, cfg.noise_b_range,
                                                                cfg.noise_model))
    stored = derived(pair.clean, f"scores-{digest('noisy input', made, SCORING)}",
                     lambda: score_image(clean_mosaic, noisy.mosaic, data_range=noisy.white_level).as_dict())
    return ImageScores(**stored)


def _measured_gain(pair: FramePair) -> float:
    """The shot gain ``a`` of a real pair's noise, fitted to its residual against the clean frame, cached."""
    made = digest("shot gain", pair.noisy.array_path.name, GAIN)
    return derived(pair.clean, f"gain-{made}", lambda: noise.fit_pair_noise(
        whole_frame(pair.noisy, pair.packed_shape), whole_frame(pair.clean, pair.packed_shape))[0])


def build_val_frames(cfg: DataConfig) -> list[ValFrame]:
    """The validation split, whole frames, in key order."""
    _, val = load_split(cfg)
    frames = []
    for pair in val:
        clean = pair.clean
        clean_mosaic = _full_mosaic(clean)
        if pair.noisy is None:
            noisy_mosaic, gain = _val_noisy(pair, clean_mosaic, cfg)
        else:
            noisy_mosaic, gain = _full_mosaic(pair.noisy), None
        noisy = dng.RawFrame(
            mosaic=noisy_mosaic,
            pattern=clean.pattern,
            black_level=cfa_black(clean.black_level, np.float64),
            white_level=clean.white_level,
            as_shot_neutral=clean.as_shot_neutral,
            color_matrix=None,
            iso=None,
            path=(pair.noisy or clean).source,
        )
        gain = _measured_gain(pair) if gain is None else gain
        scores = _input_scores(pair, noisy, clean_mosaic, cfg)
        frames.append(ValFrame(pair.key, noisy, clean_mosaic, scores, noise.noise_level(gain)))
    return frames
