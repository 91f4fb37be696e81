"""scripts/ablate.py: plan validation, resumable folders and the table it prints (training is exercised elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_module

REPO = Path(__file__).resolve().parents[1]


def _ablate():
    return load_module(REPO / "scripts" / "ablate.py")


def test_shipped_plans_load_and_their_overrides_resolve():
    # Every variant of the shipped plan must be a config the trainer accepts (strict config: typos are errors).
    from denoise.config import load_config

    for name in ("levers.yaml", "content.yaml"):
        plan = _ablate().load_plan(REPO / "scripts" / "ablations" / name)
        for overrides in plan["variants"].values():
            load_config(REPO / plan["base"], [*plan.get("common", []), *overrides])


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: a.yaml\nvariants: {x: []}\nextra: 1\n", "keys must be among"),
        ("variants: {x: []}\n", "needs 'base'"),
        ("base: a.yaml\nvariants: {}\n", "needs 'base'"),
        ("base: a.yaml\nvariants: {x: model.width}\n", "'x' must be a list"),
        ("base: a.yaml\ncommon: [nonsense]\nvariants: {x: []}\n", "'common' must be a list"),
        ("base: [unclosed\n", "cannot read the plan"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(tmp_path, capsys, text, message):
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    assert _ablate().main([str(plan), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and str(plan) in err


def test_a_variant_that_does_not_resolve_stops_the_run_before_any_trains(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"base: {REPO / 'configs' / 'demo.yaml'}\nvariants: {{good: [], bad: [train.lr=-1.0]}}\n")
    assert _ablate().main([str(plan), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "variant 'bad'" in err and "train.lr=-1.0" in err and "training" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_only_name_is_refused(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: a.yaml\nvariants: {first: []}\n")
    assert _ablate().main([str(plan), "--out", str(tmp_path), "--only", "second"]) == 2
    assert "second" in capsys.readouterr().err


def test_finished_variants_are_not_trained_again_and_are_tabled(tmp_path, capsys):
    # A result.json already in a variant's folder is reused: nothing is trained (the base config does not even
    # exist), and its numbers appear in the table as written.
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: missing.yaml\nvariants: {'lr 4e-3': [train.lr=4.0e-3]}\n")
    level = {"model": {"score": 70.125}}
    scores = {"mean": {"model": {"score": 61.234, "psnr": 45.678, "ssim": 0.98765, "worst": -1.234, "worst_frame": 7}},
              "per_level": {"low": level, "high": {"model": {"score": 40.0}}}}
    folder = tmp_path / "out" / "lr-4e-3"
    folder.mkdir(parents=True)
    result = {"overrides": [], "run_dir": "x", "train_seconds": 12.4, "parameters": 1234567, "scores": scores}
    (folder / "result.json").write_text(json.dumps(result))
    assert _ablate().main([str(plan), "--out", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| variant | score |")
    assert table[2] == "| lr 4e-3 | 61.23 | 45.68 | 0.9877 | 70.12 | - | 40.00 | -1.23 (frame 7) | 1,234,567 | 12 |"
