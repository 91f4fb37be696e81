"""Self-checks of a built submission zip: safe entry names, valid denoised DNGs, and a standalone network.py.

The standalone check runs in a fresh Python process that cannot import this project, so it sees what the
organisers will: ``from network import Network; Network().load_state_dict(torch.load("model.pth"))``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from denoise.config import Config
from denoise.infer import output_name
from denoise.model import build_model, prepare_model
from denoise.model.nafnet import noise_level_map
from denoise.raw.bayer import cfa_black, even_shape, normalize, pack_bayer
from denoise.raw.dng import DngError, read_dng
from denoise.raw.noise_estimation import estimate_frame_noise

STANDALONE_TOLERANCE = 1e-5
CROP = 64  # packed pixels per side of the crop the standalone network must reproduce

# Runs in the models folder; blocking ``denoise`` proves network.py needs nothing from this project.
STANDALONE_SCRIPT = """
import sys
sys.modules["denoise"] = None
import torch
from network import Network
net = Network()
net.load_state_dict(torch.load("model.pth", map_location="cpu", weights_only=True))
net.float().eval()
data = torch.load(sys.argv[1], weights_only=True)
with torch.no_grad():
    out = net(data["input"])
print(float((out.float() - data["expected"]).abs().max()))
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
    height, width = mosaic.shape
    black = np.tile(cfa_black(black_level, np.float64), ((height + 1) // 2, (width + 1) // 2))[:height, :width]
    return bool((mosaic >= black).all() and (mosaic <= white_level).all())


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


def reference_crop(source: Path) -> torch.Tensor:
    """A centred packed crop (1, 4, h, w) of a test frame, normalised as inference does."""
    frame = read_dng(source)
    height, width = even_shape(*frame.mosaic.shape)
    mosaic = frame.mosaic[:height, :width].astype(np.float32)
    packed = torch.from_numpy(pack_bayer(normalize(mosaic, frame.black_level, frame.white_level), frame.pattern))
    h, w = min(CROP, packed.shape[-2]), min(CROP, packed.shape[-1])
    top, left = (packed.shape[-2] - h) // 2, (packed.shape[-1] - w) // 2
    return packed[None, :, top : top + h, left : left + w].contiguous()


def check_standalone(zf: zipfile.ZipFile, cfg: Config, crop: torch.Tensor, workdir: Path) -> float:
    """Max |difference| between network.py + model.pth in a fresh process and this package's model on ``crop``."""
    models = workdir / "models"
    models.mkdir()
    for name in ("network.py", "model.pth"):
        (models / name).write_bytes(zf.read(f"result/algorithm/models/{name}"))
    state = torch.load(io.BytesIO(zf.read("result/algorithm/models/model.pth")), map_location="cpu", weights_only=True)
    if cfg.model.noise_channels > 0:  # a noise-aware network also reads the noise map of the crop's estimated level
        params = estimate_frame_noise(crop[0].numpy(), cfg.data.noise_estimate_window)
        crop = torch.cat([crop, noise_level_map(crop, params.a, params.b)], dim=1)  # (1, 8, h, w)
    model = build_model(cfg.model)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model = prepare_model(model.eval(), torch.device("cpu"))
    with torch.no_grad():
        expected = model(crop).float()
    data_path = workdir / "crop.pt"
    torch.save({"input": crop, "expected": expected}, data_path)
    run = subprocess.run(
        [sys.executable, "-c", STANDALONE_SCRIPT, str(data_path)],
        cwd=models, capture_output=True, text=True, timeout=600,
    )
    if run.returncode != 0:
        tail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit status {run.returncode}"
        raise SubmissionCheckError(f"network.py + model.pth failed standalone: {tail}")
    diff = float(run.stdout.strip().splitlines()[-1])
    if not diff <= STANDALONE_TOLERANCE:
        raise SubmissionCheckError(f"network.py + model.pth differ from the package's model by {diff:.3g} on a crop")
    return diff


def check_submission(zip_path: Path, inputs: Sequence[Path], cfg: Config) -> list[str]:
    """Run every check on the zip; returns a line per check passed, raises on the first failure."""
    with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory(prefix="submit-check-") as tmp:
        names = zf.namelist()
        check_entry_names(names)
        lines = [f"{zip_path}: {len(names)} entries, all relative under result/"]
        lines += check_dngs(zf, inputs, Path(tmp))
        diff = check_standalone(zf, cfg, reference_crop(inputs[0]), Path(tmp))
        lines.append(f"network.py + model.pth in a fresh process reproduce the model to {diff:.2g} (<= 1e-5)")
    return lines
