"""Export a trained checkpoint to ONNX: ``python -m denoise.export --checkpoint PATH --out model.onnx``.

The graph takes what the network takes at inference, after the raw frame is normalised and packed:

- ``x``: (N, 4, H, W) float32, the packed planes in the frame's CFA order, ``(DN - black) / (white - black)``;
- ``noise`` (noise-aware models only): (N, 2) float32, each frame's noise level ``(a, b)`` with variance
  ``a * x + b`` on the same normalised scale: the DNG's NoiseProfile ``(S, O)`` where it has one, else the
  project's blind estimate (``denoise.raw.noise_estimation.estimate_frame_noise``), which is not in the graph;

and returns ``y``: (N, 4, H, W), the denoised planes on the same scale (unpack, scale to DN and clip to
[black, white] to write them). N, H and W are dynamic; a model with a local attention window
(``model.local_window``) needs H and W at least that window, as a tile of ``infer.tile`` packed pixels is, since
the window's branch is fixed when the graph is traced. After writing, onnxruntime (the ``onnx`` extra) runs the
graph on two sizes and the largest difference from PyTorch is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from denoise.atomic import atomic_path
from denoise.config import CliParser, run_cli
from denoise.model.checkpoint import CheckpointError, load_model
from denoise.model.nafnet import NoiseAwareNAFNet

OPSET = 17
TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| accepted on normalised values (about 1.5 DN at 14 bits)


class ExportError(ValueError):
    """An export that cannot be made or does not match PyTorch; the message says which and why."""


class WithNoiseLevel(nn.Module):
    """A noise-aware network as a graph of (image, per-frame (a, b)): the noise map is computed inside."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(x, noise=(noise[:, 0], noise[:, 1]))


def sample_inputs(model: nn.Module, shape: tuple[int, int, int, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of ``shape`` (N, 4, H, W) in range, with noise levels from the competition's range when needed."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator)
    if not isinstance(model, WithNoiseLevel):
        return (x,)
    a = 10 ** (torch.rand(shape[0], generator=generator) * 2 - 4)  # 1e-4 .. 1e-2
    return x, torch.stack([a, a * a * 10], dim=1)


def export_onnx(checkpoint: Path, out: Path, size: int | None = None) -> tuple[nn.Module, int]:
    """Write ``checkpoint``'s network to ``out`` (atomically); returns the exported module and the traced size."""
    if not out.parent.is_dir():
        raise ExportError(f"{out}: folder {out.parent} does not exist")
    net, cfg = load_model(checkpoint, "cpu")
    model = WithNoiseLevel(net) if isinstance(net, NoiseAwareNAFNet) else net
    size = size or cfg.infer.tile or 256
    names = ["x", "noise"] if isinstance(model, WithNoiseLevel) else ["x"]
    axes = {name: {0: "n", 2: "h", 3: "w"} for name in ("x", "y")} | ({"noise": {0: "n"}} if len(names) > 1 else {})
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(model, sample_inputs(model, (1, 4, size, size)), str(tmp), opset_version=OPSET,
                          dynamo=False, input_names=names, output_names=["y"], dynamic_axes=axes)  # fmt: skip
    return model, size


def check_onnx(model: nn.Module, path: Path, sizes: Sequence[tuple[int, int, int, int]]) -> float:
    """Largest |onnxruntime - PyTorch| over inputs of ``sizes``; ExportError when beyond ``TOLERANCE``."""
    import onnxruntime  # the onnx extra; imported here so that exporting does not need it

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, shape in enumerate(sizes):
        inputs = sample_inputs(model, shape, seed)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        feeds = {item.name: tensor.numpy() for item, tensor in zip(session.get_inputs(), inputs, strict=True)}
        got = session.run(None, feeds)[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > TOLERANCE:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch by up to {worst:.2e} (> {TOLERANCE:g})")
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.export", description=__doc__.split("\n\n")[0],
                       epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--checkpoint", type=Path, required=True, help="e.g. runs/<run>/checkpoints/best.pth")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--size", type=int,
                        help="packed side of the input traced (default: the checkpoint's infer.tile)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    args = parser.parse_args(argv)
    try:
        if args.size is not None and (args.size < 8 or args.size % 8):
            raise ExportError(f"--size must be a positive multiple of 8, got {args.size}")
        model, size = export_onnx(args.checkpoint, args.out, args.size)
        inputs = "x, noise" if isinstance(model, WithNoiseLevel) else "x"
        print(f"wrote {args.out} (opset {OPSET}; inputs {inputs}; traced at {size} x {size})")
        if not args.no_check:
            worst = check_onnx(model, args.out, [(1, 4, size, size), (2, 4, size + 8, size - 8)])
            print(f"onnxruntime matches PyTorch to {worst:.1e} on inputs of {size} x {size} and "
                  f"{size + 8} x {size - 8}")
    except ModuleNotFoundError as err:
        print(f"error: {err.name} is missing: pip install -e '.[onnx]' (or pass --no-check)", file=sys.stderr)
        return 2
    except (ExportError, CheckpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
