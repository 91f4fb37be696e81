"""Range and cross-field rules of a resolved config: the one place every entry point validates it.

Types and unknown keys are checked while loading (``denoise.config.load``); what is left are the rules a type
cannot say, each reported as ``section.key=value must be ...`` so the user knows which key to change. Rules that
depend on the data (a patch larger than a frame) are checked where the data is read.
"""

from __future__ import annotations

import math
import re

from denoise.config.schema import Config, ConfigError, DataConfig, InferConfig, ModelConfig, TrainConfig

Rule = tuple[str, bool, str]  # (key, holds, what the value must be)

MIN_TILE = 16  # packed pixels; per-tile overhead swamps the work below (tile 7 took 591 s for a 0.26 MP frame)

# The least value of each count, size and weight that has no other rule.
MINIMUM: dict[str, dict[str, int]] = {
    "model": {"width": 1, "middle_blocks": 0, "local_window": 0},
    "data": {"val_count": 0, "patch_size": 1, "batch_size": 1, "num_workers": 0, "tile_overlap": 0,
             "samples_per_epoch": 0, "procedural_scenes": 0},
    "train": {"epochs": 1, "max_steps": 0, "checkpoint_every": 0, "weight_decay": 0, "step_size": 1,
              "warmup_steps": 0, "grad_clip": 0, "val_every": 0, "max_nonfinite": 1, "log_every": 1, "image_crop": 0,
              "threads": 0},
    "infer": {"tile": 0, "batch_size": 1},
}  # fmt: skip


def _log_range(pair: tuple[float, float]) -> bool:
    return 0 < pair[0] <= pair[1]


def key_regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot pair file names, as a phrase ("is not a valid regular expression ..."), or None."""
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        return f"is not a valid regular expression ({err})"
    return None if groups >= 1 else "needs a group that captures the key"


def model_rules(m: ModelConfig) -> list[Rule]:
    """The model section's rules beyond its minimums."""
    levels = len(m.enc_blocks)
    return [
        ("in_channels", m.in_channels == 4, "4: the packed Bayer planes R, Gr, Gb, B"),
        ("enc_blocks", levels >= 1 and min(m.enc_blocks) >= 0, "one block count (0 or more) per level"),
        ("dec_blocks", len(m.dec_blocks) == levels and min(m.dec_blocks, default=0) >= 0,
         f"{levels} block counts (0 or more), one per encoder level"),
        ("dropout", 0 <= m.dropout < 1, "in [0, 1)"),
        ("noise_channels", m.noise_channels in (0, m.in_channels), f"0 (blind) or {m.in_channels} (model.in_channels)"),
        ("scale_residual", not m.scale_residual or m.noise_channels > 0, "false unless model.noise_channels is set"),
    ]


def _structure_ok(structure: tuple[float, float, float]) -> bool:
    row, pair_corr, fixed = structure
    return all(math.isfinite(v) for v in structure) and row >= 0 and fixed >= 0 and 0 <= pair_corr <= 1


def _spectrum_ok(spectrum: tuple[float, ...]) -> bool:
    return not spectrum or (all(math.isfinite(v) and v >= 0 for v in spectrum) and sum(spectrum) > 0)


def data_rules(d: DataConfig) -> list[Rule]:
    """The data section's rules beyond its minimums."""
    ranges = [(key, _log_range(getattr(d, key)), "[low, high] with 0 < low <= high")
              for key in ("noise_a_range", "noise_b_range", "brightness_range")]  # fmt: skip
    return [
        ("root", bool(d.root) or bool(d.camera), "a dataset folder, or '' with data.camera set (no photos)"),
        ("camera", not (d.root and d.camera), "'' unless data.root is '' (with photos, scenes are made like them)"),
        ("procedural_fraction", bool(d.root) or d.procedural_fraction == 1,
         "1 when data.root is '' (the procedural scenes are all there is to train on)"),
        ("samples_per_epoch", bool(d.root) or d.samples_per_epoch > 0,
         "more than 0 when data.root is '' (there is no tile grid to count)"),
        ("clean_glob", bool(d.clean_glob), "a glob of the clean frames"),
        ("key_regex", key_regex_problem(d.key_regex) is None, "a regular expression with a group capturing the key"),
        ("val_key_regex", not d.val_key_regex or key_regex_problem(d.val_key_regex) is None,
         "'' (the training key_regex) or a regular expression with a group capturing the key"),
        ("val_root", bool(d.val_root) or not (d.val_noisy_glob or d.val_clean_glob or d.val_key_regex),
         "set when data.val_noisy_glob, val_clean_glob or val_key_regex is (they describe its pairs)"),
        ("synthetic_fraction", 0 <= d.synthetic_fraction <= 1, "in [0, 1]"),
        ("synthetic_fraction", bool(d.noisy_glob) or d.synthetic_fraction == 1,
         "1 for a clean-only dataset (data.noisy_glob '')"),
        ("noise_estimate_window", d.noise_estimate_window > 0, "more than 0"),
        ("noise_structure", _structure_ok(d.noise_structure),
         "[rows, pair correlation, fixed pattern]: finite, rows and fixed pattern from 0, the correlation in [0, 1]"),
        ("noise_row_spectrum", _spectrum_ok(d.noise_row_spectrum),
         "[] or finite band powers from 0, not all 0 (calibrate's row_spectrum)"),
        ("noise_row_spectrum", not d.noise_row_spectrum or d.noise_structure[0] > 0,
         "[] unless data.noise_structure's first value, the rows, is above 0 (it shapes the row noise; with none it "
         "does nothing)"),
        ("procedural_fraction", 0 <= d.procedural_fraction <= 1, "in [0, 1]"),
        ("procedural_gray", 0 <= d.procedural_gray <= 1, "in [0, 1]"),
        ("procedural_fraction", d.procedural_fraction == 0 or d.procedural_scenes > 0,
         "0 unless data.procedural_scenes is at least 1"),
        *ranges,
    ]


def train_rules(t: TrainConfig) -> list[Rule]:
    """The train section's rules beyond its minimums."""
    return [
        ("lr", t.lr > 0, "positive"),
        ("betas", all(0 <= beta < 1 for beta in t.betas), "two values in [0, 1)"),
        ("gamma", 0 < t.gamma <= 1, "in (0, 1]"),
        ("min_lr", 0 <= t.min_lr <= t.lr, "in [0, train.lr]"),
        ("ema", 0 <= t.ema < 1, "0 (off) or in (0, 1)"),
        ("loss_l1", any((t.loss_l1, t.loss_fourier, t.loss_psnr, t.loss_adjacent)),
         "non-zero when every other train.loss_* weight is 0 (nothing to train on)"),
    ]


def infer_rules(i: InferConfig) -> list[Rule]:
    """The infer section's rules beyond its minimums (also applied after ``denoise.infer``'s flags)."""
    return [
        ("tile", i.tile == 0 or i.tile >= MIN_TILE,
         f"0 (the whole frame) or at least {MIN_TILE} packed pixels: smaller tiles cost hundreds of times more"),
        ("overlap", i.overlap >= 0 and (i.tile == 0 or i.overlap < i.tile), f"in [0, infer.tile) = [0, {i.tile})"),
        ("texture_threshold", 0 <= i.texture_threshold < 1, "in [0, 1): 0 is off"),
        ("texture_scale", 0 < i.texture_scale <= 1, "in (0, 1]"),
        ("texture_read_share", 0 < i.texture_read_share <= 1, "in (0, 1]: 1 lets every level through"),
    ]


def validate_config(cfg: Config) -> Config:
    """Raise ConfigError naming the first key whose value breaks a rule; returns ``cfg`` unchanged."""
    sections = {"model": (cfg.model, model_rules), "data": (cfg.data, data_rules),
                "train": (cfg.train, train_rules), "infer": (cfg.infer, infer_rules)}  # fmt: skip
    for name, (section, rules) in sections.items():
        minimums = [(key, getattr(section, key) >= least, f"at least {least}") for key, least in MINIMUM[name].items()]
        for key, holds, expected in minimums + rules(section):
            if not holds:
                raise ConfigError(f"{name}.{key}={getattr(section, key)!r} must be {expected}")
    return cfg
