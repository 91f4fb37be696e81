"""Every command line explains itself: each option has help text, and ``--help`` shows each real default."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest
from conftest import load_module

REPO = Path(__file__).resolve().parents[1]
MODULES = ["denoise.infer", "denoise.submit", "denoise.export", "denoise.evaluate", "denoise.sheet",
           "denoise.train.__main__", "denoise.model.__main__", "denoise.dataset.synth", "denoise.dataset.calibrate"]
SCRIPTS = ["ablate", "bench_data", "bench_estimate", "bench_infer", "bench_model", "bench_train", "compare_baselines",
           "simulate_camera"]


class _Captured(Exception):
    pass


def parser_of(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's ``main`` builds, caught as it starts parsing."""
    module = load_module(REPO / "scripts" / f"{name}.py") if name in SCRIPTS else importlib.import_module(name)
    seen = []

    def capture(self, *args, **kwargs):
        seen.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured):
        module.main([])
    return seen[0]


@pytest.mark.parametrize("name", MODULES + SCRIPTS)
def test_every_option_has_help_and_shows_its_default(name, monkeypatch):
    parser = parser_of(name, monkeypatch)
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name}: {action.dest} has no help text"
        if action.default not in (None, False) and action.option_strings:
            assert "default" in parser._get_formatter()._get_help_string(action), f"{name}: {action.dest}"
    assert "(default: None)" not in text and "(default: False)" not in text


def test_train_help_names_the_sections_and_shows_an_override(monkeypatch):
    text = parser_of("denoise.train.__main__", monkeypatch).format_help()
    assert "model, data, train, infer" in text and "train.epochs=2" in text
