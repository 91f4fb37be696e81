"""Quality table: classical denoisers and a trained model on the same test frames, scored the competition's way.

    python scripts/compare_baselines.py [--test data/demo/test] [--gt data/demo/test_gt] [--checkpoint best.pth]
        [--methods noisy,wavelet,nlm,bm3d,bm3d@true,wavelet-tta,nlm-tta,bm3d-tta,model,model-tta] [--max-frames N]
        [--crop H W] [--json OUT] [--markdown]

Noisy frames ``noisy{N}.dng`` pair with ground truth ``gt{N}.dng``. The classical methods
(``denoise.inference.classical``) see only the noisy frame and its noise level: the file's NoiseProfile where it
has one, else the level estimated from it (``--noise meta`` gives every method the true level from the dataset's
meta.json instead, as an oracle; a method named ``NAME@true`` gets the true level alone, so blind and oracle rows
sit in one table). Prints the mean PSNR, competition SSIM, 2-D SSIM, score, worst frame (the lowest score gain
over the noisy input) and seconds per frame of each method, then the same per noise level (from meta.json when
present, else the estimated ``a``), then each frame's noise level against the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from denoise.atomic import write_text_atomic
from denoise.config import CliParser, InferConfig
from denoise.inference.classical import METHODS as BASELINES
from denoise.inference.pipeline import frame_mosaic, noise_source, normalized_frame
from denoise.inference.tta import self_ensemble
from denoise.quality_table import format_markdown, format_noise, format_summary, summarise
from denoise.raw.bayer import (
    all_transforms,
    pack_bayer,
    unpack_bayer,
)
from denoise.raw.dng import DngError, RawFrame, read_dng
from denoise.raw.folders import FolderError, index_folder
from denoise.raw.metrics import score_image
from denoise.raw.noise import LEVEL_EDGES, noise_level, profile_noise
from denoise.raw.noise_estimation import REJECT_SIGMAS, NoiseParams, estimate_noise
from denoise.raw.tiles import centre_box

MODEL_METHODS = ("model", "model-tta")
BASELINE_TTA = tuple(f"{name}-tta" for name in BASELINES)
ALL_METHODS = ("noisy", *BASELINES, *BASELINE_TTA, *MODEL_METHODS)
TRUE = "@true"  # a method name ending so is given the true noise level from meta.json, whatever --noise says

Method = Callable[[RawFrame, NoiseParams], np.ndarray]  # noisy frame, noise level -> (H, W) uint16 mosaic


class CompareError(ValueError):
    """Inputs or options the comparison cannot use; the message says which and why."""


def crop_frame(frame: RawFrame, size: tuple[int, int] | None) -> RawFrame:
    """The frame cut to ``size`` (H, W) about its centre at even offsets, so the CFA phase is unchanged."""
    if size is None:
        return frame
    y0, y1, x0, x1 = centre_box(*frame.mosaic.shape, *size)
    return dataclasses.replace(frame, mosaic=np.ascontiguousarray(frame.mosaic[y0:y1, x0:x1]))


def packed_noisy(frame: RawFrame) -> np.ndarray:
    """Normalised (4, h, w) packed frame over its largest even region."""
    return pack_bayer(normalized_frame(frame), frame.pattern)


def baseline_method(name: str) -> Method:
    """A classical denoiser from ``denoise.inference.classical`` as a frame -> mosaic method; ``NAME-tta`` averages it
    over the eight Bayer-preserving flips/transposes, as the model's x8 TTA does."""
    denoiser = BASELINES[name.removesuffix("-tta")]
    if not name.endswith("-tta"):
        return lambda frame, params: frame_mosaic(frame, unpack_bayer(denoiser(packed_noisy(frame), params),
                                                                      frame.pattern))  # fmt: skip

    def ensemble(frame: RawFrame, params: NoiseParams) -> np.ndarray:
        mean = self_ensemble(lambda packed: denoiser(packed, params), normalized_frame(frame), frame.pattern,
                             all_transforms())
        return frame_mosaic(frame, mean)

    return ensemble


def model_methods(checkpoint: Path, names: Sequence[str], oracle: bool) -> dict[str, Method]:
    """The trained model without and with x8 TTA, tiled as its config's inference section says.

    A noise-aware model estimates its level from each frame with its own window and texture check, as infer
    does; given the truth (``oracle``, or a ``@true`` row) it reads that instead.
    """
    from denoise.inference.pipeline import denoise_frame
    from denoise.model.checkpoint import CheckpointError, load_model

    try:
        model, cfg = load_model(checkpoint, "cpu")
    except CheckpointError as err:
        raise CompareError(str(err)) from err
    methods = {}
    for name in names:
        settings = dataclasses.replace(cfg.infer, tta=name.removesuffix(TRUE) == "model-tta", device="cpu",
                                       precision="fp32", noise_source="auto")  # fmt: skip
        given = oracle or name.endswith(TRUE)
        methods[name] = lambda frame, params, s=settings, g=given: denoise_frame(
            model, frame, s, noise=params if g else None
        )
    return methods


def check_names(names: Sequence[str]) -> None:
    """Refuse names that are no method, naming them and the choices."""
    unknown = [n for n in names if n.removesuffix(TRUE) not in ALL_METHODS or n == "noisy" + TRUE]
    if unknown:
        raise CompareError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(ALL_METHODS)}, "
                           f"each but noisy also as NAME{TRUE})")


def build_methods(
    names: Sequence[str], checkpoint: Path | None, oracle: bool = False
) -> dict[str, Method]:
    """Methods by name, in the order asked; unknown names and a model without checkpoint are errors."""
    check_names(names)
    bases = {name: name.removesuffix(TRUE) for name in names}
    if {"bm3d", "bm3d-tta"} & set(bases.values()) and importlib.util.find_spec("bm3d") is None:
        raise CompareError("method bm3d needs the 'bm3d' package: pip install 'raw-denoise[baselines]'")
    wanted_models = [n for n, base in bases.items() if base in MODEL_METHODS]
    if wanted_models and checkpoint is None:
        raise CompareError(f"method(s) {', '.join(wanted_models)} need --checkpoint")
    models = model_methods(checkpoint, wanted_models, oracle) if wanted_models else {}
    methods: dict[str, Method] = {}
    for name, base in bases.items():
        if name == "noisy":
            methods[name] = lambda frame, _params: frame.mosaic
        else:
            methods[name] = models[name] if name in models else baseline_method(base)
    return methods


def load_true_noise(meta_path: Path | None, split: str = "test") -> dict[int, NoiseParams]:
    """True (a, b) of each frame of ``split`` ("test" or "val"), by number, from a demo meta.json; empty when absent."""
    if meta_path is None or not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text())
        return {int(r["key"]): NoiseParams(float(r["a"]), float(r["b"])) for r in meta[split]}
    except (ValueError, KeyError, TypeError) as err:
        raise CompareError(f"{meta_path}: not a dataset meta.json with {split} noise levels ({err})") from err


def compare(
    pairs: dict[int, tuple[Path, Path]],
    methods: dict[str, Method],
    true_noise: dict[int, NoiseParams],
    use_true_noise: bool,
    crop: tuple[int, int] | None,
    window: float = REJECT_SIGMAS,
) -> list[dict]:
    """One record per frame: true and estimated noise, and each method's scores and seconds."""
    records = []
    bar = tqdm(total=len(pairs) * len(methods), desc="frames x methods", unit="run", file=sys.stderr)
    for n, (noisy_path, gt_path) in pairs.items():
        noisy, gt = crop_frame(read_dng(noisy_path), crop), crop_frame(read_dng(gt_path), crop)
        if noisy.mosaic.shape != gt.mosaic.shape or noisy.pattern != gt.pattern:
            raise CompareError(f"{noisy_path}: shape/pattern differ from {gt_path}")
        start, source = time.perf_counter(), noise_source(noisy, InferConfig())  # denoise.infer's rule
        try:
            estimated = (profile_noise(noisy.noise_profile) if source == "NoiseProfile"
                         else estimate_noise(packed_noisy(noisy), window=window))  # fmt: skip
        except ValueError as err:
            raise CompareError(f"{noisy_path}: cannot estimate its noise level ({err})") from err
        record = {"frame": n, "name": noisy_path.name, "shape": list(noisy.mosaic.shape), "noise_source": source,
                  "estimated": estimated.as_dict(), "estimate_seconds": time.perf_counter() - start,
                  "true": true_noise[n].as_dict() if n in true_noise else None, "methods": {}}
        needs_truth = use_true_noise or any(name.endswith(TRUE) for name in methods)
        if needs_truth and n not in true_noise:
            raise CompareError(f"{noisy_path}: a method needs the true noise level but frame {n} is not in meta.json")
        record["noisy_score"] = score_image(gt.mosaic, noisy.mosaic, data_range=gt.white_level).score
        for name, method in methods.items():
            bar.set_postfix_str(f"frame {n} {name}")
            params = true_noise[n] if use_true_noise or name.endswith(TRUE) else estimated
            start = time.perf_counter()
            pred = method(noisy, params)
            seconds = time.perf_counter() - start
            scores = score_image(gt.mosaic, pred, data_range=gt.white_level)
            record["methods"][name] = {**scores.as_dict(), "seconds": seconds}
            bar.update()
        records.append(record)
    bar.close()
    return records


def write_json(path: Path, payload: dict) -> None:
    """Atomically, beside its destination."""
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="scripts/compare_baselines.py", description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, default=Path("data/demo/test"), help="folder of noisy{N}.dng")
    parser.add_argument("--gt", type=Path, default=Path("data/demo/test_gt"), help="folder of gt{N}.dng")
    parser.add_argument("--meta", type=Path, help="dataset meta.json with true noise (default: beside --test)")
    parser.add_argument("--methods", default=None, help=f"comma-separated, from {','.join(ALL_METHODS)}, each but "
                        f"noisy also as NAME{TRUE} (given the true level) (default: noisy, the classical ones, "
                        f"bm3d{TRUE} when meta.json has the levels, and model, model-tta with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, help="trained model for the model / model-tta rows")
    parser.add_argument("--noise", choices=("estimated", "meta"), default="estimated",
                        help="noise level given to the classical methods: estimated from the frame, or the truth")
    parser.add_argument("--noise-window", type=float, default=REJECT_SIGMAS,
                        help="window of the blind noise estimate given to the classical methods (see "
                        "data.noise_estimate_window; a model trained with another window estimates with its own)")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames (BM3D is slow on a CPU)")
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="centre crop of every frame")
    parser.add_argument("--noisy-pattern", default="noisy{N}", help="noisy file names, {N} the number")
    parser.add_argument("--gt-pattern", default="gt{N}", help="ground-truth file names")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="also print the means as a Markdown table")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Check the options, score every method on every frame, print the tables; returns the JSON payload."""
    if args.crop is not None and any(s < 2 or s % 2 for s in args.crop):
        raise CompareError(f"--crop needs even sizes of at least 2, got {args.crop}")
    if args.json is not None and not args.json.parent.is_dir():
        raise CompareError(f"--json {args.json}: folder {args.json.parent} does not exist")
    if not args.noise_window > 0:
        raise CompareError(f"--noise-window must be more than 0, got {args.noise_window}")
    if args.max_frames is not None and args.max_frames < 1:
        raise CompareError(f"--max-frames must be at least 1, got {args.max_frames}")
    split = "val" if args.test.name == "val" else "test"  # the demo's validation set or its benchmark
    true_noise = load_true_noise(args.meta or args.test.parent / "meta.json", split)
    truth = ["bm3d" + TRUE] if true_noise else []
    default = ["noisy", *BASELINES, *truth, *(MODEL_METHODS if args.checkpoint else ())]
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else default
    check_names(names)
    if any(name.endswith(TRUE) for name in names) and not true_noise:
        raise CompareError(f"methods named NAME{TRUE} need a meta.json with the test frames' noise (see --meta)")
    noisy_files, gt_files = index_folder(args.test, args.noisy_pattern), index_folder(args.gt, args.gt_pattern)
    missing = sorted(set(noisy_files) - set(gt_files))
    if missing:
        raise CompareError(f"{noisy_files[missing[0]]}: no ground truth in {args.gt}")
    numbers = sorted(noisy_files)[: args.max_frames]
    pairs = {n: (noisy_files[n], gt_files[n]) for n in numbers}
    if args.noise == "meta" and not true_noise:
        raise CompareError("--noise meta needs a meta.json with the test frames' noise (see --meta)")
    methods = build_methods(names, args.checkpoint, args.noise == "meta")
    crop = tuple(args.crop) if args.crop else None
    records = compare(pairs, methods, true_noise, args.noise == "meta", crop, args.noise_window)

    def level(record: dict) -> str:
        return noise_level((record["true"] or record["estimated"])["a"])

    mean = summarise(records, names, lambda _r: "all")
    per_level = summarise(records, names, level)
    source = "true a from meta.json" if true_noise else "estimated a"
    print(f"\n{len(records)} frames, noise given to the classical methods: {args.noise}")
    print(format_summary(mean))
    print(f"\nper noise level ({source}; low a < {LEVEL_EDGES[0]:.1e} <= mid < {LEVEL_EDGES[1]:.1e} <= high)")
    print(format_summary(per_level))
    print("\nnoise level of each frame: estimated from it alone, or its DNG NoiseProfile where it has one")
    print(format_noise(records))
    if args.markdown:
        print("\n" + format_markdown(mean["all"], per_level))
    return {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "mean": mean["all"], "per_level": per_level, "frames": records}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        payload = run(args)
    except (CompareError, FolderError, DngError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
