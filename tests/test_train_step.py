"""The pieces of a training step that must not wait for the GPU: the on-device step skip, the optimiser's kernel
choice across a resume, the EMA, and the step clock."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from denoise.train.ema import EMA
from denoise.train.progress import PHASES, StepClock
from denoise.train.schedule import build_optimizer, load_optimizer_state, step_unless


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
