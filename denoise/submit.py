"""Build the competition submission: ``python -m denoise.submit --checkpoint PATH --test-dir DIR [--out result]``.

Writes ``result/data/denoise{N}.dng``, ``result/algorithm/models/network.py`` (torch only; ``Network()`` has the
checkpoint's hyper-parameters), ``model.pth`` (the state_dict, fp32 or fp16 with ``--half``, at most 50 MB),
``report.md`` and ``result.zip`` of that tree, then checks the zip (``denoise.submit_check``).
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.atomic import atomic_path
from denoise.config import CliParser, Config, ConfigError, InferConfig, add_infer_options, dump_config, infer_flags
from denoise.inference.files import (
    InferError,
    collect_inputs,
    defaults_config,
    infer_settings,
    output_name,
    plan_jobs,
    run_jobs,
    summary_line,
)
from denoise.inference.pipeline import denoise_frame
from denoise.lock import hold_folder
from denoise.model.build import blind_options
from denoise.model.checkpoint import (
    CheckpointError,
    checkpoint_config,
    inference_state_dict,
    model_from_checkpoint,
    read_checkpoint,
)
from denoise.model.standalone import network_source
from denoise.raw.dng import DngError, read_dng
from denoise.raw.noise_estimation import HEDGE, RAMP
from denoise.submit_check import RECIPE, SubmissionCheckError, check_submission

MAX_WEIGHTS_BYTES = 50_000_000  # the organisers' limit, read as decimal megabytes to stay safely under it
ZIP_ROOT = "result"
TEST_FRAMES = 10  # the competition's test set: noisy0.dng ... noisy9.dng
MARKER = ".raw-denoise-submission"  # written into --out: a folder holding it is a submission this tool made
STAGING = ".staging-"  # inside --out: a submission being built and checked


class SubmitError(ValueError):
    """A submission that cannot be built or fails its own checks; the message says why and what to do."""


def export_weights(state: dict[str, torch.Tensor], half: bool) -> bytes:
    """The serialised state_dict alone: float tensors as fp32, or fp16 with ``half``; other tensors unchanged."""
    dtype = torch.float16 if half else torch.float32
    plain = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.getvalue()


def check_weights_size(size: int, half: bool) -> None:
    """Refuse weights over the limit, saying by how much and what to do."""
    if size <= MAX_WEIGHTS_BYTES:
        return
    remedy = "train a smaller model (lower model.width or fewer blocks)"
    if not half:
        remedy = f"rerun with --half (about {size / 2e6:.1f} MB) or " + remedy
    limit = MAX_WEIGHTS_BYTES / 1e6
    raise SubmitError(f"model.pth would be {size / 1e6:.1f} MB, over the {limit:.0f} MB limit: {remedy}")


def _scores_text(ckpt: dict[str, Any]) -> str:
    """The progress and best validation score the trainer stores in a checkpoint, as Markdown lines."""
    lines = []
    for key in ("epoch", "step", "best_score"):
        if isinstance(ckpt.get(key), (int, float)):
            lines.append(f"- {key}: {ckpt[key]:.4f}" if isinstance(ckpt[key], float) else f"- {key}: {ckpt[key]}")
    return "\n".join(lines) or "- none stored in the checkpoint"


def report_text(
    ckpt: dict[str, Any], cfg: Config, model: torch.nn.Module, weights_size: int, settings: InferConfig, half: bool,
    whole: tuple[str, int] | None = None,
) -> str:
    """report.md: method, model size, inference settings, how to reproduce the frames with network.py alone,
    validation scores and the full training config. ``whole``: (test frame, max DN difference of a whole-frame run
    without TTA, fp32 on the CPU, to the submitted frame), measured on ``whole_frame_reference``."""
    params = sum(p.numel() for p in model.parameters())
    tiling = f"{settings.tile}-pixel tiles overlapping by {settings.overlap}" if settings.tile else "whole frames"
    tta = "x8 Bayer-preserving flips/transposes of the mosaic, each inverted before averaging"
    noise = ""
    if cfg.model.noise_channels > 0:
        noise = (
            "The network is noise-aware: beside the four planes it reads four more, the per-pixel noise standard\n"
            "deviation `10 * sqrt(a*x + b)` (`noise_level_map` in network.py), with `a` and `b` estimated from the\n"
            "noisy frame alone (variance against mean on smooth blocks, a block counting as smooth up to\n"
            f"{model.noise_window:g} standard deviations above the fit): no noise parameters are given at test\n"
            "time. `network.py` carries the estimate (`estimate_frame_noise`): `Network()` takes the four planes.\n\n"
        )
        if model.texture_threshold > 0:
            noise += (
                "Texture check: when the estimate's b is under "
                f"{model.texture_read_share:g} of the variance a*m + b at the frame's mean m (a line fitted to\n"
                "texture leaves no read noise), the frame is denoised again with the noise standard deviation scaled "
                "by a factor\nset by c, the mean over the planes of |corr(noisy - denoised, Laplacian of denoised)| "
                "(what was removed\nfollows the image's structure when the estimate read texture as noise): "
                f"{HEDGE:g} up to c = {model.texture_threshold - RAMP:g},\n"
                f"{model.texture_scale:g} from c = {model.texture_threshold:g} on, and between them "
                f"{HEDGE:g} * ({model.texture_scale:g} / {HEDGE:g}) ** t, with t rising\nfrom 0 to 1 "
                "across that interval (`graded_factor` in network.py).\n\n"
            )
        if settings.noise_source == "auto":
            noise += ("A frame whose DNG carries a NoiseProfile tag is given its (S, O) as (a, b) instead (R, G, B\n"
                      "planes weighted 1:2:1): pass `noise=(a, b)` to the recipe's `denoise` for such a frame.\n\n")
    reproduced = "it reproduces the submitted frames up to the tiling and augmentation."
    if whole is not None:
        reproduced = f"it differs from the submitted frame by at most {whole[1]} DN ({whole[0]}, measured)."
    return f"""# Method

A NAFNet U-Net denoises the raw Bayer mosaic directly. Each frame is normalised with its black and white levels,
packed into four half-resolution planes (R, Gr, Gb, B) and passed through the network, which predicts the clean
planes as its input plus a learned residual; the result is unpacked, scaled back to DN, rounded and clipped to
[black, white], and written into a copy of the input DNG (only the pixel bytes change).

{noise}Inference runs on {tiling} in packed pixels, keeping only each tile's centre.
Test-time augmentation: {tta if settings.tta else "none"}.

# Reproducing the frames with network.py alone

`Network()` takes the normalised packed planes (N, 4, H, W) of whole frames and returns the denoised planes.
Run on a whole frame without test-time augmentation, {reproduced}
The recipe below (rawpy, numpy, torch; run beside `network.py` and `model.pth`) makes the denoised mosaic, to be
written into a copy of the input DNG (the competition's files hold one uncompressed strip: replace its bytes);
the submission's own check runs it as shown, in a fresh process that cannot import raw-denoise.

```python
{RECIPE}```

# Model

- network: NAFNet (`models/network.py`, class `Network`, constructible with no arguments)
- parameters: {params:,}
- weights: `models/model.pth`, {weights_size / 1e6:.2f} MB, {"fp16" if half else "fp32"} state_dict

# Validation

{_scores_text(ckpt)}

# Training config

```yaml
{dump_config(cfg).rstrip()}
```
"""


def write_zip(tree: Path, zip_path: Path) -> list[str]:
    """Zip every file under ``tree`` as ``result/<relative path>`` (atomically); returns the entry names."""
    names = []
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            name = f"{ZIP_ROOT}/{path.relative_to(tree).as_posix()}"
            zf.write(path, name)
            names.append(name)
    return names


def competition_inputs(test_dir: Path, count: int | None = TEST_FRAMES) -> list[Path]:
    """The test folder's ``noisy0.dng`` ... ``noisy{count - 1}.dng``, in order, and nothing else that looks like
    an input: every other .dng is named in the refusal (a misnamed frame would silently drop out of the zip).
    ``count`` None accepts any number of frames, still numbered from 0 without gaps."""
    files = collect_inputs([test_dir])
    matches = {p: re.fullmatch(r"noisy(0|[1-9]\d*)\.dng", p.name) for p in files}
    numbered = {int(m.group(1)): p for p, m in matches.items() if m}
    others = [p.name for p in files if p not in numbered.values()]
    if others:
        raise SubmitError(f"{test_dir}: not named noisy{{N}}.dng (N from 0, no leading zeros): {', '.join(others)}")
    wanted = range(count if count is not None else len(numbered))
    if sorted(numbered) != list(wanted):
        missing = [f"noisy{n}.dng" for n in wanted if n not in numbered]
        extra = [numbered[n].name for n in numbered if n not in wanted]
        problem = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                              f"beyond the set: {', '.join(extra)}" if extra else "") if part)
        size = f"{count} frames (pass --any-count for another number)" if count is not None else "frames from 0"
        raise SubmitError(f"{test_dir}: the test set must be noisy0.dng ... as {size}: {problem}")
    return [numbered[n] for n in wanted]


def _refuse_out_over_inputs(out: Path, test_dir: Path) -> None:
    """Replacing ``out/data`` must never delete the test inputs."""
    out, test_dir = out.resolve(), test_dir.resolve()
    if test_dir == out or out in test_dir.parents:
        raise SubmitError(f"{test_dir}: the test folder lies inside --out {out}, which the submission replaces")


def _made_before_markers(out: Path) -> bool:
    """A submission folder written before submissions were marked: nothing in it but what submit wrote then (and
    the README the repository used to keep there)."""
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()]
    expected = re.compile(r"README\.md|data/denoise\d+\.dng|algorithm/report\.md|"
                          r"algorithm/models/(network\.py|model\.pth)")
    return bool(files) and all(expected.fullmatch(name) for name in files)


def _ours(name: str) -> bool:
    """A name submit itself puts in ``--out`` besides the submission: its marker and a killed run's staging."""
    return name == MARKER or name.startswith(STAGING)


def _refuse_foreign_out(out: Path, zip_path: Path) -> None:
    """Replacing ``out``'s parts and the zip beside it must never touch what another program or person made: only
    a missing or empty folder, or one a previous submission marked (or wrote before markers), is written into."""
    own = (out / MARKER).is_file() or (out.is_dir() and _made_before_markers(out))
    if out.exists() and not out.is_dir():
        raise SubmitError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(not _ours(p.name) for p in out.iterdir()) and not own:
        raise SubmitError(f"--out {out} is not empty and is not a submission made here (no {MARKER} in it): "
                          "name a new or empty folder")
    if zip_path.exists() and not own:
        raise SubmitError(f"{zip_path} exists and was not made by a submission into {out}: move it or name another "
                          "--out")


def _move_into_place(tree: Path, out: Path) -> None:
    """Replace ``out/data`` and ``out/algorithm`` with ``tree``'s (other files in ``out`` stay); the marker goes
    first, so a kill between the steps leaves a folder the next submission may replace."""
    (out / MARKER).write_text("made by python -m denoise.submit; replaced whole by the next submission into here\n")
    for part in ("data", "algorithm"):
        if (out / part).exists():
            shutil.rmtree(out / part)
        os.replace(tree / part, out / part)


def whole_frame_reference(model: torch.nn.Module, source: Path, settings: InferConfig) -> np.ndarray:
    """``source`` denoised as network.py does: the whole frame, no TTA, fp32 on the CPU (a copy of ``model``)."""
    cpu = copy.deepcopy(model).float().to("cpu")
    return denoise_frame(cpu, read_dng(source), replace(settings, tile=0, tta=False, precision="fp32", device="cpu"))


def stage_submission(ckpt: dict[str, Any], cfg: Config, model: torch.nn.Module, inputs: list[Path], tree: Path,
                     zip_path: Path, weights: bytes, settings: InferConfig, half: bool) -> tuple[np.ndarray, int]:
    """Write the submission's folder ``tree`` (data/, algorithm/) and its zip ``zip_path``; returns the package's
    whole-frame output for the first input, which the check compares network.py with, and its difference in DN to
    the submitted frame, which the report states."""
    summary = run_jobs(model, plan_jobs(inputs, tree / "data"), settings)
    print(summary_line(summary, settings))
    if summary.failures:
        failed = ", ".join(str(path) for path, _ in summary.failures)
        raise SubmitError(f"inference failed on {failed}; no submission written")
    models_dir = tree / "algorithm" / "models"
    models_dir.mkdir(parents=True)
    (models_dir / "network.py").write_text(network_source(cfg.model, blind_options(cfg)))
    (models_dir / "model.pth").write_bytes(weights)
    reference = whole_frame_reference(model, inputs[0], settings)
    written = read_dng(tree / "data" / output_name(inputs[0])).mosaic
    whole = int(np.abs(reference.astype(np.int64) - written.astype(np.int64)).max())
    report = report_text(ckpt, cfg, model, len(weights), settings, half, (inputs[0].name, whole))
    (tree / "algorithm" / "report.md").write_text(report)
    write_zip(tree, zip_path)
    return reference, whole


def build_submission(checkpoint: Path, test_dir: Path, out: Path, half: bool, settings: InferConfig,
                     ckpt: dict[str, Any] | None = None, count: int | None = TEST_FRAMES) -> Path:
    """Everything cheap is checked first; the submission is built and checked in a staging folder inside ``out``
    and replaces the previous one only once it passed. ``ckpt`` is the checkpoint already read, if it was."""
    ckpt = read_checkpoint(checkpoint) if ckpt is None else ckpt
    cfg = checkpoint_config(ckpt, checkpoint)
    weights = export_weights(inference_state_dict(ckpt), half)
    check_weights_size(len(weights), half)
    inputs = competition_inputs(test_dir, count)
    out = out.resolve()  # "." names its folder, so the zip beside it is named after it
    zip_path = out.parent / f"{out.name}.zip"
    _refuse_out_over_inputs(out, test_dir)
    _refuse_foreign_out(out, zip_path)
    model = model_from_checkpoint(ckpt, cfg, checkpoint, settings.device)
    if half:  # the frames are what model.pth's fp16 weights give, so a judge loading them reproduces the frames
        with torch.no_grad():
            for value in model.state_dict().values():
                if value.is_floating_point():
                    value.copy_(value.half().float())
    out.mkdir(parents=True, exist_ok=True)
    with hold_folder(out, f"--out {out}"):
        for old in out.glob(f"{STAGING}*"):  # a killed submission's: with the folder held, none is live
            shutil.rmtree(old, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
        try:
            tree, staged_zip = staging / ZIP_ROOT, staging / zip_path.name
            reference, whole = stage_submission(ckpt, cfg, model, inputs, tree, staged_zip, weights, settings, half)
            noise_aware = cfg.model.noise_channels > 0
            try:
                lines = check_submission(staged_zip, inputs, stated=whole, noise_source=settings.noise_source,
                                         noise_aware=noise_aware, reference=reference, workdir=staging)  # fmt: skip
            except (SubmissionCheckError, DngError, OSError, ValueError) as err:
                kept = "the previous submission is untouched" if (out / MARKER).is_file() else "nothing written"
                raise SubmissionCheckError(f"{err}; {kept}") from err
            _move_into_place(tree, out)
            os.replace(staged_zip, zip_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if len(inputs) != TEST_FRAMES:
        print(f"note: {len(inputs)} test frame(s); the competition's test set has {TEST_FRAMES}")
    for line in lines:
        print(f"check: {line}")
    return zip_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="e.g. runs/<run>/checkpoints/best.pth")
    parser.add_argument("--test-dir", type=Path, required=True, help="folder holding noisy{N}.dng")
    parser.add_argument("--out", type=Path, default=Path(ZIP_ROOT), help="submission folder; the zip goes beside it")
    parser.add_argument("--half", action="store_true", help="store the weights as fp16 (halves model.pth)")
    parser.add_argument("--any-count", action="store_true",
                        help=f"accept a test set of other than {TEST_FRAMES} frames (noisy0.dng on, no gaps)")
    add_infer_options(parser)
    args = parser.parse_args(argv)
    try:
        ckpt = read_checkpoint(args.checkpoint)
        defaults = defaults_config(args.config, checkpoint_config(ckpt, args.checkpoint))
        settings = infer_settings(defaults, infer_flags(args))
        count = None if args.any_count else TEST_FRAMES
        zip_path = build_submission(args.checkpoint, args.test_dir, args.out, args.half, settings, ckpt, count)
    except KeyboardInterrupt:
        print(f"interrupted: nothing replaced, {args.out} and its zip are as they were", file=sys.stderr)
        return 130
    except (SubmitError, SubmissionCheckError, InferError, CheckpointError, ConfigError, DngError, ValueError,
            OSError) as err:  # fmt: skip
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"submission ready: {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
