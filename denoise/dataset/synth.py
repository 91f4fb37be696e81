"""The embedded demo dataset: scikit-image's bundled photos unprocessed to 14-bit BGGR raw, with noise.

    python -m denoise.dataset.synth --out data/demo [--seed 0] [--train 60] [--test 30] [--val 65]

Each photo is rescaled and cropped, then a simple camera pipeline is run backwards (Brooks et al. 2019):
inverse tone curve, inverse sRGB gamma, inverse colour matrix, inverse white-balance gains and exposure; the
result is mosaicked to BGGR and scaled to black 1024 / white 16383. Photos are split by scene: training pairs
(``train/``) get heteroscedastic Gaussian noise ``var = a*x + b`` on normalised values at random levels (a in
[1e-4, 1e-2], b in [1e-6, 1e-3], log-uniform), as the competition's organisers made theirs; the validation set
(``val/``, for choosing recipes) and the benchmark (``test/``, reported once per recipe) hold every scene of
their own at each of five levels, with Poisson-Gaussian noise. No scene is in two parts. The validation set also
holds procedural dead-leaves scenes (``leaves.py``) at the five levels, after its photos: textured content at every
level, noisy and faint, so that a rule about texture is chosen where both of its mistakes can show. ``dark/``
holds three dark frames of the demo's camera (no light, the middle level's read noise): what ``calibrate --dark``
reads a camera's levels and read noise from when there is no clean photo (``configs/no_photos.yaml``).
"""

from __future__ import annotations

import glob
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio.v3
import numpy as np
import skimage
import torch

from denoise.config import CliParser
from denoise.dataset.leaves import leaves_scene
from denoise.lock import FolderInUse, hold_folder
from denoise.raw import dng
from denoise.raw.bayer import denormalize
from denoise.raw.noise import add_noise, log_uniform
from denoise.raw.render import mosaic_rgb, random_rgb_to_camera, unprocess, xyz_to_camera

PATTERN = "BGGR"
BLACK, WHITE = 1024, 16383
A_RANGE, B_RANGE = (1e-4, 1e-2), (1e-6, 1e-3)
# Photos stored inside scikit-image's package (no download), split by scene: the benchmark's natural photos and
# textures are never trained on nor used to choose a recipe; motorcycle's two views are one scene.
TRAIN_PHOTOS = ("hubble_deep_field", "ihc", "retina", "moon", "page", "cell")
VAL_PHOTOS = ("motorcycle_left", "motorcycle_right", "brick", "coins", "grass")
TEST_PHOTOS = ("astronaut", "coffee", "rocket", "chelsea", "camera", "gravel")
# Procedural scenes of the validation set, drawn at the evaluation frames' size from their own random stream
# (never a training scene), named like photos.
VAL_SCENES = tuple(f"leaves{k}" for k in range(8))
VAL_SCENE_STREAM = 0x7661
# The evaluation's noise levels (a, b), lowest first: the ends of the competition's range and three levels
# between, low (a textured frame's faint noise is easy to over-read), middle and high.
EVAL_LEVELS = ((1e-4, 1e-6), (2e-4, 2e-6), (1.5e-3, 5e-5), (8e-3, 6e-4), (1e-2, 1e-3))
DARK_FRAMES = 3  # dark frames in dark/, at the middle level's read noise, each from its own random stream
DARK_STREAM = 4  # second seed word of the dark frames, after the three parts' 1-3


@dataclass(frozen=True)
class FrameRecipe:
    """Everything that makes one frame, recorded in meta.json."""

    key: str
    photo: str
    rot90: int
    scale: float
    crop: tuple[int, int, int, int]  # (y, x, height, width) in the rescaled photo
    wb_gains: tuple[float, float, float]  # (R, G, B) gains of the forward pipeline
    exposure: float
    a: float
    b: float
    noise: str = "gaussian"  # or "poisson_gaussian"


def load_photo(name: str) -> np.ndarray:
    """A bundled photo as float RGB in [0, 1]; greyscale photos get three equal channels. (H, W, 3)."""
    folder = Path(skimage.__file__).parent / "data"
    path = next((p for p in (folder / f"{name}.png", folder / f"{name}.jpg") if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"{folder}: scikit-image's bundled photo {name!r} is missing")
    image = imageio.v3.imread(path)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3].astype(np.float64) / 255.0


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize, antialiased when shrinking. (H, W, 3) -> (*shape, 3)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    shrink = shape[0] < image.shape[0]
    out = torch.nn.functional.interpolate(tensor, size=shape, mode="bicubic", align_corners=False, antialias=shrink)
    return out[0].numpy().transpose(1, 2, 0)


def _recipe(rng: np.random.Generator, key: str, photo: str, shape: tuple[int, int], size: tuple[int, int],
            a: float, b: float, max_upscale: float, noise: str = "gaussian") -> FrameRecipe:
    """Random orientation, scale, crop and camera settings for one frame of ``size`` from a photo of ``shape``."""
    rot90 = int(rng.integers(4))
    height, width = shape if rot90 % 2 == 0 else shape[::-1]
    fit = max(size[0] / height, size[1] / width)
    scale = fit * rng.uniform(1.0, max_upscale) if fit > 1 else rng.uniform(fit, min(1.0, fit * max_upscale * 1.5))
    scaled = (round(height * scale), round(width * scale))
    y = int(rng.integers(0, scaled[0] - size[0] + 1))
    x = int(rng.integers(0, scaled[1] - size[1] + 1))
    gains = (float(rng.uniform(1.9, 2.4)), 1.0, float(rng.uniform(1.5, 1.9)))
    exposure = log_uniform(rng, 0.35, 1.0)
    return FrameRecipe(key, photo, rot90, float(scale), (y, x, *size), gains, exposure, a, b, noise)


def render_frame(recipe: FrameRecipe, photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(clean DN, noisy DN, XYZ -> camera matrix) for one recipe; the camera matrix is drawn from ``rng``."""
    image = np.rot90(photo, recipe.rot90)
    height, width = image.shape[:2]
    scaled = (round(height * recipe.scale), round(width * recipe.scale))
    image = resize(image, scaled)
    y, x, h, w = recipe.crop
    image = np.clip(image[y : y + h, x : x + w], 0.0, 1.0)
    rgb_to_cam = random_rgb_to_camera(rng)
    gains = np.array(recipe.wb_gains)
    clean = mosaic_rgb(unprocess(image, rgb_to_cam, gains, recipe.exposure), PATTERN)  # (H, W) in [0, 1]
    noisy = add_noise(clean, recipe.a, recipe.b, rng, recipe.noise).astype(np.float64)
    clean_dn = denormalize(clean, BLACK, WHITE)
    noisy_dn = denormalize(noisy, BLACK, WHITE)  # clipped at black, as the DNG writer (and the organisers') do
    return clean_dn, noisy_dn, xyz_to_camera(rgb_to_cam, gains)


def _write_pair(recipe: FrameRecipe, photo: np.ndarray, rng: np.random.Generator, noisy: Path, clean: Path) -> None:
    clean_dn, noisy_dn, xyz_to_cam = render_frame(recipe, photo, rng)
    neutral = 1.0 / np.array(recipe.wb_gains)
    iso = 100.0 * recipe.a / A_RANGE[0]  # shot-noise gain grows with ISO; a label only
    for path, mosaic in ((noisy, noisy_dn), (clean, clean_dn)):
        path.parent.mkdir(parents=True, exist_ok=True)
        dng.write_new_dng(path, mosaic, PATTERN, BLACK, WHITE, as_shot_neutral=neutral, color_matrix=xyz_to_cam,
                          iso=iso, model="demo (unprocessed scikit-image photo)")


def _paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    """(noisy, clean) file paths of a frame: training pairs in the competition layout, evaluation as its test."""
    if split == "train":
        return out / "train/noisy" / f"{index}_noise.dng", out / "train/ground truth" / f"{index}_gt.dng"
    return out / split / f"noisy{index}.dng", out / f"{split}_gt" / f"gt{index}.dng"


def evaluation_plan(rng: np.random.Generator, photos: tuple[str, ...], count: int, size: tuple[int, int],
                    shapes: dict[str, tuple[int, int]], first_key: int = 0) -> list[FrameRecipe]:
    """The first ``count`` frames of the grid of ``EVAL_LEVELS`` x ``photos``, level by level (noise rising)."""
    grid = [(level, photo) for level in EVAL_LEVELS for photo in photos]
    return [_recipe(rng, str(first_key + i), photo, shapes[photo], size, *level, max_upscale=1.1,
                    noise="poisson_gaussian") for i, (level, photo) in enumerate(grid[:count])]


def plan(seed: int, n_train: int, n_test: int, n_val: int, train_size: tuple[int, int], test_size: tuple[int, int],
         shapes: dict[str, tuple[int, int]]) -> dict[str, list[FrameRecipe]]:
    """Recipes for every frame of each part: training photos round-robin at random noise, evaluation on its grid."""
    # One random stream per part, so that changing the training photos never moves an evaluation frame.
    rng = np.random.default_rng([seed, 0, 0])
    # Every photo used equally often, in shuffled order so evenly spaced validation keys see different photos.
    order = rng.permutation([TRAIN_PHOTOS[i % len(TRAIN_PHOTOS)] for i in range(n_train)])
    train = []
    for i, photo in enumerate(order.tolist()):
        a, b = log_uniform(rng, *A_RANGE), log_uniform(rng, *B_RANGE)
        train.append(_recipe(rng, str(i), photo, shapes[photo], train_size, a, b, max_upscale=1.3))
    test = evaluation_plan(np.random.default_rng([seed, 0, 1]), TEST_PHOTOS, n_test, test_size, shapes)
    # The validation photos' grid first, then the scenes', each from a stream of its own.
    photo_frames = min(n_val, len(EVAL_LEVELS) * len(VAL_PHOTOS))
    val = evaluation_plan(np.random.default_rng([seed, 0, 2]), VAL_PHOTOS, photo_frames, test_size, shapes)
    val += evaluation_plan(np.random.default_rng([seed, 0, 3]), VAL_SCENES, n_val - photo_frames, test_size, shapes,
                           first_key=photo_frames)
    return {"train": train, "test": test, "val": val}


def validation_scene(seed: int, name: str, size: tuple[int, int]) -> np.ndarray:
    """The validation scene ``name`` (one of ``VAL_SCENES``) of ``seed``, in sRGB like a photo. (*size, 3)."""
    return leaves_scene(np.random.default_rng([seed, VAL_SCENES.index(name), VAL_SCENE_STREAM]), *size)


def build_demo(out: Path, seed: int = 0, n_train: int = 60, n_test: int = 30, n_val: int = 65,
               train_size: tuple[int, int] = (384, 576), test_size: tuple[int, int] = (512, 512)) -> dict:
    """Write the demo dataset into the new folder ``out``; returns the metadata also saved as meta.json."""
    parts = (TRAIN_PHOTOS, VAL_PHOTOS, TEST_PHOTOS)
    assert len(set().union(*parts)) == sum(map(len, parts)), "no photo may be in two parts"
    assert all(s % 2 == 0 for s in (*train_size, *test_size)), "frame sizes must be even"
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS + VAL_PHOTOS + TEST_PHOTOS}
    shapes = {k: v.shape[:2] for k, v in photos.items()} | {name: test_size for name in VAL_SCENES}
    recipes = plan(seed, n_train, n_test, n_val, train_size, test_size, shapes)
    photos |= {r.photo: validation_scene(seed, r.photo, test_size) for r in recipes["val"] if r.photo in VAL_SCENES}
    for stream, (split, split_recipes) in enumerate(recipes.items(), start=1):
        for index, recipe in enumerate(split_recipes):
            rng = np.random.default_rng([seed, stream, index])
            noisy, clean = _paths(out, split, index)
            _write_pair(recipe, photos[recipe.photo], rng, noisy, clean)
    write_dark_frames(out, seed, test_size)
    meta = {
        "seed": seed, "pattern": PATTERN, "black_level": BLACK, "white_level": WHITE,
        "noise": "var = a*x + b on normalised values (see each frame's noise), rounded and clipped to [black, white]",
        **{split: [asdict(r) for r in split_recipes] for split, split_recipes in recipes.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def write_dark_frames(out: Path, seed: int, size: tuple[int, int]) -> list[Path]:
    """``DARK_FRAMES`` dark frames of the demo's camera in ``out/dark``: black plus read noise of the middle
    evaluation level's ``b``, whole DN (not clipped at black: a dark frame's values fall either side of it)."""
    read_std = np.sqrt(EVAL_LEVELS[2][1]) * (WHITE - BLACK)  # DN
    paths = []
    for index in range(DARK_FRAMES):
        rng = np.random.default_rng([seed, DARK_STREAM, index])
        mosaic = np.clip(np.rint(BLACK + read_std * rng.standard_normal(size)), 0, WHITE)
        path = out / "dark" / f"dark{index}.dng"
        path.parent.mkdir(parents=True, exist_ok=True)
        dng.write_new_dng(path, mosaic, PATTERN, BLACK, WHITE, model="demo (dark frame)")
        paths.append(path)
    return paths


def build_in_place(out: Path, seed: int, n_train: int, n_test: int, n_val: int, train_size: tuple[int, int],
                   test_size: tuple[int, int]) -> dict:
    """``build_demo`` into a hidden folder beside ``out``, then moved into place, so a failure leaves no
    half-written dataset; what a killed build left there goes first (the parent folder is held meanwhile, so no
    other build into it is live)."""
    with hold_folder(out.parent, f"{out.parent} (another dataset.synth writes there)"):
        for old in out.parent.glob(f".{glob.escape(out.name)}.*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            meta = build_demo(Path(tmp) / "demo", seed, n_train, n_test, n_val, train_size, test_size)
            if out.exists():
                shutil.rmtree(out)
            (Path(tmp) / "demo").replace(out)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m denoise.dataset.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="dataset folder to create (e.g. data/demo)")
    parser.add_argument("--seed", type=int, default=0, help="every crop, camera and noise sample follows from it")
    parser.add_argument("--train", type=int, default=60, help="training pairs")
    grid = len(EVAL_LEVELS)
    parser.add_argument("--test", type=int, default=grid * len(TEST_PHOTOS),
                        help="benchmark frames in test/ (ground truth in test_gt/): the first N of its grid")
    parser.add_argument("--val", type=int, default=grid * (len(VAL_PHOTOS) + len(VAL_SCENES)),
                        help="validation frames in val/ (ground truth in val_gt/): the first N of its photos' grid, "
                        "then of its procedural scenes'")
    parser.add_argument("--train-size", type=int, nargs=2, default=(384, 576), metavar=("H", "W"),
                        help="training frame size in mosaic pixels (even)")
    parser.add_argument("--test-size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"),
                        help="validation and benchmark frame size in mosaic pixels (even)")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    sizes = (*args.train_size, *args.test_size)
    if any(s <= 0 or s % 2 for s in sizes) or min(args.train, args.test, args.val) < 1:
        print("error: frame sizes must be positive and even, --train, --test and --val at least 1", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"error: {out} exists and is not empty (pass --force to replace it)", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        meta = build_in_place(out, args.seed, args.train, args.test, args.val, tuple(args.train_size),
                              tuple(args.test_size))  # fmt: skip
    except FolderInUse as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing written to {out} (the partial dataset was removed)", file=sys.stderr)
        return 130
    print(f"wrote {len(meta['train'])} training pairs, {len(meta['val'])} validation and {len(meta['test'])} "
          f"benchmark frames to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
