"""Inference cost of one full competition frame: seconds and peak memory with the default tiling, per device.

    python scripts/bench_infer.py [--config configs/nafnet.yaml] [--size 3472 4624] [--device cpu cuda] [--tta]

The network has the config's shape and random weights (speed does not depend on the weights); the frame is a
synthetic BGGR mosaic written to and read from a real DNG, then denoised exactly as ``denoise.infer`` does.
Peak memory is the process's peak resident set on the CPU and the allocator's peak on a GPU.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from denoise.config import CliParser, load_config
from denoise.inference.pipeline import denoise_frame
from denoise.model import build_model, prepare_model
from denoise.model.build import blind_options
from denoise.raw.dng import read_dng, write_new_dng


def synthetic_frame(path: Path, height: int, width: int) -> None:
    """A smooth BGGR scene with competition levels and moderate noise, written as one-strip DNG."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = 0.3 + 0.25 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
    noisy = scene + rng.normal(0.0, 0.02, scene.shape).astype(np.float32)
    mosaic = np.clip(np.rint(1024 + noisy * (16383 - 1024)), 1024, 16383).astype(np.uint16)
    write_new_dng(path, mosaic, "BGGR", 1024, 16383, as_shot_neutral=np.array([0.5, 1.0, 0.6]))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_device(cfg, frame_path: Path, device: str, tta: bool) -> tuple[float, float]:
    """(seconds, peak memory MB) to denoise the frame once on ``device``."""
    model = prepare_model(build_model(cfg.model, **blind_options(cfg)).eval(), torch.device(device))
    settings = dataclasses.replace(cfg.infer, tta=tta, device=device)
    frame = read_dng(frame_path)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        out = denoise_frame(model, frame, settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.shape == frame.mosaic.shape
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else peak_rss_mb()
    return seconds, memory


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/nafnet.yaml", help="experiment YAML: model and infer section")
    parser.add_argument("--size", type=int, nargs=2, default=(3472, 4624), metavar=("H", "W"),
                        help="mosaic size of the synthetic frame (a competition frame)")
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"],
                        help="devices to time, one after another")
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (8x the work)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides, e.g. infer.tile=384")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    height, width = args.size
    m = cfg.model
    print(f"model width {m.width}, enc {list(m.enc_blocks)}, middle {m.middle_blocks}; frame {height}x{width}; "
          f"tile {cfg.infer.tile}, overlap {cfg.infer.overlap}, batch {cfg.infer.batch_size}, "
          f"{cfg.infer.precision}, tta {args.tta}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        frame_path = Path(tmp) / "frame.dng"
        synthetic_frame(frame_path, height, width)
        baseline = peak_rss_mb()
        print(f"{'device':<8} {'seconds':>9} {'s/MP':>7} {'peak MB':>9}")
        for device in args.device:
            seconds, memory = bench_device(cfg, frame_path, device, args.tta)
            print(f"{device:<8} {seconds:>9.1f} {seconds / (height * width / 1e6):>7.2f} {memory:>9.0f}")
        print(f"(CPU peak is the whole process's resident set; {baseline:.0f} MB was reached before inference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
