"""Noise-aware networks: the noise-level map, the model's extra channels, samples carrying their noise level,
and inference that reads the level off the noisy frame alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from dataset_fixtures import BLACK, WHITE, write_frame

from denoise.config import ConfigError, DataConfig, InferConfig, ModelConfig, load_config
from denoise.dataset.frames import load_split
from denoise.dataset.loader import build_train_loader
from denoise.inference.pipeline import denoise_frame
from denoise.inference.tta import denoise_mosaic, transforms_for
from denoise.model import NAFNet, build_model
from denoise.model.build import blind_options
from denoise.model.nafnet import NOISE_MAP_GAIN, NoiseAwareNAFNet, denoise_blind, noise_level_map
from denoise.raw.bayer import normalize, pack_bayer
from denoise.raw.dng import RawFrame
from denoise.raw.noise import add_gaussian_noise, fit_pair_noise
from denoise.raw.noise_estimation import (
    HEDGE,
    NoiseParams,
    estimate_frame_noise,
    estimate_noise,
)

TINY = {"width": 8, "enc_blocks": (1, 1), "middle_blocks": 1, "dec_blocks": (1, 1)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def aware_model(seed: int = 0, **test_time: float) -> NoiseAwareNAFNet:
    """A tiny noise-aware NAFNet (with ``test_time`` options) with its zero-initialised scales perturbed, so the map
    reaches the output."""
    torch.manual_seed(seed)
    model = NoiseAwareNAFNet(**TINY, noise_channels=4, **test_time)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_noise_level_map_matches_the_formula_per_sample():
    x = torch.rand(2, 4, 3, 5) * 1.4 - 0.2  # values outside [0, 1] too
    a, b = torch.tensor([1e-3, 4e-3]), torch.tensor([1e-5, 2e-4])
    out = noise_level_map(x, a, b)
    for n in range(2):
        for value, got in zip(x[n].flatten().tolist(), out[n].flatten().tolist(), strict=True):
            expected = NOISE_MAP_GAIN * np.sqrt(a[n].item() * min(max(value, 0.0), 1.0) + b[n].item())
            assert got == pytest.approx(expected, rel=1e-5)
    assert torch.equal(noise_level_map(x, 1e-3, 1e-5)[0], out[0])  # floats broadcast to every sample


def test_noise_channels_widen_the_input_only_and_the_residual_goes_to_the_image():
    model = NAFNet(**TINY, noise_channels=4)
    assert model.intro.in_channels == 8 and model.ending.out_channels == 4
    blind = NAFNet(**TINY)
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in blind.parameters()) == 4 * 8 * 9
    x = torch.rand(2, 8, 5, 7)
    with torch.no_grad():
        torch.nn.init.zeros_(model.ending.weight)
        torch.nn.init.zeros_(model.ending.bias)
        assert torch.equal(model(x), x[:, :4])  # starts as the identity on the image channels
        perturbed = aware_model()
        other = x.clone()
        other[:, 4:] *= 2
        assert perturbed(x).shape == (2, 4, 5, 7)
        assert not torch.allclose(perturbed(x), perturbed(other))  # the map is read
    with pytest.raises(AssertionError, match="expected"):
        model(torch.rand(1, 4, 8, 8))


def test_scale_residual_multiplies_the_residual_by_the_map():
    torch.manual_seed(0)
    scaled = NAFNet(**TINY, noise_channels=4, scale_residual=True)
    plain = NAFNet(**TINY, noise_channels=4)
    plain.load_state_dict(scaled.state_dict())  # same parameters: the flag adds none
    with torch.no_grad():
        for p in scaled.parameters():
            p.add_(0.1 * torch.randn_like(p))
        plain.load_state_dict(scaled.state_dict())
        x = torch.rand(2, 8, 6, 10)
        expected = x[:, :4] + (plain(x) - x[:, :4]) * x[:, 4:]
        assert torch.allclose(scaled(x), expected, atol=1e-6)
        silent = torch.cat([x[:, :4], torch.zeros_like(x[:, 4:])], dim=1)
        assert torch.equal(scaled(silent), x[:, :4])  # no noise: the frame passes through unchanged
    with pytest.raises(AssertionError, match="scale_residual"):
        NAFNet(**TINY, scale_residual=True)


def test_build_model_passes_noise_channels():
    assert build_model(ModelConfig(**TINY, noise_channels=4)).intro.in_channels == 8
    assert build_model(ModelConfig(**TINY)).intro.in_channels == 4
    assert build_model(ModelConfig(**TINY, noise_channels=4, scale_residual=True)).scale_residual


def _flat_pairs(root, noise: tuple[float, float], count: int = 2, shape=(64, 64)) -> None:
    """Pairs of a smooth ramp, the noisy frame with Gaussian noise of ``noise`` rounded to DN and clipped."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.1, 0.6, shape[1])[None, :].repeat(shape[0], 0)
    clean = np.rint(BLACK + ramp * (WHITE - BLACK)).astype(np.uint16)
    noisy_n = add_gaussian_noise(normalize(clean, BLACK, WHITE), *noise, rng)
    noisy = np.clip(np.rint(BLACK + noisy_n * (WHITE - BLACK)), BLACK, WHITE).astype(np.uint16)
    for i in range(count):
        write_frame(root / "noisy" / f"{i}_noise.dng", noisy)
        write_frame(root / "ground truth" / f"{i}_gt.dng", clean)


@pytest.mark.parametrize("window", [3.0, 1.0])
def test_real_samples_carry_the_level_estimated_from_the_noisy_frame(tmp_path, window):
    _flat_pairs(tmp_path / "data", (2e-3, 1e-4))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=0, num_workers=0, patch_size=8, batch_size=4,
                     samples_per_epoch=8, noise_estimate_window=window)  # fmt: skip
    batch = next(iter(build_train_loader(cfg, seed=0, noise_levels=True)))
    train, _ = load_split(cfg)
    packed = normalize(np.load(train[0].noisy.array_path).astype(np.float32),
                       train[0].noisy.channel_black()[:, None, None], WHITE)  # fmt: skip
    expected = estimate_noise(packed, window=window)  # from the noisy frame alone, as at test time
    assert expected != estimate_noise(packed, window=4.0 - window)  # the window matters here
    assert batch["a"].shape == (4,) and torch.allclose(batch["a"], torch.tensor(expected.a), rtol=1e-6)
    assert torch.allclose(batch["b"], torch.tensor(expected.b), rtol=1e-6)
    assert 1e-3 < expected.a < 4e-3  # a rough estimate on so small a frame, but of the right level
    assert "a" not in next(iter(build_train_loader(cfg, seed=0)))  # blind training: no levels computed


def test_synthetic_samples_carry_their_drawn_level_and_are_quantised(tmp_path):
    _flat_pairs(tmp_path / "data", (1e-4, 1e-6))
    cfg = DataConfig(root=str(tmp_path / "data"), val_count=0, num_workers=0, patch_size=8, batch_size=16,
                     samples_per_epoch=16, synthetic_fraction=1.0, noise_a_range=(1e-3, 1e-2),
                     noise_b_range=(1e-5, 1e-3))  # fmt: skip
    batch = next(iter(build_train_loader(cfg, seed=0, noise_levels=True)))
    a, b = batch["a"], batch["b"]
    assert ((a >= 1e-3) & (a <= 1e-2)).all() and ((b >= 1e-5) & (b <= 1e-3)).all() and len(set(a.tolist())) > 1
    dn = batch["noisy"] * (WHITE - BLACK)
    assert torch.allclose(dn, dn.round(), atol=2e-3) and batch["noisy"].min() >= 0 and batch["noisy"].max() <= 1
    # The residual's variance follows each sample's own level.
    residual = (batch["noisy"] - batch["clean"]).double()
    predicted = a.double()[:, None, None, None] * batch["clean"].double() + b.double()[:, None, None, None]
    assert abs((residual**2).mean().item() / predicted.mean().item() - 1) < 0.15


def test_pair_fit_recovers_the_level():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0.05, 0.9, (4, 64, 64)).astype(np.float32)
    noisy = add_gaussian_noise(clean, 3e-3, 2e-4, rng)
    a, b = fit_pair_noise(noisy, clean)
    assert a == pytest.approx(3e-3, rel=0.1) and b == pytest.approx(2e-4, rel=0.2)


def _frame(noise: tuple[float, float], shape=(64, 96)) -> RawFrame:
    rng = np.random.default_rng(2)
    ramp = np.linspace(0.05, 0.7, shape[1])[None, :].repeat(shape[0], 0)
    noisy = add_gaussian_noise(ramp, *noise, rng)
    mosaic = np.clip(np.rint(BLACK + noisy * (WHITE - BLACK)), BLACK, WHITE).astype(np.uint16)
    return RawFrame(mosaic=mosaic, pattern="BGGR", black_level=np.full((2, 2), float(BLACK)), white_level=WHITE,
                    as_shot_neutral=None, color_matrix=None, iso=None, path=None)  # fmt: skip


def test_the_blind_flow_runs_the_network_at_the_frame_estimate_of_its_window():
    frame = _frame((3e-3, 1e-4))
    packed = torch.from_numpy(pack_bayer(normalize(frame.mosaic, BLACK, WHITE), "BGGR"))
    for window in (3.0, 1.0):
        levels = []
        out = denoise_blind(packed, lambda level, seen=levels: seen.append(level) or packed * 0.5, window, 0.0, 0.1,
                            0.125)  # fmt: skip
        assert levels == [estimate_noise(packed, window=window)]  # once: the texture check is off
        assert torch.equal(out, packed * 0.5)
    assert estimate_noise(packed, window=1.0) != estimate_noise(packed, window=3.0)  # the window matters here
    assert estimate_frame_noise(packed[:, :6, :6]).a > 0  # too small for 16-pixel blocks: smaller blocks
    model = aware_model()  # at a given level: the network on the image and that level's map
    level = NoiseParams(3e-3, 1e-4)
    expected = NAFNet.forward(model, torch.cat([packed[None], noise_level_map(packed[None], *level)], 1))
    assert torch.equal(model.at_level(level)(packed[None]), expected)


@pytest.mark.parametrize("tta, window", [(False, 3.0), (True, 3.0), (False, 1.0)])
def test_pipeline_reads_the_noise_level_from_the_noisy_frame_alone(tta, window):
    frame = _frame((3e-3, 1e-4))
    model = aware_model(noise_window=window)
    settings = InferConfig(tile=16, overlap=4, tta=tta)
    out = denoise_frame(model, frame, settings)
    x = torch.from_numpy(normalize(frame.mosaic, BLACK, WHITE))
    params = estimate_noise(pack_bayer(x.numpy(), "BGGR"), window=window)
    y = denoise_mosaic(model.at_level(params), x, "BGGR", 16, 4, transforms_for(tta))
    expected = np.clip(np.rint(BLACK + y.numpy().astype(np.float64) * (WHITE - BLACK)), BLACK, WHITE)
    np.testing.assert_array_equal(out, expected.astype(np.uint16))
    other = denoise_frame(model, frame, settings, noise=NoiseParams(params.a * 10, params.b * 10))
    assert not np.array_equal(other, out)  # the level matters, so the test above can fail


def test_noise_aware_training_inference_and_submission(tmp_path):
    from train_data import make_pairs, tiny_config

    from denoise import submit
    from denoise.model.checkpoint import load_model
    from denoise.raw.dng import read_dng, write_new_dng
    from denoise.train.loop import train

    data = make_pairs(tmp_path / "data", count=3, size=64)
    cfg = tiny_config(data, tmp_path / "runs", "model.noise_channels=4", "model.scale_residual=true",
                      "data.synthetic_fraction=0.5", "data.noise_estimate_window=1.0", "train.epochs=1")  # fmt: skip
    result = train(cfg)
    checkpoint = result.run_dir / "checkpoints" / "last.pth"
    model, loaded = load_model(checkpoint)
    assert loaded.model.noise_channels == 4 and model.intro.in_channels == 8
    assert loaded.data.noise_estimate_window == 1.0
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    source = read_dng(data / "noisy" / "0_noise.dng")
    write_new_dng(test_dir / "noisy0.dng", source.mosaic, "BGGR", BLACK, WHITE)
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(tmp_path / "result")]
    assert submit.main([*args, "--tile", "0", "--any-count"]) == 0  # with the standalone network.py check
    # The submission's frame is the model's output given the level estimated with its own training window.
    frame = read_dng(test_dir / "noisy0.dng")
    written = read_dng(tmp_path / "result" / "data" / "denoise0.dng").mosaic
    assert model.noise_window == 1.0  # the window the model was trained with comes with it
    np.testing.assert_array_equal(written, denoise_frame(model, frame, InferConfig(tile=0)))
    model.noise_window = 3.0
    assert not np.array_equal(written, denoise_frame(model, frame, InferConfig(tile=0)))
    from denoise import infer

    infer_args = ["--checkpoint", str(checkpoint), "--input", str(test_dir), "--output", str(tmp_path / "infer")]
    assert infer.main([*infer_args, "--tile", "0"]) == 0  # the plain CLI reads the window off the checkpoint too
    np.testing.assert_array_equal(read_dng(tmp_path / "infer" / "denoise0.dng").mosaic, written)
    report = (tmp_path / "result" / "algorithm" / "report.md").read_text()
    assert "noise-aware" in report
    network = (tmp_path / "result" / "algorithm" / "models" / "network.py").read_text()
    assert "noise_channels=4" in network and "scale_residual=True" in network and "def noise_level_map" in network


def test_texture_check_denoises_again_at_the_scaled_level():
    frame, model = _frame((3e-3, 1e-4)), aware_model()
    estimate = estimate_frame_noise(pack_bayer(normalize(frame.mosaic, BLACK, WHITE), "BGGR").astype(np.float32))
    tiles = InferConfig(tile=16, overlap=4)
    plain = denoise_frame(model, frame, tiles)
    always = aware_model(texture_threshold=1e-9, texture_scale=0.5, texture_read_share=1.0)  # the same weights
    lowered = NoiseParams(estimate.a * 0.25, estimate.b * 0.25)  # half the std
    np.testing.assert_array_equal(denoise_frame(always, frame, tiles),
                                  denoise_frame(model, frame, tiles, noise=lowered))
    off = aware_model(texture_threshold=0.0, texture_read_share=1.0)
    np.testing.assert_array_equal(denoise_frame(off, frame, tiles), plain)
    # Under the read-noise gate with a residual that does not follow the image: denoised again at HEDGE.
    never = aware_model(texture_threshold=0.999, texture_read_share=1.0)
    np.testing.assert_array_equal(denoise_frame(never, frame, tiles),
                                  denoise_frame(model, frame, tiles, noise=estimate.std_scaled(HEDGE)))
    assert not np.array_equal(denoise_frame(always, frame, tiles), plain)  # so the checks above can fail
    given = NoiseParams(estimate.a * 2, estimate.b * 2)  # a given level (NoiseProfile, truth) is not second-guessed
    np.testing.assert_array_equal(denoise_frame(always, frame, tiles, noise=given),
                                  denoise_frame(model, frame, tiles, noise=given))


def test_the_texture_check_waits_for_a_level_with_little_read_noise():
    frame, model = _frame((3e-3, 1e-4)), aware_model()
    packed = pack_bayer(normalize(frame.mosaic, BLACK, WHITE), "BGGR")
    estimate = estimate_frame_noise(packed.astype(np.float32))
    share = estimate.b / (estimate.a * float(packed.mean()) + estimate.b)
    tiles = InferConfig(tile=16, overlap=4)
    plain = denoise_frame(model, frame, tiles)
    lowered = denoise_frame(model, frame, tiles, noise=NoiseParams(estimate.a * 0.25, estimate.b * 0.25))
    for gate, expected in ((share * 0.99, plain), (share * 1.01, lowered)):
        checked = aware_model(texture_threshold=1e-9, texture_scale=0.5, texture_read_share=gate)
        np.testing.assert_array_equal(denoise_frame(checked, frame, tiles), expected)
    assert not np.array_equal(plain, lowered)


def test_the_texture_check_comes_with_the_model():
    cfg = load_config(None, ["infer.texture_threshold=0.3", "infer.texture_scale=0.125",
                             "infer.texture_read_share=0.05", "data.noise_estimate_window=1"])  # fmt: skip
    model = build_model(replace(cfg.model, **TINY, noise_channels=4), **blind_options(replace(
        cfg, model=replace(cfg.model, noise_channels=4))))  # fmt: skip
    assert (model.texture_threshold, model.texture_scale, model.texture_read_share, model.noise_window) == (
        0.3, 0.125, 0.05, 1.0)  # fmt: skip
    assert blind_options(cfg) == {}  # a blind model has none
    for bad in ("infer.texture_threshold=1.0", "infer.texture_scale=0", "infer.texture_read_share=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            load_config(None, [bad])
