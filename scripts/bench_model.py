"""Benchmark the model: forward (no grad) and forward+backward+optimizer step, per config and runtime variant.

    python scripts/bench_model.py [--quick] [--compile] [--device cuda] [--configs configs/nafnet.yaml ...]

Variants run interleaved in one process (A, B, C, A, B, C, ...) and report medians, so load from other
processes hits them alike and the ratios against the baseline column are fair. The baseline is the network run
the straightforward way: NCHW, fp32, eager, layer norm as explicit mean/variance arithmetic. "default" is what
training and inference use: ``prepare_model`` / ``prepare_input`` (channels-last, fused layer norm).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from denoise.config import CliParser, ConfigError, load_config
from denoise.inference.tiling import tile_grid
from denoise.model import build_model, prepare_input, prepare_model, use_explicit_layernorm

FRAME = (1736, 2312)  # a competition frame, packed: 4 x 1736 x 2312


@dataclass(frozen=True)
class Variant:
    """One way of running the same weights."""

    name: str
    channels_last: bool
    explicit_norm: bool
    bf16: bool = False
    compiled: bool = False


VARIANTS = [
    Variant("baseline", channels_last=False, explicit_norm=True),
    Variant("nchw+fused-ln", channels_last=False, explicit_norm=False),
    Variant("default", channels_last=True, explicit_norm=False),
    Variant("default+bf16", channels_last=True, explicit_norm=False, bf16=True),
]
COMPILED = [Variant("default+compile", channels_last=True, explicit_norm=False, compiled=True),
            Variant("default+bf16+compile", channels_last=True, explicit_norm=False, bf16=True, compiled=True)]


def return_freed_memory() -> None:
    """Make glibc serve every tensor-sized block by mmap, so a freed tensor leaves the resident set at once.

    Without this, memory freed by one variant is kept by malloc and hides the next variant's peak.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB, fixed


def peak_rss_reset() -> None:
    """Reset the kernel's high-water mark of this process's resident memory (Linux)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str) -> float:
    """VmRSS or VmHWM of this process in MB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def setup(base: torch.nn.Module, v: Variant, device: torch.device) -> torch.nn.Module:
    """A copy of ``base`` configured as variant ``v``."""
    model = use_explicit_layernorm(copy.deepcopy(base), v.explicit_norm)
    model = prepare_model(model, device) if v.channels_last else model.to(device)
    return torch.compile(model) if v.compiled else model


def to_device(x: torch.Tensor, v: Variant, device: torch.device) -> torch.Tensor:
    return prepare_input(x, device) if v.channels_last else x.to(device)


def make_forward(model: torch.nn.Module, x: torch.Tensor, v: Variant, device: torch.device) -> Callable[[], object]:
    """A closure running one no-grad forward pass over ``x`` (a batch, or a list of tiles)."""
    tiles = x if isinstance(x, list) else [x]

    def run() -> torch.Tensor:
        outs = []
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=v.bf16):
            for t in tiles:
                outs.append(model(to_device(t, v, device)).float())
        return outs[0] if len(outs) == 1 else outs

    return run


def make_train_step(model: torch.nn.Module, x: torch.Tensor, v: Variant, device: torch.device) -> Callable[[], object]:
    """A closure running forward, L1 loss, backward and an AdamW step on a fixed batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    noisy = to_device(x, v, device)
    clean = to_device(x[:, :4].clamp(0.05, 0.95), v, device)  # the image planes; a noise map may follow them

    def run() -> float:
        with torch.autocast(device.type, torch.bfloat16, enabled=v.bf16):
            loss = F.l1_loss(model(noisy).float(), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(runs: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, tuple]:
    """Warm each closure up once, then time them round-robin; (median ms, peak MB, first output) per name."""
    results, times = {}, {name: [] for name in runs}
    for name, run in runs.items():
        peak_rss_reset()
        before = rss_mb("VmRSS")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        out = run()
        sync(device)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else rss_mb("VmHWM") - before
        results[name] = (peak, out)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]) * 1000, *results[name]) for name in runs}


def max_diff(a: object, b: object) -> float:
    if isinstance(a, list):
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


def bench_case(base, label, x, pixels, variants, repeats, device, train) -> list[list[str]]:
    """Table rows for one config, input and pass, every variant against the baseline."""
    maker = make_train_step if train else make_forward
    runs = {v.name: maker(setup(base, v, device), x, v, device) for v in variants}
    res = measure(runs, repeats, device)
    base_ms, _, base_out = res["baseline"]
    rows = []
    for v in variants:
        ms, peak, out = res[v.name]
        diff = "" if train else f"{max_diff(out, base_out):.1e}"
        rows.append([label, "fwd+bwd+step" if train else "forward", v.name, f"{ms:,.0f}", f"{pixels / ms / 1e3:.2f}",
                     f"{peak:,.0f}", f"{base_ms / ms:.2f}x", diff])
    return rows


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised residual scales small random values so every branch reaches the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.1)
    return model


HEADER = ["config", "pass", "variant", "median ms", "mosaic MP/s", "peak MB", "vs baseline", "max|diff|"]
WIDTHS = [34, 12, 15, 9, 11, 7, 11, 9]


def print_rows(rows: list[list[str]]) -> None:
    """Markdown table rows, printed as each case finishes so a long run shows progress."""
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, WIDTHS, strict=True)) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=None, help="experiment YAMLs (default: configs/*.yaml)")
    parser.add_argument("--quick", action="store_true", help="2 repeats at 256x256, 1 on the full frame")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats at 256x256 (default 5)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (minutes of compiling on CPU)")
    parser.add_argument("--no-frame", action="store_true", help="skip the full competition frame")
    parser.add_argument("--no-train", action="store_true", help="skip forward+backward+step")
    parser.add_argument("--device", nargs="+", default=None, help="devices to run on (default: cpu, and cuda if any)")
    args = parser.parse_args(argv)
    paths = args.configs if args.configs is not None else sorted(str(p) for p in Path("configs").glob("*.yaml"))
    try:
        configs = [(Path(p).stem, load_config(p)) for p in paths] or [("width32", load_config(None))]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    repeats = 2 if args.quick else args.repeats
    devices = [torch.device(d) for d in args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])]
    variants = VARIANTS + (COMPILED if args.compile else [])
    return_freed_memory()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}{gpu}")
    for device in devices:
        print(f"\n## {device.type}\n")
        print_rows([HEADER])
        print("|" + "|".join("-" * (w + 2) for w in WIDTHS) + "|")
        for name, cfg in configs:
            base = perturbed(build_model(cfg.model).eval())
            channels = cfg.model.in_channels + cfg.model.noise_channels  # noise-aware models read a noise map too
            x = torch.rand(1, channels, 256, 256)
            label = f"{name} w{cfg.model.width} 256x256"
            print_rows(bench_case(base, label, x, 4 * 256 * 256, variants, repeats, device, train=False))
            if not args.no_train:
                print_rows(bench_case(base, label, x, 4 * 256 * 256, variants, repeats, device, train=True))
            if not args.no_frame:
                frame = torch.rand(1, channels, *FRAME)
                tiles = [frame[..., t.y : t.y + t.height, t.x : t.x + t.width]
                         for t in tile_grid(*FRAME, cfg.infer.tile, cfg.infer.overlap)]
                label = f"{name} w{cfg.model.width} frame {len(tiles)}x{cfg.infer.tile} tiles"
                # bf16 is several times slower on CPUs without bf16 instructions, and compiling per tile shape costs
                # minutes: the full frame compares the baseline with the fp32 eager variants only.
                frame_variants = [v for v in variants if not v.compiled and not (v.bf16 and device.type == "cpu")]
                print_rows(bench_case(base, label, tiles, 4 * FRAME[0] * FRAME[1], frame_variants,
                                      1 if args.quick else 2, device, train=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
