"""``denoise.evaluate``: pairing by number, numbers equal to direct scikit-image calls, clear mismatch errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from denoise.evaluate import evaluate_folders, format_table, main
from denoise.raw.dng import write_new_dng

BLACK, WHITE = 1024, 16383


def _frames(rng: np.random.Generator, shape: tuple[int, int] = (24, 32)) -> tuple[np.ndarray, ...]:
    clean = rng.integers(3000, 9000, size=shape).astype(np.uint16)
    noisy = np.clip(clean + rng.normal(0, 400, size=shape), BLACK, WHITE).astype(np.uint16)
    pred = np.clip(clean + rng.normal(0, 100, size=shape), BLACK, WHITE).astype(np.uint16)
    return clean, noisy, pred


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path, dict[int, tuple[np.ndarray, ...]]]:
    rng = np.random.default_rng(0)
    gt_dir, noisy_dir, pred_dir = tmp_path / "gt", tmp_path / "noisy", tmp_path / "pred"
    for d in (gt_dir, noisy_dir, pred_dir):
        d.mkdir()
    frames = {}
    for n in (0, 1, 10):
        clean, noisy, pred = _frames(rng)
        write_new_dng(gt_dir / f"gt{n}.dng", clean, "BGGR", BLACK, WHITE)
        write_new_dng(noisy_dir / f"noisy{n}.dng", noisy, "BGGR", BLACK, WHITE)
        write_new_dng(pred_dir / f"denoise{n}.dng", pred, "BGGR", BLACK, WHITE)
        frames[n] = (clean, noisy, pred)
    return pred_dir, gt_dir, noisy_dir, frames


def _direct(gt: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    g, p = gt.astype(np.float64), x.astype(np.float64)
    psnr = peak_signal_noise_ratio(g, p, data_range=WHITE)
    # The competition's SSIM: a 1-D SSIM down each column, averaged over columns.
    columns = np.mean([structural_similarity(g[:, j], p[:, j], data_range=WHITE) for j in range(g.shape[1])])
    return psnr, float(columns), structural_similarity(g, p, data_range=WHITE)


def test_scores_match_direct_scikit_image(folders) -> None:
    pred_dir, gt_dir, noisy_dir, frames = folders
    rows, failures = evaluate_folders(pred_dir, gt_dir, noisy_dir)
    assert failures == []
    assert [r.key for r in rows] == ["denoise0", "denoise1", "denoise10"]
    for row, n in zip(rows, (0, 1, 10), strict=True):
        clean, noisy, pred = frames[n]
        for scores, x in ((row.pred, pred), (row.noisy, noisy)):
            psnr, ssim_cols, ssim_2d = _direct(clean, x)
            assert scores.psnr == pytest.approx(psnr, abs=1e-9)
            assert scores.ssim == pytest.approx(ssim_cols, abs=1e-6)
            assert scores.ssim_2d == pytest.approx(ssim_2d, abs=1e-9)
            expected = 100 * (0.8 * max(psnr - 30, 0) / 30 + 0.2 * max(ssim_cols - 0.8, 0) / 0.2)
            assert scores.score == pytest.approx(expected, abs=1e-6)
        assert row.pred.psnr > row.noisy.psnr


def test_table_and_json(folders, tmp_path: Path, capsys) -> None:
    pred_dir, gt_dir, noisy_dir, _ = folders
    out = tmp_path / "scores.json"
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--noisy", str(noisy_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "denoise10" in printed and "mean" in printed
    data = json.loads(out.read_text())
    rows, failures = evaluate_folders(pred_dir, gt_dir, noisy_dir)
    assert failures == []
    assert data["mean"]["pred"]["psnr"] == pytest.approx(np.mean([r.pred.psnr for r in rows]))
    assert set(data["images"]) == {"denoise0", "denoise1", "denoise10"}
    assert format_table(rows).count("\n") == len(rows) + 3


def test_custom_patterns(folders, tmp_path: Path) -> None:
    pred_dir, gt_dir, _, frames = folders
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for n in frames:
        (renamed / f"{n}_gt.dng").write_bytes((gt_dir / f"gt{n}.dng").read_bytes())
    rows, _ = evaluate_folders(pred_dir, renamed, gt_pattern="{N}_gt")
    assert len(rows) == 3


def test_missing_ground_truth_is_an_error(folders) -> None:
    pred_dir, gt_dir, _, _ = folders
    (gt_dir / "gt10.dng").unlink()
    rows, failures = evaluate_folders(pred_dir, gt_dir)
    assert len(failures) == 1 and "gt10.dng" in failures[0] and "denoise10" not in [r.key for r in rows]


def test_a_bad_prediction_is_one_line_and_the_others_are_still_scored(folders, capsys, tmp_path) -> None:
    pred_dir, gt_dir, _, frames = folders
    write_new_dng(pred_dir / "denoise1.dng", frames[1][2][:, :30], "BGGR", BLACK, WHITE)
    rows, failures = evaluate_folders(pred_dir, gt_dir)
    assert len(failures) == 1 and "shape" in failures[0] and "denoise1" not in [r.key for r in rows] and rows
    write_new_dng(pred_dir / "denoise1.dng", frames[1][2], "BGGR", 512, WHITE)
    assert "levels" in evaluate_folders(pred_dir, gt_dir)[1][0]
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(tmp_path / "s.json")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error:") and err.count("\n") == 1 and "denoise1.dng" in err and "Traceback" not in err
    assert "mean" in out and len(json.loads((tmp_path / "s.json").read_text())["images"]) == len(rows)


def test_a_json_destination_that_cannot_be_written_is_refused_first(folders, capsys, tmp_path) -> None:
    pred_dir, gt_dir, _, _ = folders
    for dest, message in ((tmp_path, "is a folder"), (tmp_path / "missing" / "s.json", "does not exist")):
        assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(dest)]) == 2
        out, err = capsys.readouterr()
        assert message in err and err.count("\n") == 1 and out == ""  # nothing scored before the refusal


def test_a_json_destination_on_a_read_only_folder_is_refused_first(folders, capsys) -> None:
    """/proc takes no new files, not even root's: a real read-only folder on every Linux machine."""
    pred_dir, gt_dir, _, _ = folders
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--json", "/proc/s.json"]) == 2
    out, err = capsys.readouterr()
    assert "--json /proc/s.json: cannot write in /proc" in err and err.count("\n") == 1 and out == ""


def test_a_ground_truth_frame_without_a_prediction_fails_the_run(folders, capsys) -> None:
    pred_dir, gt_dir, _, _ = folders
    (pred_dir / "denoise10.dng").unlink()
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir)]) == 2
    out, err = capsys.readouterr()
    assert "mean" in out  # the frames there are still scored ...
    assert err.count("\n") == 1 and "no prediction for 1 of the 3 ground-truth frames (gt10.dng)" in err  # ... but


def test_two_files_for_one_frame_number_are_refused(folders, capsys) -> None:
    pred_dir, gt_dir, _, _ = folders
    (pred_dir / "denoise01.dng").write_bytes((pred_dir / "denoise1.dng").read_bytes())
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "frame 1 again" in err and "denoise01.dng" in err and out == ""
