"""Decode-once cache: each DNG becomes a memory-mapped .npy of its packed frame plus a JSON of its levels.

An entry's name carries a hash of the source's absolute path and of its size and modification time, so a
changed source gets a new entry (the stale one is removed, with what was derived from it). Results computed from
an entry (its blind noise estimate, say) are kept beside it as ``<entry>.<name>.json`` (``derived``), so a warm
launch reads them instead of computing them again. Files are written to a temporary name and moved
into place, the array before the JSON, so a reader that finds the JSON always finds a complete array; several
processes filling the same cache at once only duplicate work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from denoise.atomic import atomic_path, write_text_atomic
from denoise.raw import dng
from denoise.raw.bayer import cfa_black, channel_offsets, even_shape, normalize, pack_bayer, unpack_bayer

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedFrame:
    """A cache entry: where the packed array is and the frame's metadata."""

    array_path: Path
    source: Path
    shape: tuple[int, int]  # full mosaic (H, W); the array covers its even region
    pattern: str
    black_level: np.ndarray  # (2, 2) per CFA position
    white_level: int
    as_shot_neutral: np.ndarray | None
    dtype: str  # "uint16": raw DN; "float32": normalised

    def load(self) -> np.ndarray:
        """The packed frame, memory-mapped read-only. (4, H/2, W/2)."""
        return np.load(self.array_path, mmap_mode="r")

    def channel_black(self) -> np.ndarray:
        """Black level of each packed channel R, Gr, Gb, B. (4,)."""
        black = cfa_black(self.black_level, np.float64)
        return np.array([black[r, c] for r, c in channel_offsets(self.pattern)])

    def meta(self) -> dict:
        """The metadata compared between the two frames of a pair."""
        return {"shape": self.shape, "pattern": self.pattern, "black_level": self.black_level,
                "white_level": self.white_level}


def normalized_region(frame: CachedFrame, array: np.ndarray, y: int, x: int, h: int, w: int) -> np.ndarray:
    """Packed region [y, y+h) x [x, x+w) as float32 normalised like ``bayer.normalize``. (4, h, w)."""
    region = np.asarray(array[:, y : y + h, x : x + w])
    assert region.shape == (4, h, w), f"region {h}x{w} at ({y}, {x}) outside packed frame {array.shape}"
    if frame.dtype == "float32":
        return region.astype(np.float32, copy=True)
    black = frame.channel_black().astype(np.float32)[:, None, None]
    return (region.astype(np.float32) - black) / (np.float32(frame.white_level) - black)


def cached_mosaic(frame: CachedFrame) -> np.ndarray:
    """The even region of the original mosaic in DN, rebuilt from the cache. (H', W') uint16."""
    array = np.asarray(frame.load())
    if frame.dtype == "float32":
        black = frame.channel_black()[:, None, None]
        dn = np.rint(array.astype(np.float64) * (frame.white_level - black) + black)
        array = np.clip(dn, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return unpack_bayer(array, frame.pattern)


def digest(*parts: object) -> str:
    """A short name-safe key for ``parts`` (a source's identity, the settings a derived result depends on)."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:12]


def source_digest(*modules: ModuleType) -> str:
    """A key for the code of ``modules``: results cached under it are computed afresh when that code changes."""
    return digest(*(Path(m.__file__).read_bytes() for m in modules))


def derived(frame: CachedFrame, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-able result for this entry, computed once and then read from beside the entry.

    ``name`` must change with everything the result depends on besides the entry itself (settings, code
    versions; ``digest`` and ``source_digest`` make them). Written atomically; an unreadable file is computed
    again, and a cache folder that cannot be written (a shared, read-only one) still serves: the result is then
    just not kept.
    """
    path = frame.array_path.with_name(f"{frame.array_path.stem}.{name}.json")
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return json.loads(path.read_text())
    value = compute()
    with contextlib.suppress(OSError):
        write_text_atomic(path, json.dumps(value))
    return value


def entry_stem(source: Path, cache_dir: Path, dtype: str) -> tuple[Path, str]:
    """(stem of the entry for the source's current state, prefix shared by all its states)."""
    stat = source.stat()
    prefix = f"{source.stem}-{digest(source)}"
    return cache_dir / f"{prefix}-{digest(stat.st_size, stat.st_mtime_ns, dtype, CACHE_VERSION)}", prefix


def _from_json(array_path: Path, info: dict) -> CachedFrame:
    neutral = info["as_shot_neutral"]
    return CachedFrame(
        array_path=array_path,
        source=Path(info["source"]),
        shape=tuple(info["shape"]),
        pattern=info["pattern"],
        black_level=np.array(info["black_level"], dtype=np.float64),
        white_level=int(info["white_level"]),
        as_shot_neutral=None if neutral is None else np.array(neutral, dtype=np.float64),
        dtype=info["dtype"],
    )


def _decode(source: Path, dtype: str) -> tuple[np.ndarray, dict]:
    """Read the DNG and pack its even region, as raw DN or normalised."""
    raw = dng.read_dng(source)
    height, width = raw.mosaic.shape
    eh, ew = even_shape(height, width)
    assert eh > 0 and ew > 0, f"{source}: frame {height}x{width} too small to pack"
    mosaic = raw.mosaic[:eh, :ew]
    if dtype == "float32":
        packed = pack_bayer(normalize(mosaic, raw.black_level, raw.white_level), raw.pattern)
    else:
        packed = pack_bayer(mosaic, raw.pattern).astype(np.uint16)
    info = {
        "version": CACHE_VERSION,
        "source": str(source),
        "shape": [height, width],
        "pattern": raw.pattern,
        "black_level": cfa_black(raw.black_level, np.float64).tolist(),
        "white_level": int(raw.white_level),
        "as_shot_neutral": None if raw.as_shot_neutral is None else np.asarray(raw.as_shot_neutral).tolist(),
        "dtype": dtype,
    }
    return np.ascontiguousarray(packed), info


def store_entry(stem: Path, packed: np.ndarray, info: dict) -> CachedFrame:
    """Write an entry (array, then JSON) atomically under ``stem``; ``info`` holds what ``CachedFrame`` keeps."""
    array_path = stem.with_suffix(".npy")
    with atomic_path(array_path) as tmp, open(tmp, "wb") as f:
        np.save(f, packed)  # a file object, so numpy does not append ".npy" to the temporary name
    write_text_atomic(stem.with_suffix(".json"), json.dumps(info))
    return _from_json(array_path, info)


def load_entry(stem: Path) -> CachedFrame | None:
    """The entry under ``stem``, or None when it is not (completely) there or is damaged (a truncated array, a
    broken JSON file: named on stderr, then rebuilt by the caller, as the cache is derived data)."""
    array_path, json_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if not (json_path.exists() and array_path.exists()):
        return None
    try:
        entry = _from_json(array_path, json.loads(json_path.read_text()))
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        print(f"warning: {json_path}: damaged cache file ({type(err).__name__}: {err}); rebuilding the entry",
              file=sys.stderr, flush=True)  # fmt: skip
        return None
    expected = (4, *(n // 2 for n in even_shape(*entry.shape)))
    try:
        array = entry.load()  # a truncated file fails here, not later inside a loader worker
        problem = None if array.shape == expected and array.dtype == np.dtype(entry.dtype) else \
            f"holds {array.dtype} {array.shape}, expected {entry.dtype} {expected}"
    except (ValueError, OSError, EOFError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem is not None:
        print(f"warning: {array_path}: damaged cache file ({problem}); rebuilding the entry", file=sys.stderr,
              flush=True)  # fmt: skip
        return None
    return entry


def cache_frame(source: str | Path, cache_dir: str | Path, dtype: str = "uint16") -> tuple[CachedFrame, bool]:
    """The cache entry for ``source``, decoding it first if needed; also whether it was decoded now."""
    assert dtype in ("uint16", "float32"), f"cache dtype must be uint16 or float32, got {dtype!r}"
    source = Path(source).resolve()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem, prefix = entry_stem(source, cache_dir, dtype)
    entry = load_entry(stem)
    if entry is not None:
        return entry, False
    packed, info = _decode(source, dtype)
    entry = store_entry(stem, packed, info)
    for old in cache_dir.glob(f"{prefix}-*"):
        if not old.name.startswith(stem.name + ".") and old.suffix in (".npy", ".json"):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()  # a process still mapping it keeps its data until it closes
    return entry, True
