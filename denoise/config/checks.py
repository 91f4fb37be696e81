"""Cross-field and range rules of a resolved config: the one place every entry point validates it.

Types and unknown keys are checked while loading (``denoise.config.load``); what is left are the rules a type
cannot say, each reported as ``section.key=value must be ...`` so the user knows which key to change. Rules that
depend on the data (a patch larger than a frame) are checked where the data is read.
"""

from __future__ import annotations

from collections.abc import Iterable

from denoise.config.schema import Config, ConfigError, DataConfig, InferConfig, ModelConfig, TrainConfig

Rule = tuple[str, bool, str]  # (key, holds, what the value must be)


def _range_ok(pair: tuple[float, float]) -> bool:
    return 0 < pair[0] <= pair[1]


def model_rules(m: ModelConfig) -> list[Rule]:
    """The model section's rules."""
    return [
        ("in_channels", m.in_channels >= 1, "at least 1"),
        ("width", m.width >= 1, "at least 1"),
        ("enc_blocks", len(m.enc_blocks) >= 1 and min(m.enc_blocks) >= 0, "one count (0 or more) per level"),
        ("dec_blocks", len(m.dec_blocks) == len(m.enc_blocks), f"{len(m.enc_blocks)} counts, one per encoder level"),
        ("dec_blocks", min(m.dec_blocks, default=0) >= 0, "counts of 0 or more"),
        ("middle_blocks", m.middle_blocks >= 0, "0 or more"),
        ("dropout", 0 <= m.dropout < 1, "in [0, 1)"),
        ("local_window", m.local_window >= 0, "0 (whole frame) or more"),
        ("noise_channels", m.noise_channels in (0, m.in_channels), f"0 (blind) or {m.in_channels} (model.in_channels)"),
        ("scale_residual", not m.scale_residual or m.noise_channels > 0, "false unless model.noise_channels is set"),
    ]


def data_rules(d: DataConfig) -> list[Rule]:
    """The data section's rules."""
    return [
        ("clean_glob", bool(d.clean_glob), "a glob of the clean frames"),
        ("synthetic_fraction", 0 <= d.synthetic_fraction <= 1, "in [0, 1]"),
        ("synthetic_fraction", bool(d.noisy_glob) or d.synthetic_fraction == 1,
         "1 for a clean-only dataset (data.noisy_glob '')"),
        ("val_count", d.val_count >= 0, "0 or more"),
        ("patch_size", d.patch_size >= 1, "at least 1"),
        ("batch_size", d.batch_size >= 1, "at least 1"),
        ("num_workers", d.num_workers >= 0, "0 or more"),
        ("tile_overlap", d.tile_overlap >= 0, "0 or more"),
        ("samples_per_epoch", d.samples_per_epoch >= 0, "0 (one per tile) or more"),
        ("noise_a_range", _range_ok(d.noise_a_range), "[low, high] with 0 < low <= high"),
        ("noise_b_range", _range_ok(d.noise_b_range), "[low, high] with 0 < low <= high"),
        ("brightness_range", _range_ok(d.brightness_range), "[low, high] with 0 < low <= high"),
        ("noise_estimate_window", d.noise_estimate_window > 0, "more than 0"),
    ]


def train_rules(t: TrainConfig) -> list[Rule]:
    """The train section's rules."""
    return [
        ("epochs", t.epochs >= 1, "at least 1"),
        ("max_steps", t.max_steps >= 0, "0 (no limit) or more"),
        ("lr", t.lr > 0, "positive"),
        ("weight_decay", t.weight_decay >= 0, "0 or more"),
        ("step_size", t.step_size >= 1, "at least 1 epoch"),
        ("gamma", 0 < t.gamma <= 1, "in (0, 1]"),
        ("min_lr", 0 <= t.min_lr <= t.lr, "in [0, train.lr]"),
        ("warmup_steps", t.warmup_steps >= 0, "0 (off) or more"),
        ("grad_clip", t.grad_clip >= 0, "0 (off) or positive"),
        ("ema", 0 <= t.ema < 1, "0 (off) or in (0, 1)"),
        ("loss_l1", any((t.loss_l1, t.loss_fourier, t.loss_psnr, t.loss_adjacent)),
         "non-zero when every other train.loss_* weight is 0 (nothing to train on)"),
        ("val_every", t.val_every >= 0, "0 (never) or more"),
        ("max_nonfinite", t.max_nonfinite >= 1, "at least 1"),
        ("log_every", t.log_every >= 1, "at least 1"),
        ("image_crop", t.image_crop >= 0, "0 (off) or more"),
        ("threads", t.threads >= 0, "0 (PyTorch's default) or more"),
    ]


def infer_rules(i: InferConfig) -> list[Rule]:
    """The infer section's rules (also applied after ``denoise.infer``'s command-line flags)."""
    return [
        ("tile", i.tile >= 0, "0 (whole frame) or more"),
        ("overlap", i.overlap >= 0 and (i.tile == 0 or i.overlap < i.tile), f"in [0, infer.tile) = [0, {i.tile})"),
        ("batch_size", i.batch_size >= 1, "at least 1"),
    ]


def _first_broken(section: str, rules: Iterable[Rule], values: object) -> None:
    for key, holds, expected in rules:
        if not holds:
            raise ConfigError(f"{section}.{key}={getattr(values, key)!r} must be {expected}")


def validate_config(cfg: Config) -> Config:
    """Raise ConfigError naming the first key whose value breaks a rule; returns ``cfg`` unchanged."""
    _first_broken("model", model_rules(cfg.model), cfg.model)
    _first_broken("data", data_rules(cfg.data), cfg.data)
    _first_broken("train", train_rules(cfg.train), cfg.train)
    _first_broken("infer", infer_rules(cfg.infer), cfg.infer)
    return cfg
