"""python -m denoise.export: the ONNX graph of a checkpoint matches PyTorch, noise-aware ones with (a, b) inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.config import Config, InferConfig, ModelConfig, to_dict
from denoise.export import main
from denoise.model import build_model
from denoise.model.nafnet import noise_level_map

ort = pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")]


def _checkpoint(path: Path, noise_channels: int) -> torch.nn.Module:
    cfg = Config(model=ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1),
                                   noise_channels=noise_channels, scale_residual=noise_channels > 0, local_window=16),
                 infer=InferConfig(tile=32, overlap=8))  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # zero-initialised scales would hide the noise input
    torch.save({"model": model.state_dict(), "ema": None, "config": to_dict(cfg), "epoch": 1, "step": 1}, path)
    return model.eval()


@pytest.mark.parametrize("noise_channels", [0, 4])
def test_the_exported_graph_denoises_as_the_checkpoint_does(tmp_path, capsys, noise_channels):
    model = _checkpoint(tmp_path / "best.pth", noise_channels)
    out = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(tmp_path / "best.pth"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "traced at 32 x 32" in printed and "onnxruntime matches PyTorch" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    x = np.random.default_rng(1).random((2, 4, 40, 24), dtype=np.float32)  # a size it was not traced at
    level = np.array([[2e-4, 2e-6], [8e-3, 6e-4]], dtype=np.float32)
    with torch.no_grad():
        inp = torch.from_numpy(x)
        if noise_channels:
            a, b = torch.from_numpy(level).unbind(1)
            inp = torch.cat([inp, noise_level_map(inp, a, b)], 1)
        expected = model(inp).numpy()
    feeds = {"x": x, "noise": level} if noise_channels else {"x": x}
    assert names == list(feeds)
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, atol=1e-4)


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.pth" in err and "Traceback" not in err
    _checkpoint(tmp_path / "best.pth", 0)
    assert main(["--checkpoint", str(tmp_path / "best.pth"), "--out", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "best.pth"), "--out", str(tmp_path / "m.onnx"), "--size", "30"]) == 2
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".*.tmp")) == []
