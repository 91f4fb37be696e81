"""The training run: ``train`` is set-up, a loop over epochs, tear-down; ``run_epoch`` is the loop over steps and
``train_step`` one optimiser step, each readable top to bottom.

The same code runs in one CPU process and under ``torchrun`` on many GPUs: every process trains its shard of each
batch through DistributedDataParallel, and only rank 0 logs, validates and writes files.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from denoise.config import Config, InferConfig, to_dict, validate_config
from denoise.dataset.frames import ValFrame, build_val_frames
from denoise.dataset.loader import build_train_loader
from denoise.lock import hold_folder
from denoise.model import autocast, build_model, prepare_input, prepare_model
from denoise.model.build import blind_options, check_model_fits
from denoise.model.checkpoint import read_checkpoint
from denoise.train import distributed as dd
from denoise.train.checkpoint import TrainingDiverged, check_model_matches, rng_state, save_checkpoint, seed_everything
from denoise.train.losses import combined_loss
from denoise.train.progress import DivergenceWatch, RunProgress, StepClock, log_window, new_window
from denoise.train.runs import check_runs_dir, continued_run, open_run, resolve_resume
from denoise.train.schedule import build_optimizer, build_scheduler, scale_for_processes, step_unless
from denoise.train.state import TrainState
from denoise.train.validate import frames_id, noisy_scores, validate_and_log

__all__ = ["TrainResult", "TrainingDiverged", "train"]


@dataclass
class TrainResult:
    """What a finished (or interrupted) run leaves behind."""

    run_dir: Path | None  # None on ranks other than 0
    epoch: int  # epochs completed
    step: int  # optimiser steps done
    best_score: float | None
    interrupted: str | None  # "SIGINT", "SIGTERM", "max_steps" or None
    model: torch.nn.Module = field(repr=False)  # the trained network, unwrapped (not the EMA copy)


@dataclass
class Run:
    """What ``start_run`` builds and every epoch and step uses."""

    cfg: Config
    info: dd.DistInfo
    state: TrainState
    net: torch.nn.Module  # the model as the step calls it, maybe under DDP and torch.compile
    loader: DataLoader
    val_frames: list[ValFrame]
    val_settings: InferConfig
    run_dir: Path | None  # rank 0's
    writer: SummaryWriter | None  # rank 0's
    bar: RunProgress
    clock: StepClock
    watch: DivergenceWatch
    stop_requested: list[str]
    launched: float  # perf_counter at launch, for the start-up time
    first_step: int  # the step this process started from
    window: dict  # running sums over the logging window (``new_window``), which may span epochs
    params: list[torch.nn.Parameter]  # the trained parameters, for clipping and the gradient norm
    loss_weights: dict[str, float]  # ``combined_loss``'s weight of each term
    first_batch: float | None = None  # seconds from launch to the first batch, once known

    def save(self, names: tuple[str, ...], epoch: int, batch: int, epoch_rng: dict) -> None:
        """Every rank's part of a checkpoint (it gathers their RNG states, so every rank calls it); rank 0 writes
        it as each of checkpoints/``names``, in that order."""
        state = self.state.checkpoint(epoch, batch, dd.gather_objects(epoch_rng, self.info),
                                      frames_id(self.val_frames), to_dict(self.cfg))  # fmt: skip
        for name in names if self.info.is_main else ():
            save_checkpoint(state, self.run_dir / "checkpoints" / name)


def _stop_on_signals() -> tuple[list[str], dict]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step; a second SIGINT aborts."""
    requested: list[str] = []
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return requested, previous  # signal handlers can only be installed from the main thread

    def handler(signum: int, frame: object) -> None:
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return requested, previous


def train(cfg: Config, resume: str | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` as ``cfg.train`` says; resume from a checkpoint path or "auto".

    Writes ``runs/<name>-<time>/`` (config.yaml, tb/, checkpoints/last.pth and best.pth) from rank 0. Returns
    after the last epoch, after ``train.max_steps`` steps, or after SIGINT/SIGTERM (having saved last.pth);
    raises ``TrainingDiverged`` after ``train.max_nonfinite`` non-finite losses in a row.
    """
    launched = time.perf_counter()
    validate_config(cfg)
    torch.set_num_threads(dd.compute_threads(cfg.train.threads, cfg.data.num_workers))
    info = dd.setup_distributed(cfg.train.device)
    check_model_fits(cfg.model, info.device, 5 if cfg.train.ema > 0 else 4, "training")
    if info.is_main:
        check_runs_dir(cfg.train.runs_dir)
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # patch shapes are fixed: pick the fastest kernels once
    held = contextlib.ExitStack()  # rank 0 holds its run folder for the run's life: a second process is refused
    run, previous_handlers, interrupted = None, {}, None
    try:
        run = start_run(cfg, resume, info, held, launched)
        run.stop_requested, previous_handlers = _stop_on_signals()
        epoch = run.state.epoch
        run.state.model.train()
        for epoch in range(run.state.epoch, cfg.train.epochs):
            interrupted = run_epoch(run, epoch)
            if interrupted:
                break
            end_epoch(run, epoch)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if run is not None:
            run.bar.end_epoch()
            if run.writer is not None:
                run.writer.close()
            run.net = None  # DDP holds the process group: let go of it first, so it is torn down here, not at exit
        dd.cleanup_distributed()
        held.close()
    completed = epoch if interrupted else cfg.train.epochs
    return TrainResult(run.run_dir, completed, run.state.step, run.state.best_score, interrupted, run.state.model)


def start_run(cfg: Config, resume: str | None, info: dd.DistInfo, held: contextlib.ExitStack, launched: float) -> Run:
    """Everything the loop needs, in the order that keeps a seed's run reproducible: the checkpoint to resume from,
    the model, data, optimiser and schedule (restored from it), validation frames, the run folder, the wrappers."""
    tc, device = cfg.train, info.device
    # Rank 0 picks the checkpoint to resume from; every rank loads it.
    ckpt_path = resolve_resume(cfg, resume) if info.is_main else None
    if info.is_main and resume == "auto" and ckpt_path is None:
        print(f"--resume auto: no checkpoint of a run named {cfg.name!r} under {tc.runs_dir}: starting", flush=True)
    existing = continued_run(cfg, resume, ckpt_path) if info.is_main else None
    if existing is not None:
        held.enter_context(hold_folder(existing, f"run folder {existing}"))
    ckpt_path = dd.broadcast_str(str(ckpt_path or ""), info) or None
    ckpt = dd.read_on_every_rank(ckpt_path, info, read_checkpoint) if ckpt_path else None
    if ckpt is not None:
        check_model_matches(cfg, ckpt, Path(ckpt_path))

    # The model's initial weights depend on the seed alone; data randomness also on the rank.
    torch.manual_seed(tc.seed)
    model = prepare_model(build_model(cfg.model, **blind_options(cfg)), device)
    seed_everything(tc.seed + info.rank)
    loader = build_train_loader(cfg.data, tc.seed, info.distributed, noise_levels=cfg.model.noise_channels > 0)
    lr, min_lr, warmup = scale_for_processes(tc.lr, tc.min_lr, tc.warmup_steps, info.world_size, tc.lr_scaling)
    if info.is_main and info.distributed:
        print(f"{info.world_size} processes, global batch {cfg.data.batch_size * info.world_size}: lr {lr:g}, "
              f"min_lr {min_lr:g}, warm-up {warmup} steps (train.lr_scaling={tc.lr_scaling})", flush=True)
    optimizer = build_optimizer(model, tc.optimizer, lr, tc.weight_decay, tc.betas)
    scheduler = build_scheduler(optimizer, len(loader), tc.epochs, tc.scheduler, tc.step_size, tc.gamma, lr, min_lr,
                                warmup)  # fmt: skip
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    state = TrainState.start(model, tc.ema, optimizer, scheduler, scaler, ckpt, info.rank)

    # Validation denoises as inference does, one pass, with the model's noise estimate; every rank scores its share.
    val_settings = replace(cfg.infer, tta=False, device=str(device))
    val_frames = build_val_frames(cfg.data) if tc.val_every > 0 else []
    if ckpt is not None and state.best_score is not None and ckpt.get("val_frames") != frames_id(val_frames):
        state.best_score = None  # measured on other frames: the next validation's score becomes the best
        print("validation frames differ from the checkpoint's: best.pth is chosen afresh", flush=True)
    # The run folder is made only now, once the data and checkpoint have been accepted: bad input leaves nothing.
    run_dir, writer = None, None
    if info.is_main:
        noisy = noisy_scores(val_frames).as_dict() if val_frames and state.step == 0 else None
        run_dir, writer = open_run(cfg, resume, ckpt_path, state.step, noisy)
        if existing is None:  # a new run's folder
            held.enter_context(hold_folder(run_dir, f"run folder {run_dir}"))
    # The wrappers last: a failure above leaves no DDP object alive past the process group's tear-down.
    net = model
    if info.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)  # fmt: skip
    if tc.compile:
        net = torch.compile(net)
    total = tc.epochs * len(loader)
    bar = RunProgress(min(total, tc.max_steps) if tc.max_steps else total, state.step, info.is_main)
    return Run(cfg, info, state, net, loader, val_frames, val_settings, run_dir, writer, bar,
               StepClock(device, tc.sync_timing), DivergenceWatch(device, tc.max_nonfinite), [], launched, state.step,
               new_window(device), [p for p in model.parameters() if p.requires_grad],
               {"l1": tc.loss_l1, "fourier": tc.loss_fourier, "psnr": tc.loss_psnr, "adjacent": tc.loss_adjacent})


def train_step(run: Run, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
    """One optimiser step on ``batch``: (loss, its parts, whether the step was skipped, the gradient norm).

    Raises ``StopRequested`` after the forward pass when any rank was signalled, before anything is updated.
    """
    cfg, state, device = run.cfg, run.state, run.info.device
    noisy = prepare_input(batch["noisy"], device)  # (B, 4, p, p)
    clean = prepare_input(batch["clean"], device)
    # A noise-aware model is told each sample's level (B,) and (B,): it builds its own noise map from them.
    level = {}
    if cfg.model.noise_channels > 0:
        level["noise"] = tuple(batch[k].to(device, non_blocking=True) for k in ("a", "b"))
    run.clock.mark("data")
    if run.first_batch is None:  # start-up ends: caches read, estimates loaded, workers up
        run.first_batch = time.perf_counter() - run.launched
    with autocast(device, cfg.train.precision):
        pred = run.net(noisy, **level)
    tc = cfg.train
    loss, parts = combined_loss(pred, clean, run.loss_weights)
    run.clock.mark("forward")

    # Every rank stops together if any was signalled: a host flag, agreed on without the GPU.
    if dd.any_true([bool(run.stop_requested)], run.info)[0]:
        raise StopRequested(run.stop_requested[0] if run.stop_requested else "SIGTERM")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    run.clock.mark("backward")
    params = run.params
    if state.scaler.is_enabled():
        state.scaler.unscale_(state.optimizer)
    if tc.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if state.scaler.is_enabled():  # fp16: the scaler skips overflowing steps itself and lowers its scale
        bad = ~torch.isfinite(loss)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:  # a non-finite gradient (a non-finite loss gives one on every rank) skips the step
        bad = ~torch.isfinite(grad_norm)
        step_unless(state.optimizer, bad)
    state.scheduler.step()
    run.clock.mark("optimizer")
    if state.ema is not None:
        state.ema.update(state.model)
    run.clock.mark("ema")
    state.step += 1
    run.watch.update(bad)
    return loss, parts, bad, grad_norm


class StopRequested(Exception):
    """A rank was signalled (SIGINT/SIGTERM) during a step: every rank stops before updating anything."""


def run_epoch(run: Run, epoch: int) -> str | None:
    """Train one epoch (the rest of it, when resuming mid-epoch); returns why it stopped early, or None.

    A stopped epoch saves last.pth so that resuming replays its first batches (data only) and carries on.
    """
    state, info, tc = run.state, run.info, run.cfg.train
    # Batches depend only on (seed, epoch), whatever the worker count, so a resumed run draws the same ones; the
    # global RNG state (dropout, say) goes into checkpoints.
    run.loader.sampler.set_epoch(epoch)
    epoch_rng, skip = rng_state(), state.batch if epoch == state.epoch else 0
    done, interrupted, window = 0, None, run.window
    run.bar.start_epoch(epoch, tc.epochs, len(run.loader))
    run.clock.restart()
    for i, batch in enumerate(run.loader):
        if i < skip:
            done = i + 1  # replayed only to advance the data RNG exactly as the interrupted run did
            run.bar.update(1)
            run.clock.restart()
            continue
        try:
            loss, parts, bad, grad_norm = train_step(run, batch)
        except StopRequested as stop:
            interrupted = str(stop)
            break
        done = i + 1
        # Running sums over the logging window, kept on the device; reduced across ranks when written.
        window["count"] += 1
        window["samples"] += batch["noisy"].shape[0] * info.world_size
        window["skipped"] += bad
        for name, value in {"total": loss, **parts}.items():
            window["sums"][name] = window["sums"].get(name, 0.0) + torch.where(bad, 0.0, value.detach().float())
        run.bar.update(1)
        if state.step == run.first_step + 1 and info.is_main:
            _log_start_up(run)
        if state.step % tc.log_every == 0:
            lr = state.scheduler.get_last_lr()[0]
            log_window(window, run.clock.take(), grad_norm, lr, state.step, run.writer, run.bar, info)
            window = run.window = new_window(info.device)
            run.watch.check(info, epoch, state.step, run.run_dir)
        if tc.checkpoint_every and state.step % tc.checkpoint_every == 0 and done < len(run.loader):
            run.save(("last.pth",), epoch, done, epoch_rng)  # resumable as an interrupted run's: replays this epoch
        run.clock.mark("log")
        if tc.max_steps and state.step >= tc.max_steps:
            interrupted = "max_steps"
            break
    run.bar.end_epoch()
    if interrupted:
        run.save(("last.pth",), epoch, done, epoch_rng)
        if info.is_main:
            print(f"{interrupted}: saved {run.run_dir / 'checkpoints' / 'last.pth'} at step {state.step}", flush=True)
        dd.barrier(info)  # no rank leaves the process group while rank 0 still writes
    return interrupted


def _log_start_up(run: Run) -> None:
    """How long start-up took (to the first batch) and the first step with it, logged once."""
    now = time.perf_counter() - run.launched
    run.writer.add_scalar("time/first_batch_s", run.first_batch, run.state.step)
    run.writer.add_scalar("time/first_step_s", now, run.state.step)
    run.bar.write(f"first batch {run.first_batch:.1f} s after launch, first step done {now:.1f} s after")


def end_epoch(run: Run, epoch: int) -> None:
    """After a full epoch: the divergence check, validation when due, then best.pth (when it improved), last.pth."""
    state, info, tc = run.state, run.info, run.cfg.train
    run.watch.check(info, epoch, state.step, run.run_dir)
    # Every rank denoises and scores its share of the whole validation frames on its device; rank 0 logs.
    scores = None
    if run.val_frames and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs):
        scores = validate_and_log(state.eval_model, run.val_frames, run.val_settings, info, run.writer, state.step,
                                  epoch + 1, tc.image_crop)  # fmt: skip
    improved = scores is not None and (state.best_score is None or scores.score > state.best_score)
    if improved:
        state.best_score = scores.score
    # Best first: a kill between the two leaves last.pth to redo the epoch, best.pth kept.
    run.save(("best.pth", "last.pth") if improved else ("last.pth",), epoch + 1, 0, rng_state())
    if info.is_main:
        run.writer.flush()
    dd.barrier(info)
