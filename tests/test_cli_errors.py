"""Every command line meets bad input the same way: one line naming the file, folder or option, exit status 2, no
traceback, and nothing written."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.config import Config, ModelConfig, run_cli, to_dict
from denoise.model import build_model
from denoise.raw.dng import write_new_dng


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    cfg = Config(model=ModelConfig(width=4, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,)))
    torch.save({"model": build_model(cfg.model).state_dict(), "ema": None, "config": to_dict(cfg), "epoch": 1,
                "step": 1}, root / "best.pth")  # fmt: skip
    bad_cfg = to_dict(cfg)
    bad_cfg["model"]["width"] = -3
    torch.save({"model": {}, "ema": None, "config": bad_cfg, "epoch": 1, "step": 1}, root / "badcfg.pth")
    (root / "junk.pth").write_bytes(b"not a checkpoint")
    (root / "texth.pth").write_text("hello\n")  # text read as a legacy pickle: KeyError inside torch.load
    (root / "textp.pth").write_text("(1, 2)\n")
    torch.save({"model": {}, "ema": None, "config": [1, 2]}, root / "listcfg.pth")
    weights = build_model(cfg.model).state_dict()
    next(v for v in weights.values() if v.is_floating_point())[0] = float("nan")
    torch.save({"model": weights, "ema": None, "config": to_dict(cfg), "epoch": 1, "step": 1}, root / "nan.pth")
    (root / "dup.yaml").write_text("train:\n  lr: 1.0e-3\nmodel:\n  width: 8\ntrain:\n  epochs: 2\n")
    (root / "blank.yaml").write_text("# nothing set\n")
    (root / "test").mkdir()
    write_new_dng(root / "test" / "noisy0.dng", np.full((32, 32), 3000, np.uint16), "BGGR", 1024, 16383)
    (root / "garbage").mkdir()
    (root / "garbage" / "noisy0.dng").write_bytes(b"II*\x00garbage")
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "empty").mkdir()
    names = {"binary": "binary.yaml", "dup": "dup.yaml", "blank": "blank.yaml"} | {
        name: f"{name}.pth" for name in ("best", "badcfg", "junk", "texth", "textp", "listcfg", "nan")}
    return {key: root / name for key, name in names.items()} | {
        name: root / name for name in ("test", "garbage", "empty")} | {"root": root}


CASES = [
    ("denoise.infer", ["--checkpoint", "{junk}", "--input", "{test}"], "junk.pth"),
    ("denoise.infer", ["--checkpoint", "{badcfg}", "--input", "{test}"], "model.width"),
    ("denoise.infer", ["--checkpoint", "{best}", "--input", "{root}/missing"], "missing"),
    ("denoise.infer", ["--checkpoint", "{best}", "--input", "{test}", "--tile", "7"], "infer.tile=7"),
    ("denoise.infer", ["--checkpoint", "{best}", "--input", "{test}", "--config", "{binary}"], "binary.yaml"),
    ("denoise.infer", ["--checkpoint", "{best}", "--tile", "abc"], "--tile"),
    ("denoise.submit", ["--checkpoint", "{best}", "--test-dir", "{empty}", "--out", "{root}/r1"], "empty"),
    ("denoise.submit", ["--checkpoint", "{junk}", "--test-dir", "{test}", "--out", "{root}/r2"], "junk.pth"),
    ("denoise.submit", ["--checkpoint", "{best}", "--test-dir", "{test}", "--out", "{root}/r3"], "noisy1.dng"),
    ("denoise.submit", ["--test-dir", "{test}"], "--checkpoint"),
    ("denoise.evaluate", ["--pred", "{garbage}", "--gt", "{test}", "--pred-pattern", "noisy{{N}}",
                          "--gt-pattern", "noisy{{N}}"], "noisy0.dng"),
    ("denoise.evaluate", ["--pred", "{root}/missing", "--gt", "{test}"], "missing"),
    ("denoise.sheet", ["--noisy", "{garbage}", "--pred", "{garbage}", "--gt", "{garbage}", "--out", "{root}/s.png",
                       "--frames", "0"], "noisy0.dng"),
    ("denoise.export", ["--checkpoint", "{junk}", "--out", "{root}/m.onnx"], "junk.pth"),
    ("denoise.train.__main__", ["--config", "{binary}"], "binary.yaml"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "model.width=-3", "--print-config"], "model.width"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "data.batch_size=0", "--print-config"],
     "data.batch_size"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.epoch=3"], "train.epoch"),
    ("denoise.dataset.synth", ["--out", "{root}/d", "--test-size", "33", "64"], "even"),
    ("denoise.dataset.calibrate", ["--data", "{root}/missing"], "missing"),
    ("denoise.model.__main__", ["model.width=0"], "model.width"),
    ("denoise.infer", ["--checkpoint", "{texth}", "--input", "{test}"], "texth.pth"),
    ("denoise.infer", ["--checkpoint", "{textp}", "--input", "{test}"], "textp.pth"),
    ("denoise.infer", ["--checkpoint", "{listcfg}", "--input", "{test}"], "listcfg.pth"),
    ("denoise.infer", ["--checkpoint", "{nan}", "--input", "{test}"], "NaN or infinite"),
    ("denoise.submit", ["--checkpoint", "{nan}", "--test-dir", "{test}", "--out", "{root}/r4", "--any-count"],
     "NaN or infinite"),
    ("denoise.export", ["--checkpoint", "{nan}", "--out", "{root}/m.onnx"], "NaN or infinite"),
    ("denoise.train.__main__", ["--config", "{dup}", "--print-config"], "'train' given twice"),
    ("denoise.train.__main__", ["--config", "{blank}", "--print-config"], "blank.yaml: empty"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.lr=inf", "--print-config"], "train.lr"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.grad_clip=.nan", "--print-config"],
     "train.grad_clip"),
    ("denoise.model.__main__", ["model.width=100000"], "model.width=100000"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "model.width=100000", "train.runs_dir={root}/runs"],
     "model.width=100000"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.runs_dir={junk}"], "junk.pth is a file"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.runs_dir={junk}/runs"], "junk.pth is a file"),
    ("denoise.train.__main__", ["--config", "configs/demo.yaml", "train.runs_dir=/proc/runs"], "cannot write in /proc"),
    ("denoise.train.__main__", ["--config", "configs/no_photos.yaml", "data.camera={junk}", "data.val_root=",
                                "data.val_noisy_glob=", "data.val_clean_glob=", "data.val_key_regex=",
                                "train.runs_dir={root}/runs"], "junk.pth: cannot read the camera"),
]


@pytest.mark.parametrize(("module", "args", "named"), CASES, ids=[f"{m.split('.')[1]}-{i}" for i, (m, *_) in
                                                                enumerate(CASES)])  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, capsys, module, args, named):
    root = files["root"]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    argv = [a.format_map({k: str(v) for k, v in files.items()}) for a in args]
    try:
        status = importlib.import_module(module).main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in err, err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written, nothing left over


def test_ctrl_c_is_one_line_and_status_130_in_every_command(capsys) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    assert capsys.readouterr().err == "interrupted: nothing written\n"
    # Every command either goes through run_cli or says itself what Ctrl-C kept (tested with real signals).
    repo = Path(__file__).resolve().parents[1]
    for module in ("infer", "submit", "export", "evaluate", "sheet", "dataset/synth", "dataset/calibrate",
                   "model/__main__", "train/__main__"):  # fmt: skip
        source = (repo / "denoise" / f"{module}.py").read_text()
        assert "run_cli(main)" in source or "KeyboardInterrupt" in source or "_stop_on_signals" in source or \
            "interrupted" in source, module
