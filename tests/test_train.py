"""A few-step training run on tiny generated DNG pairs: finite and decreasing loss on a fixed batch, a run folder
with the resolved config, reloadable checkpoints, the TensorBoard tags; divergence; SIGTERM."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_data import make_pairs, tiny_config

from denoise.config import config_from_dict, dump_config
from denoise.infer import main as infer_main
from denoise.inference.files import newest_checkpoint
from denoise.model import build_model
from denoise.model.checkpoint import load_model
from denoise.train.loop import TrainingDiverged, train

REPO = Path(__file__).resolve().parents[1]

EXPECTED_SCALARS = {
    "train/loss",
    "train/loss_l1",
    "train/loss_fourier",
    "train/loss_psnr",
    "train/loss_adjacent",
    "train/lr",
    "train/grad_norm",
    "train/samples_per_s",
    "val/psnr",
    "val/ssim",
    "val/ssim_2d",
    "val/score",
    "val/worst_gain",
    "val_noisy/score",
}


@pytest.fixture(scope="module")
def fixed_batch_run(tmp_path_factory: pytest.TempPathFactory):
    """Train 8 steps on one training frame that is exactly one patch, so every batch is the same."""
    tmp = tmp_path_factory.mktemp("train")
    data = make_pairs(tmp / "data", count=2, size=32)
    cfg = tiny_config(
        data,
        tmp / "runs",
        "data.sampling=tiles",
        "data.augment_flips=false",
        "data.samples_per_epoch=4",
        "train.epochs=4",
        "train.val_every=2",
        "train.lr=0.003",
        "train.ema=0.5",
        "train.loss_fourier=0.05",
        "train.loss_psnr=0.002",
        "train.loss_adjacent=0.5",
    )
    return cfg, train(cfg)


def test_run_folder_holds_resolved_config_and_checkpoints(fixed_batch_run) -> None:
    cfg, result = fixed_batch_run
    run = result.run_dir
    assert run.parent == Path(cfg.train.runs_dir) and run.name.startswith("tiny-")
    assert (run / "config.yaml").read_text() == dump_config(cfg)
    assert (run / "checkpoints" / "last.pth").is_file() and (run / "checkpoints" / "best.pth").is_file()
    assert result.epoch == 4 and result.step == 8 and result.interrupted is None


def test_loss_is_finite_and_decreases_on_a_fixed_batch(fixed_batch_run) -> None:
    _, result = fixed_batch_run
    events = EventAccumulator(str(result.run_dir / "tb"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2])
    l1 = [e.value for e in events.Scalars("train/loss_l1")]
    assert l1[-1] < l1[0]
    assert all(e.value < 0 for e in events.Scalars("train/loss_psnr"))  # minus the PSNR, by design


def test_tensorboard_has_the_expected_tags(fixed_batch_run) -> None:
    _, result = fixed_batch_run
    events = EventAccumulator(str(result.run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) >= EXPECTED_SCALARS
    assert set(tags["images"]) >= {"images/noisy", "images/denoised", "images/clean"}
    assert len(events.Images("images/denoised")) == 2  # validated after epochs 2 and 4
    assert any(t.startswith("config") for t in tags["tensors"])  # add_text stores a tensor summary
    assert len(events.Scalars("val/score")) == 2
    # One validation frame: one level's score (which level is tested with known noise in test_samples.py).
    assert len([t for t in tags["scalars"] if t.startswith("val/score_")]) == 1


def test_checkpoint_reloads_with_weights_only(fixed_batch_run) -> None:
    cfg, result = fixed_batch_run
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.pth", map_location="cpu", weights_only=True)
    expected = {"model", "ema", "optimizer", "scheduler", "scaler", "epoch", "batch", "step", "rng", "config"}
    assert expected <= set(ckpt)
    assert ckpt["epoch"] == 4 and ckpt["batch"] == 0 and ckpt["step"] == 8
    assert config_from_dict(ckpt["config"]) == cfg
    model = build_model(config_from_dict(ckpt["config"]).model)
    model.load_state_dict(ckpt["model"])
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name
    # The EMA weights differ from the raw ones and are what inference loads.
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"])
    loaded, loaded_cfg = load_model(result.run_dir / "checkpoints" / "best.pth", "cpu")
    best = torch.load(result.run_dir / "checkpoints" / "best.pth", weights_only=True)
    assert loaded_cfg == cfg
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, best["ema"][name]), name


def test_diverging_run_stops_with_a_clear_message(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(data, tmp_path / "runs", "train.lr=1.0e+30", "train.max_nonfinite=2", "train.epochs=3")
    with pytest.raises(TrainingDiverged, match="2 non-finite losses in a row") as info:
        train(cfg)
    run = next((tmp_path / "runs").iterdir())
    assert str(run / "checkpoints" / "last.pth") in str(info.value)
    assert not (run / "checkpoints" / "last.pth").exists()  # nothing good to keep: no checkpoint was faked


def _wait_for(root: Path, pattern: str, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(root.glob(pattern)):
            return True
        time.sleep(0.2)
    return False


def test_sigterm_leaves_a_loadable_last_checkpoint(tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(data, tmp_path / "runs", "train.epochs=100000", "train.val_every=0")
    config = tmp_path / "tiny.yaml"
    config.write_text(dump_config(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "denoise.train", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert _wait_for(tmp_path / "runs", "tiny-*/tb/events.*", 60), "training did not start"
        time.sleep(1.0)  # let it get into the step loop
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM: saved" in out
    last = next((tmp_path / "runs").glob("tiny-*/checkpoints/last.pth"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["step"] > 0
    build_model(config_from_dict(ckpt["config"]).model).load_state_dict(ckpt["model"])
    assert yaml.safe_load((last.parents[1] / "config.yaml").read_text())["name"] == "tiny"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_with_clipping_and_cosine(tmp_path: Path, precision: str) -> None:
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(
        data, tmp_path / "runs", f"train.precision={precision}", "train.epochs=1", "train.grad_clip=0.5",
        "train.scheduler=cosine", "train.optimizer=adamw", "train.weight_decay=0.01", "train.val_every=0",
    )
    result = train(cfg)
    events = EventAccumulator(str(result.run_dir / "tb"))
    events.Reload()
    assert result.step == 4 and all(math.isfinite(e.value) for e in events.Scalars("train/loss"))
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.pth", weights_only=True)
    assert bool(ckpt["scaler"]) == (precision == "fp16")  # only fp16 needs (and saves) a gradient scaler
    assert ckpt["optimizer"]["param_groups"][0]["lr"] < cfg.train.lr  # the cosine schedule has decayed


def test_bad_data_fails_before_a_run_folder_is_made(tmp_path: Path) -> None:
    from denoise.dataset.pairs import DatasetError

    with pytest.raises(DatasetError, match="does not exist"):
        train(tiny_config(tmp_path / "missing", tmp_path / "runs"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.skipif(not os.environ.get("DENOISE_SLOW_TESTS"), reason="torch.compile takes minutes on 2 CPU cores")
def test_compiled_training_follows_eager_training(tmp_path: Path) -> None:
    # train.compile changes how the step runs, not what it computes; checkpoints keep the plain module's keys.
    data = make_pairs(tmp_path / "data", count=2, size=32)
    runs = {}
    for compiled in (False, True):
        cfg = tiny_config(data, tmp_path / f"runs{compiled}", "data.sampling=tiles", "data.augment_flips=false",
                          "train.max_steps=3", "train.val_every=0", f"train.compile={compiled}")
        runs[compiled] = train(cfg)
    eager, compiled = runs[False], runs[True]
    assert compiled.step == eager.step == 3
    saved = torch.load(compiled.run_dir / "checkpoints" / "last.pth", weights_only=True)
    assert saved["model"].keys() == eager.model.state_dict().keys()
    for name, value in eager.model.state_dict().items():
        torch.testing.assert_close(saved["model"][name], value, atol=1e-4, rtol=1e-3, msg=name)


def test_a_second_training_of_a_held_run_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    """Two real processes: ``--resume auto`` of a run another process is training gets one line and exit 2 before
    loading any data; once the first is killed (-9), the run can be resumed."""
    data = make_pairs(tmp_path / "data", count=2)
    cfg = tiny_config(data, tmp_path / "runs", "train.epochs=100000", "train.val_every=0")
    config = tmp_path / "tiny.yaml"
    config.write_text(dump_config(cfg))
    command = [sys.executable, "-m", "denoise.train", "--config", str(config)]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(tmp_path / "runs", "tiny-*/tb/events.*", 60), "training did not start"
        second = subprocess.run([*command, "--resume", "auto"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr[-2000:]
        assert "is in use by another process" in second.stderr and "tiny-" in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.wait()
    third = subprocess.run([*command, "--resume", "auto", "train.max_steps=1"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one run folder throughout


def test_weights_gone_non_finite_stop_the_run_and_the_last_finite_checkpoints_stay(tmp_path: Path) -> None:
    """A run whose step size blows up after its last checkpoint (the checkpoint's learning rate raised to 3e38,
    as a bad schedule would) stops at its next save with one message, and writes no non-finite weights."""
    data = make_pairs(tmp_path / "data", count=2)
    result = train(tiny_config(data, tmp_path / "runs", "train.epochs=1"))
    folder = result.run_dir / "checkpoints"
    ckpt = torch.load(folder / "last.pth", weights_only=True)
    for group in ckpt["optimizer"]["param_groups"]:
        group["lr"] = group["initial_lr"] = 3.0e38
    ckpt["scheduler"]["base_lrs"] = [3.0e38] * len(ckpt["scheduler"]["base_lrs"])
    torch.save(ckpt, folder / "last.pth")
    kept = {p.name: p.read_bytes() for p in folder.glob("*.pth")}
    with pytest.raises(TrainingDiverged, match=r"stopped at step \d+: [\d,]+ weights are NaN or infinite") as info:
        train(tiny_config(data, tmp_path / "runs", "train.epochs=3"), resume="auto")
    assert f"last good checkpoints: best.pth, last.pth in {folder}" in str(info.value)
    assert {p.name: p.read_bytes() for p in folder.glob("*.pth")} == kept


def test_a_full_disk_stops_training_with_one_line_and_no_torn_checkpoint(tmp_path: Path, small_disk,
                                                                         monkeypatch) -> None:  # fmt: skip
    """Runs on a real 192 KiB tmpfs (where the machine allows mounting one): the first checkpoints that do not fit
    stop the run with one line naming the file; nothing half-written is left, and what was saved loads."""
    data = make_pairs(tmp_path / "data", count=2)
    runs = small_disk if small_disk is not None else tmp_path / "runs"
    cfg = tiny_config(data, runs, "train.epochs=100000", "train.val_every=0", "model.width=16")
    config = tmp_path / "tiny.yaml"
    config.write_text(dump_config(cfg))
    command = [sys.executable, "-m", "denoise.train", "--config", str(config)]
    if small_disk is None:  # no tmpfs here: a save fails as a full disk makes it fail
        command = [sys.executable, "-c", "import errno, pathlib, runpy, sys\n"
                   "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                   "pathlib.Path.write_bytes = full\nsys.argv = ['train'] + sys.argv[1:]\n"
                   "runpy.run_module('denoise.train', run_name='__main__')", "--config", str(config)]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: stopped at step") and "could not be saved (No space left on device)" in line
    assert "Traceback" not in run.stderr
    folder = next(runs.glob("tiny-*/checkpoints"))
    assert not [p for p in folder.iterdir() if p.suffix == ".tmp"]  # no torn temporary
    for saved in folder.glob("*.pth"):
        torch.load(saved, weights_only=True)


def test_infer_takes_the_last_weights_of_a_finished_run_that_never_validated(tmp_path: Path, monkeypatch,
                                                                              capsys) -> None:  # fmt: skip
    # A run without validation writes no best.pth; infer's default is then its last.pth, once all its epochs are
    # done and if it is the newest run (dated by its newest checkpoint). A run paused part-way hands nothing over.
    data = make_pairs(tmp_path / "data", count=2)
    runs = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    denoise_one = ["--input", str(data / "noisy" / "0_noise.dng"), "--output", "out"]
    assert infer_main(denoise_one) == 2 and "train first" in capsys.readouterr().err  # no run yet
    validated = train(tiny_config(data, runs)).run_dir / "checkpoints"
    assert newest_checkpoint(runs) == validated / "best.pth"
    unvalidated = train(tiny_config(data, runs, "name=blind", "train.val_every=0")).run_dir / "checkpoints"
    assert sorted(p.name for p in unvalidated.iterdir()) == ["last.pth"]
    assert newest_checkpoint(runs) == unvalidated / "last.pth"
    capsys.readouterr()
    assert infer_main(denoise_one) == 0 and (tmp_path / "out" / "0_noise_denoised.dng").is_file()
    assert "to finish without validation: its last.pth" in capsys.readouterr().out
    paused = train(tiny_config(data, runs, "name=paused", "train.val_every=0", "train.max_steps=2")).run_dir
    assert (paused / "checkpoints" / "last.pth").is_file() and newest_checkpoint(runs) == unvalidated / "last.pth"
    later = time.time() + 60  # the validated run goes on (its last.pth newer), its best.pth as old as it was
    os.utime(validated / "last.pth", (later, later))
    assert newest_checkpoint(runs) == validated / "best.pth"
    os.utime(validated / "last.pth", (1, 1))
    os.utime(validated / "best.pth", (1, 1))
    (unvalidated / "last.pth").write_bytes(b"not a checkpoint")  # unreadable: no run's model
    assert newest_checkpoint(runs) == validated / "best.pth"
