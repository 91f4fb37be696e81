"""Loader workers do not outlive a trainer killed with kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

GRANDCHILD = "from denoise.dataset.loader import die_with_parent; die_with_parent(); print('ready', flush=True); " \
             "import time; time.sleep(60)"
PARENT = f"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", {GRANDCHILD!r}], stdout=subprocess.PIPE, text=True)
assert worker.stdout.readline().strip() == "ready"
print(worker.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie waiting for its reaper counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_worker_dies_with_its_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.kill()  # SIGKILL: nothing in the parent runs
        parent.wait()
        deadline = time.monotonic() + 2.0  # PyTorch's own watchdog takes about 5 s
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
