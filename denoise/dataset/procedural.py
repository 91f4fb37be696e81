"""Procedural training scenes: ``leaves.py``'s textured dead leaves through a random camera, made once per seed.

A scene is drawn in sRGB like a photo, then put through the demo builder's camera backwards (``render.unprocess``:
inverse tone curve, gamma, colour matrix, white balance, exposure) and mosaicked, so that the linear values cover
the sensor's range. Everything comes from the generator given, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from denoise.dataset.cache import CACHE_VERSION, CachedFrame, load_entry, store_entry
from denoise.dataset.frames import FramePair
from denoise.dataset.leaves import leaves_scene
from denoise.dataset.pairs import DatasetError
from denoise.raw.bayer import PATTERNS, channel_offsets, pack_bayer
from denoise.raw.noise import quantize
from denoise.raw.render import mosaic_rgb, random_camera, unprocess

SCENE_SHAPE = (384, 576)  # mosaic pixels of a scene, as the demo's training frames
SCENE_STREAM = 0x6C76  # third seed word of a scene, apart from the samples' (seed, index)
VERSION = 2  # bumped whenever a seed's scenes change, so cached scenes are made again


LUMA = np.array([0.2126, 0.7152, 0.0722])  # sRGB (Rec. 709) luminance weights


def procedural_mosaic(seed: int, index: int, shape: tuple[int, int], pattern: str, gray: float = 0.0) -> np.ndarray:
    """Scene ``index`` of ``seed`` as a clean normalised mosaic, through a random camera. (H, W) float64.

    The camera is drawn as the demo builder draws its own (``render.random_camera``): a colour matrix with
    overlapping channel responses, white-balance gains and an exposure, applied backwards from sRGB to linear raw.
    With probability ``gray`` the scene loses its colour first (its luminance in all three channels), as a grey
    photo or a neutral surface has: its raw channels then move together, which a scene of coloured shapes never
    shows. The draw comes after the scene's and the camera's, so a scene that keeps its colour is unchanged.
    """
    rng = np.random.default_rng([seed, index, SCENE_STREAM])
    scene = leaves_scene(rng, *shape)
    rgb_to_cam, gains, exposure = random_camera(rng)
    if gray > 0 and rng.random() < gray:
        scene = np.repeat(scene @ LUMA, 3).reshape(scene.shape)
    return mosaic_rgb(unprocess(scene, rgb_to_cam, gains, exposure), pattern)


def camera_like(path: str | Path) -> CachedFrame:
    """A stand-in frame with the CFA pattern and levels of a sensor calibration (``calibrate --dark ... --json``):
    what procedural scenes are made like when there is no photo. A file that is not such a calibration is a
    DatasetError naming it and what is wrong."""
    try:
        calibration = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the camera's calibration ({err})") from err
    if not isinstance(calibration, dict):
        raise DatasetError(f"{path}: not a calibration written by calibrate --dark --json (not a JSON object)")
    pattern, black, white = (calibration.get(k) for k in ("pattern", "black", "white"))
    numbers = isinstance(black, list) and len(black) == 4 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in black)
    whole = isinstance(white, int) and not isinstance(white, bool)
    if pattern not in PATTERNS or not numbers or not whole or not max(black) < white:
        raise DatasetError(f"{path}: a camera calibration needs 'pattern' (one of {', '.join(PATTERNS)}), 'black' "
                           "(4 finite numbers from 0, R Gr Gb B) and a whole 'white' above them, as calibrate --dark "
                           "--json writes")
    black_level = np.zeros((2, 2))
    for (row, col), level in zip(channel_offsets(pattern), black, strict=True):
        black_level[row, col] = level
    return CachedFrame(array_path=Path(), source=Path(path), shape=SCENE_SHAPE, pattern=pattern,
                       black_level=black_level, white_level=white, as_shot_neutral=None, dtype="uint16")


def procedural_pairs(count: int, seed: int, like: CachedFrame, cache_dir: Path, gray: float = 0.0) -> list[FramePair]:
    """``count`` clean-only frames of scenes of ``seed``, with ``like``'s CFA pattern and levels, cached; ``gray``
    as ``procedural_mosaic`` takes it.

    Each scene is made once and kept in the frame cache as its packed clean frame, rounded to whole DN like a
    DNG's values, so later runs (and every loader worker) only map it.
    """
    steps = like.white_level - like.channel_black()  # (4,) DN from black to white per packed channel
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return [_scene_pair(index, seed, like, cache_dir, gray, steps)
                for index in tqdm(range(count), desc="procedural scenes", unit="scene", leave=False, disable=None)]
    except OSError as err:
        raise DatasetError(f"{cache_dir}: cannot write the frame cache ({err}); set data.cache_dir") from err


def _scene_pair(index: int, seed: int, like: CachedFrame, cache_dir: Path, gray: float, steps: np.ndarray) -> FramePair:
    """Scene ``index`` as a clean-only pair, from the cache or made and stored there."""
    made = (VERSION, seed, index, SCENE_SHAPE, like.pattern, steps.tolist()) + ((gray,) if gray else ())
    stem = cache_dir / f"procedural-{hashlib.sha1('|'.join(map(str, made)).encode()).hexdigest()[:12]}"
    entry = load_entry(stem)
    if entry is None:
        packed = pack_bayer(procedural_mosaic(seed, index, SCENE_SHAPE, like.pattern, gray), like.pattern)
        info = {"version": CACHE_VERSION, "source": f"procedural/seed{seed}/scene{index}",
                "shape": list(SCENE_SHAPE), "pattern": like.pattern, "black_level": like.black_level.tolist(),
                "white_level": like.white_level, "as_shot_neutral": None, "dtype": "float32"}
        entry = store_entry(stem, quantize(packed, steps), info)
    return FramePair(f"procedural{index}", None, entry)
