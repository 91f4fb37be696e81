"""Ablation table: train one config several ways, over seeds, and score each run on the same frames.

    python scripts/ablate.py scripts/ablations/levers.yaml [--out runs/ablation] [--only NAME ...]
        [--seeds N [--only-seed K ...]]

The plan file names a base config, overrides common to every variant, and the variants themselves, each a list
of ``key.sub=value`` overrides. Every variant trains with ``python -m denoise.train`` into its own folder under
``--out`` (its output in train.log there) and is scored by ``scripts/compare_baselines.py --methods model`` on
the plan's frames (the demo's validation set, ``data/demo/val``, by default: recipes are chosen there, never on
the benchmark) from its checkpoint (``last.pth`` by default: equal compute, no selection; ``checkpoint`` may
list several, e.g. ``[best.pth, last.pth]``). A variant whose scores are already there is not trained again, so
an interrupted ablation goes on where it stopped. Prints a Markdown table: score, PSNR, competition SSIM, the
score per noise level, the worst frame's score gain over its noisy input, parameters, training wall seconds and
the seconds of them spent validating (both depend on machine load; the scores do not, since training is
deterministic for a seed).

``--seeds N`` trains every variant with ``train.seed`` 0 .. N-1 (folders ``<variant>/seed<k>``) and adds a table
over the seeds: the mean score, its spread (max - min), each seed's score, the mean per noise level and the worst
frame of any seed. A gain smaller than the spread is not a gain.
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
    names = plan.get("checkpoint", "last.pth")
    names = [names] if isinstance(names, str) else names
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise PlanError(f"{path}: 'checkpoint' must be a file name or a list of them (e.g. [best.pth, last.pth])")
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


def checkpoints(plan: dict) -> list[str]:
    """The checkpoint file names the plan scores, e.g. ["last.pth"]."""
    names = plan.get("checkpoint", "last.pth")
    return [names] if isinstance(names, str) else list(names)


def score_variant(plan: dict, run_dir: Path, folder: Path) -> dict:
    """{checkpoint name: compare_baselines' JSON for it on the plan's frames}."""
    scores = {}
    for name in checkpoints(plan):
        out = folder / f"scores-{Path(name).stem}.json"
        cmd = [sys.executable, str(SCRIPTS / "compare_baselines.py"), "--methods", "model", "--json", str(out),
               "--checkpoint", str(run_dir / "checkpoints" / name),
               "--test", plan.get("test", "data/demo/val"), "--gt", plan.get("gt", "data/demo/val_gt")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scores[name] = json.loads(out.read_text())
    return scores


def scores_by_checkpoint(plan: dict, result: dict, folder: Path) -> dict:
    """A result's scores per checkpoint the plan names. A result written before several could be scored holds one
    checkpoint's, named by no field: it is tabled only while the plan names a single checkpoint."""
    scores = result["scores"]
    if "mean" not in scores:
        return {name: scores[name] for name in checkpoints(plan) if name in scores}
    if len(checkpoints(plan)) == 1:
        return {checkpoints(plan)[0]: scores}
    print(f"note: {folder / 'result.json'} holds one checkpoint's scores: delete it to score {checkpoints(plan)}",
          file=sys.stderr)
    return {}


def validation_seconds(run_dir: Path) -> float:
    """Seconds the run spent validating, summed from its TensorBoard log (time/val_s)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return sum(e.value for e in events.Scalars("time/val_s")) if "time/val_s" in events.Tags()["scalars"] else 0.0


def parameters(run_dir: Path) -> int:
    """Parameters of the run's model, rebuilt from its last checkpoint."""
    from denoise.model.checkpoint import load_model

    model, _ = load_model(run_dir / "checkpoints" / "last.pth")
    return sum(p.numel() for p in model.parameters())


def table_row(name: str, result: dict, scores: dict) -> str:
    mean, levels = scores["mean"]["model"], scores["per_level"]
    per_level = " | ".join(f"{levels[g]['model']['score']:.2f}" if g in levels else "-" for g in ("low", "mid", "high"))
    worst = f"{mean['worst']:+.2f} (frame {mean['worst_frame']})" if "worst" in mean else "-"
    val = f"{result['val_seconds']:.0f}" if "val_seconds" in result else "-"
    return (f"| {name} | {mean['score']:.2f} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {per_level} | {worst} | "
            f"{result['parameters']:,} | {result['train_seconds']:.0f} | {val} |")


def seed_row(name: str, runs: list[dict], seeds: list[int]) -> str:
    """One row over a variant's ``seeds`` (``runs``: their compare_baselines JSONs): mean, spread, scores, levels,
    worst."""
    means = [r["mean"]["model"]["score"] for r in runs]
    levels = " | ".join(
        f"{sum(r['per_level'][g]['model']['score'] for r in runs) / len(runs):.2f}"
        if all(g in r["per_level"] for r in runs) else "-"
        for g in ("low", "mid", "high")
    )  # fmt: skip
    k = min(range(len(runs)), key=lambda i: runs[i]["mean"]["model"].get("worst", float("inf")))
    worst = runs[k]["mean"]["model"]
    worst = f"{worst['worst']:+.2f} (seed {seeds[k]}, frame {worst['worst_frame']})" if "worst" in worst else "-"
    each = ", ".join(f"{m:.2f}" for m in means)
    return (f"| {name} | {len(runs)} | {sum(means) / len(means):.2f} | {max(means) - min(means):.2f} | {each} | "
            f"{levels} | {worst} |")


def usage_problem(args, plan: dict) -> str | None:
    """Why the command line cannot run this plan, or None."""
    unknown = set(args.only or ()) - set(plan["variants"])
    if unknown:
        return f"--only names no variant of the plan: {', '.join(sorted(unknown))}"
    if args.seeds < 1:
        return "--seeds must be at least 1"
    if args.only_seed and not all(0 <= k < args.seeds for k in args.only_seed):
        return f"--only-seed takes seeds in [0, {args.seeds - 1}] (--seeds {args.seeds})"
    return None


def run_variant(plan: dict, name: str, overrides: list[str], folder: Path) -> None:
    """Train and score one run of a variant into ``folder`` and write its result.json."""
    folder.mkdir(parents=True, exist_ok=True)
    print(f"training {name}: {' '.join(overrides) or '(base)'}", file=sys.stderr, flush=True)
    run_dir, seconds = train_variant(plan, overrides, folder)
    scores = score_variant(plan, run_dir, folder)
    result = {"overrides": overrides, "run_dir": str(run_dir), "train_seconds": seconds,
              "val_seconds": validation_seconds(run_dir), "parameters": parameters(run_dir), "scores": scores}
    write_text_atomic(folder / "result.json", json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="scripts/ablate.py", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="YAML plan: base, common, variants (see the module docstring)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="one folder per variant in here")
    parser.add_argument("--only", nargs="+", help="run just these variants (the table lists all that are done)")
    parser.add_argument("--seeds", type=int, default=1, help="train each variant with train.seed 0 .. N-1")
    parser.add_argument("--only-seed", type=int, nargs="+", metavar="K",
                        help="train just these seeds (e.g. one per process, side by side; the table lists all done)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        problem = usage_problem(args, plan)
        if problem:
            raise PlanError(problem)
        runs = [(name, seed) for name in plan["variants"] for seed in range(args.seeds)]
        to_train = [(name, seed) for name, seed in runs if not (run_folder(args.out, name, seed, args.seeds)
                    / "result.json").is_file() and (args.only is None or name in args.only)
                    and (args.only_seed is None or seed in args.only_seed)]  # fmt: skip
        check_variants(plan, sorted({name for name, _ in to_train}))
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = ["| variant | score | PSNR | SSIM | low | mid | high | worst | parameters | train s | of it validating |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    done: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for name, seed in runs:
        folder = run_folder(args.out, name, seed, args.seeds)
        if (name, seed) in to_train:
            try:
                run_variant(plan, name, plan["variants"][name] + ([f"train.seed={seed}"] if args.seeds > 1 else []),
                            folder)
            except subprocess.CalledProcessError as err:
                print(f"error: variant '{name}' failed (exit status {err.returncode}): {' '.join(err.cmd)}",
                      file=sys.stderr)
                return 1
        if (folder / "result.json").is_file():
            result = json.loads((folder / "result.json").read_text())
            for checkpoint, scores in scores_by_checkpoint(plan, result, folder).items():
                rows.append(table_row(row_label(name, seed, checkpoint, args.seeds, len(checkpoints(plan))), result,
                                      scores))
                print(rows[-1], file=sys.stderr, flush=True)
                done.setdefault((name, checkpoint), []).append((seed, scores))
    print("\n".join(rows))
    if args.seeds > 1:
        print("\n| variant | seeds | mean score | spread | each seed | low | mid | high | worst |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (name, checkpoint), results in done.items():
            print(seed_row(name if len(checkpoints(plan)) == 1 else f"{name}, {checkpoint}",
                           [scores for _, scores in results], [seed for seed, _ in results]))
    return 0


def run_folder(out: Path, name: str, seed: int, seeds: int) -> Path:
    """Where one run of a variant lives: ``<out>/<variant>``, or ``<out>/<variant>/seed<k>`` over seeds."""
    return out / slug(name) / f"seed{seed}" if seeds > 1 else out / slug(name)


def row_label(name: str, seed: int, checkpoint: str, seeds: int, checkpoint_count: int) -> str:
    """A run's row name: the variant, then its seed and checkpoint where there are several."""
    parts = [f"seed {seed}"] if seeds > 1 else []
    parts += [checkpoint] if checkpoint_count > 1 else []
    return f"{name} ({', '.join(parts)})" if parts else name


if __name__ == "__main__":
    sys.exit(main())
