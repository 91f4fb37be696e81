"""Atomic writes leave no partial file, and what a killed writer left behind is cleared by the next run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from denoise.atomic import atomic_path, remove_stale_temps, unwritable_reason


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "last.pth"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_stale_temporaries_of_a_file_go_and_everything_else_stays(tmp_path: Path) -> None:
    old = time.time() - 3600
    stale = [tmp_path / ".last.pth.abc123.tmp", tmp_path / ".last.pth.x.tmp"]
    kept = [tmp_path / ".last.pth.live.tmp", tmp_path / ".best.pth.abc.tmp", tmp_path / "last.pth",
            tmp_path / ".last.pth.abc"]  # fmt: skip
    for path in stale + kept:
        path.write_text("x")
    for path in stale + kept[1:]:
        os.utime(path, (old, old))  # the live one was written just now: a write still under way
    assert remove_stale_temps(tmp_path / "last.pth") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    assert remove_stale_temps(tmp_path / "missing" / "last.pth") == 0


def test_unwritable_reason_tries_a_real_file(tmp_path: Path) -> None:
    assert unwritable_reason(tmp_path) is None and list(tmp_path.iterdir()) == []  # nothing left behind
    assert unwritable_reason("/proc")  # no new file there, not even root's
    (tmp_path / "f").write_text("x")
    assert unwritable_reason(tmp_path / "f")  # a file is no folder
