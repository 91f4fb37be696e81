"""Quality tables: per-level means and the worst frame against the noisy input, and compare_baselines' @true rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_module

from denoise.inference.classical import METHODS
from denoise.quality_table import format_markdown, format_summary, summarise
from denoise.raw.bayer import denormalize, normalize, pack_bayer, unpack_bayer
from denoise.raw.dng import read_dng, write_new_dng
from denoise.raw.metrics import score_image
from denoise.raw.noise import noise_level
from denoise.raw.noise_estimation import NoiseParams


def _record(frame: int, a: float, noisy: float, scores: dict[str, float]) -> dict:
    methods = {m: {"psnr": 40.0 + s / 10, "ssim": 0.9, "ssim_2d": 0.9, "score": s, "seconds": 1.0}
               for m, s in scores.items()}  # fmt: skip
    return {"frame": frame, "true": {"a": a, "b": 1e-6}, "noisy_score": noisy, "methods": methods}


def test_summary_means_and_the_worst_frame_against_the_input() -> None:
    records = [_record(0, 2e-4, 60.0, {"x": 65.0}), _record(1, 2e-4, 70.0, {"x": 66.0}),
               _record(2, 8e-3, 10.0, {"x": 40.0})]  # fmt: skip
    per_level = summarise(records, ["x"], lambda r: noise_level(r["true"]["a"]))
    assert list(per_level) == ["low", "high"]
    low = per_level["low"]["x"]
    assert low["score"] == pytest.approx(65.5) and low["frames"] == 2
    assert low["worst"] == pytest.approx(-4.0) and low["worst_frame"] == 1  # frame 1 lost 4 points to its input
    mean = summarise(records, ["x"], lambda _r: "all")["all"]
    assert mean["x"]["worst"] == pytest.approx(-4.0) and mean["x"]["score"] == pytest.approx(57.0)
    assert "-4.00" in format_summary(per_level)
    assert "| x | 57.00 |" in format_markdown(mean, per_level) and "| -4.00 |" in format_markdown(mean, per_level)


def _compare_script():
    return load_module(Path(__file__).resolve().parents[1] / "scripts" / "compare_baselines.py")


def _frames(root: Path, levels: list[NoiseParams], meta: bool = True, split: str = "test") -> list[str]:
    (root / split).mkdir(parents=True)
    (root / "gt").mkdir()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.05, 0.8, 48)[None, :].repeat(48, 0)
    for n, p in enumerate(levels):
        noisy = ramp + np.sqrt(p.a * ramp + p.b) * rng.standard_normal(ramp.shape)
        for folder, name, x in (("gt", f"gt{n}", ramp), (split, f"noisy{n}", noisy)):
            write_new_dng(root / folder / f"{name}.dng", denormalize(x, 1024, 16383), "BGGR", 1024, 16383)
    if meta:
        records = [{"key": str(n), **p.as_dict()} for n, p in enumerate(levels)]
        other = [{"key": str(n), "a": 1.0, "b": 1.0} for n in range(len(levels))]  # the other part's, never read
        (root / "meta.json").write_text(json.dumps({split: records, "test" if split == "val" else "val": other}))
    return ["--test", str(root / split), "--gt", str(root / "gt")]


def test_true_level_rows_get_the_truth_and_the_worst_frame_is_reported(tmp_path: Path) -> None:
    levels = [NoiseParams(3e-4, 5e-6), NoiseParams(5e-3, 2e-4)]
    argv = _frames(tmp_path, levels)
    out = tmp_path / "scores.json"
    assert _compare_script().main([*argv, "--methods", "noisy,wavelet,wavelet@true", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for record, params in zip(result["frames"], levels, strict=True):
        noisy, gt = read_dng(tmp_path / "test" / f"noisy{record['frame']}.dng"), read_dng(tmp_path / "gt/gt0.dng")
        packed = pack_bayer(normalize(noisy.mosaic, noisy.black_level, noisy.white_level), "BGGR")
        expected = denormalize(unpack_bayer(METHODS["wavelet"](packed, params), "BGGR"), 1024, 16383)
        gt = read_dng(tmp_path / "gt" / f"gt{record['frame']}.dng")
        assert record["methods"]["wavelet@true"]["score"] == pytest.approx(score_image(gt.mosaic, expected).score)
        assert record["noisy_score"] == pytest.approx(record["methods"]["noisy"]["score"])
    gains = [r["methods"]["wavelet"]["score"] - r["noisy_score"] for r in result["frames"]]
    assert result["mean"]["wavelet"]["worst"] == pytest.approx(min(gains))
    assert result["mean"]["noisy"]["worst"] == 0.0


def test_true_level_rows_need_the_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _frames(tmp_path, [NoiseParams(3e-4, 5e-6)], meta=False)
    assert _compare_script().main([*argv, "--methods", "noisy,wavelet@true"]) == 2
    assert "need a meta.json" in capsys.readouterr().err
    assert _compare_script().main([*argv, "--methods", "noisy@true"]) == 2
    assert "unknown method(s) noisy@true" in capsys.readouterr().err


def test_the_validation_folder_reads_its_own_part_of_meta_json(tmp_path: Path) -> None:
    levels = [NoiseParams(3e-4, 5e-6)]
    out = tmp_path / "scores.json"
    argv = _frames(tmp_path, levels, split="val")
    assert _compare_script().main([*argv, "--methods", "noisy,wavelet@true", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["frames"][0]["true"] == levels[0].as_dict()
