"""The whole newcomer's pipeline through the real command-line tools, on a tiny synthesised dataset:
synth -> train -> submit (infer + zip + self-check) -> evaluate -> comparison sheet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v3
import numpy as np
import pytest

from denoise.raw.dng import read_dng
from denoise.raw.metrics import score_image

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, strict: bool = False) -> str:
    """``python -m args`` in ``cwd``; ``strict`` turns deprecation warnings into errors (the image I/O)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    warnings = ["-W", "error::FutureWarning", "-W", "error::DeprecationWarning"] if strict else []
    done = subprocess.run([sys.executable, *warnings, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pipeline")
    _run("denoise.dataset.synth", "--out", "demo", "--train", "3", "--test", "2",
         "--train-size", "96", "128", "--test-size", "64", "96", cwd=work, strict=True)
    _run("denoise.train", "--config", str(REPO / "configs" / "demo.yaml"), "name=pipe", "train.runs_dir=runs",
         "data.root=demo/train", "data.val_root=demo", "data.val_keys=['0', '30']", "data.patch_size=16",
         "data.batch_size=2", "data.samples_per_epoch=8", "data.num_workers=0", "data.procedural_scenes=2",
         "train.epochs=2",
         "train.val_every=1", "train.warmup_steps=0", "train.log_every=1", "train.image_crop=32", "model.width=8",
         "model.enc_blocks=[1]", "model.middle_blocks=1", "model.dec_blocks=[1]", "infer.tile=0", cwd=work)
    (checkpoint,) = work.glob("runs/pipe-*/checkpoints/best.pth")
    _run("denoise.submit", "--checkpoint", str(checkpoint), "--test-dir", "demo/test", "--out", "result",
         "--any-count", cwd=work)
    _run("denoise.evaluate", "--pred", "result/data", "--gt", "demo/test_gt", "--noisy", "demo/test",
         "--json", "scores.json", cwd=work)
    _run("denoise.sheet", "--noisy", "demo/test", "--pred", "result/data", "--gt", "demo/test_gt",
         "--frames", "0", "1", "--size", "32", "--out", "sheet.png", cwd=work, strict=True)
    return work


def test_dataset_has_the_competition_layout(pipeline: Path) -> None:
    demo = pipeline / "demo"
    assert sorted(p.name for p in (demo / "train" / "noisy").iterdir()) == [f"{i}_noise.dng" for i in range(3)]
    assert sorted(p.name for p in (demo / "train" / "ground truth").iterdir()) == [f"{i}_gt.dng" for i in range(3)]
    frame = read_dng(demo / "test" / "noisy0.dng")
    assert (frame.pattern, frame.white_level, frame.mosaic.shape) == ("BGGR", 16383, (64, 96))
    assert np.all(frame.black_level == 1024)


def test_denoised_frames_are_valid_and_scored_correctly(pipeline: Path) -> None:
    scores = json.loads((pipeline / "scores.json").read_text())
    for n in range(2):
        gt = read_dng(pipeline / "demo" / "test_gt" / f"gt{n}.dng")
        out = read_dng(pipeline / "result" / "data" / f"denoise{n}.dng")
        source = pipeline / "demo" / "test" / f"noisy{n}.dng"
        assert out.mosaic.shape == gt.mosaic.shape
        assert out.mosaic.min() >= 1024 and out.mosaic.max() <= 16383
        assert (pipeline / "result" / "data" / f"denoise{n}.dng").stat().st_size == source.stat().st_size
        # The evaluation JSON holds the numbers a direct scikit-image computation gives.
        direct = score_image(gt.mosaic, out.mosaic)
        row = scores["images"][f"denoise{n}"]["pred"]
        assert row["psnr"] == pytest.approx(direct.psnr, rel=1e-9)
        assert row["ssim"] == pytest.approx(direct.ssim, rel=1e-9)
        assert row["score"] == pytest.approx(direct.score, rel=1e-9)
        noisy_row = scores["images"][f"denoise{n}"]["noisy"]
        assert noisy_row["psnr"] == pytest.approx(score_image(gt.mosaic, read_dng(source).mosaic).psnr, rel=1e-9)


def test_submission_zip_is_complete_and_safe(pipeline: Path) -> None:
    with zipfile.ZipFile(pipeline / "result.zip") as archive:
        names = set(archive.namelist())
    assert {"result/data/denoise0.dng", "result/data/denoise1.dng", "result/algorithm/models/network.py",
            "result/algorithm/models/model.pth", "result/algorithm/report.md"} <= names
    assert all(not n.startswith("/") and ".." not in Path(n).parts for n in names)
    assert (pipeline / "result" / "algorithm" / "models" / "model.pth").stat().st_size < 50_000_000


def test_comparison_sheet_shows_three_labelled_columns_per_frame(pipeline: Path) -> None:
    picture = imageio.v3.imread(pipeline / "sheet.png")
    gap, top = 8, 24
    height, width = 2 * 32 + gap, 3 * 32 + 2 * gap
    assert picture.shape[0] == height + top and picture.shape[1] > width and picture.dtype == np.uint8
    left = picture.shape[1] - width
    tiles = picture[top:, left:]
    assert tiles.std() > 0
    assert (picture[:top] < 128).any() and (picture[top:, : left - 1] < 128).any()  # text in both bands
    for n in range(3):  # a title over each column
        assert (picture[:top, left + n * (32 + gap): left + n * (32 + gap) + 32] < 128).any()
