"""The experiment config's schema: one dataclass per section, whose defaults are the single source of truth.

Builders read the section they need and pass plain arguments on (``build_model(cfg.model, **blind_options(cfg))``,
the second part a noise-aware model's test-time recipe), so constructors never see a config. Cross-field rules live
in ``denoise.config.checks``, types and unknown keys in ``denoise.config.load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class ConfigError(ValueError):
    """A config file, override or value that does not match the schema or its rules; the message names the key."""


@dataclass
class ModelConfig:
    """NAFNet U-Net hyper-parameters; read only by ``build_model``.

    ``local_window`` switches on test-time local statistics for the channel attention: the pooling window in
    packed input pixels (about 1.5x the training patch), used only where the input is larger; 0 pools over the
    whole frame as in training.

    ``noise_channels`` = ``in_channels`` makes the network noise-aware: it also reads a per-pixel noise-std map
    (``noise_level_map``) built from each frame's noise level, estimated from the noisy frame alone at test time;
    0 makes it blind. ``scale_residual`` (needs the map) multiplies the predicted residual by the map, so the
    network predicts the noise in units of its std.
    """

    name: Literal["nafnet"] = "nafnet"
    in_channels: int = 4
    width: int = 32
    enc_blocks: tuple[int, ...] = (2, 2, 4, 8)
    middle_blocks: int = 12
    dec_blocks: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.0
    local_window: int = 0
    noise_channels: int = 0
    scale_residual: bool = False


@dataclass
class DataConfig:
    """Where the training pairs are and how samples are drawn from them.

    Sizes (``patch_size``, ``tile_overlap``) are in packed pixels: one packed pixel is a 2x2 mosaic cell.
    """

    # Pair discovery: globs relative to ``root``; ``key_regex`` must match both file names, group 1 is the key.
    root: str = "data/zte/train"
    noisy_glob: str = "noisy/*_noise.dng"  # "" means a clean-only dataset (needs synthetic_fraction = 1)
    clean_glob: str = "ground truth/*_gt.dng"
    key_regex: str = r"^(\d+)_(?:noise|gt)\.dng$"
    # No photos at all: with root "" training crops come from the procedural scenes alone (procedural_fraction 1),
    # which take the CFA pattern and black and white levels from ``camera``, a sensor calibration written by
    # ``python -m denoise.dataset.calibrate --dark DNG... --json FILE``.
    camera: str = ""

    # Validation split: ``val_keys`` if given, else ``val_count`` keys spread evenly over the sorted keys, held out
    # of ``root``. With ``val_root`` set, validation pairs come from that folder instead (its globs and key regex;
    # "" means the training ones), every pair is trained on, and ``val_keys`` picks a subset of the validation
    # pairs (empty: all of them); ``val_count`` is then unused.
    val_count: int = 5
    val_keys: list[str] = field(default_factory=list)
    val_root: str = ""
    val_noisy_glob: str = ""
    val_clean_glob: str = ""
    val_key_regex: str = ""

    # Batches.
    patch_size: int = 256
    batch_size: int = 8
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect when CUDA is available

    # Decoded-frame cache; "" means ``<root>/.cache`` (with no root, ``.cache`` beside the camera's file).
    cache_dir: str = ""
    cache_dtype: Literal["uint16", "float32"] = "uint16"

    # Sampling: random crops, or the deterministic overlap-tile grid over every frame.
    sampling: Literal["random", "tiles"] = "random"
    tile_overlap: int = 32
    samples_per_epoch: int = 0  # 0: as many as the tile grid has tiles

    # Paired Bayer-preserving flips and transposes (one of the eight, uniformly).
    augment_flips: bool = True

    # Pairs synthesised on the fly from clean frames: the fraction of samples, the noise model and its ranges.
    synthetic_fraction: float = 0.0
    noise_model: Literal["gaussian", "poisson_gaussian"] = "gaussian"
    noise_a_range: tuple[float, float] = (1e-4, 1e-2)  # shot term (var = a*x + b on normalised values)
    noise_b_range: tuple[float, float] = (1e-6, 1e-3)  # read term
    brightness_range: tuple[float, float] = (1.0, 1.0)  # clean frame scaled by this before synthesis
    # A camera's row noise, the share of it two sensor rows of a packed row have in common, and its fixed pattern,
    # the stds as multiples of the read noise's (raw.noise.Structure; `calibrate --dark` prints them): added to
    # every synthetic crop and to the estimate grid's frames. (0, 0, 0): Poisson-Gaussian noise only.
    noise_structure: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # How the row offsets' power spreads over frequency, in equal bands from slow to fast (calibrate's
    # row_spectrum, which it prints): slow banding puts most in the first. () draws independent (white) rows.
    noise_row_spectrum: tuple[float, ...] = ()
    # Procedural scenes (textured dead leaves through a random camera, denoise/dataset/procedural.py) mixed into
    # training: procedural_scenes are made once per seed (kept in the cache) with the first training frame's
    # CFA pattern and levels, and procedural_fraction of the samples are cropped from them instead of from the
    # dataset's frames; they always get synthetic noise.
    procedural_scenes: int = 0
    procedural_fraction: float = 0.0
    procedural_gray: float = 0.0  # the share of scenes drawn without colour (neutral: raw channels move together)
    # What a synthetic sample reports as its noise level to a noise-aware model: the level drawn, or
    # "estimate_grid": what the blind estimate reads off the whole frame with noise at the drawn level, interpolated
    # from a per-frame table measured before training (denoise/dataset/estimate_grid.py), so that training sees
    # the estimate's texture bias as inference will.
    noise_level_report: Literal["drawn", "estimate_grid"] = "drawn"
    # How far above the fitted noise variance (in standard deviations of a smooth block's variance estimate) a
    # block still counts as noise when the level is estimated blind, here and at inference: 3 keeps nearly all
    # noise-only blocks; 1 drops more texture, so textured frames read less high (denoise/raw/noise_estimation.py).
    noise_estimate_window: float = 3.0


@dataclass
class TrainConfig:
    """Optimiser, schedule, losses, validation and checkpointing; read only by ``denoise.train``."""

    epochs: int = 100
    max_steps: int = 0  # stop (saving last.pth, resumable) once this many optimiser steps are done; 0 = no limit
    # Optimiser steps between saves of last.pth within an epoch, so that a kill loses at most this many steps (an
    # epoch of real frames can be an hour of GPU time); 0 saves at epoch ends only. Lower it when steps are slow.
    checkpoint_every: int = 500
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: Literal["step", "cosine"] = "step"
    step_size: int = 20  # StepLR: epochs between decays
    gamma: float = 0.5  # StepLR: factor per decay
    min_lr: float = 1e-7  # cosine: the learning rate reached at the last step
    warmup_steps: int = 0  # linear warm-up over this many optimiser steps; 0 = off
    # Under torchrun, lr, min_lr and warmup_steps are for one process's batch: "linear" multiplies the learning
    # rates by the number of processes and divides the warm-up steps by it (same samples); "none" keeps them.
    lr_scaling: Literal["linear", "none"] = "linear"
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    ema: float = 0.0  # decay of the weights' exponential moving average (e.g. 0.999); 0 = off
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 adds a gradient scaler
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...; torchrun picks the local GPU
    loss_l1: float = 1.0
    loss_fourier: float = 0.0
    loss_psnr: float = 0.0  # weight of minus the PSNR: this loss term is negative by design
    loss_adjacent: float = 0.0
    val_every: int = 1  # epochs between validations (and best.pth); 0 = never
    seed: int = 0
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops
    runs_dir: str = "runs"
    log_every: int = 20  # optimiser steps between TensorBoard scalars
    image_crop: int = 256  # side (mosaic pixels) of the validation crop shown in TensorBoard; 0 = no images
    # Torch CPU threads per process; 0 = the cores the process may use (shared among a node's processes), less
    # one per loader worker, at least 1: a thread on every core stalls each step when another job takes a core.
    threads: int = 0
    compile: bool = False  # torch.compile the network for training (minutes of compiling first; fixed patch shapes)
    sync_timing: bool = False  # drain the GPU at each step phase so time/* charges work where it is queued (benches)


@dataclass
class InferConfig:
    """How frames are denoised: validation during training uses the tiling and precision set here, and
    ``python -m denoise.infer`` / ``denoise.submit`` take their defaults from it (their flags override them)."""

    test_dir: str = "data/zte/test"  # folder of noisy test frames
    output_dir: str = "result/data"  # where the denoised DNGs go
    runs_dir: str = "runs"  # searched for the newest best.pth (or unvalidated run's last.pth) without a checkpoint
    # Tile 256 with overlap 64 is the CPU's sweet spot and leaves no visible seams (docs/benchmarks.md).
    tile: int = 256  # packed tile side in pixels; 0 = the whole frame at once
    overlap: int = 64  # packed pixels shared by neighbouring tiles; only tile centres are kept
    batch_size: int = 4  # tiles per forward pass
    tta: bool = False  # x8 Bayer-preserving self-ensemble (8x slower)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # "auto" = cuda when available, else cpu
    # Where a noise-aware model's level comes from: "auto" takes a DNG's NoiseProfile tag when it has one (phones
    # write it) and estimates the level from the noisy frame otherwise; "estimate" always estimates, for files
    # whose noise was added after capture, so that a profile they carry no longer describes it.
    noise_source: Literal["auto", "estimate"] = "auto"
    # A blind estimate reads fine texture as noise, and the network then wipes the texture out (the texture check,
    # denoise/raw/noise_estimation.py). Where the estimate leaves read noise under ``texture_read_share`` of the
    # noise at the frame's mean level, the frame is denoised again at a lower std: the more what was removed follows
    # the structure of what was kept (``removed_structure``), the lower, reaching ``texture_scale`` times the
    # estimated std at ``texture_threshold`` (0 = the check off; ``graded_factor``). Texture's variance grows with
    # the square of the brightness, so a level read off texture has its read noise fitted near zero; at a truly high
    # level read noise is a large share, and there strong denoising legitimately removes texture with the noise.
    # Part of the model's recipe, like the estimate's window: inference takes them from the checkpoint's config.
    # Chosen on the demo's validation set (docs/experiments.md).
    texture_threshold: float = 0.0
    texture_scale: float = 0.125
    texture_read_share: float = 0.1


@dataclass
class Config:
    """One experiment: model, data, training and inference settings."""

    name: str = "nafnet"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
