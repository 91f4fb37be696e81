"""Ablation table: train one config several ways and score each run on the same validation frames.

    python scripts/ablate.py scripts/ablations/levers.yaml [--out runs/ablation] [--only NAME ...]

The plan file names a base config, overrides common to every variant, and the variants themselves, each a list
of ``key.sub=value`` overrides. Every variant trains with ``python -m denoise.train`` into its own folder under
``--out`` (its output in train.log there) and is scored by ``scripts/compare_baselines.py --methods model`` on
the plan's frames (the demo's validation set, ``data/demo/val``, by default: recipes are chosen there, never on
the benchmark) from its checkpoint (``last.pth`` by default: equal compute, no selection). A variant
whose scores are already there is not trained again, so an interrupted ablation goes on where it stopped.
Prints a Markdown table: score, PSNR, competition SSIM, the score per noise level, the worst frame's score gain
over its noisy input, parameters, and training wall seconds (which depend on machine load; the scores do not,
since training is deterministic for a seed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from denoise.atomic import write_text_atomic
from denoise.config import CliParser, ConfigError, load_config

SCRIPTS = Path(__file__).resolve().parent


class PlanError(ValueError):
    """A plan file the ablation cannot use."""


def load_plan(path: Path) -> dict:
    """The plan: ``base`` (config path), ``common`` (list), ``variants`` (name -> list), ``checkpoint``."""
    try:
        plan = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PlanError(f"{path}: cannot read the plan ({err})") from err
    if not isinstance(plan, dict) or set(plan) - {"base", "common", "variants", "checkpoint", "test", "gt"}:
        raise PlanError(f"{path}: keys must be among base, common, variants, checkpoint, test, gt")
    variants = plan.get("variants")
    if not isinstance(plan.get("base"), str) or not isinstance(variants, dict) or not variants:
        raise PlanError(f"{path}: needs 'base' (a config path) and a non-empty 'variants' mapping")
    for name, overrides in {"common": plan.get("common", []), **variants}.items():
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise PlanError(f"{path}: '{name}' must be a list of key.sub=value strings")
    return plan


def check_variants(plan: dict, names: list[str]) -> None:
    """Resolve the config of each variant to be trained, so that a bad one stops the run before any trains."""
    for name in names:
        try:
            load_config(plan["base"], [*plan.get("common", []), *plan["variants"][name]])  # relative to the cwd
        except ConfigError as err:
            raise PlanError(f"variant '{name}': {err}") from err


def slug(name: str) -> str:
    """A folder name for a variant."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "variant"


def train_variant(plan: dict, overrides: list[str], folder: Path) -> tuple[Path, float]:
    """Train one variant into ``folder``; returns (its run folder, wall seconds)."""
    runs = folder / "runs"
    resume = ["--resume", "auto"] if any(runs.glob("*/checkpoints/last.pth")) else []  # an interrupted run
    cmd = [sys.executable, "-m", "denoise.train", "--config", plan["base"], *resume, *plan.get("common", []),
           *overrides, f"train.runs_dir={runs}"]
    start = time.perf_counter()
    with open(folder / "train.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    run_dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    return run_dirs[-1], seconds


def score_variant(plan: dict, run_dir: Path, folder: Path) -> dict:
    """compare_baselines' JSON for the model on the plan's frames."""
    out = folder / "scores.json"
    cmd = [sys.executable, str(SCRIPTS / "compare_baselines.py"), "--methods", "model", "--json", str(out),
           "--checkpoint", str(run_dir / "checkpoints" / plan.get("checkpoint", "last.pth")),
           "--test", plan.get("test", "data/demo/val"), "--gt", plan.get("gt", "data/demo/val_gt")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def parameters(run_dir: Path) -> int:
    """Parameters of the run's model, rebuilt from its last checkpoint."""
    from denoise.model.checkpoint import load_model

    model, _ = load_model(run_dir / "checkpoints" / "last.pth")
    return sum(p.numel() for p in model.parameters())


def table_row(name: str, result: dict) -> str:
    mean, levels = result["scores"]["mean"]["model"], result["scores"]["per_level"]
    per_level = " | ".join(f"{levels[g]['model']['score']:.2f}" if g in levels else "-" for g in ("low", "mid", "high"))
    worst = f"{mean['worst']:+.2f} (frame {mean['worst_frame']})" if "worst" in mean else "-"
    return (f"| {name} | {mean['score']:.2f} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {per_level} | {worst} | "
            f"{result['parameters']:,} | {result['train_seconds']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="scripts/ablate.py", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="YAML plan: base, common, variants (see the module docstring)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="one folder per variant in here")
    parser.add_argument("--only", nargs="+", help="run just these variants (the table lists all that are done)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    unknown = set(args.only or ()) - set(plan["variants"])
    if unknown:
        print(f"error: --only names no variant of the plan: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    to_train = [name for name in plan["variants"] if not (args.out / slug(name) / "result.json").is_file()
                and (args.only is None or name in args.only)]  # fmt: skip
    try:
        check_variants(plan, to_train)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = ["| variant | score | PSNR | SSIM | low | mid | high | worst | parameters | train s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, overrides in plan["variants"].items():
        folder = args.out / slug(name)
        result_path = folder / "result.json"
        if name in to_train:
            folder.mkdir(parents=True, exist_ok=True)
            print(f"training {name}: {' '.join(overrides) or '(base)'}", file=sys.stderr, flush=True)
            try:
                run_dir, seconds = train_variant(plan, overrides, folder)
                scores = score_variant(plan, run_dir, folder)
            except subprocess.CalledProcessError as err:
                print(f"error: variant '{name}' failed (exit status {err.returncode}): {' '.join(err.cmd)}",
                      file=sys.stderr)
                return 1
            result = {"overrides": overrides, "run_dir": str(run_dir), "train_seconds": seconds,
                      "parameters": parameters(run_dir), "scores": scores}
            write_text_atomic(result_path, json.dumps(result, indent=1) + "\n")
        if result_path.is_file():
            rows.append(table_row(name, json.loads(result_path.read_text())))
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
