"""``denoise.submit``: the result/ tree, the zip's entries, the weights file and the standalone network.py."""

from __future__ import annotations

import ast
import contextlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module

from denoise import submit
from denoise.config import Config, ModelConfig, to_dict
from denoise.model import build_model
from denoise.raw.dng import read_dng, write_new_dng
from denoise.submit_check import SubmissionCheckError, check_entry_names, check_submission

BLACK, WHITE = 1024, 16383


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config() -> Config:
    # local_window below the test frames' size, so network.py must reproduce test-time local statistics too.
    return Config(model=ModelConfig(width=4, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), local_window=8))


def _make_inputs(root: Path) -> tuple[Path, Path, dict]:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg.model)
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = {"model": model.state_dict(), "ema": ema, "config": to_dict(cfg), "epoch": 2, "step": 8, "best_score": 40.5}
    torch.save(ckpt, root / "best.pth")
    test_dir = root / "test"
    test_dir.mkdir()
    rng = np.random.default_rng(0)
    for n in range(2):
        write_new_dng(test_dir / f"noisy{n}.dng", rng.integers(1100, 9000, (24, 32)).astype(np.uint16), "BGGR",
                      BLACK, WHITE)  # fmt: skip
    (test_dir / "notes.txt").write_text("not an input")
    return root / "best.pth", test_dir, ckpt


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict]:
    return _make_inputs(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path, dict, str]:
    """One submission built for all the tests that only inspect it (each build runs the standalone check)."""
    root = tmp_path_factory.mktemp("built")
    checkpoint, test_dir, ckpt = _make_inputs(root)
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(root / "result"), "--tile", "0",
            "--any-count"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert submit.main(args) == 0
    return root, checkpoint, test_dir, ckpt, out.getvalue()


def _run(tmp_path: Path, checkpoint: Path, test_dir: Path, *extra: str) -> int:
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(tmp_path / "result")]
    return submit.main([*args, "--tile", "0", "--any-count", *extra])


def _load_network(path: Path):
    return load_module(path, "submitted_network")


def test_submission_tree_zip_and_standalone_network(built) -> None:
    root, _, test_dir, ckpt, printed = built
    assert "recipe (network.py + model.pth, whole frame, fresh process) reproduces denoise0.dng to 0 DN" in printed
    result = root / "result"
    files = sorted(p.relative_to(result).as_posix() for p in result.rglob("*") if p.is_file())
    assert files == [submit.MARKER, "algorithm/models/model.pth", "algorithm/models/network.py",
                     "algorithm/report.md", "data/denoise0.dng", "data/denoise1.dng"]  # fmt: skip
    with zipfile.ZipFile(root / "result.zip") as zf:
        names = zf.namelist()
        assert sorted(names) == [f"result/{f}" for f in files if f != submit.MARKER]  # the marker stays home
        assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
        assert zf.read("result/data/denoise0.dng") == (result / "data" / "denoise0.dng").read_bytes()
    for n in range(2):
        src, out = read_dng(test_dir / f"noisy{n}.dng"), read_dng(result / "data" / f"denoise{n}.dng")
        assert out.mosaic.shape == src.mosaic.shape and out.mosaic.min() >= BLACK and out.mosaic.max() <= WHITE
    # The weights: the EMA state_dict alone, fp32, loadable with weights_only.
    state = torch.load(result / "algorithm" / "models" / "model.pth", weights_only=True)
    assert set(state) == set(ckpt["ema"]) and all(torch.equal(state[k], ckpt["ema"][k]) for k in state)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    # network.py imports torch and the standard library only and constructs with no arguments into the trained
    # architecture.
    source = (result / "algorithm" / "models" / "network.py").read_text()
    imported = {a.name.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for a in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "torch" in imported and imported <= {"torch"} | set(sys.stdlib_module_names)
    net = _load_network(result / "algorithm" / "models" / "network.py").Network()
    net.load_state_dict(state)
    reference = build_model(tiny_config().model)
    reference.load_state_dict(ckpt["ema"])
    x = torch.rand(1, 4, 12, 20)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), reference.eval()(x), atol=1e-6)
    report = (result / "algorithm" / "report.md").read_text()
    assert "best_score: 40.5" in report and "width: 4" in report and "parameters:" in report


def test_half_weights(tmp_path: Path, setup) -> None:
    checkpoint, test_dir, _ = setup
    assert _run(tmp_path, checkpoint, test_dir, "--half") == 0
    state = torch.load(tmp_path / "result" / "algorithm" / "models" / "model.pth", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


def test_oversized_weights_refused_before_anything_is_written(tmp_path: Path, setup, monkeypatch, capsys) -> None:
    checkpoint, test_dir, _ = setup
    monkeypatch.setattr(submit, "MAX_WEIGHTS_BYTES", 1000)
    assert _run(tmp_path, checkpoint, test_dir) == 2
    err = capsys.readouterr().err
    assert "MB" in err and "--half" in err and "smaller model" in err
    assert not (tmp_path / "result").exists() and not (tmp_path / "result.zip").exists()


def test_out_containing_the_test_folder_is_refused(tmp_path: Path, setup, capsys) -> None:
    checkpoint, test_dir, _ = setup
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(tmp_path), "--any-count"]
    assert submit.main(args) == 2
    assert "test folder" in capsys.readouterr().err
    assert sorted(p.name for p in test_dir.iterdir()) == ["noisy0.dng", "noisy1.dng", "notes.txt"]


def test_out_that_holds_someone_elses_files_is_refused_and_left_alone(tmp_path: Path, setup, capsys,
                                                                      monkeypatch) -> None:
    checkpoint, test_dir, _ = setup
    project = tmp_path / "project"  # "--out ." in a project that holds its training data
    (project / "data" / "zte" / "train").mkdir(parents=True)
    (project / "data" / "zte" / "train" / "0_gt.dng").write_bytes(b"precious")
    monkeypatch.chdir(project)
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--tile", "0", "--any-count"]
    assert submit.main([*args, "--out", "."]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "Traceback" not in err
    assert (project / "data" / "zte" / "train" / "0_gt.dng").read_bytes() == b"precious"
    assert sorted(p.name for p in project.iterdir()) == ["data"] and not (tmp_path / "project.zip").exists()
    # A zip beside an empty folder that no submission made is not overwritten either.
    (tmp_path / "mine.zip").write_bytes(b"my own zip")
    assert submit.main([*args, "--out", str(tmp_path / "mine")]) == 2
    assert "mine.zip exists" in capsys.readouterr().err and (tmp_path / "mine.zip").read_bytes() == b"my own zip"
    # A submission's own folder is replaced by the next one, and "." names the zip after the folder.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert submit.main([*args, "--out", "."]) == 0 and (tmp_path / "sub.zip").is_file()
    assert submit.main([*args, "--out", "."]) == 0
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [submit.MARKER, "algorithm", "data"]
    # A submission from before the marker (and the README the repository kept in result/) is still its own.
    old = tmp_path / "old"
    for name in ("README.md", "data/denoise0.dng", "algorithm/report.md", "algorithm/models/model.pth"):
        (old / name).parent.mkdir(parents=True, exist_ok=True)
        (old / name).write_bytes(b"x")
    assert submit.main([*args, "--out", str(old)]) == 0 and (old / submit.MARKER).is_file()


@pytest.mark.parametrize(("names", "message"), [
    (["Noisy2.dng", "noisy_4.dng", "noisy 6.dng", "5_noise.dng"], "5_noise.dng, Noisy2.dng, noisy 6.dng, noisy_4.dng"),
    (["noisy01.dng"], "not named noisy{N}.dng (N from 0, no leading zeros): noisy01.dng"),
    ([f"noisy{n}.dng" for n in range(9)], "missing noisy9.dng"),
    ([f"noisy{n}.dng" for n in range(11)], "beyond the set: noisy10.dng"),
    ([f"noisy{n}.dng" for n in range(10) if n != 4], "missing noisy4.dng"),
])  # fmt: skip
def test_a_test_set_that_is_not_exactly_the_competitions_is_refused(tmp_path: Path, setup, capsys, names,
                                                                    message) -> None:
    checkpoint, _, _ = setup
    test_dir = tmp_path / "zte_test"
    test_dir.mkdir()
    frame = np.full((24, 32), 2000, np.uint16)
    for name in ["noisy0.dng", "noisy1.dng", *names]:
        write_new_dng(test_dir / name, frame, "BGGR", BLACK, WHITE)
    args = ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(tmp_path / "result")]
    assert submit.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "result").exists()


def test_the_competitions_ten_frames_are_taken_in_order(tmp_path: Path) -> None:
    for n in (3, 0, 9, 1, 2, 4, 5, 6, 7, 8):
        (tmp_path / f"noisy{n}.dng").write_bytes(b"x")
    assert [p.name for p in submit.competition_inputs(tmp_path)] == [f"noisy{n}.dng" for n in range(10)]
    (tmp_path / "noisy9.dng").unlink()
    assert len(submit.competition_inputs(tmp_path, None)) == 9


def test_entry_names_rejected() -> None:
    check_entry_names(["result/data/denoise0.dng", "result/algorithm/report.md"])
    for bad in ("/result/data/x.dng", "result/../x", "other/x", "result\\data\\x.dng"):
        with pytest.raises(SubmissionCheckError):
            check_entry_names([bad])


TAMPERS = [
    ("        width=4,", "        width=8,", "failed standalone"),
    ("y = y + inp[:, : self.in_channels]", "y = y + 2 * inp[:, : self.in_channels]", "differ"),
]


@pytest.mark.parametrize(("old", "new", "message"), TAMPERS)
def test_self_check_catches_a_network_that_does_not_reproduce(tmp_path: Path, built, old, new, message) -> None:
    root, _, test_dir, _, _ = built
    with zipfile.ZipFile(root / "result.zip") as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    name = "result/algorithm/models/network.py"
    source = entries[name].decode()
    assert old in source
    entries[name] = source.replace(old, new).encode()
    zip_path = tmp_path / "result.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    with pytest.raises(SubmissionCheckError, match=message):  # built whole-frame: the report states 0 DN
        check_submission(zip_path, sorted(test_dir.glob("noisy*.dng")), stated=0)


def test_the_report_states_the_texture_check_with_its_gate() -> None:
    from denoise.config import InferConfig

    cfg = Config(model=ModelConfig(width=4, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,), noise_channels=4,
                                   scale_residual=True))  # fmt: skip
    model = build_model(cfg.model, texture_threshold=0.3, texture_scale=0.125, texture_read_share=0.1)
    ckpt = {"model": model.state_dict(), "ema": None, "config": to_dict(cfg), "epoch": 1, "step": 1}
    text = " ".join(submit.report_text(ckpt, cfg, model, 1000, InferConfig(), False).split())
    assert "under 0.1 of the variance" in text
    assert "0.85 up to c = 0.27, 0.125 from c = 0.3 on" in text and "0.85 * (0.125 / 0.85) ** t" in text
    model.texture_threshold = 0.0
    off = " ".join(submit.report_text(ckpt, cfg, model, 1000, InferConfig(), False).split())
    assert "Texture check" not in off


def test_a_blind_model_ignores_a_noise_profile_and_bf16_frames_keep_their_bound(tmp_path: Path, setup, make_dng,
                                                                                capsys) -> None:  # fmt: skip
    """noisy0 carries a NoiseProfile: a blind model's check must not hand the level to its network. In bf16 the
    stated whole-frame difference is measured against the fp32 run network.py makes, so the check still passes."""
    checkpoint, test_dir, _ = setup
    mosaic = read_dng(test_dir / "noisy0.dng").mosaic
    (test_dir / "noisy0.dng").unlink()
    make_dng("test/noisy0.dng", mosaic, black=BLACK, white=WHITE, noise_profile=(1e-3, 1e-5))
    assert read_dng(test_dir / "noisy0.dng").noise_profile is not None
    for extra in ((), ("--precision", "bf16")):
        assert _run(tmp_path, checkpoint, test_dir, *extra) == 0, capsys.readouterr().err
        assert "reproduces denoise0.dng to" in capsys.readouterr().out


def test_the_check_holds_network_py_to_the_packages_whole_frame_output(tmp_path: Path, built) -> None:
    root, _, test_dir, _, _ = built
    inputs = sorted(test_dir.glob("noisy*.dng"))
    own = read_dng(root / "result" / "data" / "denoise0.dng").mosaic  # tile 0, no TTA: the whole-frame output
    assert check_submission(root / "result.zip", inputs, stated=0, reference=own)  # built whole-frame
    with pytest.raises(SubmissionCheckError, match=r"package's whole-frame output for noisy0\.dng by 2 DN"):
        check_submission(root / "result.zip", inputs, stated=0, reference=own.astype(np.int64) + 2)


@pytest.mark.parametrize("value", [BLACK - 1, WHITE + 1])
def test_the_check_refuses_a_frame_outside_black_and_white(tmp_path: Path, built, value) -> None:
    root, _, test_dir, _, _ = built
    with zipfile.ZipFile(root / "result.zip") as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    mosaic = read_dng(root / "result" / "data" / "denoise0.dng").mosaic.copy()
    mosaic[3, 5] = value
    write_new_dng(tmp_path / "bad.dng", mosaic, "BGGR", BLACK, WHITE)
    entries["result/data/denoise0.dng"] = (tmp_path / "bad.dng").read_bytes()
    zip_path = tmp_path / "result.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    with pytest.raises(SubmissionCheckError, match=r"denoise0\.dng: values outside \[black, white\]"):
        check_submission(zip_path, sorted(test_dir.glob("noisy*.dng")), stated=0)
