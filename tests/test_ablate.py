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

    for name in sorted(p.name for p in (REPO / "scripts" / "ablations").glob("*.yaml")):
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
        ("base: a.yaml\ncheckpoint: [1]\nvariants: {x: []}\n", "'checkpoint' must be"),
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
    assert table[2] == "| lr 4e-3 | 61.23 | 45.68 | 0.9877 | 70.12 | - | 40.00 | -1.23 (frame 7) | 1,234,567 | 12 | - |"


def _scores(score: float, low: float, worst: float, frame: int) -> dict:
    return {"mean": {"model": {"score": score, "psnr": 45.0, "ssim": 0.98, "worst": worst, "worst_frame": frame}},
            "per_level": {"low": {"model": {"score": low}}}}


def test_seeds_table_gives_mean_spread_each_seed_and_the_worst_frame_of_any(tmp_path, capsys):
    # Finished seeds are tabled from their result.json, one row per (variant, checkpoint) over the seeds.
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: missing.yaml\ncheckpoint: [best.pth, last.pth]\nvariants: {demo: []}\n")
    for seed, (best, last) in enumerate([(60.0, 60.5), (59.0, 59.25), (59.5, 59.75)]):
        folder = tmp_path / "out" / "demo" / f"seed{seed}"
        folder.mkdir(parents=True)
        scores = {"best.pth": _scores(best, 80.0 + seed, -0.5 * seed, seed),
                  "last.pth": _scores(last, 81.0, 0.25, 3)}
        result = {"overrides": [], "run_dir": "x", "train_seconds": 1.0, "parameters": 10, "scores": scores}
        (folder / "result.json").write_text(json.dumps(result))
    assert _ablate().main([str(plan), "--out", str(tmp_path / "out"), "--seeds", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| demo (seed 0, best.pth) | 60.00 |")
    assert lines[3].startswith("| demo (seed 0, last.pth) | 60.50 |")
    assert ("| demo, best.pth | 3 | 59.50 | 1.00 | 60.00, 59.00, 59.50 | 81.00 | - | - | -1.00 (seed 2, frame 2) |"
            in lines)
    assert ("| demo, last.pth | 3 | 59.83 | 1.25 | 60.50, 59.25, 59.75 | 81.00 | - | - | +0.25 (seed 0, frame 3) |"
            in lines)


def test_only_seed_trains_just_those_seeds_with_their_seed_override(tmp_path, capsys, monkeypatch):
    ablate = _ablate()
    trained = []

    def fake_train(plan, overrides, folder):  # the real training is exercised by the training tests
        trained.append((folder.name, overrides))
        (folder / "runs").mkdir()
        return folder / "runs", 1.0

    monkeypatch.setattr(ablate, "train_variant", fake_train)
    monkeypatch.setattr(ablate, "score_variant", lambda plan, run_dir, folder: {"last.pth": _scores(60, 80, 0.5, 1)})
    monkeypatch.setattr(ablate, "validation_seconds", lambda run_dir: 0.0)
    monkeypatch.setattr(ablate, "parameters", lambda run_dir: 1)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"base: {REPO / 'configs' / 'demo.yaml'}\nvariants: {{demo: [train.lr=1.0e-3]}}\n")
    out = tmp_path / "out"
    assert ablate.main([str(plan), "--out", str(out), "--seeds", "3", "--only-seed", "2"]) == 0
    assert trained == [("seed2", ["train.lr=1.0e-3", "train.seed=2"])]
    assert sorted(p.name for p in (out / "demo").iterdir()) == ["seed2"]
    assert "| demo | 1 | 60.00 | 0.00 | 60.00 | 80.00 | - | - | +0.50 (seed 2, frame 1) |" in capsys.readouterr().out


def test_a_seed_outside_the_seeds_is_refused(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: a.yaml\nvariants: {first: []}\n")
    assert _ablate().main([str(plan), "--out", str(tmp_path / "out"), "--seeds", "2", "--only-seed", "2"]) == 2
    assert "--only-seed takes seeds in [0, 1]" in capsys.readouterr().err and not (tmp_path / "out").exists()
