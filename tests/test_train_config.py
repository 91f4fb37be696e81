"""The strict config (denoise/config/ with TrainConfig), the shipped YAML files, the training CLI's argument
handling, and the learning-rate schedule."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from denoise.config import (
    Config,
    ConfigError,
    TrainConfig,
    config_from_dict,
    dump_config,
    load_config,
    to_dict,
)
from denoise.train.schedule import lr_factor, scale_for_processes

REPO = Path(__file__).resolve().parents[1]


def test_defaults_come_from_the_dataclasses() -> None:
    cfg = load_config(None)
    assert cfg.train == TrainConfig()
    assert cfg.train.grad_clip == 0.0 and cfg.train.ema == 0.0 and cfg.train.scheduler == "step"


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 3\n  lr: 0.01\n  betas: [0.8, 0.9]\nmodel:\n  width: 8\n")
    overrides = ["train.epochs=5", "model.enc_blocks=[1,2]", "model.dec_blocks=[1,1]", "train.precision=bf16"]
    overrides.append("name=007")
    cfg = load_config(path, overrides)
    assert cfg.train.epochs == 5  # the override wins over the YAML
    assert cfg.train.lr == 0.01 and cfg.train.betas == (0.8, 0.9)
    assert cfg.model.width == 8 and cfg.model.enc_blocks == (1, 2)
    assert cfg.train.precision == "bf16"
    assert cfg.name == "007"  # a string field keeps the literal text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("trian.epochs=3", "did you mean 'train'"),
        ("train.epochs=three", "expected an integer"),
        ("train.epochs=2.5", "expected an integer"),
        ("train.lr=fast", "expected a number"),
        ("train.precision=fp8", "not one of"),
        ("train.scheduler=linear", "not one of"),
        ("model.name=unet", "not one of"),
        ("train.betas=[0.9]", "expected 2 items"),
        ("train.epochs.sub=1", "has no sub-keys"),
        ("train.epochs", "not of the form"),
    ],
)
def test_bad_overrides_name_the_problem(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("text", ["1e-4", "1.0e-4", "0.0001"])
def test_float_fields_accept_every_spelling_of_a_float(tmp_path: Path, text: str) -> None:
    # YAML 1.1 reads "1e-4" as a string; the config must still take it as the number.
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  lr: {text}\n")
    assert load_config(path).train.lr == pytest.approx(1e-4)
    assert load_config(None, [f"train.lr={text}"]).train.lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, ["train.lr=fast"])


def test_unknown_yaml_key_names_the_nearest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  gradclip: 1.0\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.gradclip'; did you mean 'train\.grad_clip'"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.log_every=0", r"train\.log_every=0 must be at least 1"),
        ("train.ema=1.0", r"train\.ema=1\.0 must be 0 \(off\) or in \(0, 1\)"),
        ("train.gamma=0.0", r"train\.gamma"),
        ("train.loss_l1=0.0", "nothing to train on"),
    ],
)
def test_out_of_range_train_values_are_refused(override: str, message: str) -> None:
    load_config(None)  # the defaults are valid
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_round_trip_through_dict_and_yaml() -> None:
    cfg = load_config(None, ["train.loss_psnr=0.01", "data.brightness_range=[0.5, 2]"])
    assert config_from_dict(to_dict(cfg)) == cfg
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("name", ["nafnet.yaml", "demo.yaml", "quality_cpu.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, Config) and cfg.name == name.removesuffix(".yaml")


def test_competition_model_fits_50_mb() -> None:
    from denoise.model import build_model

    net = build_model(load_config(REPO / "configs" / "nafnet.yaml").model)
    params = sum(p.numel() for p in net.parameters())
    assert params == 11_468_464  # the number the YAML's comment documents (noise map included)
    assert 4 * params < 50e6


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "denoise.train", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_print_config_and_bad_input() -> None:
    done = _cli("--config", "configs/demo.yaml", "train.epochs=7", "--print-config")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["train"]["epochs"] == 7
    bad = _cli("--config", "configs/demo.yaml", "train.epoks=7")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean 'train.epochs'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_step_schedule_and_warmup() -> None:
    kw = dict(steps_per_epoch=10, total_steps=100, scheduler="step", step_size=3, gamma=0.5, min_ratio=0.0)
    assert lr_factor(0, warmup_steps=0, **kw) == 1.0
    assert lr_factor(29, warmup_steps=0, **kw) == 1.0  # still epoch 2
    assert lr_factor(30, warmup_steps=0, **kw) == 0.5  # epoch 3: first decay
    assert lr_factor(65, warmup_steps=0, **kw) == 0.25
    assert lr_factor(0, warmup_steps=4, **kw) == 0.25  # linear warm-up: 1/4, 2/4, ...
    assert lr_factor(3, warmup_steps=4, **kw) == 1.0


def test_cosine_schedule_ends_at_min_ratio() -> None:
    kw = dict(steps_per_epoch=10, total_steps=100, scheduler="cosine", step_size=1, gamma=1.0, min_ratio=0.1)
    assert lr_factor(0, warmup_steps=0, **kw) == 1.0
    assert lr_factor(50, warmup_steps=0, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, warmup_steps=0, **kw) == pytest.approx(0.1)
    assert lr_factor(25, warmup_steps=0, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))


def test_linear_scaling_rule_for_data_parallel_processes() -> None:
    assert scale_for_processes(5e-4, 1e-7, 500, 1, "linear") == (5e-4, 1e-7, 500)
    assert scale_for_processes(5e-4, 1e-7, 500, 8, "linear") == (4e-3, 8e-7, 63)  # the same 4,000 samples, rounded up
    assert scale_for_processes(5e-4, 1e-7, 500, 8, "none") == (5e-4, 1e-7, 500)


def test_every_config_field_is_set_by_a_shipped_config_or_documented() -> None:
    """A knob earns its place in a recipe (configs/*.yaml) or as a documented user option (docs/config.md)."""
    shipped = [yaml.safe_load(path.read_text()) for path in sorted((REPO / "configs").glob("*.yaml"))]
    reference = (REPO / "docs" / "config.md").read_text()
    missing = []
    for section in fields(Config):
        if section.name == "name":
            continue
        for knob in fields(getattr(Config(), section.name)):
            key = f"{section.name}.{knob.name}"
            if not any(knob.name in (cfg.get(section.name) or {}) for cfg in shipped) and f"`{key}`" not in reference:
                missing.append(key)
    assert not missing, f"set by no shipped config and not in docs/config.md: {missing}"
