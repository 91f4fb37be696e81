"""One validation for every entry point: each rule names its key, old checkpoints' retired knobs, CLI flags."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from denoise.config import Config, ConfigError, ModelConfig, config_from_dict, load_config, to_dict, validate_config
from denoise.infer import main as infer_main
from denoise.model import build_model
from denoise.model.checkpoint import CheckpointError, load_model
from denoise.raw.dng import write_new_dng

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.width=4", "model.enc_blocks=[1, 1]", "model.middle_blocks=1", "model.dec_blocks=[1, 1]"]


# Broken configs, as overrides separated by ";": the first one names the key that must be refused.
BROKEN = {
    "model": ["dec_blocks=[1, 1]", "enc_blocks=[];dec_blocks=[]", "noise_channels=3", "scale_residual=true",
              "local_window=-1", "dropout=1.0", "in_channels=3;noise_channels=0"],
    "data": ["key_regex=^[0-9+$", "key_regex=^[0-9]+$", "synthetic_fraction=1.5", "synthetic_fraction=0.5;noisy_glob=",
             "noise_a_range=[1e-2, 1e-4]", "brightness_range=[0, 1]", "noise_estimate_window=0", "patch_size=0",
             "num_workers=-1", "val_key_regex=^[0-9]+$;val_root=v", "val_root=;val_clean_glob=gt*.dng",
             "noise_structure=[0.1, 1.5, 0]", "noise_structure=[-0.1, 0.5, 0]", "noise_row_spectrum=[0.5, -0.1]",
             "noise_row_spectrum=[0, 0]", "noise_structure=[0.1, -0.1, 0]", "noise_structure=[0.1, 0.5, -1]",
             "noise_row_spectrum=[0.5, 0.5];noise_structure=[0, 0.5, 0.1]"],
    "train": ["betas=[0.9, 1.0]", "min_lr=1.0;lr=0.1", "threads=-2"],
    "infer": ["tile=-1", "overlap=64;tile=64", "batch_size=0"],
}  # fmt: skip


@pytest.mark.parametrize(("section", "case"), [(s, c) for s, cases in BROKEN.items() for c in cases])
def test_each_broken_rule_is_refused_naming_its_key(section: str, case: str) -> None:
    overrides = [f"{section}.{item}" for item in case.split(";")]
    key = overrides[0].split("=")[0]
    with pytest.raises(ConfigError, match="^" + re.escape(key) + "=.* must be "):
        load_config(None, overrides)


def test_the_defaults_and_every_shipped_config_pass() -> None:
    assert validate_config(Config()) == Config()
    for path in sorted((REPO / "configs").glob("*.yaml")):
        validate_config(load_config(path))
    assert validate_config(load_config(None, ["data.noisy_glob=", "data.synthetic_fraction=1"])).data.noisy_glob == ""
    assert load_config(None, ["infer.tile=0", "infer.overlap=0"]).infer.tile == 0  # whole frames need no overlap


def _old_checkpoint_config(**retired: object) -> dict:
    """A stored config as checkpoints written before the knobs were retired hold it."""
    data = to_dict(load_config(None, TINY))
    data["data"]["noise_level_error"] = retired.get("noise_level_error", 0.0)
    data["data"]["noise_level_report"] = retired.get("noise_level_report", "drawn")
    data["train"]["fourier_mode"] = retired.get("fourier_mode", "amp_phase")
    data["train"]["adjacent_directions"] = retired.get("adjacent_directions", ["rows", "cols"])
    data["data"]["channel_gain_range"] = retired.get("channel_gain_range", [1.0, 1.0])
    data["data"]["zoom_out"] = retired.get("zoom_out", 0.0)
    return data


def test_retired_knobs_at_their_kept_value_load_and_others_are_named() -> None:
    assert config_from_dict(_old_checkpoint_config()) == load_config(None, TINY)
    changed = [
        ({"noise_level_error": 0.3}, r"data\.noise_level_error=0\.3: this knob was removed"),
        ({"fourier_mode": "real_imag"}, r"train\.fourier_mode='real_imag': this knob was removed"),
        ({"adjacent_directions": ["rows"]}, r"train\.adjacent_directions=\['rows'\]: this knob was removed"),
        ({"noise_level_report": "estimator"}, r"data\.noise_level_report='estimator': this mode was removed"),
        ({"zoom_out": 0.5}, r"data\.zoom_out=0\.5: this knob was removed"),
        ({"channel_gain_range": [0.6, 1.6]}, r"data\.channel_gain_range=\[0\.6, 1\.6\]: this knob was removed"),
    ]
    for retired, message in changed:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(_old_checkpoint_config(**retired))
    with pytest.raises(ConfigError, match=r"unknown key 'data\.noise_level_error'"):
        load_config(None, ["data.noise_level_error=0.0"])  # a new config may not name a retired knob


def _save_old_checkpoint(path: Path, **retired: object) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)))
    torch.save({"model": model.state_dict(), "ema": None, "config": _old_checkpoint_config(**retired)}, path)


def test_old_checkpoints_load_or_fail_in_one_line(tmp_path: Path) -> None:
    _save_old_checkpoint(tmp_path / "old.pth")
    model, cfg = load_model(tmp_path / "old.pth")
    assert cfg.model.width == 4 and not model.training
    _save_old_checkpoint(tmp_path / "tuned.pth", noise_level_error=0.15)
    with pytest.raises(CheckpointError, match=r"tuned\.pth: its stored config is invalid .*noise_level_error"):
        load_model(tmp_path / "tuned.pth")
    inp = tmp_path / "in"
    inp.mkdir()
    mosaic = np.random.default_rng(0).integers(1100, 9000, (32, 32)).astype(np.uint16)
    write_new_dng(inp / "noisy0.dng", mosaic, "BGGR", 1024, 16383)
    done = subprocess.run(
        [sys.executable, "-m", "denoise.infer", "--checkpoint", str(tmp_path / "tuned.pth"), "--input", str(inp),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "noise_level_error" in done.stderr
    assert not (tmp_path / "out").exists()


def test_inference_flags_go_through_the_same_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"infer": {"tile": 64, "overlap": 16}}))
    for flags, key in ((["--overlap", "64"], "infer.overlap=64"), (["--tile", "-3"], "infer.tile=-3"),
                       (["--batch-size", "0"], "infer.batch_size=0"),
                       (["--tile", "7", "--overlap", "3"], "infer.tile=7")):  # fmt: skip
        status = infer_main(["--config", str(config), "--checkpoint", str(tmp_path / "none.pth"), *flags])
        err = capsys.readouterr().err
        assert status == 2 and key in err and err.count("\n") == 1, err


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = infer_main(["--config", str(tmp_path / "missing.yaml"), "--checkpoint", str(tmp_path / "none.pth")])
    err = capsys.readouterr().err
    assert status == 2 and "missing.yaml: no such config file" in err and err.count("\n") == 1


def test_a_config_that_is_not_a_yaml_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "model.pth"
    binary.write_bytes(bytes(range(256)) * 4)
    for path, message in ((binary, "not a text file"), (tmp_path, "is a folder")):
        with pytest.raises(ConfigError, match=message):
            load_config(path)
        status = infer_main(["--config", str(path), "--checkpoint", str(tmp_path / "none.pth")])
        err = capsys.readouterr().err
        assert status == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
