"""Finding noisy/clean DNG pairs under a dataset root and splitting them into training and validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denoise.config.checks import key_regex_problem


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message lists the offending files."""


@dataclass(frozen=True)
class Pair:
    """One training example: a clean frame and, unless the dataset is clean-only, its noisy twin."""

    key: str
    noisy: Path | None
    clean: Path


def natural_key(key: str) -> tuple:
    """Sort key that orders "2" before "10"."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))


def _files_by_key(root: Path, pattern: str, regex: re.Pattern[str]) -> tuple[dict[str, Path], list[str]]:
    """Files matching the glob, keyed by the regex's first group; also the problems found."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(root.glob(pattern)):
        if not path.is_file():  # a folder, or a link to nothing or to itself: named, not skipped in silence
            problems.append(f"{path} (not a regular file)")
            continue
        match = regex.search(path.name)
        if match is None:
            problems.append(f"{path} (name does not match key_regex {regex.pattern!r})")
            continue
        key = match.group(1)
        if key in found:
            problems.append(f"{path} (key {key!r} also used by {found[key]})")
            continue
        found[key] = path
    return found, problems


def _short(problems: list[str], limit: int = 20) -> str:
    more = f"; ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def discover_pairs(root: str | Path, noisy_glob: str, clean_glob: str, key_regex: str) -> list[Pair]:
    """All pairs under ``root`` in natural key order; unpaired or unmatched files and no pairs are errors.

    An empty ``noisy_glob`` makes a clean-only dataset (every Pair has ``noisy=None``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    problem = key_regex_problem(key_regex)
    if problem is not None:
        raise DatasetError(f"key_regex {key_regex!r} {problem}")
    regex = re.compile(key_regex)
    clean, problems = _files_by_key(root, clean_glob, regex)
    noisy: dict[str, Path] = {}
    if noisy_glob:
        noisy, noisy_problems = _files_by_key(root, noisy_glob, regex)
        problems += noisy_problems
        problems += [f"{noisy[k]} (no clean frame with key {k!r})" for k in sorted(set(noisy) - set(clean))]
        problems += [f"{clean[k]} (no noisy frame with key {k!r})" for k in sorted(set(clean) - set(noisy))]
    if problems:
        raise DatasetError(f"{root}: {len(problems)} unusable file(s): {_short(problems)}")
    keys = sorted(clean, key=natural_key)
    if not keys:
        globs = f"'{noisy_glob}' and '{clean_glob}'" if noisy_glob else f"'{clean_glob}'"
        raise DatasetError(f"{root}: no pairs found (globs {globs})")
    return [Pair(k, noisy.get(k), clean[k]) for k in keys]


def pick_keys(pairs: list[Pair], keys: list[str]) -> list[Pair]:
    """The pairs named by ``keys``, in the pairs' order; a key the pairs lack is an error."""
    by_key = {p.key: p for p in pairs}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise DatasetError(f"val_keys not in the dataset: {', '.join(missing)}")
    chosen = set(keys)
    return [p for p in pairs if p.key in chosen]


def split_pairs(pairs: list[Pair], val_count: int, val_keys: list[str]) -> tuple[list[Pair], list[Pair]]:
    """(train, val): the named ``val_keys``, else ``val_count`` keys spread evenly over the sorted keys.

    Evenly spread keys sample every noise family when families are consecutive (as in the ZTE data).
    """
    if val_keys:
        chosen = {p.key for p in pick_keys(pairs, val_keys)}
    else:
        if not 0 <= val_count < len(pairs):
            raise DatasetError(f"val_count {val_count} must be in [0, {len(pairs) - 1}] for {len(pairs)} pairs")
        chosen = {pairs[(2 * i + 1) * len(pairs) // (2 * val_count)].key for i in range(val_count)}
    train = [p for p in pairs if p.key not in chosen]
    val = [p for p in pairs if p.key in chosen]
    if not train:
        raise DatasetError("every pair is in the validation split; nothing left to train on")
    return train, val


def check_pair_metadata(pair: Pair, noisy: dict, clean: dict) -> list[str]:
    """Problems making ``noisy`` and ``clean`` (frame metadata dicts from the cache) unusable as a pair."""
    problems = []
    for name, label in (("shape", "dimensions"), ("pattern", "CFA patterns"), ("white_level", "white levels")):
        if noisy[name] != clean[name]:
            problems.append(f"{pair.noisy} vs {pair.clean} ({label} differ: {noisy[name]} vs {clean[name]})")
    if not np.allclose(noisy["black_level"], clean["black_level"]):
        problems.append(
            f"{pair.noisy} vs {pair.clean} (black levels differ: {noisy['black_level']} vs {clean['black_level']})"
        )
    return problems
