"""Classical baselines: the generalised Anscombe transform and its inverses, and that each denoiser denoises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_module

from denoise.inference.classical import (
    METHODS,
    denoise_bm3d_gat,
    gat_expectation,
    gat_forward,
    gat_inverse_algebraic,
    gat_inverse_unbiased,
)
from denoise.raw.noise_estimation import NoiseParams, estimate_noise

PARAMS = NoiseParams(a=4e-3, b=1e-4)


def noisy_pair(params: NoiseParams = PARAMS, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny clean (4, size, size) frame with edges and shading, and its noisy copy clipped to [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.05 + 0.5 * xx + 0.3 * (yy > 0.5) + 0.1 * np.sin(8 * xx + 4 * yy)
    clean = np.stack([base * g for g in (0.6, 1.0, 1.0, 0.8)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    noisy = np.clip(clean + np.sqrt(params.variance(clean)) * rng.standard_normal(clean.shape), 0, 1)
    return clean, noisy.astype(np.float32)


def test_gat_forward_matches_closed_form_and_algebraic_inverse_undoes_it():
    a, b = PARAMS.a, PARAMS.b
    x = np.array([0.0, 0.01, 0.2, 0.7, 1.0])
    expected = 2.0 / a * np.sqrt(a * x + 3.0 / 8.0 * a**2 + b)
    np.testing.assert_allclose(gat_forward(x, PARAMS), expected, rtol=1e-12)
    np.testing.assert_allclose(gat_inverse_algebraic(gat_forward(x, PARAMS), PARAMS), x, atol=1e-12)


def test_gat_stabilises_variance_to_one():
    rng = np.random.default_rng(1)
    for level in (0.1, 0.4, 0.9):
        z = level + np.sqrt(PARAMS.variance(level)) * rng.standard_normal(200_000)
        assert np.std(gat_forward(z, PARAMS)) == pytest.approx(1.0, abs=0.02)


def test_gat_expectation_matches_monte_carlo_with_clipping():
    rng = np.random.default_rng(2)
    for level in (0.0, 0.003, 0.05, 0.995):  # the ends are where clipping at 0 and 1 bites
        z = np.clip(level + np.sqrt(PARAMS.variance(level)) * rng.standard_normal(400_000), 0, 1)
        mc = np.mean(gat_forward(z, PARAMS))
        assert float(gat_expectation(np.array(level), PARAMS)) == pytest.approx(mc, abs=0.01)


def test_unbiased_inverse_with_noise_kept_below_black():
    low = -0.0667  # DN 0 with black 1024, white 16383
    levels = np.array([0.0, 0.004, 0.05])
    rng = np.random.default_rng(4)
    z = np.clip(levels[:, None] + np.sqrt(PARAMS.variance(levels))[:, None] * rng.standard_normal((3, 400_000)), low, 1)
    unbiased = gat_inverse_unbiased(gat_forward(z, PARAMS).mean(axis=1), PARAMS, clip=(low, 1.0))
    np.testing.assert_allclose(unbiased, levels, rtol=0.02, atol=3e-4)


def test_unbiased_inverse_recovers_the_level_from_the_mean_transformed_noise():
    levels = np.array([0.0015, 0.01, 0.05, 0.3, 0.8])
    rng = np.random.default_rng(3)
    z = np.clip(levels[:, None] + np.sqrt(PARAMS.variance(levels))[:, None] * rng.standard_normal((5, 400_000)), 0, 1)
    mean_d = gat_forward(z, PARAMS).mean(axis=1)
    unbiased = gat_inverse_unbiased(mean_d, PARAMS)
    algebraic = gat_inverse_algebraic(mean_d, PARAMS)
    np.testing.assert_allclose(unbiased, levels, rtol=0.02, atol=2e-4)
    # The reason for the unbiased inverse: algebraically, bright levels come back ~a/4 too low (Jensen) and
    # levels near black far too high (clipping at 0 lifts the mean).
    assert algebraic[-1] < levels[-1] - PARAMS.a / 8
    assert algebraic[0] > 2 * levels[0]


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"bm3d"}))
def test_baseline_reduces_error_with_estimated_noise(method):
    clean, noisy = noisy_pair()
    out = METHODS[method](noisy, estimate_noise(noisy))
    assert out.shape == noisy.shape and out.dtype == np.float32
    mse_in, mse_out = np.mean((noisy - clean) ** 2), np.mean((out - clean) ** 2)
    assert mse_out < 0.6 * mse_in, (mse_out, mse_in)


@pytest.mark.skipif(importlib.util.find_spec("bm3d") is None, reason="optional 'bm3d' package not installed")
def test_bm3d_reduces_error():
    clean, noisy = noisy_pair(size=32)
    out = denoise_bm3d_gat(noisy, PARAMS)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.mean((out - clean) ** 2) < 0.6 * np.mean((noisy - clean) ** 2)


def test_bm3d_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` raise ImportError
    with pytest.raises(ImportError, match=r"raw-denoise\[baselines\]"):
        denoise_bm3d_gat(np.full((4, 8, 8), 0.5, dtype=np.float32), PARAMS)


def test_baselines_reject_unpacked_input():
    with pytest.raises(AssertionError, match="packed"):
        METHODS["wavelet"](np.zeros((3, 8, 8), dtype=np.float32), PARAMS)


def _compare_script():
    return load_module(Path(__file__).resolve().parents[1] / "scripts" / "compare_baselines.py")


def test_compare_script_scores_tiny_frames(tmp_path, capsys):
    from denoise.raw.bayer import denormalize, unpack_bayer
    from denoise.raw.dng import write_new_dng

    (tmp_path / "test").mkdir()
    (tmp_path / "gt").mkdir()
    meta = {"test": []}
    for n, params in enumerate((NoiseParams(2e-4, 1e-5), NoiseParams(6e-3, 4e-4))):
        clean, noisy = noisy_pair(params, size=32, seed=n)
        for folder, name, packed in (("gt", f"gt{n}", clean), ("test", f"noisy{n}", noisy)):
            mosaic = denormalize(unpack_bayer(packed, "BGGR"), 1024, 16383)
            write_new_dng(tmp_path / folder / f"{name}.dng", mosaic, "BGGR", 1024, 16383)
        meta["test"].append({"key": str(n), **params.as_dict()})
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "scores.json"
    argv = ["--test", str(tmp_path / "test"), "--gt", str(tmp_path / "gt"), "--methods", "noisy,wavelet,nlm,nlm-tta"]
    assert _compare_script().main([*argv, "--json", str(out), "--markdown"]) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    nlm = result["mean"]["nlm"]
    assert f"| nlm | {nlm['score']:.2f} | {nlm['psnr']:.2f} | {nlm['ssim']:.4f} |" in printed
    assert set(result["per_level"]) == {"low", "high"}
    assert result["per_level"]["high"]["nlm"]["psnr"] > result["per_level"]["high"]["noisy"]["psnr"] + 3
    # The x8 ensemble of NLM averages eight passes with different errors: better than one on these frames.
    assert result["per_level"]["high"]["nlm-tta"]["psnr"] > result["per_level"]["high"]["nlm"]["psnr"]
    assert "noise level of each frame: estimated from it alone" in printed
    assert _compare_script().main([*argv, "--methods", "model"]) == 2  # no --checkpoint
    assert _compare_script().main([*argv, "--noise-window", "0"]) == 2


def test_compare_script_estimates_with_the_window_asked(tmp_path):
    from denoise.raw.bayer import denormalize, unpack_bayer
    from denoise.raw.dng import read_dng, write_new_dng

    (tmp_path / "test").mkdir()
    (tmp_path / "gt").mkdir()
    clean, noisy = noisy_pair(NoiseParams(2e-3, 1e-4), size=48, seed=3)
    for folder, name, packed in (("gt", "gt0", clean), ("test", "noisy0", noisy)):
        write_new_dng(tmp_path / folder / f"{name}.dng", denormalize(unpack_bayer(packed, "BGGR"), 1024, 16383),
                      "BGGR", 1024, 16383)  # fmt: skip
    argv = ["--test", str(tmp_path / "test"), "--gt", str(tmp_path / "gt"), "--methods", "noisy"]
    seen = {}
    for window in (3.0, 1.0):
        out = tmp_path / f"w{window}.json"
        assert _compare_script().main([*argv, "--noise-window", str(window), "--json", str(out)]) == 0
        seen[window] = json.loads(out.read_text())["frames"][0]["estimated"]
    packed = _compare_script().packed_noisy(read_dng(tmp_path / "test" / "noisy0.dng"))
    for window, estimated in seen.items():
        assert estimated == pytest.approx(estimate_noise(packed, window=window).as_dict(), rel=1e-6)
    assert seen[1.0] != seen[3.0]
