"""``denoise.infer`` and the inference pipeline on tiny generated DNGs and a tiny NAFNet checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from denoise.config import Config, InferConfig, ModelConfig, to_dict
from denoise.infer import main
from denoise.inference.files import InferError, Job, collect_inputs, output_name, plan_jobs
from denoise.inference.pipeline import denoise_frame
from denoise.model import build_model
from denoise.model.checkpoint import CheckpointError, load_model
from denoise.raw.dng import read_dng, write_new_dng

BLACK, WHITE = 1024, 16383


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config() -> Config:
    return Config(model=ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)))


def save_checkpoint(path: Path, cfg: Config, ema: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ema_state = None
    if ema:
        ema_state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = {"model": model.state_dict(), "ema": ema_state, "config": to_dict(cfg), "epoch": 3, "step": 30}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return ckpt


def write_frame(path: Path, shape: tuple[int, int], seed: int = 0, black: object = BLACK) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mosaic = rng.integers(1100, 12000, size=shape).astype(np.uint16)
    write_new_dng(path, mosaic, "BGGR", black, WHITE)
    return mosaic


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "tiny" / "checkpoints" / "best.pth"
    save_checkpoint(path, tiny_config())
    return path


def test_output_names() -> None:
    assert output_name(Path("data/noisy7.dng")) == "denoise7.dng"
    assert output_name(Path("noisy12.DNG")) == "denoise12.dng"
    assert output_name(Path("IMG_001.dng")) == "IMG_001_denoised.dng"
    assert output_name(Path("noisy.dng")) == "noisy_denoised.dng"


def test_refusals(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dng", tmp_path / "a_denoised.dng"
    for p in (a, b):
        p.write_bytes(b"x")
    with pytest.raises(InferError, match="is an input itself"):
        plan_jobs([a, b], tmp_path, overwrite=True)
    with pytest.raises(InferError, match="--overwrite"):
        plan_jobs([a], tmp_path)
    assert plan_jobs([a], tmp_path, overwrite=True) == [Job(a, b)]
    assert plan_jobs([a], tmp_path / "elsewhere") == [Job(a, tmp_path / "elsewhere" / "a_denoised.dng")]
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    twins = [tmp_path / "x" / "noisy0.dng", tmp_path / "y" / "noisy0.dng"]
    with pytest.raises(InferError, match="both"):
        plan_jobs(twins, tmp_path / "out")


def test_collect_inputs_orders_naturally(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        (tmp_path / f"noisy{n}.dng").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in collect_inputs([tmp_path])] == ["noisy1.dng", "noisy2.dng", "noisy10.dng"]
    with pytest.raises(InferError, match="no such"):
        collect_inputs([tmp_path / "missing"])


@pytest.mark.parametrize("tta", [False, True])
def test_identity_network_returns_the_input_exactly(tmp_path: Path, tta: bool) -> None:
    # Per-CFA black levels and an odd size: normalise, pack, TTA views and denormalise must all round-trip.
    black = np.array([[1000.0, 1010.0], [1020.0, 1030.0]])
    mosaic = write_frame(tmp_path / "f.dng", (23, 27), black=black)
    frame = read_dng(tmp_path / "f.dng")
    assert np.array_equal(frame.black_level, black)
    out = denoise_frame(nn.Identity(), frame, InferConfig(tile=4, overlap=2, tta=tta))
    assert out.dtype == np.uint16 and np.array_equal(out, mosaic)


def test_odd_edges_kept_and_values_in_range(tmp_path: Path) -> None:
    class Brighten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 10.0  # far above white: every processed pixel must clip to the white level

    mosaic = write_frame(tmp_path / "f.dng", (23, 25))  # LibRaw refuses frames under 22 pixels a side
    frame = read_dng(tmp_path / "f.dng")
    out = denoise_frame(Brighten(), frame, InferConfig(tile=0))
    assert (out[:22, :24] == WHITE).all()
    assert np.array_equal(out[22, :], mosaic[22, :]) and np.array_equal(out[:, 24], mosaic[:, 24])
    # An edge sample below black (read noise the writer keeps) is clipped like every output pixel.
    frame.mosaic[22, 3] = BLACK - 7
    assert denoise_frame(Brighten(), frame, InferConfig(tile=0))[22, 3] == BLACK


def test_a_file_with_impossible_levels_is_one_line_and_the_others_are_denoised(tmp_path: Path, checkpoint: Path,
                                                                               capsys) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    write_frame(inp / "noisy0.dng", (24, 24))
    write_new_dng(inp / "noisy1.dng", np.full((24, 24), 3000, np.uint16), "BGGR", 5000, 4095)  # black above white
    assert main(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if "noisy1.dng" in line] == [
        f"error: {inp / 'noisy1.dng'}: black level 5000 is not below the white level 4095"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["denoise0.dng"]


def test_a_temporary_left_by_a_killed_run_is_cleared(tmp_path: Path, checkpoint: Path) -> None:
    write_frame(tmp_path / "noisy0.dng", (24, 24))
    (tmp_path / "out").mkdir()
    left = tmp_path / "out" / ".denoise0.dng.k1ll3d.tmp"
    left.write_bytes(b"half a DNG")
    os.utime(left, (1, 1))
    assert main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "noisy0.dng"), "--output",
                 str(tmp_path / "out")]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["denoise0.dng"]


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path, checkpoint: Path, capsys,
                                                                      monkeypatch) -> None:
    write_frame(tmp_path / "noisy0.dng", (24, 24))
    (tmp_path / "file").write_text("a file where a folder should be")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    denoised = []
    monkeypatch.setattr("denoise.inference.files.denoise_frame", lambda *args, **kwargs: denoised.append(1))
    try:
        for out in (tmp_path / "file" / "out", locked):
            if out == locked and os.access(locked, os.W_OK):
                continue  # root writes anywhere: nothing to prove there
            args = ["--checkpoint", str(checkpoint), "--input", str(tmp_path / "noisy0.dng"), "--output", str(out)]
            assert main(args) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {out}: cannot write output there") and err.count("\n") == 1
    finally:
        locked.chmod(0o700)
    assert not denoised and list(locked.iterdir()) == []


def test_a_folder_or_a_link_loop_named_like_a_dng_is_named_not_skipped(tmp_path: Path) -> None:
    write_frame(tmp_path / "noisy0.dng", (24, 24))
    (tmp_path / "noisy1.dng").mkdir()
    (tmp_path / "noisy2.dng").symlink_to(tmp_path / "noisy2.dng")  # a link to itself
    with pytest.raises(InferError, match=r"noisy1\.dng, noisy2\.dng: named like DNG files but not regular files"):
        collect_inputs([tmp_path])


def test_load_model_prefers_ema(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "c.pth", tiny_config(), ema=True)
    model, cfg = load_model(tmp_path / "c.pth")
    assert cfg.model.width == 4 and not model.training
    key = "intro.weight"
    assert torch.equal(model.state_dict()[key].cpu(), ckpt["ema"][key])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_model(tmp_path / "junk.pth")


def _strip_range(path: Path) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        (offset,), (count,) = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    return offset, offset + count


def test_cli_patch_mode_bad_file_and_summary(tmp_path: Path, checkpoint: Path, capsys) -> None:
    inp, out = tmp_path / "test", tmp_path / "out"
    inp.mkdir()
    write_frame(inp / "noisy0.dng", (32, 48), seed=1)
    odd = write_frame(inp / "photo.dng", (31, 45), seed=2)
    (inp / "noisy1.dng").write_bytes(b"II*\x00garbage")
    args = ["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(out), "--tile", "16",
            "--overlap", "4"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "noisy1.dng" in captured.err and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].count("noisy1.dng") == 1, "one line per bad file, naming it once"
    assert "denoised 2 file(s)" in captured.out and "s/MP" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["denoise0.dng", "photo_denoised.dng"]
    # Patch mode: same file size, and only bytes inside the pixel strip differ.
    src, dst = (inp / "noisy0.dng").read_bytes(), (out / "denoise0.dng").read_bytes()
    assert len(src) == len(dst)
    changed = np.flatnonzero(np.frombuffer(src, np.uint8) != np.frombuffer(dst, np.uint8))
    begin, end = _strip_range(inp / "noisy0.dng")
    assert changed.size > 0 and changed.min() >= begin and changed.max() < end
    result = read_dng(out / "photo_denoised.dng").mosaic
    assert result.min() >= BLACK and result.max() <= WHITE
    assert np.array_equal(result[30], odd[30]) and np.array_equal(result[:, 44], odd[:, 44])


def test_cli_tiled_close_to_whole_frame(tmp_path: Path, checkpoint: Path) -> None:
    write_frame(tmp_path / "noisy3.dng", (48, 80), seed=3)
    for tile, name in ((0, "whole"), (16, "tiled")):
        args = ["--checkpoint", str(checkpoint), "--input", str(tmp_path / "noisy3.dng"), "--output",
                str(tmp_path / name), "--tile", str(tile), "--overlap", "4", "--precision", "fp32"]  # fmt: skip
        assert main(args) == 0
    whole = read_dng(tmp_path / "whole" / "denoise3.dng").mosaic.astype(int)
    tiled = read_dng(tmp_path / "tiled" / "denoise3.dng").mosaic.astype(int)
    # The U-Net's receptive field exceeds overlap // 2 here, so tiles differ slightly from the whole frame.
    assert np.abs(whole - tiled).mean() < 200


def test_defaults_from_runs_and_the_checkpoints_own_infer_section(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    older = tmp_path / "runs" / "old" / "checkpoints" / "best.pth"
    newer = tmp_path / "runs" / "new" / "checkpoints" / "best.pth"
    own = replace(tiny_config(), infer=InferConfig(test_dir="in", output_dir="res", tile=16, overlap=4))
    save_checkpoint(older, tiny_config())
    save_checkpoint(newer, own)
    os.utime(older, (1, 1))
    (tmp_path / "configs").mkdir()  # a repository's config is not the model's: it must not be used
    (tmp_path / "configs" / "nafnet.yaml").write_text("infer:\n  test_dir: elsewhere\n  output_dir: wrong\n")
    (tmp_path / "in").mkdir()
    write_frame(tmp_path / "in" / "noisy0.dng", (24, 24))
    assert main([]) == 0
    printed = capsys.readouterr().out
    assert str(Path("runs/new/checkpoints/best.pth")) in printed
    assert "(the newest run's best.pth under runs/)" in printed
    assert "output: res" in printed and "tile 16, overlap 4" in printed and "from the checkpoint's" in printed
    assert (tmp_path / "res" / "denoise0.dng").is_file() and not (tmp_path / "wrong").exists()
    # --config supplies another infer section; flags override either.
    (tmp_path / "mine.yaml").write_text("infer:\n  test_dir: in\n  output_dir: mine\n  tile: 16\n  overlap: 2\n")
    assert main(["--config", "mine.yaml", "--overlap", "6"]) == 0
    printed = capsys.readouterr().out
    assert "output: mine" in printed and "tile 16, overlap 6" in printed and "from mine.yaml's" in printed


def test_refused_request_writes_nothing(tmp_path: Path, checkpoint: Path, capsys) -> None:
    write_frame(tmp_path / "noisy0.dng", (24, 24))
    (tmp_path / "denoise0.dng").write_bytes(b"keep me")
    noisy = str(tmp_path / "noisy0.dng")
    assert main(["--checkpoint", str(checkpoint), "--input", noisy, "--output", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--checkpoint", str(checkpoint), "--input", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert "is an input itself" in capsys.readouterr().err
    assert (tmp_path / "denoise0.dng").read_bytes() == b"keep me"
    assert main(["--checkpoint", str(tmp_path / "none.pth"), "--input", str(tmp_path)]) == 2


SHARED_DNG = Path(__file__).resolve().parents[1].parent / "shared" / "dng"


@pytest.mark.skipif(not SHARED_DNG.is_dir(), reason="../shared/dng (real camera DNGs) is absent")
@pytest.mark.parametrize("name", ["valid-32x32.dng", "oiio_bayer_bggr16.dng"])
def test_real_dngs(tmp_path: Path, checkpoint: Path, name: str) -> None:
    args = ["--checkpoint", str(checkpoint), "--input", str(SHARED_DNG / name), "--output", str(tmp_path),
            "--tile", "0"]  # fmt: skip
    assert main(args) == 0
    src, out = read_dng(SHARED_DNG / name), read_dng(tmp_path / f"{Path(name).stem}_denoised.dng")
    assert out.mosaic.shape == src.mosaic.shape and out.pattern == src.pattern
    assert out.white_level == src.white_level and np.array_equal(out.black_level, src.black_level)


def test_a_full_disk_stops_the_run_at_the_first_file_it_cannot_write(tmp_path: Path, checkpoint: Path, capsys,
                                                                     small_disk, monkeypatch) -> None:  # fmt: skip
    """Three 256 x 256 frames (about 130 KB each as DNG) into a 192 KiB tmpfs: the first fits, the second fails
    with ENOSPC, and the third is not attempted; the failure is reported once, and nothing partial is left."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(3):
        write_frame(inputs / f"noisy{n}.dng", (256, 256), seed=n)
    out = small_disk
    if out is None:  # no tmpfs here: the write fails as a full disk makes it fail
        import errno

        from denoise.inference import files
        from denoise.raw.dng import DngWriteError

        out, real_write = tmp_path / "out", files.write_dng

        def write_until_full(source, dest, mosaic):
            if list(out.glob("denoise*.dng")):
                raise DngWriteError(f"{dest}: cannot write") from OSError(errno.ENOSPC, "No space left on device")
            return real_write(source, dest, mosaic)

        monkeypatch.setattr(files, "write_dng", write_until_full)
    assert main(["--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(out), "--tile", "0"]) == 2
    printed, err = capsys.readouterr()
    assert err.count("\n") == 1 and "noisy1.dng" in err, err
    assert "out of disk space, stopped with 1 file(s) not denoised" in err
    assert printed.count("FAILED") == 1 and "noisy2.dng" not in printed
    assert sorted(p.name for p in out.iterdir()) == ["denoise0.dng"]  # no temporary, no partial file


def test_ctrl_c_keeps_the_finished_files_and_says_so(tmp_path: Path, checkpoint: Path) -> None:
    """A real SIGINT once the first output exists: exit 130, one line saying what was kept, no traceback; every
    file left is a whole DNG and no temporary remains."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for n in range(8):
        write_frame(inputs / f"noisy{n}.dng", (512, 512), seed=n)
    command = [sys.executable, "-m", "denoise.infer", "--checkpoint", str(checkpoint), "--input", str(inputs),
               "--output", str(out), "--tta"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "denoise0.dng").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    done = sorted(out.iterdir())
    assert 1 <= len(done) < 8 and all(p.name.startswith("denoise") for p in done)
    assert err.strip().splitlines() == [f"interrupted: {len(done)} of 8 file(s) written to {out}, each complete; "
                                        "the rest not"]  # fmt: skip
    for path in done:
        assert read_dng(path).mosaic.shape == (512, 512)
