"""Training batches from a dataset folder: the sample dataset, its epoch samplers and ``build_train_loader``.

``build_train_loader(cfg, seed, distributed)`` gives a DataLoader of ``{"noisy", "clean"}`` packed crops. With
``noise_levels`` every sample also carries its noise level ``a``, ``b`` (variance ``a*x + b``), as
``denoise.dataset.synthetic_pairs`` describes. Validation frames come from ``denoise.dataset.frames``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from denoise.config import DataConfig
from denoise.dataset.augment import random_flags, transform_pair
from denoise.dataset.cache import CachedFrame, normalized_region
from denoise.dataset.frames import FramePair, cache_dir_for, load_split
from denoise.dataset.pairs import DatasetError
from denoise.dataset.procedural import camera_like, procedural_pairs
from denoise.dataset.samples import check_fits, random_crop, read_window, tile_crops
from denoise.dataset.synthetic_pairs import estimate_grids, real_noise_levels, synthesize
from denoise.raw.bayer import IDENTITY


class PairDataset(Dataset):
    """Packed crops of cached pairs; item ``i`` is a crop of the frame that tile ``i mod n_tiles`` lies in.

    In "tiles" mode the crop is that tile; in "random" mode it is placed at random in the same frame, so
    frames are sampled in proportion to their area. Any integer is a valid index: ``i`` and ``i + k * len``
    show the same tile, but every index draws its crop, flips and noise from its own generator seeded by
    (``seed``, ``i``), so a batch depends on neither the number of workers nor which worker made it. The
    samplers below add ``epoch * len`` so that each epoch draws new crops. ``cfg`` is the data section: patch size,
    sampling, flips, synthesis (``synthesize``) and the level a noise-aware model is told (``noise_levels``).
    """

    def __init__(
        self,
        frames: list[FramePair],
        cfg: DataConfig,
        seed: int = 0,
        noise_levels: bool = False,
        procedural: list[FramePair] | None = None,
    ) -> None:
        patch_size, augment = cfg.patch_size, cfg.augment_flips
        assert cfg.sampling in ("random", "tiles"), f"sampling must be 'random' or 'tiles', got {cfg.sampling!r}"
        self.procedural_fraction = cfg.procedural_fraction if procedural else 0.0
        self.frames = frames + (procedural or [])  # the dataset's frames first, then the procedural ones
        self.photo_count = len(frames)
        self.cfg = cfg
        self.seed = seed
        shapes = [f.packed_shape for f in self.frames]
        try:
            check_fits(shapes, patch_size + int(augment), [str(f.clean.source) for f in self.frames])
        except ValueError as err:
            spare = " + 1 spare pixel for flips" if augment else ""
            raise DatasetError(f"patch_size {patch_size}{spare} is too large: {err}") from err
        self.tiles = tile_crops(shapes[: len(frames)], patch_size, min(cfg.tile_overlap, patch_size - 1))
        self.length = cfg.samples_per_epoch or len(self.tiles)
        self.noise_levels = noise_levels
        # At fraction 1 every sample is synthetic, so no real pair's level is ever read.
        window, synthetic = cfg.noise_estimate_window, cfg.synthetic_fraction
        self.frame_noise = real_noise_levels(self.frames, window) if noise_levels and synthetic < 1 else []
        grids = noise_levels and cfg.noise_level_report == "estimate_grid" and (synthetic > 0 or procedural)
        self.grids = estimate_grids(self.frames, cfg, window, seed) if grids else [None] * len(self.frames)
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
        tile = self.tiles[index % self.length % len(self.tiles)] if self.tiles else None  # none without photos
        frame = tile.frame if tile else -1
        if self.procedural_fraction > 0 and rng.random() < self.procedural_fraction:  # a scene, cropped at random
            frame = self.photo_count + int(rng.integers(len(self.frames) - self.photo_count))
        pair = self.frames[frame]
        height, width = pair.packed_shape
        patch, augment = self.cfg.patch_size, self.cfg.augment_flips
        keep_tile = self.cfg.sampling == "tiles" and tile is not None and frame == tile.frame
        crop = tile if keep_tile else random_crop(rng, frame, height, width, patch)
        size = patch + int(augment)
        synthetic = pair.noisy is None or rng.random() < self.cfg.synthetic_fraction
        y, x = read_window(crop, height, width, size)
        clean = self._region(pair.clean, arrays, y, x, size)
        noisy = clean if synthetic else self._region(pair.noisy, arrays, y, x, size)
        flags = random_flags(rng) if augment else IDENTITY
        if augment:
            noisy, clean = transform_pair(noisy, clean, pair.clean.pattern, flags, patch)
        if synthetic:
            noisy, clean, a, b = synthesize(clean, rng, self.cfg, pair.clean, self.grids[frame])
        elif self.noise_levels:
            a, b = self.frame_noise[frame]
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


def training_frames(cfg: DataConfig, seed: int) -> tuple[list[FramePair], list[FramePair]]:
    """(the training split's pairs, the procedural scenes sampled beside them), cached on first use. The scenes
    take the first training frame's CFA pattern and levels, or the camera's calibration when there is no frame."""
    train, _ = load_split(cfg)
    if cfg.procedural_scenes == 0 or cfg.procedural_fraction == 0:
        return train, []
    like = train[0].clean if train else camera_like(cfg.camera)
    return train, procedural_pairs(cfg.procedural_scenes, seed, like, cache_dir_for(cfg), cfg.procedural_gray)


def build_train_dataset(cfg: DataConfig, seed: int = 0, noise_levels: bool = False) -> PairDataset:
    """The training split as a PairDataset (filling the cache first if needed); see the module for ``noise_levels``."""
    train, procedural = training_frames(cfg, seed)
    return PairDataset(train, cfg, seed, noise_levels, procedural)


def check_shared_memory(cfg: DataConfig, folder: str = "/dev/shm") -> None:
    """Refuse loader workers whose batches in flight would not fit in shared memory, naming what to change.

    Workers hand batches over through ``folder``: each keeps two batches ready (PyTorch's prefetch factor), for
    every process on the machine. A container's default 64 MB is too little for competition patches, and
    running out kills the workers with a bus error mid-epoch.
    """
    if cfg.num_workers == 0 or not os.path.isdir(folder):
        return
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    batch = cfg.batch_size * 2 * 4 * cfg.patch_size**2 * 4  # noisy and clean, 4 planes, float32
    need = processes * cfg.num_workers * 2 * batch
    free = shutil.disk_usage(folder).free
    if free < need * 1.25:
        raise DatasetError(
            f"{folder}: data.num_workers={cfg.num_workers} x {processes} process(es) need about {need / 2**20:.0f} MB "
            f"of shared memory for batches in flight, {free / 2**20:.0f} MB free: give the container more (docker "
            f"--shm-size=2g) or lower data.num_workers"
        )


def build_train_loader(
    cfg: DataConfig, seed: int = 0, distributed: bool = False, noise_levels: bool = False
) -> DataLoader:
    """Shuffled batches of ``{"noisy", "clean"}``, each (B, 4, p, p) float32; B is per process.

    With ``noise_levels`` the batches also hold ``"a"`` and ``"b"``, each (B,) float32.

    Batches depend on ``seed`` and the epoch only, not on ``num_workers``. Under ``distributed``
    (torch.distributed initialised, e.g. by torchrun) each node's first process (LOCAL_RANK 0) fills the cache,
    noise estimates included, while the others wait, so node-local disks work as well as shared storage; a
    DistributedSampler splits each epoch: call ``loader.sampler.set_epoch(epoch)`` (either sampler has it).
    """
    if distributed:
        assert dist.is_available() and dist.is_initialized(), "distributed=True needs torch.distributed initialised"
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            build_train_dataset(cfg, seed, noise_levels)
        dist.barrier()
    dataset = build_train_dataset(cfg, seed, noise_levels)
    if distributed:
        sampler = EpochDistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = EpochSampler(len(dataset), seed)
    check_shared_memory(cfg)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch == 0:
        raise DatasetError(f"{cfg.root or cfg.camera}: {len(sampler)} samples per epoch per process < batch_size "
                           f"{cfg.batch_size}")
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
        persistent_workers=cfg.num_workers > 0,
        drop_last=True,
        worker_init_fn=die_with_parent,
    )


PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies


def die_with_parent(_worker_id: int = 0) -> None:
    """Ask Linux to kill this loader worker the moment its parent dies (a kill -9 of the trainer): PyTorch's own
    check notices only within seconds, and the worker holds memory and the GPU's host buffers meanwhile. Elsewhere
    (no prctl) nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
