"""NAFNet: published parity (parameter counts, key names), layer norm maths, formats, export, training."""

from __future__ import annotations

import ast
import io
import os
import sys
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from denoise.config import ModelConfig
from denoise.model import MODELS, NAFNet, build_model, prepare_input, prepare_model, use_explicit_layernorm
from denoise.model.__main__ import main as model_main
from denoise.model.nafnet import LayerNorm2d, local_mean

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {"width": 8, "enc_blocks": (1, 1), "middle_blocks": 1, "dec_blocks": (1, 1)}


def tiny_model(seed: int = 0) -> NAFNet:
    """A two-level NAFNet whose zero-initialised scales are perturbed, so every branch affects the output."""
    torch.manual_seed(seed)
    model = NAFNet(**TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("width", "expected"), [(32, 29_160_292), (16, 7_372_212)])
def test_parameter_count_matches_published_network(width, expected):
    with torch.device("meta"):
        model = build_model(ModelConfig(width=width))
    assert n_params(model) == expected


def test_state_dict_keys_follow_published_naming():
    keys = set(NAFNet(**TINY).state_dict())
    block = ["beta", "gamma", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "sca.1.weight",
             "sca.1.bias"] + [f"conv{i}.{p}" for i in range(1, 6) for p in ("weight", "bias")]
    expected = {"intro.weight", "intro.bias", "ending.weight", "ending.bias"}
    for stage in ("encoders.0.0", "encoders.1.0", "middle_blks.0", "decoders.0.0", "decoders.1.0"):
        expected |= {f"{stage}.{name}" for name in block}
    for i in range(2):
        expected |= {f"downs.{i}.weight", f"downs.{i}.bias", f"ups.{i}.0.weight"}
    assert keys == expected
    assert NAFNet(**TINY).state_dict()["encoders.0.0.beta"].shape == (1, 8, 1, 1)


def test_the_files_network_py_is_made_of_import_only_torch_the_stdlib_and_each_other():
    root = Path(__file__).parents[1] / "denoise"
    allowed = {"torch"} | set(sys.stdlib_module_names)
    for path, ours in ((root / "raw" / "noise_estimation.py", set()),
                       (root / "model" / "nafnet.py", {"denoise.raw.noise_estimation"})):  # fmt: skip
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert {m for m in modules if m.split(".")[0] not in allowed} == ours, path


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (17, 30), (33, 16)])
def test_odd_sizes_keep_shape_and_start_as_identity(size):
    x = torch.rand(2, 4, *size)
    model = NAFNet(**TINY)  # beta, gamma start at zero and the ending conv output is added to the input
    with torch.no_grad():
        torch.nn.init.zeros_(model.ending.weight)
        torch.nn.init.zeros_(model.ending.bias)
        y = model(x)
        assert y.shape == x.shape
        assert torch.equal(y, x)
        assert tiny_model()(x).shape == x.shape


def reference_layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm over channels written element by element in float64 (biased variance)."""
    x64 = x.double()
    n = x.shape[1]
    mean = sum(x64[:, c] for c in range(n)) / n
    var = sum((x64[:, c] - mean) ** 2 for c in range(n)) / n
    out = [(x64[:, c] - mean) / (var + eps).sqrt() * weight[c].double() + bias[c].double() for c in range(n)]
    return torch.stack(out, 1)


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_layernorm2d_values_and_gradients(explicit, channels_last):
    torch.manual_seed(1)
    x = (3 * torch.randn(2, 6, 5, 7) + 1).requires_grad_()
    norm = LayerNorm2d(6, explicit=explicit)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
        norm.bias.copy_(torch.randn(6))
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    upstream = torch.randn(2, 6, 5, 7)
    y = norm(xin)
    (gx, gw, gb) = torch.autograd.grad((y * upstream).sum(), (x, norm.weight, norm.bias))

    x64 = x.detach().double().requires_grad_()
    w64 = norm.weight.detach().double().requires_grad_()
    b64 = norm.bias.detach().double().requires_grad_()
    ref = reference_layernorm(x64, w64, b64, 1e-6)
    rx, rw, rb = torch.autograd.grad((ref * upstream.double()).sum(), (x64, w64, b64))
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    for got, want in ((gx, rx), (gw, rw), (gb, rb)):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)


def test_channels_last_matches_nchw_and_explicit_layernorm():
    model = tiny_model().eval()
    x = torch.rand(2, 4, 24, 21)
    with torch.no_grad():
        ref = use_explicit_layernorm(tiny_model().eval())(x)
        fast = prepare_model(model, "cpu")
        xin = prepare_input(x, "cpu")
        assert xin.is_contiguous(memory_format=torch.channels_last)
        assert fast.intro.weight.is_contiguous(memory_format=torch.channels_last)
        y = fast(xin)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_prepared_parameters_and_their_gradients_share_strides(threads):
    # DistributedDataParallel lays its gradient buckets out like the parameters and warns, and copies, for every
    # gradient whose strides differ: after prepare_model none may, whatever the thread count (oneDNN picks other
    # kernels for 1x1 convolutions with more than one thread).
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = prepare_model(tiny_model(), "cpu")
        model(prepare_input(torch.rand(2, 4, 16, 16), "cpu")).square().mean().backward()
    finally:
        torch.set_num_threads(before)
    for name, p in model.named_parameters():
        assert p.grad.stride() == p.stride(), name
    assert model.intro.weight.is_contiguous(memory_format=torch.channels_last)  # 3x3 weights stay channels-last


def test_bf16_autocast_runs_and_stays_close():
    model = tiny_model().eval()
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.1


def test_few_steps_reduce_loss_on_fixed_batch():
    model = prepare_model(tiny_model(), "cpu")
    torch.manual_seed(2)
    clean = torch.rand(2, 4, 16, 16)
    noisy = prepare_input(clean + 0.1 * torch.randn_like(clean), "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def brute_local_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Window mean per pixel with the window clamped inside the frame, by explicit loops."""
    h, w = x.shape[-2:]
    kh, kw = min(k, h), min(k, w)
    out = torch.empty_like(x)
    for i in range(h):
        top = min(max(i - (kh - 1) // 2, 0), h - kh)
        for j in range(w):
            left = min(max(j - (kw - 1) // 2, 0), w - kw)
            out[..., i, j] = x[..., top : top + kh, left : left + kw].mean((-2, -1))
    return out


@pytest.mark.parametrize("k", [1, 3, 4, 6])
def test_local_mean_matches_brute_force(k):
    x = torch.rand(1, 2, 7, 9)
    torch.testing.assert_close(local_mean(x, (k, k)), brute_local_mean(x, k), atol=1e-6, rtol=0)


def test_local_statistics_equal_global_pooling_when_window_covers_input():
    x = torch.rand(2, 3, 10, 12)
    global_mean = x.mean((-2, -1), keepdim=True).expand_as(x)
    torch.testing.assert_close(local_mean(x, (10, 12)), global_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(local_mean(x, (50, 50)), global_mean, atol=1e-6, rtol=0)
    model = tiny_model().eval()
    x = torch.rand(1, 4, 20, 24)
    with torch.no_grad():
        ref = model(x)
        model.set_local_window(24)  # covers the 24x24 padded input at every level
        assert model(x).equal(ref)
        model.set_local_window(8)  # smaller than the input: the attention sees local statistics
        assert not torch.allclose(model(x), ref, atol=1e-4)
        assert model.middle_blks[0].sca.window == 2


def test_the_config_names_exactly_the_registered_models():
    hint = typing.get_type_hints(ModelConfig)["name"]
    assert typing.get_args(hint) == tuple(MODELS)


def test_build_model_reads_the_config():
    model = build_model(ModelConfig(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,), local_window=64))
    assert model.encoders[0][0].sca.window == 64 and model.middle_blks[0].sca.window == 32
    assert model.intro.out_channels == 8 and len(model.encoders) == 1 and len(model.middle_blks) == 1


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_matches_torch():
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model().eval()
    x = torch.rand(1, 4, 19, 26)
    buffer = io.BytesIO()
    axes = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(model, (x,), buffer, opset_version=17, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": axes, "y": axes})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in ((1, 4, 19, 26), (2, 4, 32, 17)):
        x = torch.rand(shape)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == ref.shape
        assert abs(got - ref).max() < 1e-4


@pytest.mark.skipif(not os.environ.get("DENOISE_SLOW_TESTS"), reason="torch.compile takes minutes on 2 CPU cores")
def test_torch_compile_matches_eager():
    model = tiny_model().eval()
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_summary_cli_on_every_shipped_config(config, capsys):
    # Noise-aware configs read extra input planes; the MAC count must feed them too.
    assert model_main(["--config", str(config), "--size", "32", "32"]) == 0
    assert "parameters" in capsys.readouterr().out


def test_summary_cli(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model:\n  width: 16\n")
    assert model_main(["--config", str(cfg), "--size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "7,372,212" in out and "fits" in out
    assert model_main(["--config", str(cfg), "model.widht=3"]) == 2
    assert "model.width" in capsys.readouterr().err
