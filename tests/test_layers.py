"""The package's shape: each layer imports only from the layers below it, files stay small, public names unique.

The layers, bottom to top (``docs/layout.md``): the foundation (``denoise.atomic``, ``denoise.lock``,
``denoise.config``), the raw image (``denoise.raw``), the network and the training data (``denoise.model``,
``denoise.dataset``, which do not import each other), inference, training, and the command-line modules at the
top, which may import anything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "denoise"

# What each layer may import from the package, itself included.
FOUNDATION = {"atomic", "lock", "config"}
ALLOWED: dict[str, set[str]] = {
    "atomic": set(),
    "lock": set(),
    "config": {"config"},
    "raw": FOUNDATION | {"raw"},
    "model": FOUNDATION | {"raw", "model"},
    "dataset": FOUNDATION | {"raw", "dataset"},
    "inference": FOUNDATION | {"raw", "model", "inference"},
    "train": FOUNDATION | {"raw", "model", "dataset", "inference", "train"},
}
MAX_LINES = 350


def layer_of(module: str) -> str:
    """``denoise.raw.dng`` -> "raw"; a top-level module other than atomic and lock, or ``__main__`` -> "cli"."""
    parts = module.split(".")
    if parts[-1] == "__main__" or len(parts) < 2:
        return "cli"
    if len(parts) == 2 and parts[1] not in ALLOWED:
        return "cli"
    return parts[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """Every ``denoise`` module ``path`` imports, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name == "denoise" or name.startswith("denoise.")]


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layer_assignment_is_what_the_style_guide_says() -> None:
    assert layer_of("denoise.raw.dng") == "raw" and layer_of("denoise.config.load") == "config"
    assert layer_of("denoise.atomic") == "atomic" and layer_of("denoise.infer") == "cli"
    assert layer_of("denoise.train.__main__") == "cli" and layer_of("denoise.inference.tta") == "inference"


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = []
    for path in package_files():
        layer = layer_of(module_name(path))
        if layer == "cli":
            continue
        for target in imported_modules(path):
            target_layer = layer_of(target) if target.count(".") >= 1 else "cli"
            if target_layer not in ALLOWED[layer]:
                upward.append(f"{path.relative_to(REPO)} ({layer}) imports {target} ({target_layer})")
    assert not upward, "\n".join(upward)


def test_the_walk_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from denoise.train.loop import train\n    return train\n")
    targets = imported_modules(bad)
    assert "denoise.train.loop" in targets and layer_of("denoise.train.loop") not in ALLOWED["raw"]


@pytest.mark.parametrize("folder", ["denoise", "scripts", "tests"])
def test_no_file_over_the_line_limit(folder: str) -> None:
    long = [f"{p.relative_to(REPO)}: {n}" for p in sorted((REPO / folder).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]  # fmt: skip
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_no_two_public_functions_or_classes_share_a_name() -> None:
    where = defaultdict(list)
    for path in [*package_files(), *sorted((REPO / "scripts").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:
            is_def = isinstance(node, (ast.FunctionDef, ast.ClassDef))
            if is_def and not node.name.startswith("_") and node.name != "main":
                where[node.name].append(module_name(path))
    shared = {name: modules for name, modules in where.items() if len(modules) > 1}
    assert not shared, shared
