"""A DNG's NoiseProfile (tag 51041) read from the file and given to a noise-aware model instead of the estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.config import Config, ConfigError, InferConfig, ModelConfig, load_config, to_dict
from denoise.infer import main as infer_main
from denoise.inference.pipeline import denoise_frame, noise_source
from denoise.model import build_model
from denoise.raw.bayer import normalize, pack_bayer
from denoise.raw.dng import read_dng
from denoise.raw.noise import profile_noise
from denoise.raw.noise_estimation import NoiseParams, estimate_frame_noise

BLACK, WHITE = 64, 4095
PROFILE_RGB = (4e-4, 2e-6, 2e-4, 1e-6, 6e-4, 4e-6)  # (S, O) for R, G, B


def _noisy(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.7, shape[1])[None, :].repeat(shape[0], 0)
    noisy = ramp + np.sqrt(2e-3 * ramp + 1e-4) * rng.standard_normal(shape)
    return np.clip(np.rint(BLACK + noisy * (WHITE - BLACK)), BLACK, WHITE).astype(np.uint16)


@pytest.mark.parametrize(
    ("profile", "where", "preview"),
    [((3e-4, 5e-7), "ifd0", False), (PROFILE_RGB, "ifd0", True), (PROFILE_RGB, "raw", True)],
)
def test_the_reader_returns_the_values_the_file_holds(make_dng, profile, where, preview) -> None:
    path = make_dng("p.dng", _noisy(), black=BLACK, white=WHITE, preview=preview, noise_profile=profile,
                    noise_profile_in=where)  # fmt: skip
    frame = read_dng(path)
    assert frame.noise_profile == pytest.approx(profile, rel=1e-12)


@pytest.mark.parametrize("profile", [None, (3e-4, 5e-7, 1e-4), (-3e-4, 5e-7), (3e-4, -1e-6), (float("nan"), 1e-6)])
def test_an_absent_or_unusable_profile_reads_as_none(make_dng, profile) -> None:
    assert read_dng(make_dng("p.dng", _noisy(), black=BLACK, white=WHITE, noise_profile=profile)).noise_profile is None


def test_planes_combine_as_the_packed_channels_weigh_them() -> None:
    assert profile_noise((3e-4, 5e-7)) == NoiseParams(3e-4, 5e-7)
    combined = profile_noise(PROFILE_RGB)  # R, G twice, B over the four packed channels
    assert combined.a == pytest.approx((4e-4 + 2 * 2e-4 + 6e-4) / 4)
    assert combined.b == pytest.approx((2e-6 + 2 * 1e-6 + 4e-6) / 4)
    assert profile_noise((1e-4, 1e-6, 3e-4, 3e-6)) == NoiseParams(pytest.approx(2e-4), pytest.approx(2e-6))


def _aware_config() -> Config:
    return Config(model=ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1),
                                    noise_channels=4, scale_residual=True))  # fmt: skip


def test_denoise_frame_takes_the_profile_unless_told_to_estimate(make_dng) -> None:
    torch.manual_seed(0)
    model = build_model(_aware_config().model).eval()
    frame = read_dng(make_dng("p.dng", _noisy(), black=BLACK, white=WHITE, noise_profile=PROFILE_RGB))
    packed = pack_bayer(normalize(frame.mosaic, frame.black_level, frame.white_level), frame.pattern)
    estimated = estimate_frame_noise(packed)
    assert abs(estimated.a - profile_noise(PROFILE_RGB).a) > 1e-4  # the two levels differ, so the test can fail
    auto, estimate = InferConfig(tile=0), InferConfig(tile=0, noise_source="estimate")
    assert noise_source(frame, auto) == "NoiseProfile" and noise_source(frame, estimate) == "estimated"
    from_profile = denoise_frame(model, frame, auto)
    np.testing.assert_array_equal(from_profile, denoise_frame(model, frame, auto, noise=profile_noise(PROFILE_RGB)))
    given = denoise_frame(model, frame, auto, noise=estimated)
    np.testing.assert_array_equal(denoise_frame(model, frame, estimate), given)
    assert not np.array_equal(from_profile, denoise_frame(model, frame, estimate))


def test_infer_says_where_each_level_came_from(tmp_path: Path, make_dng, capsys) -> None:
    torch.manual_seed(0)
    cfg = _aware_config()
    checkpoint = tmp_path / "best.pth"
    torch.save({"model": build_model(cfg.model).state_dict(), "ema": None, "config": to_dict(cfg)}, checkpoint)
    inp = tmp_path / "in"
    inp.mkdir()
    make_dng("in/noisy0.dng", _noisy(1), black=BLACK, white=WHITE, noise_profile=PROFILE_RGB)
    make_dng("in/noisy1.dng", _noisy(2), black=BLACK, white=WHITE)
    config = tmp_path / "mycam.yaml"
    config.write_text("infer:\n  tile: 0\n")  # noise_source left at its default, auto
    base = ["--checkpoint", str(checkpoint), "--input", str(inp), "--config", str(config)]
    assert infer_main([*base, "--output", str(tmp_path / "auto")]) == 0
    lines = {line.split(" -> ")[0]: line for line in capsys.readouterr().out.splitlines() if " -> " in line}
    assert lines["noisy0.dng"].endswith("; noise level NoiseProfile)")
    assert lines["noisy1.dng"].endswith("; noise level estimated)")
    assert infer_main([*base, "--output", str(tmp_path / "est"), "--noise-source", "estimate"]) == 0
    assert "noisy0.dng -> denoise0.dng (patch; noise level estimated)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"infer\.noise_source"):
        load_config(None, ["infer.noise_source=profile"])
