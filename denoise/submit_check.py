"""Self-checks of a built submission zip: safe entry names, valid denoised DNGs, and a standalone network.py.

The standalone check runs the report's recipe (``RECIPE``: rawpy, numpy, torch and ``network.py``) on a whole test
frame in a fresh Python process that cannot import this project, so it sees what the organisers will.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from denoise.inference.files import output_name
from denoise.raw.bayer import clip_to_levels
from denoise.raw.dng import DngError, read_dng
from denoise.raw.noise import profile_noise

# What a judge runs: read with rawpy, normalise, pack, run network.py on the whole frame, unpack, round, clip.
# report.md shows it; the check runs it as shown, in a fresh process that cannot import this project.
RECIPE = """\
import numpy as np
import rawpy
import torch
from network import Network

net = Network()
net.load_state_dict(torch.load("model.pth", map_location="cpu", weights_only=True))
net.float().eval()


def denoise(path, noise=None):
    \"\"\"The denoised uint16 mosaic of the noisy DNG at path; noise=(a, b) for a frame with a NoiseProfile.\"\"\"
    with rawpy.imread(path) as raw:
        mosaic = raw.raw_image_visible.copy()
        letters = "".join(chr(raw.color_desc[i]) for i in raw.raw_pattern.ravel())  # e.g. "BGGR"
        black = np.asarray(raw.black_level_per_channel, np.float64)[raw.raw_pattern]  # (2, 2), per CFA position
        white = float(raw.white_level)
    height, width = mosaic.shape
    h, w = height // 2 * 2, width // 2 * 2
    black_hw = np.tile(black, (h // 2, w // 2)).astype(np.float32)
    x = (mosaic[:h, :w].astype(np.float32) - black_hw) / (np.float32(white) - black_hw)  # normalised, float32
    red, blue = letters.index("R"), letters.index("B")
    green_r = next(i for i in range(4) if letters[i] == "G" and i // 2 == red // 2)
    green_b = next(i for i in range(4) if letters[i] == "G" and i != green_r)
    cells = [(i // 2, i % 2) for i in (red, green_r, green_b, blue)]  # planes in the order R, Gr, Gb, B
    planes = torch.from_numpy(np.stack([x[r::2, c::2] for r, c in cells]))[None]  # (1, 4, h/2, w/2)
    with torch.no_grad():
        y = (net(planes) if noise is None else net(planes, noise))[0].float().numpy().astype(np.float64)
    out = mosaic.astype(np.float64)
    for (r, c), plane in zip(cells, y):
        out[r:h:2, c:w:2] = np.rint(plane * (white - black[r, c]) + black[r, c])
    low = np.ceil(np.tile(black, ((height + 1) // 2, (width + 1) // 2)))[:height, :width]
    return np.clip(out, low, white).astype(np.uint16)
"""

# Runs in the models folder; blocking ``denoise`` proves network.py needs nothing from this project.
STANDALONE_SCRIPT = """
import sys
sys.modules["denoise"] = None
import json
import numpy as np
exec(open(sys.argv[1]).read())
noise = json.loads(sys.argv[3])
np.save(sys.argv[2], denoise(sys.argv[4], None if noise is None else tuple(noise)))
"""


class SubmissionCheckError(ValueError):
    """A built submission that fails a check; the message names the entry and the problem."""


def check_entry_names(names: Sequence[str], root: str = "result") -> None:
    """Every entry lies under ``root/``, relative, with no '..' and no backslashes."""
    for name in names:
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or not parts or parts[0] != root:
            raise SubmissionCheckError(f"zip entry {name!r} is not a plain relative path under {root}/")


def _in_range(mosaic: np.ndarray, black_level: np.ndarray, white_level: int) -> bool:
    """Whether clipping to the levels, as inference does, leaves the integer mosaic unchanged."""
    return bool(np.array_equal(clip_to_levels(mosaic, black_level, white_level), mosaic))


def check_dngs(zf: zipfile.ZipFile, inputs: Sequence[Path], workdir: Path) -> list[str]:
    """Each input has its ``result/data`` output: readable, same size as the input, values in [black, white]."""
    lines = []
    for source in inputs:
        name = f"result/data/{output_name(source)}"
        if name not in zf.namelist():
            raise SubmissionCheckError(f"{name}: missing from the zip")
        path = workdir / output_name(source)
        path.write_bytes(zf.read(name))
        try:
            out, src = read_dng(path), read_dng(source)
        except DngError as err:
            raise SubmissionCheckError(f"{name}: unreadable ({err})") from err
        if out.mosaic.shape != src.mosaic.shape:
            raise SubmissionCheckError(f"{name}: shape {out.mosaic.shape}, its input {source} is {src.mosaic.shape}")
        if not _in_range(out.mosaic, src.black_level, src.white_level):
            levels = f"[{src.black_level.min():g}, {src.white_level}]"
            raise SubmissionCheckError(f"{name}: values outside [black, white] = {levels}")
        same_bytes = path.stat().st_size == source.stat().st_size
        lines.append(f"{name}: {out.mosaic.shape[1]}x{out.mosaic.shape[0]}, in range, "
                     f"{'same file size as' if same_bytes else 'different file size from'} {source.name}")
    return lines


def recipe_of(report: str) -> str:
    """The Python block of a submission's report.md: the recipe a judge runs."""
    match = re.search(r"```python\n(.*?)```", report, re.S)
    if match is None:
        raise SubmissionCheckError("result/algorithm/report.md: no ```python recipe block")
    return match.group(1)


def check_standalone(
    zf: zipfile.ZipFile, source: Path, noise: tuple[float, float] | None, workdir: Path,
    reference: np.ndarray | None = None, stated: int | None = None,
) -> int:  # fmt: skip
    """Runs the report's recipe on the test frame ``source``, whole, with network.py and model.pth in a fresh
    process that cannot import this project. Its mosaic must be within 1 DN (a rounding step: float order differs)
    of ``reference``, the package's own whole-frame output when the caller has it, and within ``stated`` (what the
    report states: whole frame against the submitted, tiled and maybe x8 TTA, frame) plus 1 of the submitted frame,
    when given. Returns the DN difference to the submitted frame."""
    models = workdir / "models"
    models.mkdir()
    for name in ("network.py", "model.pth"):
        (models / name).write_bytes(zf.read(f"result/algorithm/models/{name}"))
    (models / "recipe.py").write_text(recipe_of(zf.read("result/algorithm/report.md").decode()))
    out = workdir / "judge.npy"
    command = [sys.executable, "-c", STANDALONE_SCRIPT, "recipe.py", str(out), json.dumps(noise), str(source.resolve())]
    try:
        run = subprocess.run(command, cwd=models, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        raise SubmissionCheckError("network.py + model.pth: the recipe ran over an hour on one frame") from None
    if run.returncode != 0 or not out.is_file():
        tail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit status {run.returncode}, no output"
        raise SubmissionCheckError(f"network.py + model.pth failed standalone: {tail}")
    judge = np.load(out).astype(np.int64)
    name = f"result/data/{output_name(source)}"
    (workdir / "submitted.dng").write_bytes(zf.read(name))
    try:
        submitted = read_dng(workdir / "submitted.dng").mosaic.astype(np.int64)
    except DngError as err:
        raise SubmissionCheckError(f"{name}: unreadable ({err})") from err
    if judge.shape != submitted.shape:
        raise SubmissionCheckError(f"network.py + model.pth made a {judge.shape} mosaic, {name} is {submitted.shape}")
    if reference is not None and (own := int(np.abs(judge - reference.astype(np.int64)).max())) > 1:
        raise SubmissionCheckError(f"network.py + model.pth differ from the package's whole-frame output for "
                                   f"{source.name} by {own} DN")  # fmt: skip
    diff = int(np.abs(judge - submitted).max())
    if stated is not None and diff > stated + 1:
        raise SubmissionCheckError(f"network.py + model.pth differ from {name} by {diff} DN on the whole frame, over "
                                   f"the {stated} DN the report states")  # fmt: skip
    return diff


def check_submission(
    zip_path: Path, inputs: Sequence[Path], *, stated: int, noise_source: str = "auto", noise_aware: bool = False,
    reference: np.ndarray | None = None, workdir: Path | None = None,
) -> list[str]:  # fmt: skip
    """Run every check on the zip; returns a line per check passed, raises on the first failure. ``noise_source``
    is the submission's ("auto" gave a noise-aware model a frame's NoiseProfile level when it has one);
    ``stated`` is the difference in DN between the whole-frame output and the submitted frame that the report
    states, and ``reference`` the package's whole-frame output for the first frame, when known (``check_standalone``);
    the check's files go in a temporary folder inside ``workdir`` (the system's when None)."""
    with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory(prefix="check-", dir=workdir) as tmp:
        names = zf.namelist()
        check_entry_names(names)
        lines = [f"{zip_path.name}: {len(names)} entries, all relative under result/"]
        lines += check_dngs(zf, inputs, Path(tmp))
        profile = read_dng(inputs[0]).noise_profile if noise_aware and noise_source == "auto" else None
        noise = None if profile is None else profile_noise(profile)
        level = None if noise is None else (noise.a, noise.b)
        diff = check_standalone(zf, inputs[0], level, Path(tmp), reference, stated)
        lines.append(f"the report's recipe (network.py + model.pth, whole frame, fresh process) reproduces "
                     f"{output_name(inputs[0])} to {diff} DN")  # fmt: skip
    return lines
