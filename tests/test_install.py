"""The install step the README, scripts/demo.sh and CI share: the pinned torch, from the index the user names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pip_args(tmp_path: Path, index: str | None) -> list[str]:
    """The arguments scripts/install_torch.sh gives ``python3``, recorded by a stand-in on the PATH."""
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX_URL"}
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    if index is not None:
        env["TORCH_INDEX_URL"] = index
    subprocess.run(["bash", str(REPO / "scripts" / "install_torch.sh")], env=env, check=True)
    return (tmp_path / "calls").read_text().split()


@pytest.mark.parametrize("index", [None, "", "https://download.pytorch.org/whl/cpu"])
def test_the_pinned_torch_comes_from_the_index_named(tmp_path, index):
    args = _pip_args(tmp_path, index)
    assert args[:4] == ["-m", "pip", "install", "-q"] and "torch==2.13.0" in args
    if index:
        assert args[args.index("--index-url") + 1] == index
    else:
        assert "--index-url" not in args


def test_demo_and_ci_install_through_it():
    for script in ("scripts/demo.sh", ".ci/run"):
        text = (REPO / script).read_text()
        assert "bash scripts/install_torch.sh" in text and "pip install -q torch" not in text, script
