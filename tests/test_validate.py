"""The validation summary: mean metrics, the score per noise level and the worst frame's gain over its input."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.dataset.frames import ValFrame
from denoise.raw.metrics import ImageScores
from denoise.train.validate import summarise_frames


def _frame(key: str, level: str, noisy_score: float) -> ValFrame:
    return ValFrame(key, None, np.zeros((2, 2), np.uint16), ImageScores(0.0, 0.0, 0.0, noisy_score), level)


def test_summary_groups_by_level_and_finds_the_frame_that_gained_least():
    frames = [_frame("a", "high", 1.0), _frame("b", "low", 70.0), _frame("c", "high", 5.0), _frame("d", "low", 72.0)]
    scores = [ImageScores(40.0, 0.9, 0.91, 30.0), ImageScores(50.0, 0.99, 0.98, 80.0),
              ImageScores(42.0, 0.95, 0.96, 36.0), ImageScores(49.0, 0.98, 0.97, 71.5)]  # fmt: skip
    summary = summarise_frames(frames, scores)
    assert list(summary.levels) == ["low", "high"]  # low to high, absent levels left out
    assert summary.levels == pytest.approx({"low": (80.0 + 71.5) / 2, "high": (30.0 + 36.0) / 2})
    assert summary.score == pytest.approx((30 + 80 + 36 + 71.5) / 4)
    assert summary.mean.psnr == pytest.approx(45.25)
    assert summary.worst_gain == pytest.approx(-0.5) and summary.worst_frame == "d"
    assert "worst -0.50, frame d" in summary.line()
