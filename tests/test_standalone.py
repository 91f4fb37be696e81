"""The standalone ``network.py`` of a noise-aware model: it estimates each frame's noise level itself, as the project's
inference does, so the four packed planes alone reproduce the project's whole-frame output."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module

from denoise.config import InferConfig, ModelConfig
from denoise.inference.pipeline import denoise_frame
from denoise.model import build_model
from denoise.model.standalone import StandaloneError, check_standalone_imports, network_source
from denoise.raw.bayer import denormalize, normalize, pack_bayer, unpack_bayer
from denoise.raw.dng import RawFrame
from denoise.raw.noise_estimation import estimate_frame_noise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BLACK, WHITE = 1024.0, 16383
MODEL = ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), noise_channels=4,
                    scale_residual=True, local_window=16)  # fmt: skip
CHECK_ON = {"noise_window": 1.0, "texture_threshold": 1e-9, "texture_scale": 0.5, "texture_read_share": 1.01}


def _frame(seed: int = 0) -> RawFrame:
    """A textured BGGR frame with shot and read noise, 40x56 packed pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:112]
    clean = 0.25 + 0.15 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.05 * rng.random((80, 112))
    noisy = clean + np.sqrt(4e-3 * clean + 1e-4) * rng.standard_normal(clean.shape)
    mosaic = np.clip(np.rint(noisy * (WHITE - BLACK) + BLACK), 0, WHITE).astype(np.uint16)
    return RawFrame(mosaic, "BGGR", np.full((2, 2), BLACK), WHITE, None, None, None, Path("noisy0.dng"))


def _trained_like(seed: int) -> torch.nn.Module:
    """The tiny model with every weight random (a fresh one's last layer is zero: it returns its input at any level)."""
    torch.manual_seed(seed)
    model = build_model(MODEL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def _network(tmp_path: Path, settings: dict[str, float], model: torch.nn.Module):
    path = tmp_path / "network.py"
    path.write_text(network_source(MODEL, settings))
    net = load_module(path, f"network_{abs(hash(tuple(settings.items())))}").Network()
    net.load_state_dict(model.state_dict())
    return net.eval()


def _judge(net: torch.nn.Module, frame: RawFrame, noise: tuple[float, float] | None = None) -> np.ndarray:
    """network.py on the whole frame's four planes, back to a uint16 mosaic."""
    packed = pack_bayer(normalize(torch.from_numpy(frame.mosaic.astype(np.int32)), BLACK, WHITE), frame.pattern)
    with torch.no_grad():
        planes = net(packed[None]) if noise is None else net(packed[None], noise)
    return denormalize(unpack_bayer(planes[0], frame.pattern), BLACK, WHITE)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


@pytest.mark.parametrize("texture", [False, True])
def test_network_py_estimates_the_level_and_matches_whole_frame_inference(tmp_path: Path, texture: bool) -> None:
    model = _trained_like(0)
    settings = CHECK_ON if texture else {**CHECK_ON, "texture_threshold": 0.0}
    net = _network(tmp_path, settings, model)
    frame = _frame()
    whole = InferConfig(tile=0)
    vars(model).update(settings)  # the package's model with the same test-time options as network.py
    judged = _judge(net, frame)
    assert _max_diff(judged, denoise_frame(model, frame, whole)) <= 1  # float order differs: a rounding step at most
    # the texture check changed the result where it was on, and the window is the model's, not the default
    model.texture_threshold = 0.0 if texture else 1e-9
    assert _max_diff(judged, denoise_frame(model, frame, whole)) > 10
    vars(model).update(settings, noise_window=3.0)
    assert _max_diff(judged, denoise_frame(model, frame, whole)) > 10


def test_a_known_level_replaces_the_estimate(tmp_path: Path) -> None:
    model = _trained_like(1)
    net = _network(tmp_path, CHECK_ON, model)
    frame = _frame(seed=3)
    packed = pack_bayer(normalize(torch.from_numpy(frame.mosaic.astype(np.int32)), BLACK, WHITE), frame.pattern)
    estimate = estimate_frame_noise(packed, 1.0)
    given = (estimate.a * 4, estimate.b * 4)
    with torch.no_grad():
        noise_map = 10 * torch.sqrt(given[0] * packed[None].clamp(0, 1) + given[1])  # NOISE_MAP_GAIN, written out
        expected = model(torch.cat([packed[None], noise_map], 1))
        np.testing.assert_allclose(net(packed[None], given).numpy(), expected.numpy(), rtol=0, atol=1e-6)
        assert not torch.allclose(net(packed[None], given), net(packed[None]))


def test_network_py_imports_torch_only_and_refuses_other_models() -> None:
    source = network_source(MODEL, CHECK_ON)
    check_standalone_imports(source)
    assert "def estimate_frame_noise" in source and "def fit_clipped" in source and "class Network(" in source
    assert "texture_threshold=1e-09" in source and "class Network(NoiseAwareNAFNet)" in source
    blind = network_source(replace(MODEL, noise_channels=0, scale_residual=False))
    assert "class Network(NAFNet)" in blind and "texture_threshold" not in blind.split("class Network(")[1]
    with pytest.raises(StandaloneError, match="import only torch"):
        check_standalone_imports("import numpy as np\n")
    with pytest.raises(StandaloneError, match="only NAFNet"):
        network_source(replace(MODEL, name="unet"))


def test_network_py_loads_by_path_without_being_registered(tmp_path: Path) -> None:
    """A judge may load the file by path or exec it: nothing in it may need ``sys.modules`` to know it (dataclasses
    under postponed annotations do)."""
    path = tmp_path / "network.py"
    path.write_text(network_source(MODEL, CHECK_ON))
    spec = importlib.util.spec_from_file_location("judges_network", path)
    module = importlib.util.module_from_spec(spec)  # not put in sys.modules
    spec.loader.exec_module(module)
    namespace: dict = {"__name__": "exec_network"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    for network in (module.Network, namespace["Network"]):
        net = network().eval()
        with torch.no_grad():
            assert net(torch.rand(1, 4, 24, 32)).shape == (1, 4, 24, 32)


def test_two_modules_defining_one_name_are_refused(monkeypatch) -> None:
    from denoise.model import standalone

    def body(module):
        return "def estimate_frame_noise():\n    pass\n" if module.__name__.endswith("nafnet") else real(module)

    real = standalone._module_body
    monkeypatch.setattr(standalone, "_module_body", body)
    with pytest.raises(StandaloneError, match="both define 'estimate_frame_noise'"):
        network_source(MODEL, CHECK_ON)
