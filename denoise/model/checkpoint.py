"""Reading checkpoints safely and rebuilding a trained model from one: the config stored inside, EMA weights first.

A checkpoint is a plain dict of state_dicts, counters and the resolved config (``denoise.train.checkpoint``
writes it); it is only ever loaded with ``weights_only=True``, so a file cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from denoise.config import Config, ConfigError, config_from_dict
from denoise.model.build import blind_options, build_model
from denoise.model.runtime import prepare_model, resolve_device


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded on the CPU with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError, IndexError,
            TypeError, AttributeError) as err:  # a text file read as a legacy pickle fails in many ways
        # torch's own messages run to paragraphs (and suggest weights_only=False, which we never do): keep the type.
        reason = type(err).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint of tensors and plain data ({reason})") from err
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a raw-denoise checkpoint (expected a dict with 'model' and 'config')")
    return ckpt


def finished_unvalidated(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> bool:
    """Whether ``ckpt`` ends a run that never validated: all its epochs done and no best score. A run that
    validates always validates its last epoch, so it ends with a ``best.pth``."""
    return ckpt.get("epoch", 0) >= checkpoint_config(ckpt, path).train.epochs and ckpt.get("best_score") is None


def checkpoint_config(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    """The experiment config saved in a checkpoint."""
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"{path}: its stored config is a {type(ckpt['config']).__name__}, not a mapping")
    try:
        return config_from_dict(ckpt["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: its stored config is invalid ({err})") from err


def inference_state_dict(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights inference should use: the EMA copy when present, else the raw model's.

    Wrapper prefixes (``module.`` from averaging/parallel wrappers, ``_orig_mod.`` from torch.compile) and the
    averaging counter are dropped so the keys match the bare network.
    """
    state = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
    clean = {}
    for key, value in state.items():
        if key == "n_averaged":
            continue
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        clean[key] = value
    return clean


def nonfinite_weights(state: dict[str, Any]) -> int:
    """How many values of a state dict's floating-point tensors are NaN or infinite."""
    return sum(int((~torch.isfinite(v)).sum()) for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())  # fmt: skip


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """The model rebuilt from the checkpoint's config with its inference weights, in eval mode on ``device``."""
    ckpt = read_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, checkpoint)
    return model_from_checkpoint(ckpt, cfg, checkpoint, device), cfg


def model_from_checkpoint(
    ckpt: dict[str, Any], cfg: Config, checkpoint: str | Path, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """``load_model`` for a checkpoint already read (``checkpoint`` names it in errors)."""
    model = build_model(cfg.model, **blind_options(cfg))
    state = inference_state_dict(ckpt)
    if bad := nonfinite_weights(state):
        raise CheckpointError(f"{checkpoint}: {bad:,} of its weights are NaN or infinite (the run diverged): use an "
                              "earlier checkpoint")  # fmt: skip
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{checkpoint}: weights do not match its config's model ({reason})") from err
    model.eval()
    device = resolve_device(device) if isinstance(device, str) else device
    return prepare_model(model, device)
