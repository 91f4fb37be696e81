"""Optimiser and learning-rate schedule: Adam/AdamW, StepLR or cosine, optional linear warm-up.

The schedule is a pure function of the optimiser step (``lr_factor``), wrapped in a ``LambdaLR`` so that its
position is saved with the checkpoint like any other scheduler.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch's fused Adam runs, and with it the on-device step skip


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, fused (one kernel for all of them) where PyTorch has it."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    assert name in optimizers, f"unknown optimizer {name!r}; expected one of {sorted(optimizers)}"
    fused = all(p.device.type in FUSED_DEVICES for p in params) or None
    return optimizers[name](params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore saved moments and counters, keeping this optimiser's own kernel choice (fused or not).

    ``load_state_dict`` also copies the saved groups' ``fused`` and ``foreach`` flags, which describe the machine
    that saved them, not this one.
    """
    groups = [{**saved, "fused": mine["fused"], "foreach": mine["foreach"]}
              for saved, mine in zip(state["param_groups"], optimizer.param_groups, strict=True)]
    # Set before loading: load_state_dict places each step counter by the groups' flags (a fused kernel wants it
    # on the parameters' device, where a foreach optimiser kept it on the CPU).
    optimizer.load_state_dict({**state, "param_groups": groups})


def step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """``optimizer.step()``, skipped when the 0-d tensor ``skip`` is true (non-finite gradients, say).

    A fused optimiser reads ``skip`` on the device and leaves weights, moments and its step count alone, so the
    host never waits for the GPU; elsewhere the flag is read on the host.
    """
    if all(group["fused"] for group in optimizer.param_groups):
        optimizer.found_inf = skip.float()
        optimizer.step()
    elif not skip.item():
        optimizer.step()


def scale_for_processes(
    lr: float, min_lr: float, warmup_steps: int, processes: int, rule: str
) -> tuple[float, float, int]:
    """(lr, min_lr, warm-up steps) for ``processes`` data-parallel processes, the config's values being for one.

    "linear" is the linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): a global batch k
    times larger takes a k times larger learning rate, and the warm-up covers the same number of samples, so k
    times fewer steps. "none" keeps the values as written.
    """
    assert rule in ("linear", "none") and processes >= 1, f"bad scaling {rule!r} for {processes} processes"
    if rule == "none" or processes == 1:
        return lr, min_lr, warmup_steps
    return lr * processes, min_lr * processes, math.ceil(warmup_steps / processes)


def lr_factor(
    step: int,
    steps_per_epoch: int,
    total_steps: int,
    scheduler: str,
    step_size: int,
    gamma: float,
    min_ratio: float,
    warmup_steps: int,
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    "step": ``gamma`` once every ``step_size`` epochs; "cosine": from 1 down to ``min_ratio`` at ``total_steps``.
    Warm-up rises linearly over the first ``warmup_steps`` steps on top of either.
    """
    assert steps_per_epoch > 0 and total_steps > 0, "need at least one step per epoch"
    if scheduler == "step":
        factor = gamma ** ((step // steps_per_epoch) // max(step_size, 1))
    elif scheduler == "cosine":
        progress = min(step / total_steps, 1.0)
        factor = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise AssertionError(f"unknown scheduler {scheduler!r}")
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int,
    scheduler: str,
    step_size: int,
    gamma: float,
    lr: float,
    min_lr: float,
    warmup_steps: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following ``lr_factor``; call its ``step()`` after every optimiser step."""
    schedule = partial(
        lr_factor,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * epochs,
        scheduler=scheduler,
        step_size=step_size,
        gamma=gamma,
        min_ratio=min(min_lr / lr, 1.0) if lr > 0 else 0.0,
        warmup_steps=warmup_steps,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
