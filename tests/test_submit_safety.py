"""``denoise.submit`` when things go wrong: a new submission replaces the previous one only once it passed its
check, and a failed, killed or interrupted one leaves the previous submission whole (real processes, real
signals)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_submit import _make_inputs, _run

from denoise import submit
from denoise.submit_check import SubmissionCheckError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict]:
    return _make_inputs(tmp_path)


def _submission_bytes(out: Path) -> dict[str, bytes]:
    """Every file of a submission (data/, algorithm/) and its zip, by name."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("[da]*/**/*") if p.is_file()}
    return files | {"zip": out.with_suffix(".zip").read_bytes()}


def test_a_submission_failing_its_check_leaves_the_previous_one_whole(tmp_path: Path, setup, monkeypatch,
                                                                     capsys) -> None:  # fmt: skip
    checkpoint, test_dir, _ = setup
    assert _run(tmp_path, checkpoint, test_dir) == 0
    good = _submission_bytes(tmp_path / "result")

    def failing_check(*args, **kwargs):
        raise SubmissionCheckError("result/data/denoise0.dng: values outside [black, white]")

    monkeypatch.setattr(submit, "check_submission", failing_check)
    assert _run(tmp_path, checkpoint, test_dir, "--tta") == 2
    err = capsys.readouterr().err
    assert "outside" in err and "the previous submission is untouched" in err
    assert _submission_bytes(tmp_path / "result") == good
    assert not list((tmp_path / "result").glob(".staging-*"))


def test_a_killed_submission_keeps_the_previous_one_and_its_rerun_clears_it(tmp_path: Path, setup) -> None:
    """kill -9 while the self-check runs (its folder exists): the previous zip and frames are untouched, and the
    next submission into the folder clears what the killed one left."""
    checkpoint, test_dir, _ = setup
    out = tmp_path / "result"
    command = [sys.executable, "-m", "denoise.submit", "--checkpoint", str(checkpoint), "--test-dir", str(test_dir),
               "--out", str(out), "--tile", "0", "--any-count"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".staging-*/check-*")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    first.kill()  # the first submission into the folder, killed mid-check: nothing of it is a submission
    first.wait()
    assert not (tmp_path / "result.zip").exists() and not (out / "data").exists()
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0  # its rerun is not refused
    good = _submission_bytes(out)
    assert sorted(p.name for p in out.iterdir()) == [submit.MARKER, "algorithm", "data"]
    second = subprocess.Popen([*command, "--tta"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not list(out.glob(".staging-*/check-*")) and second.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert second.poll() is None, second.stderr.read()  # still checking when killed
    second.kill()
    second.wait()
    assert _submission_bytes(out) == good  # the checked submission is whole
    assert list(out.glob(".staging-*"))  # what the kill left ...
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert not list(out.glob(".staging-*"))  # ... the next run cleared


def test_ctrl_c_of_a_submission_replaces_nothing_and_says_so(tmp_path: Path, setup) -> None:
    checkpoint, test_dir, _ = setup
    out = tmp_path / "result"
    assert _run(tmp_path, checkpoint, test_dir) == 0
    good = _submission_bytes(out)
    command = [sys.executable, "-m", "denoise.submit", "--checkpoint", str(checkpoint), "--test-dir", str(test_dir),
               "--out", str(out), "--tile", "0", "--any-count", "--tta"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".staging-*/check-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines() == [f"interrupted: nothing replaced, {out} and its zip are as they were"]
    assert _submission_bytes(out) == good and not list(out.glob(".staging-*"))
