"""The training run, one function read top to bottom: setup, the epoch/step loop, teardown.

The same code runs in one CPU process and under ``torchrun`` on many GPUs: every process trains its shard of each
batch through DistributedDataParallel, and only rank 0 logs, validates and writes files.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from denoise.config import Config, ConfigError, to_dict, validate_config
from denoise.dataset.frames import build_val_frames
from denoise.dataset.loader import build_train_loader
from denoise.inference.pipeline import InferSettings, settings_for_model
from denoise.lock import hold_folder
from denoise.model import autocast, build_model, prepare_input, prepare_model
from denoise.model.build import check_model_fits
from denoise.model.checkpoint import read_checkpoint
from denoise.model.nafnet import noise_level_map
from denoise.train import distributed as dd
from denoise.train.checkpoint import (
    TrainingDiverged,
    check_model_matches,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from denoise.train.ema import EMA
from denoise.train.losses import combined_loss
from denoise.train.progress import RunProgress, StepClock, log_window, new_window
from denoise.train.runs import check_runs_dir, continued_run, latest_checkpoint, open_run
from denoise.train.schedule import (
    build_optimizer,
    build_scheduler,
    load_optimizer_state,
    scale_for_processes,
    step_unless,
)
from denoise.train.validate import frames_id, noisy_scores, validate_and_log


@dataclass
class TrainResult:
    """What a finished (or interrupted) run leaves behind."""

    run_dir: Path | None  # None on ranks other than 0
    epoch: int  # epochs completed
    step: int  # optimiser steps done
    best_score: float | None
    interrupted: str | None  # "SIGINT", "SIGTERM", "max_steps" or None
    model: torch.nn.Module = field(repr=False)  # the trained network, unwrapped (not the EMA copy)


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


def resolve_resume(cfg: Config, resume: str | None) -> Path | None:
    """``--resume`` to a checkpoint path: "auto" is the newest run of this config's name, or None to start."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(cfg.train.runs_dir, cfg.name)
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint to resume from")
    return path


def train(cfg: Config, resume: str | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` as ``cfg.train`` says; resume from a checkpoint path or "auto".

    Writes ``runs/<name>-<time>/`` (config.yaml, tb/, checkpoints/last.pth and best.pth) from rank 0. Returns
    after the last epoch, after ``train.max_steps`` steps, or after SIGINT/SIGTERM (having saved last.pth);
    raises ``TrainingDiverged`` after ``train.max_nonfinite`` non-finite losses in a row.
    """
    launched = time.perf_counter()
    tc = cfg.train
    validate_config(cfg)
    torch.set_num_threads(dd.compute_threads(tc.threads, cfg.data.num_workers))
    info = dd.setup_distributed(tc.device)
    device = info.device
    check_model_fits(cfg.model, device, 5 if tc.ema > 0 else 4, "training")
    if info.is_main:
        check_runs_dir(tc.runs_dir)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # patch shapes are fixed: pick the fastest kernels once
    run_dir, writer, bar, previous_handlers = None, None, None, {}
    held = contextlib.ExitStack()  # rank 0 holds its run folder for the run's life: a second process is refused
    try:
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
        model = prepare_model(build_model(cfg.model), device)
        seed_everything(tc.seed + info.rank)
        noise_aware = cfg.model.noise_channels > 0
        loader = build_train_loader(cfg.data, tc.seed, info.distributed, noise_levels=noise_aware)
        steps_per_epoch = len(loader)
        lr, min_lr, warmup = scale_for_processes(tc.lr, tc.min_lr, tc.warmup_steps, info.world_size, tc.lr_scaling)
        if info.is_main and info.distributed:
            print(f"{info.world_size} processes, global batch {cfg.data.batch_size * info.world_size}: lr {lr:g}, "
                  f"min_lr {min_lr:g}, warm-up {warmup} steps (train.lr_scaling={tc.lr_scaling})", flush=True)
        optimizer = build_optimizer(model, tc.optimizer, lr, tc.weight_decay, tc.betas)
        scheduler = build_scheduler(
            optimizer, steps_per_epoch, tc.epochs, tc.scheduler, tc.step_size, tc.gamma, lr, min_lr, warmup
        )
        scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
        loss_weights = {
            "l1": tc.loss_l1, "fourier": tc.loss_fourier, "psnr": tc.loss_psnr, "adjacent": tc.loss_adjacent
        }

        # Restore everything the next step depends on: weights, optimiser moments, schedule, scaler, counters, RNG.
        start_epoch, skip_batches, step, best_score = 0, 0, 0, None
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
        ema = EMA(model, tc.ema) if tc.ema > 0 else None
        if ckpt is not None:
            if ema is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
            load_optimizer_state(optimizer, ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            start_epoch, skip_batches, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
            best_score = ckpt.get("best_score")
            if info.rank < len(ckpt["rng"]):
                set_rng_state(ckpt["rng"][info.rank])
        net = model
        if info.distributed:
            net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
            )
        if tc.compile:
            net = torch.compile(net)
        eval_model = ema.module if ema is not None else model

        # The run folder is made only now, once the data and checkpoint have been accepted: bad input leaves nothing.
        infer = cfg.infer  # validation denoises as inference does, one pass, with the model's noise estimate
        val_settings = settings_for_model(InferSettings(infer.tile, infer.overlap, False, infer.batch_size, device,
                                                        infer.precision), cfg)  # fmt: skip
        val_frames = build_val_frames(cfg.data) if tc.val_every > 0 else []  # every rank scores its share
        if ckpt is not None and best_score is not None and ckpt.get("val_frames") != frames_id(val_frames):
            best_score = None  # measured on other frames: the next validation's score becomes the best
            print("validation frames differ from the checkpoint's: best.pth is chosen afresh", flush=True)
        if info.is_main:
            noisy = noisy_scores(val_frames).as_dict() if val_frames and step == 0 else None
            run_dir, writer = open_run(cfg, resume, ckpt_path, step, noisy)
            if existing is None:  # a new run's folder
                held.enter_context(hold_folder(run_dir, f"run folder {run_dir}"))

        def checkpoint_state(epoch: int, batch: int, epoch_rng: dict) -> dict:
            """The checkpoint dict; collective, every rank contributes its RNG state."""
            return {
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "batch": batch,
                "step": step,
                "best_score": best_score,
                "val_frames": frames_id(val_frames),
                "rng": dd.gather_objects(epoch_rng, info),
                "config": to_dict(cfg),
            }

        stop_requested, previous_handlers = _stop_on_signals()
        interrupted, epoch = None, start_epoch
        params = [p for p in model.parameters() if p.requires_grad]
        # Non-finite steps are counted on the device and acted on at log steps and epoch ends, so that a step that
        # does not log never waits for the GPU.
        nonfinite_run = torch.zeros((), dtype=torch.int64, device=device)
        longest_run = torch.zeros_like(nonfinite_run)  # since the last check, so no run between checks goes unseen
        clock = StepClock(device, tc.sync_timing)
        window = new_window(device)
        first_step = step
        total = min(tc.epochs * steps_per_epoch, tc.max_steps) if tc.max_steps else tc.epochs * steps_per_epoch
        bar = RunProgress(total, step, info.is_main)

        def check_diverged() -> None:
            """Raise TrainingDiverged once ``max_nonfinite`` steps in a row were skipped (reads the device)."""
            nonlocal longest_run
            run, longest_run = int(longest_run.item()), nonfinite_run.clone()
            if not dd.any_true([run >= tc.max_nonfinite], info)[0]:
                return
            last = run_dir / "checkpoints" / "last.pth" if run_dir else "last.pth"
            raise TrainingDiverged(
                f"stopped at epoch {epoch + 1} step {step}: {run} non-finite losses in a row, steps skipped "
                f"(train.max_nonfinite={tc.max_nonfinite}; try a lower train.lr, train.grad_clip or precision "
                f"fp32); last good checkpoint: {last}"
            )

        model.train()
        for epoch in range(start_epoch, tc.epochs):
            # Batches depend only on (seed, epoch), whatever the worker count, so a resumed run draws the same
            # ones; the global RNG state (dropout, say) goes into checkpoints.
            loader.sampler.set_epoch(epoch)
            epoch_rng = rng_state()
            done = 0
            bar.start_epoch(epoch, tc.epochs, steps_per_epoch)
            clock.restart()
            for i, batch in enumerate(loader):
                if epoch == start_epoch and i < skip_batches:
                    done = i + 1  # replayed only to advance the data RNG exactly as the interrupted run did
                    bar.update(1)
                    clock.restart()
                    continue
                noisy = prepare_input(batch["noisy"], device)  # (B, 4, p, p)
                clean = prepare_input(batch["clean"], device)
                inp = noisy
                if noise_aware:  # the sample's noise level as a per-pixel std map beside the image
                    a, b = (batch[k].to(device, non_blocking=True) for k in ("a", "b"))  # (B,)
                    inp = torch.cat([noisy, noise_level_map(noisy, a, b)], dim=1)  # (B, 8, p, p)
                clock.mark("data")
                if step == first_step and info.is_main:  # start-up ends: caches read, estimates loaded, workers up
                    first_batch = time.perf_counter() - launched
                with autocast(device, tc.precision):
                    pred = net(inp)
                loss, parts = combined_loss(pred, clean, loss_weights)
                clock.mark("forward")

                # Every rank stops together if any was signalled: a host flag, agreed on without the GPU.
                if dd.any_true([bool(stop_requested)], info)[0]:
                    interrupted = stop_requested[0] if stop_requested else "SIGTERM"
                    break
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                clock.mark("backward")
                if scaler.is_enabled():
                    scaler.unscale_(optimizer)
                if tc.grad_clip > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
                else:
                    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                if scaler.is_enabled():  # fp16: the scaler skips overflowing steps itself and lowers its scale
                    bad = ~torch.isfinite(loss)
                    scaler.step(optimizer)
                    scaler.update()
                else:  # a non-finite gradient (a non-finite loss gives one on every rank) skips the step
                    bad = ~torch.isfinite(grad_norm)
                    step_unless(optimizer, bad)
                scheduler.step()
                clock.mark("optimizer")
                if ema is not None:
                    ema.update(model)
                clock.mark("ema")
                step += 1
                done = i + 1
                nonfinite_run = (nonfinite_run + 1) * bad
                longest_run = torch.maximum(longest_run, nonfinite_run)

                # Running sums over the logging window, kept on the device; reduced across ranks when written.
                window["count"] += 1
                window["samples"] += noisy.shape[0] * info.world_size
                window["skipped"] += bad
                for name, value in {"total": loss, **parts}.items():
                    value = value.detach().float()
                    window["sums"][name] = window["sums"].get(name, 0.0) + torch.where(bad, 0.0, value)
                bar.update(1)
                if step == first_step + 1 and info.is_main:
                    writer.add_scalar("time/first_batch_s", first_batch, step)
                    writer.add_scalar("time/first_step_s", time.perf_counter() - launched, step)
                    bar.write(f"first batch {first_batch:.1f} s after launch, first step done "
                              f"{time.perf_counter() - launched:.1f} s after")
                if step % tc.log_every == 0:
                    log_window(window, clock.take(), grad_norm, scheduler.get_last_lr()[0], step, writer, bar, info)
                    window = new_window(device)
                    check_diverged()
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and done < steps_per_epoch:
                    state = checkpoint_state(epoch, done, epoch_rng)  # every rank: it gathers their RNG states
                    if info.is_main:  # resumable as an interrupted run's: replays this epoch's first batches
                        save_checkpoint(state, run_dir / "checkpoints" / "last.pth")
                clock.mark("log")
                if tc.max_steps and step >= tc.max_steps:
                    interrupted = "max_steps"
                    break
            bar.end_epoch()

            if interrupted:
                # Resuming replays this epoch's first ``done`` batches (data only) and carries on from there.
                state = checkpoint_state(epoch, done, epoch_rng)
                if info.is_main:
                    save_checkpoint(state, run_dir / "checkpoints" / "last.pth")
                    print(f"{interrupted}: saved {run_dir / 'checkpoints' / 'last.pth'} at step {step}", flush=True)
                dd.barrier(info)  # no rank leaves the process group while rank 0 still writes
                break

            check_diverged()
            # Every rank denoises and scores its share of the whole validation frames on its device; rank 0 logs.
            scores = None
            if val_frames and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs):
                scores = validate_and_log(eval_model, val_frames, val_settings, info, writer, step, epoch + 1,
                                          tc.image_crop)
            improved = scores is not None and (best_score is None or scores.score > best_score)
            if improved:
                best_score = scores.score
            state = checkpoint_state(epoch + 1, 0, rng_state())
            if info.is_main:  # best first: a kill between the two leaves last.pth to redo the epoch, best.pth kept
                if improved:
                    save_checkpoint(state, run_dir / "checkpoints" / "best.pth")
                save_checkpoint(state, run_dir / "checkpoints" / "last.pth")
                writer.flush()
            dd.barrier(info)
    finally:
        if bar is not None:
            bar.end_epoch()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.close()
        net = None  # DDP holds the process group: let go of it first, so it is torn down here, not at exit
        dd.cleanup_distributed()
        held.close()
    completed = epoch if interrupted else tc.epochs
    return TrainResult(run_dir, completed, step, best_score, interrupted, model)
