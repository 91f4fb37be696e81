"""Quality tables for ``scripts/compare_baselines.py``: per-frame records summarised per noise level and method.

Each record holds a frame's true and estimated noise level, the noisy input's score and every method's scores.
A summary row gives a method's mean scores over a group of frames and its worst frame: the lowest score
difference to the noisy input, negative where the method made a frame worse than it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from denoise.raw.metrics import ImageScores, mean_scores
from denoise.raw.noise import LEVEL_NAMES
from denoise.raw.noise_estimation import NoiseParams


def summarise(records: list[dict], methods: Sequence[str], key: Callable[[dict], str]) -> dict[str, dict]:
    """Mean scores, seconds and the worst frame per (group, method), groups named by ``key(record)``."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    order = [g for g in (*LEVEL_NAMES, "all") if g in groups]
    table = {}
    for group in order:
        rows = {}
        for m in methods:
            items = [r["methods"][m] for r in groups[group]]
            mean = mean_scores(ImageScores(i["psnr"], i["ssim"], i["ssim_2d"], i["score"]) for i in items)
            gains = [r["methods"][m]["score"] - r["noisy_score"] for r in groups[group]]
            worst = int(np.argmin(gains))
            rows[m] = {**mean.as_dict(), "seconds": float(np.mean([i["seconds"] for i in items])),
                       "frames": len(items), "worst": gains[worst], "worst_frame": groups[group][worst]["frame"]}
        table[group] = rows
    return table


def format_summary(table: dict[str, dict]) -> str:
    """Fixed-width table: group, method, frames, score, PSNR, SSIM, SSIM-2D, worst frame's gain, s/frame."""
    head = (f"{'level':<7}{'method':<12}{'n':>3}{'score':>9}{'PSNR':>9}{'SSIM':>9}{'SSIM-2D':>9}{'worst':>9}"
            f"{'(frame)':>8}{'s/frame':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for group, rows in table.items():
        for m, s in rows.items():
            lines.append(f"{group:<7}{m:<12}{s['frames']:>3}{s['score']:>9.3f}{s['psnr']:>9.3f}{s['ssim']:>9.5f}"
                         f"{s['ssim_2d']:>9.5f}{s['worst']:>+9.2f}{s['worst_frame']:>8}{s['seconds']:>9.2f}")
        lines.append("-" * len(head))
    return "\n".join(lines)


def format_markdown(mean: dict[str, dict], per_level: dict[str, dict]) -> str:
    """A Markdown table, one row a method: mean score, PSNR, SSIM, score per noise level, worst frame, seconds."""
    levels = [g for g in LEVEL_NAMES if g in per_level]
    lines = ["| method | score | PSNR | SSIM | " + " | ".join(levels) + " | worst frame | s / frame |",
             "|---|---|---|---|---|---|" + "---|" * len(levels)]
    for m, s in mean.items():
        scores = " | ".join(f"{per_level[g][m]['score']:.2f}" for g in levels)
        lines.append(f"| {m} | {s['score']:.2f} | {s['psnr']:.2f} | {s['ssim']:.4f} | {scores} | "
                     f"{s['worst']:+.2f} | {s['seconds']:.2f} |")
    return "\n".join(lines)


def format_noise(records: list[dict]) -> str:
    """Each frame's noise level, where it came from, against the truth: the std error at mid-grey (x = 0.18)."""
    lines = [f"{'frame':<8}{'source':<14}{'a':>10}{'a true':>10}{'b':>10}{'b true':>10}{'std err@0.18':>14}"]
    for r in records:
        est, true = NoiseParams(**r["estimated"]), NoiseParams(**r["true"]) if r["true"] else None
        row = f"{r['frame']:<8}{r['noise_source']:<14}{est.a:>10.2e}"
        if true is None:
            lines.append(row + f"{'-':>10}{est.b:>10.2e}{'-':>10}{'-':>14}")
            continue
        err = float(np.sqrt(est.variance(0.18) / true.variance(0.18)) - 1.0)
        lines.append(row + f"{true.a:>10.2e}{est.b:>10.2e}{true.b:>10.2e}{err:>+14.3f}")
    return "\n".join(lines)
