"""Writing checkpoints: a plain dict of state_dicts plus config, counters and RNG states, written atomically and
read back by ``denoise.model.checkpoint.read_checkpoint`` (``torch.load(..., weights_only=True)``).

Keys: model, ema (or None), optimizer, scheduler, scaler, epoch (the epoch to continue with), batch (batches of
that epoch already done; 0 at an epoch boundary), step (optimiser steps done), best_score, val_frames (the
identity of the validation set best_score was measured on), rng (a list: each rank's generator states at the start
of that epoch), config.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.atomic import atomic_path
from denoise.config import Config, ConfigError, config_from_dict, to_dict
from denoise.model.checkpoint import nonfinite_weights


class TrainingDiverged(RuntimeError):
    """The run went non-finite (losses many steps in a row, or the weights); the message says where and which
    checkpoint is the last good one."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (a full disk, say); the message names it and what was kept."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename. Weights with a
    NaN or infinity are never written: ``TrainingDiverged`` instead, and the checkpoints already there stay."""
    path = Path(path)
    if bad := sum(nonfinite_weights(state[key]) for key in ("model", "ema") if state.get(key) is not None):
        kept = sorted(p.name for p in path.parent.glob("*.pth")) if path.parent.is_dir() else []
        raise TrainingDiverged(
            f"stopped at step {state['step']}: {bad:,} weights are NaN or infinite, so {path.name} was not saved "
            f"(try a lower train.lr or train.grad_clip); "
            + (f"last good checkpoints: {', '.join(kept)} in {path.parent}" if kept else "no checkpoint was saved"))
    buffer = io.BytesIO()
    torch.save(state, buffer)  # in memory first: torch's file writer reports a full disk as an unreadable assertion
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
    except OSError as err:
        kept = sorted(p.name for p in path.parent.glob("*.pth")) if path.parent.is_dir() else []
        reason = err.strerror or str(err)
        raise CheckpointSaveError(
            f"stopped at step {state['step']}: {path} could not be saved ({reason}); "
            + (f"the checkpoints already there stay: {', '.join(kept)}" if kept else "no checkpoint was saved")
        ) from err
    return path


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and every CUDA device) generator states as tensors and plain data.

    NumPy's legacy state is split into its parts (the key array becomes a tensor) so that a ``weights_only``
    load accepts it.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "python": [py_version, torch.tensor(py_internal, dtype=torch.int64), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by ``rng_state``."""
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(int(v) for v in py_internal.tolist()), py_gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][: torch.cuda.device_count()])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_model_matches(cfg: Config, ckpt: dict, path: Path) -> None:
    """Refuse to resume into a differently shaped model, naming the first differing key."""
    saved = to_dict(config_from_dict(ckpt["config"]).model)
    for key, value in to_dict(cfg.model).items():
        if saved.get(key) != value:
            raise ConfigError(f"{path}: checkpoint has model.{key}={saved.get(key)!r}, the config says {value!r}")
