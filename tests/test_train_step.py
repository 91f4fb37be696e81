"""The pieces of a training step that must not wait for the GPU: the on-device step skip, the optimiser's kernel
choice across a resume, the EMA, and the step clock."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from train_data import make_pairs, tiny_config

from denoise.train import loop as train_loop
from denoise.train.ema import EMA
from denoise.train.progress import PHASES, RunProgress, StepClock
from denoise.train.schedule import build_optimizer, load_optimizer_state, step_unless

train = train_loop.train


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.GELU(), nn.Conv2d(3, 1, 1))


def _backward(model: nn.Module, scale: float = 1.0) -> None:
    model.zero_grad(set_to_none=True)
    (model(torch.rand(2, 2, 5, 5)).square().mean() * scale).backward()


@pytest.mark.parametrize("fused", [True, False])
def test_a_skipped_step_leaves_weights_moments_and_count_alone(fused: bool) -> None:
    model = _model()
    opt = build_optimizer(model, "adam", 0.1, 0.0, (0.9, 0.999))
    for group in opt.param_groups:  # the fallback path reads the flag on the host
        group["fused"] = fused or None
    _backward(model)
    step_unless(opt, torch.tensor(False))
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _backward(model, float("nan"))
    step_unless(opt, torch.tensor(True))
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    after = opt.state_dict()["state"]
    for index, saved in state["state"].items():
        for key, value in saved.items():
            assert torch.equal(after[index][key], value), (index, key)
    _backward(model)
    step_unless(opt, torch.tensor(False))
    assert all(float(s["step"]) == 2 for s in opt.state_dict()["state"].values())
    assert any(not torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_cpu_optimiser_is_fused_and_stays_so_after_loading_a_foreach_state() -> None:
    model = _model()
    opt = build_optimizer(model, "adamw", 0.1, 0.01, (0.9, 0.999))
    assert all(group["fused"] for group in opt.param_groups)
    twin = _model()
    other = torch.optim.AdamW(twin.parameters(), lr=0.1, foreach=True)  # as older checkpoints were saved
    _backward(twin)
    other.step()
    load_optimizer_state(opt, other.state_dict())
    assert all(group["fused"] and not group["foreach"] for group in opt.param_groups)
    _backward(model)
    step_unless(opt, torch.tensor(False))  # a foreach step would refuse the on-device skip flag
    assert all(float(s["step"]) == 2 for s in opt.state_dict()["state"].values())


def test_ema_follows_the_formula_and_keeps_plain_keys() -> None:
    model = _model()
    start = copy.deepcopy(model.state_dict())
    ema = EMA(model, 0.9)
    assert ema.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    ema.update(model)
    for name, value in model.state_dict().items():
        expected = 0.81 * start[name] + 0.19 * value  # two updates towards the same weights
        torch.testing.assert_close(ema.state_dict()[name], expected, atol=1e-6, rtol=0)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    restored = EMA(_model(), 0.9)
    restored.load_state_dict(ema.state_dict())
    for name, value in ema.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value)


def test_step_clock_charges_each_interval_to_its_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    now = iter([0.0, 1.0, 1.5, 4.0, 10.0, 10.25])
    monkeypatch.setattr("denoise.train.progress.time.perf_counter", lambda: next(now))
    clock = StepClock(torch.device("cpu"), sync=True)  # sync is a no-op off CUDA
    clock.mark("data")
    clock.mark("forward")
    clock.mark("forward")
    clock.restart()
    clock.mark("log")
    totals = clock.take()
    assert set(totals) == set(PHASES)
    assert totals["data"] == 1.0 and totals["forward"] == 3.0 and totals["log"] == 0.25
    assert sum(clock.take().values()) == 0.0


def test_run_progress_estimates_the_time_left_from_this_process_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    now = iter([100.0, 160.0, 400.0])
    monkeypatch.setattr("denoise.train.progress.time.perf_counter", lambda: next(now))
    progress = RunProgress(total_steps=1000, start_step=200, enabled=True)  # resumed at step 200, at t = 100 s
    assert progress.eta(200) == "?"
    assert progress.eta(300) == "7 min 0 s"  # 100 steps in 60 s, 700 left
    assert progress.eta(220) == "3 h 15 min"  # 20 steps in 300 s, 780 left: 11,700 s


def test_training_written_to_a_file_prints_plain_lines_with_the_time_left(tmp_path: Path, capfd) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(data, tmp_path / "runs", "train.log_every=2", "train.epochs=2", "train.val_every=0",
                      "data.samples_per_epoch=8", "data.batch_size=2")  # fmt: skip
    assert train(cfg).step == 8
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if "samples/s" in line]
    assert lines and "\r" not in out + err and "it/s" not in err  # no bar redrawn into the file
    assert lines[-1].startswith("epoch 2/2 step 8/8 (100%): loss ") and lines[-1].endswith("left")


def test_steps_that_do_not_log_read_nothing_back_from_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # On a GPU every tensor-to-host read in the step (item, tolist, bool, float, int) makes the host wait for the
    # device. The training code may read back only at log steps: here steps 4 and 8 log, the others must not read.
    events: list[tuple[str, str]] = []
    package = str(Path(train_loop.__file__).parents[1])

    def recording(name: str):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(package):
                events.append(("read", f"{Path(caller).name}:{sys._getframe(1).f_lineno} {name}"))
            return real(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, recording(name))
    real_mark = StepClock.mark
    monkeypatch.setattr(StepClock, "mark", lambda self, phase: (events.append(("mark", phase)), real_mark(self, phase)))
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(data, tmp_path / "runs", "train.log_every=4", "train.max_steps=8", "train.val_every=0",
                      "train.ema=0.9", "train.grad_clip=1.0", "data.samples_per_epoch=32")  # fmt: skip
    assert train(cfg).step == 8
    steps, current = [], None
    for kind, what in events:
        if kind == "mark" and what == "data":
            current = []
        elif kind == "mark" and what == "log":
            steps.append(current)
        elif kind == "read" and current is not None:
            current.append(what)
    assert len(steps) == 8
    assert all(steps[i] for i in (3, 7)), steps  # the log steps do read (the loss means, the non-finite count)
    quiet = {i + 1: reads for i, reads in enumerate(steps) if i not in (3, 7) and reads}
    assert not quiet, f"steps that read from the device: {quiet}"


def test_a_run_of_non_finite_steps_between_log_steps_still_stops_training(tmp_path: Path, monkeypatch):
    # Steps 2 and 3 are non-finite, step 4 is finite again and logs: the run of two still reaches max_nonfinite=2.
    calls = []
    real = train_loop.combined_loss

    def flaky(pred, clean, weights):
        loss, parts = real(pred, clean, weights)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) in (2, 3) else (loss, parts)

    monkeypatch.setattr(train_loop, "combined_loss", flaky)
    data = make_pairs(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "runs", "train.log_every=4", "train.max_nonfinite=2", "train.val_every=0",
                      "data.samples_per_epoch=32")  # fmt: skip
    with pytest.raises(train_loop.TrainingDiverged, match="2 non-finite losses in a row"):
        train(cfg)
    assert len(calls) == 4  # noticed at the first log step, not before


def test_compute_threads_leave_room_for_workers_and_the_nodes_other_processes(monkeypatch) -> None:
    from denoise.train.distributed import compute_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert compute_threads(3, 4) == 3  # asked for: as asked
    assert compute_threads(0, 1) == 7 and compute_threads(0, 0) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert compute_threads(0, 1) == 3  # 8 cores for 2 processes, one loader worker each
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert compute_threads(0, 1) == 1 and compute_threads(0, 4) == 1  # the 2-core machine of the table; never 0


def test_divergence_watch_stops_on_the_longest_run_of_skipped_steps_between_checks():
    from denoise.train.checkpoint import TrainingDiverged
    from denoise.train.distributed import DistInfo
    from denoise.train.progress import DivergenceWatch

    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    watch = DivergenceWatch(torch.device("cpu"), limit=3)
    for bad in (1, 1, 0, 1, 1):  # runs of 2: under the limit
        watch.update(torch.tensor(bool(bad)))
    watch.check(info, 0, 5, None)
    for bad in (1, 0, 0):  # the run of 2 before the check goes on to 3, then ends before the next check
        watch.update(torch.tensor(bool(bad)))
    with pytest.raises(TrainingDiverged, match="3 non-finite losses in a row"):
        watch.check(info, 0, 8, None)
    watch.check(info, 0, 8, None)  # a check starts from the run going on, which ended
