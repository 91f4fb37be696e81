"""A camera with row noise and a fixed pattern, simulated on the demo's benchmark frames: the test set on which a
model trained with a calibrated synthesis is compared with one trained on Poisson-Gaussian noise only.

    python scripts/simulate_camera.py [--source data/demo] [--out data/camera] [--structure 0.5 1.0 0.3] [--seed 0]
                                      [--dark 3]

Each benchmark frame's clean twin (``test_gt/gt{N}.dng``) gets its demo level's Poisson-Gaussian noise (from
``meta.json``), then the camera's row offsets and fixed pattern (``raw.noise.Structure``: stds as multiples of the
read noise's), and is rounded to DN and clipped at black as a DNG stores it. The fixed pattern is the sensor's own,
drawn once and the same on every frame, as on a real camera. ``meta.json`` beside the frames keeps the levels, so

    python scripts/compare_baselines.py --test data/camera/test --gt data/demo/test_gt --checkpoint CKPT

scores a model on them per level. ``--dark N`` also writes N dark frames of the camera (``dark/dark{i}.dng``, at the
read noise ``DARK_B``), what ``python -m denoise.dataset.calibrate --dark`` measures the camera from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from denoise.atomic import write_text_atomic
from denoise.config import CliParser
from denoise.raw.bayer import cfa_black, denormalize, normalize, pack_bayer, unpack_bayer
from denoise.raw.dng import DngError, read_dng, write_new_dng
from denoise.raw.noise import Structure, add_noise, add_structure

DARK_B = 1e-4  # the dark frames' read noise (normalised variance): 154 DN at the demo's levels, far above 0 DN


def simulate(source: Path, out: Path, structure: Structure, seed: int, dark: int = 0) -> int:
    """Write ``out``/test/noisy{N}.dng, ``dark`` dark frames and ``out``/meta.json; the number of test frames."""
    meta = json.loads((source / "meta.json").read_text())
    rng = np.random.default_rng(seed)
    sensor = None  # the sensor's fixed pattern (standard normal), drawn once at the first frame's packed size
    (out / "test").mkdir(parents=True, exist_ok=True)
    for entry in meta["test"]:
        clean = read_dng(source / "test_gt" / f"gt{entry['key']}.dng")
        packed = pack_bayer(normalize(clean.mosaic, clean.black_level, clean.white_level), clean.pattern)
        if sensor is None:
            sensor = np.random.default_rng([seed, 1]).standard_normal(packed.shape)
        noisy = add_noise(packed, entry["a"], entry["b"], rng, entry.get("noise", "poisson_gaussian"))
        noisy = add_structure(noisy, entry["b"], structure, rng, sensor[:, : packed.shape[1], : packed.shape[2]])
        mosaic = denormalize(unpack_bayer(noisy, clean.pattern), clean.black_level, clean.white_level)
        write_new_dng(out / "test" / f"noisy{entry['key']}.dng", mosaic, clean.pattern, clean.black_level,
                      clean.white_level, clean.as_shot_neutral, clean.color_matrix, clean.iso)  # fmt: skip
    if dark and sensor is None:
        raise KeyError(f"{source / 'meta.json'} lists no test frame to take the sensor's size and levels from")
    if dark:
        (out / "dark").mkdir(exist_ok=True)
        black = pack_bayer(cfa_black(clean.black_level, np.float64), clean.pattern)  # (4, 1, 1) DN
    for i in range(dark):  # read noise only, kept below black as a real dark frame keeps it
        noisy = add_structure(add_noise(np.zeros(sensor.shape, np.float32), 1e-6, DARK_B, rng), DARK_B, structure,
                              rng, sensor)  # fmt: skip
        mosaic = unpack_bayer(np.rint(noisy * (clean.white_level - black) + black), clean.pattern)
        write_new_dng(out / "dark" / f"dark{i}.dng", np.clip(mosaic, 0, clean.white_level).astype(np.uint16),
                      clean.pattern, clean.black_level, clean.white_level)  # fmt: skip
    meta["camera_structure"] = list(structure)
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    return len(meta["test"])


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="scripts/simulate_camera.py", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("data/demo"), help="demo data: meta.json and test_gt/")
    parser.add_argument("--out", type=Path, default=Path("data/camera"), help="where test/ and meta.json go")
    parser.add_argument("--structure", type=float, nargs=3, default=[0.5, 1.0, 0.3], metavar=("ROW", "PAIR", "FIXED"),
                        help="row noise, its pair correlation and the fixed pattern, stds / read noise's")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise and the sensor's fixed pattern")
    parser.add_argument("--dark", type=int, default=0, help="dark frames to write as well, for calibrate --dark")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.source.resolve():
        parser.error("--out must differ from --source: the demo's own frames are not replaced")
    try:
        count = simulate(args.source, args.out, Structure(*args.structure), args.seed, args.dark)
    except (OSError, KeyError, DngError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {count} frames of a camera with structure {args.structure} to {args.out / 'test'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
