"""Training batches and validation frames from a dataset folder: the builders the trainer calls.

``build_train_loader(cfg, seed, distributed)`` gives a DataLoader of ``{"noisy", "clean"}`` packed crops and
``build_val_frames(cfg)`` the held-out frames whole. With ``noise_levels`` every sample also carries its noise
level ``a``, ``b`` (variance ``a*x + b``): the drawn one for synthetic pairs (plus what ``estimate_noise`` reads
off the clean frame, with ``noise_level_report: estimator``, or what it reads off the whole frame at that level,
with ``estimate_grid``), and for real pairs the one ``estimate_noise`` reads off the whole noisy frame, as
inference will have to. Both builders decode every DNG once into the cache first (so bad files fail before
training starts) and afterwards only read memory-mapped arrays.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from denoise.dataset import dng
from denoise.dataset.augment import IDENTITY, random_flags, transform_pair
from denoise.dataset.bayer import cfa_black, normalize, pack_bayer
from denoise.dataset.cache import CachedFrame, cache_frame, cached_mosaic, normalized_region
from denoise.dataset.config import DataConfig
from denoise.dataset.estimate_grid import EstimateGrid, grid_nodes, measure_grid
from denoise.dataset.noise import add_noise, log_uniform, quantize
from denoise.dataset.pairs import DatasetError, Pair, check_pair_metadata, discover_pairs, split_pairs
from denoise.dataset.samples import check_fits, random_crop, read_window, tile_crops
from denoise.noise_estimation import WINDOW, estimate_noise

GRID_STREAM = 0x6772  # third seed word of the estimate grid's noise, apart from the samples' (seed, index)


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


@dataclass
class ValFrame:
    """A whole validation frame: the network's input and the mosaics the score is computed on."""

    key: str
    noisy: torch.Tensor  # (4, h, w) float32 normalised, packed R, Gr, Gb, B
    clean_mosaic: np.ndarray  # (H, W) uint16 DN
    noisy_mosaic: np.ndarray  # (H, W) uint16 DN
    pattern: str
    black_level: np.ndarray  # (2, 2) per CFA position
    white_level: int
    as_shot_neutral: np.ndarray | None


def cache_dir_for(cfg: DataConfig) -> Path:
    """The configured cache folder, or ``<root>/.cache``."""
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.root) / ".cache"


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
    """Discover, split and cache the dataset: (train, val) pairs."""
    pairs = discover_pairs(cfg.root, cfg.noisy_glob, cfg.clean_glob, cfg.key_regex)
    if not cfg.noisy_glob and cfg.synthetic_fraction < 1.0:
        raise DatasetError(f"{cfg.root}: a clean-only dataset (noisy_glob '') needs synthetic_fraction = 1")
    train, val = split_pairs(pairs, cfg.val_count, cfg.val_keys)
    cached = cache_pairs(train + val, cache_dir_for(cfg), cfg.cache_dtype)
    return cached[: len(train)], cached[len(train) :]


@dataclass(frozen=True)
class SynthesisSettings:
    """How pairs are synthesised from clean crops: the fraction of samples, noise model and ranges."""

    fraction: float = 0.0
    model: str = "gaussian"
    a_range: tuple[float, float] = (1e-4, 1e-2)
    b_range: tuple[float, float] = (1e-6, 1e-3)
    brightness_range: tuple[float, float] = (1.0, 1.0)
    level_error: float = 0.0  # std of log of the factor on the reported noise std
    report: str = "drawn"  # "estimator": add the clean frame's apparent level; "estimate_grid": see estimate_grid


def quantize_like(noisy: np.ndarray, frame: CachedFrame) -> np.ndarray:
    """A normalised packed crop (4, h, w) rounded to whole DN and clipped to [black, white], as a DNG stores it."""
    return quantize(noisy, frame.white_level - frame.channel_black())


def synthesize(
    clean: np.ndarray,
    rng: np.random.Generator,
    synth: SynthesisSettings,
    frame: CachedFrame | None = None,
    content_level: tuple[float, float] = (0.0, 0.0),
    grid: EstimateGrid | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(noisy, clean, a, b) from a normalised clean crop: brightness scaled, then noise at a random level.

    Given the crop's ``frame``, the noisy crop is rounded and clipped like that frame's DNG values. The returned
    (a, b) is the level drawn plus ``content_level`` (the clean frame's apparent noise, scaled with the
    brightness), or, given the frame's ``grid``, what the blind estimate reads off that frame at the drawn level;
    with ``synth.level_error`` that level's std is mis-read by a log-normal factor (the noise itself is at the
    drawn level).
    """
    gain = rng.uniform(*synth.brightness_range)
    clean = np.clip(clean * np.float32(gain), 0.0, 1.0)  # brighter than white saturates, like a sensor
    a = log_uniform(rng, *synth.a_range)
    b = log_uniform(rng, *synth.b_range)
    noisy = add_noise(clean, a, b, rng, synth.model)
    if frame is not None:
        noisy = quantize_like(noisy, frame)
    # Texture scaled by the gain g has g^2 its variance at g times the level: var = a_c g (g x) + b_c g^2.
    if grid is not None:
        a, b = grid.reported(a, b, gain)
    else:
        a, b = a + content_level[0] * gain, b + content_level[1] * gain**2
    if synth.level_error > 0:  # drawn only then, so that configs without it keep their random streams
        variance_factor = float(np.exp(2.0 * rng.normal(0.0, synth.level_error)))
        return noisy, clean, a * variance_factor, b * variance_factor
    return noisy, clean, a, b


def fit_pair_noise(noisy: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(a, b) of a pair by least squares of the squared residual on the clean value.

    Only samples whose clean value lies 3 noise std inside [0, 1] count, so clipping does not bias the fit; the
    std comes from a first fit over the samples not clipped.
    """
    x, r2 = clean.astype(np.float64).ravel(), ((noisy.astype(np.float64) - clean) ** 2).ravel()
    inside = (noisy.ravel() > 0.0) & (noisy.ravel() < 1.0)
    for _ in range(2):
        a, b = np.linalg.lstsq(np.stack([x[inside], np.ones(int(inside.sum()))], axis=1), r2[inside], rcond=None)[0]
        a, b = max(float(a), 1e-8), max(float(b), 1e-10)
        std = np.sqrt(a * np.clip(x, 0.0, None) + b)
        inside = (x - 3 * std > 0.0) & (x + 3 * std < 1.0)
    return a, b


def _whole_frame(frame: CachedFrame, shape: tuple[int, int]) -> np.ndarray:
    """A cached frame of packed ``shape`` whole, normalised. (4, h, w)."""
    return normalized_region(frame, frame.load(), 0, 0, *shape)


def content_noise_level(
    frame: CachedFrame, shape: tuple[int, int], window: float = WINDOW
) -> tuple[float, float]:
    """(a, b) the blind estimate reads off a clean frame: its fine texture, which looks like noise; 0 if unreadable."""
    try:
        params = estimate_noise(_whole_frame(frame, shape), window=window)
    except ValueError:
        return 0.0, 0.0
    return params.a, params.b


def frame_estimate_grid(
    frame: CachedFrame, shape: tuple[int, int], synth: SynthesisSettings, window: float, rng: np.random.Generator
) -> EstimateGrid:
    """The blind estimate's reading of a clean frame at grid levels covering ``synth``'s noise and brightness.

    A frame scaled by a gain g is looked up at (a / g, b / g^2), so the grid spans the ranges divided by the gains.
    """
    low, high = synth.brightness_range
    log_a = grid_nodes(synth.a_range[0] / high, synth.a_range[1] / low)
    log_b = grid_nodes(synth.b_range[0] / high**2, synth.b_range[1] / low**2)
    steps = frame.white_level - frame.channel_black()  # (4,) DN from black to white per packed channel
    return measure_grid(_whole_frame(frame, shape), log_a, log_b, rng, window, synth.model, steps)


def frame_noise_level(pair: FramePair, window: float = WINDOW) -> tuple[float, float]:
    """(a, b) of a real pair, estimated from the noisy frame alone like inference does.

    A frame the blind estimator cannot read (almost all clipped, say) falls back to the fit against its clean twin.
    """
    noisy = _whole_frame(pair.noisy, pair.packed_shape)  # (4, h, w)
    try:
        params = estimate_noise(noisy, window=window)
    except ValueError:
        return fit_pair_noise(noisy, _whole_frame(pair.clean, pair.packed_shape))
    return params.a, params.b


class PairDataset(Dataset):
    """Packed crops of cached pairs; item ``i`` is a crop of the frame that tile ``i mod n_tiles`` lies in.

    In "tiles" mode the crop is that tile; in "random" mode it is placed at random in the same frame, so
    frames are sampled in proportion to their area. Any integer is a valid index: ``i`` and ``i + k * len``
    show the same tile, but every index draws its crop, flips and noise from its own generator seeded by
    (``seed``, ``i``), so a batch depends on neither the number of workers nor which worker made it. The
    samplers below add ``epoch * len`` so that each epoch draws new crops.
    """

    def __init__(
        self,
        frames: list[FramePair],
        patch_size: int,
        sampling: str = "random",
        tile_overlap: int = 32,
        samples_per_epoch: int = 0,
        augment: bool = True,
        synth: SynthesisSettings | None = None,
        seed: int = 0,
        noise_levels: bool = False,
        noise_window: float = WINDOW,
    ) -> None:
        assert sampling in ("random", "tiles"), f"sampling must be 'random' or 'tiles', got {sampling!r}"
        self.frames = frames
        self.patch_size = patch_size
        self.sampling = sampling
        self.augment = augment
        self.synth = synth or SynthesisSettings()
        self.seed = seed
        shapes = [f.packed_shape for f in frames]
        try:
            check_fits(shapes, patch_size + int(augment), [str(f.clean.source) for f in frames])
        except ValueError as err:
            spare = " + 1 spare pixel for flips" if augment else ""
            raise DatasetError(f"patch_size {patch_size}{spare} is too large: {err}") from err
        self.tiles = tile_crops(shapes, patch_size, min(tile_overlap, patch_size - 1))
        self.length = samples_per_epoch or len(self.tiles)
        self.noise_levels = noise_levels
        self.frame_noise: list[tuple[float, float] | None] = []
        if noise_levels and self.synth.fraction < 1:  # at 1 every sample is synthetic: no real level is read
            bar = tqdm(frames, desc="estimating noise", unit="frame", leave=False, disable=None)
            self.frame_noise = [frame_noise_level(f, noise_window) if f.noisy is not None else None for f in bar]
        self.content_noise = [(0.0, 0.0)] * len(frames)
        if noise_levels and self.synth.report == "estimator" and self.synth.fraction > 0:
            bar = tqdm(frames, desc="estimating clean frames' texture", unit="frame", leave=False, disable=None)
            self.content_noise = [content_noise_level(f.clean, f.packed_shape, noise_window) for f in bar]
        self.grids: list[EstimateGrid | None] = [None] * len(frames)
        if noise_levels and self.synth.report == "estimate_grid" and self.synth.fraction > 0:
            bar = tqdm(frames, desc="estimate at grid levels", unit="frame", leave=False, disable=None)
            self.grids = [frame_estimate_grid(f.clean, f.packed_shape, self.synth, noise_window,
                                              np.random.default_rng([seed, i, GRID_STREAM]))
                          for i, f in enumerate(bar)]
        self._maps: tuple[int, dict[int, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}  # memory maps are opened again in each process

    def _open_maps(self) -> dict[int, np.ndarray]:
        """This process's open memory maps, started empty on first use after a fork or spawn."""
        if self._maps is None or self._maps[0] != os.getpid():
            self._maps = (os.getpid(), {})
        return self._maps[1]

    @staticmethod
    def _region(frame: CachedFrame, arrays: dict[int, np.ndarray], y: int, x: int, size: int) -> np.ndarray:
        """A normalised square region of ``frame``, opening its memory map on first use in this process."""
        if id(frame) not in arrays:
            arrays[id(frame)] = frame.load()
        return normalized_region(frame, arrays[id(frame)], y, x, size, size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng, arrays = np.random.default_rng([self.seed, index]), self._open_maps()
        tile = self.tiles[index % self.length % len(self.tiles)]
        pair = self.frames[tile.frame]
        height, width = pair.packed_shape
        crop = tile if self.sampling == "tiles" else random_crop(rng, tile.frame, height, width, self.patch_size)
        size = self.patch_size + int(self.augment)
        y, x = read_window(crop, height, width, size)
        clean = self._region(pair.clean, arrays, y, x, size)
        synthetic = pair.noisy is None or rng.random() < self.synth.fraction
        noisy = clean if synthetic else self._region(pair.noisy, arrays, y, x, size)
        flags = random_flags(rng) if self.augment else IDENTITY
        if self.augment:
            noisy, clean = transform_pair(noisy, clean, pair.clean.pattern, flags, self.patch_size)
        if synthetic:
            noisy, clean, a, b = synthesize(clean, rng, self.synth, pair.clean, self.content_noise[tile.frame],
                                            self.grids[tile.frame])
        elif self.noise_levels:
            a, b = self.frame_noise[tile.frame]
        sample = {"noisy": torch.from_numpy(np.ascontiguousarray(noisy)),
                  "clean": torch.from_numpy(np.ascontiguousarray(clean))}
        if self.noise_levels:
            sample["a"], sample["b"] = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
        return sample


class EpochSampler(Sampler[int]):
    """A fresh random permutation each pass, offset by ``epoch * n`` so the dataset draws new crops each epoch."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator) + self.epoch * self.length
        self.epoch += 1  # a loader reused without set_epoch still moves on
        return iter(order.tolist())


class EpochDistributedSampler(DistributedSampler):
    """DistributedSampler whose indices are offset by ``epoch * len(dataset)`` (see PairDataset)."""

    def __iter__(self):
        offset = self.epoch * len(self.dataset)
        return (index + offset for index in super().__iter__())


def _synthesis_settings(cfg: DataConfig) -> SynthesisSettings:
    if not cfg.noise_level_error >= 0:
        raise ValueError(f"data.noise_level_error must be 0 or more, got {cfg.noise_level_error}")
    return SynthesisSettings(
        fraction=cfg.synthetic_fraction,
        model=cfg.noise_model,
        a_range=tuple(cfg.noise_a_range),
        b_range=tuple(cfg.noise_b_range),
        brightness_range=tuple(cfg.brightness_range),
        level_error=cfg.noise_level_error,
        report=cfg.noise_level_report,
    )


def build_train_dataset(cfg: DataConfig, seed: int = 0, noise_levels: bool = False) -> PairDataset:
    """The training split as a PairDataset (filling the cache first if needed); see the module for ``noise_levels``."""
    if not cfg.noise_estimate_window > 0:
        raise ValueError(f"data.noise_estimate_window must be more than 0, got {cfg.noise_estimate_window}")
    train, _ = load_split(cfg)
    return PairDataset(
        train,
        patch_size=cfg.patch_size,
        sampling=cfg.sampling,
        tile_overlap=cfg.tile_overlap,
        samples_per_epoch=cfg.samples_per_epoch,
        augment=cfg.augment_flips,
        synth=_synthesis_settings(cfg),
        seed=seed,
        noise_levels=noise_levels,
        noise_window=cfg.noise_estimate_window,
    )


def build_train_loader(
    cfg: DataConfig, seed: int = 0, distributed: bool = False, noise_levels: bool = False
) -> DataLoader:
    """Shuffled batches of ``{"noisy", "clean"}``, each (B, 4, p, p) float32; B is per process.

    With ``noise_levels`` the batches also hold ``"a"`` and ``"b"``, each (B,) float32.

    Batches depend on ``seed`` and the epoch only, not on ``num_workers``. Under ``distributed``
    (torch.distributed initialised, e.g. by torchrun) rank 0 fills the cache while the others wait, and a
    DistributedSampler splits each epoch: call ``loader.sampler.set_epoch(epoch)`` (either sampler has it).
    """
    if distributed:
        assert dist.is_available() and dist.is_initialized(), "distributed=True needs torch.distributed initialised"
        if dist.get_rank() == 0:
            load_split(cfg)
        dist.barrier()
    dataset = build_train_dataset(cfg, seed, noise_levels)
    if distributed:
        sampler = EpochDistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = EpochSampler(len(dataset), seed)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch == 0:
        raise DatasetError(f"{cfg.root}: {len(sampler)} samples per epoch per process < batch_size {cfg.batch_size}")
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
        persistent_workers=cfg.num_workers > 0,
        drop_last=True,
    )


def _val_noisy(frame: FramePair, clean_mosaic: np.ndarray, synth: SynthesisSettings) -> np.ndarray:
    """A clean-only frame's noisy twin, with noise seeded by its key so every run validates on the same input."""
    rng = np.random.default_rng(int(hashlib.sha1(frame.key.encode()).hexdigest()[:8], 16))
    clean = frame.clean
    x = normalize(clean_mosaic, clean.black_level, clean.white_level)
    noisy = add_noise(x, log_uniform(rng, *synth.a_range), log_uniform(rng, *synth.b_range), rng, synth.model)
    black = np.tile(cfa_black(clean.black_level, np.float64), (x.shape[0] // 2 + 1, x.shape[1] // 2 + 1))
    black = black[: x.shape[0], : x.shape[1]]
    dn = np.rint(noisy * (clean.white_level - black) + black)
    return np.clip(dn, 0, clean.white_level).astype(np.uint16)


def _full_mosaic(frame: CachedFrame) -> np.ndarray:
    """The whole mosaic: from the cache when even-sized, else decoded (the cache lacks the odd row/column)."""
    if frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0:
        return cached_mosaic(frame)
    return dng.read_dng(frame.source).mosaic


def build_val_frames(cfg: DataConfig) -> list[ValFrame]:
    """The validation split, whole frames, in key order."""
    _, val = load_split(cfg)
    frames = []
    for pair in val:
        clean = pair.clean
        clean_mosaic = _full_mosaic(clean)
        if pair.noisy is None:
            noisy_mosaic = _val_noisy(pair, clean_mosaic, _synthesis_settings(cfg))
        else:
            noisy_mosaic = _full_mosaic(pair.noisy)
        height, width = clean.shape
        even = noisy_mosaic[: height - height % 2, : width - width % 2]
        packed = pack_bayer(normalize(even, clean.black_level, clean.white_level), clean.pattern)
        frames.append(ValFrame(
            key=pair.key,
            noisy=torch.from_numpy(np.ascontiguousarray(packed)),
            clean_mosaic=clean_mosaic,
            noisy_mosaic=noisy_mosaic,
            pattern=clean.pattern,
            black_level=cfa_black(clean.black_level, np.float64),
            white_level=clean.white_level,
            as_shot_neutral=clean.as_shot_neutral,
        ))
    return frames


def build_datasets(cfg: DataConfig, seed: int = 0) -> tuple[PairDataset, list[ValFrame]]:
    """(training dataset, validation frames) in one call."""
    return build_train_dataset(cfg, seed), build_val_frames(cfg)
