"""Summarise a model config: ``python -m denoise.model --config configs/nafnet.yaml [--size H W]``.

Prints the parameter count, multiply-accumulates at a packed input size, and the weight-file size in fp32 and
fp16 against the competition's 50 MB limit.
"""

from __future__ import annotations

import io
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from denoise.config import CliParser, ConfigError, load_config, run_cli
from denoise.model.build import build_model, check_model_fits

LIMIT_BYTES = 50 * 1000 * 1000


def count_macs(model: torch.nn.Module, in_channels: int, height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass on a (1, C, H, W) input; a model on "meta" skips the maths."""
    x = torch.empty(1, in_channels, height, width, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def weight_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Size of ``torch.save(state_dict)`` with floating-point tensors cast to ``dtype``."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.model", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="experiment YAML (defaults when omitted)")
    parser.add_argument("--size", nargs=2, type=int, default=(1736, 2312), metavar=("H", "W"),
                        help="packed input size for the MAC count (a full competition frame)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    if min(args.size) < 1:
        print(f"error: --size must be positive, got {args.size}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
        check_model_fits(cfg.model, torch.device("cpu"), 1, "its weights")
        model = build_model(cfg.model)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in model.parameters())
    sizes = {name: weight_bytes(model, dtype) for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16))}
    h, w = args.size
    with torch.device("meta"):
        channels = cfg.model.in_channels + cfg.model.noise_channels  # a noise-aware model also reads its noise map
        macs = count_macs(build_model(cfg.model), channels, h, w)
    print(f"model        {cfg.model.name} width {cfg.model.width} enc {list(cfg.model.enc_blocks)} "
          f"middle {cfg.model.middle_blocks} dec {list(cfg.model.dec_blocks)}")
    print(f"parameters   {params:,}")
    print(f"MACs         {macs / 1e9:,.2f} G at {channels}x{h}x{w} ({macs / (h * w):,.0f} per pixel)")
    for name, size in sizes.items():
        verdict = "fits" if size <= LIMIT_BYTES else "does NOT fit"
        print(f"weights {name} {size / 1e6:7.2f} MB: {verdict} the competition's 50 MB limit")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
