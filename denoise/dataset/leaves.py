"""Textured dead-leaves scenes, drawn in display (sRGB) space like a photo: procedural training content
(``procedural.py``) and part of the demo's validation set (``synth.py``).

A scene is a stack of opaque shapes (ellipses and rectangles) of random position, orientation and size, the
sizes drawn with density ~ r^-3 between a smallest radius and half the scene's longer side, which gives the
scale-invariant edge and size statistics of natural images (the "dead leaves" model; Achddou, Gousseau and
Ladjal, SSVM 2021). The smallest radius is drawn per scene (``MIN_RADIUS_RANGE``): a scene with only small
shapes has no smooth region left, one whose shapes start at tens of pixels has large ones, like sky or a wall.
Each shape is filled with one of:

- a flat colour;
- a linear gradient (shading);
- a fractal texture, a crop of one of the scene's 1/f^beta noise fields, from nearly white grain (beta near 0.5,
  the fine texture a blind noise estimate mistakes for noise) to smooth clouds (beta near 2.5), at an amplitude
  drawn log-uniformly from faint to strong;
- stripes of a random frequency up to near the sampling limit, the periodic detail a denoiser must not smear.

Edges are softened by a random width, from a sharp antialiased edge to a defocused one. Some scenes are covered
all over by fine grain (``GRAIN_PROBABILITY``), leaving a blind noise estimate no smooth region to read. Colours
are mostly muted, with occasional saturated ones, and span dark to bright, so that once a camera is run backwards
(``render.unprocess``) the linear values cover the sensor's range. Everything comes from the generator given, so a
scene is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np

from denoise.raw.noise import log_uniform

MIN_RADIUS_RANGE = (2.0, 24.0)  # pixels, log-uniform per scene: from grain-sized shapes to large ones only
MAX_SHAPES = 6000  # a cap that only very large scenes reach; small scenes are covered long before
FIELDS = 3  # fractal texture fields per scene, each with its own spectral slope
BETA_RANGE = (0.5, 2.5)  # spectral slopes of the texture fields: amplitude ~ 1 / f^beta
AMPLITUDE_RANGE = (0.005, 0.25)  # texture and stripe amplitude, log-uniform (sRGB units)
STRIPE_FREQUENCY = (0.02, 0.45)  # cycles per pixel
EDGE_RANGE = (0.5, 4.0)  # edge softness in pixels, log-uniform: sharp to defocused
# A scene of its own kind: with this probability fine grain covers the whole scene, so that there is no smooth
# region left for a blind noise estimate, as in a photo of gravel or grass. Its slope and amplitude (sRGB):
GRAIN_PROBABILITY = 0.3
GRAIN_BETA = (0.0, 1.0)
GRAIN_AMPLITUDE = (0.004, 0.08)
FILLS = ("flat", "gradient", "texture", "stripes")
FILL_WEIGHTS = (0.25, 0.2, 0.4, 0.15)

def fractal_field(rng: np.random.Generator, height: int, width: int, beta: float) -> np.ndarray:
    """Gaussian noise with amplitude spectrum 1 / f^beta, zero mean, unit standard deviation. (height, width)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fy * fy + fx * fx)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius**beta
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return field / max(float(field.std()), 1e-12)


def shape_radii(rng: np.random.Generator, count: int, min_radius: float, max_radius: float) -> np.ndarray:
    """``count`` radii with density ~ r^-3 on [min_radius, max_radius], by inverting the distribution function."""
    lo, hi = min_radius**-2, max(max_radius, min_radius) ** -2
    return (lo - rng.random(count) * (lo - hi)) ** -0.5


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """An sRGB colour: brightness uniform, saturation mostly low (beta-distributed), hue uniform. (3,)."""
    value = rng.uniform(0.03, 0.97)
    direction = rng.standard_normal(3)
    direction -= direction.mean()
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    return np.clip(value + rng.beta(1.2, 4.0) * 0.5 * direction, 0.0, 1.0)


def _coverage(rng: np.random.Generator, cy: float, cx: float, radius: float, box: tuple[slice, slice]) -> np.ndarray:
    """Opacity in [0, 1] of an ellipse or rectangle centred at (cy, cx) over ``box``, edges softened."""
    ys, xs = np.ogrid[box[0], box[1]]
    angle = rng.uniform(0.0, np.pi)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = (ys - cy) * np.cos(angle) - (xs - cx) * np.sin(angle)
    ratio = rng.uniform(0.4, 1.0)
    if rng.random() < 0.7:  # ellipse: distance from the edge along the radius
        inside = radius - np.sqrt(u * u + (v / ratio) ** 2)
    else:  # rectangle: distance to the nearer side
        inside = np.minimum(radius - np.abs(u), radius * ratio - np.abs(v))
    softness = log_uniform(rng, *EDGE_RANGE)
    return np.clip(inside / softness + 0.5, 0.0, 1.0)


def _fill(rng: np.random.Generator, kind: str, box: tuple[slice, slice], fields: list[np.ndarray],
          radius: float) -> np.ndarray:
    """The colour of one shape over ``box``: (h, w, 3) or broadcastable to it."""
    colour = random_colour(rng)
    if kind == "flat":
        return colour
    ys, xs = np.ogrid[box[0], box[1]]
    angle = rng.uniform(0.0, 2 * np.pi)
    along = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle)  # pixels along a direction
    amplitude = log_uniform(rng, *AMPLITUDE_RANGE)
    if kind == "gradient":
        ramp = rng.uniform(-0.4, 0.4) * along / max(radius, 1.0)
        return colour + ramp[..., None] * np.ones(3)
    if kind == "stripes":
        frequency = rng.uniform(*STRIPE_FREQUENCY)
        wave = amplitude * np.sin(2 * np.pi * frequency * along + rng.uniform(0, 2 * np.pi))
        return colour + wave[..., None] * np.ones(3)
    field = fields[int(rng.integers(len(fields)))][box]
    tint = 1.0 + rng.uniform(-0.3, 0.3, size=3)  # texture not quite grey: its channels vary a little apart
    return colour + amplitude * field[..., None] * tint


def leaves_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One textured dead-leaves scene in sRGB, float64 in [0, 1]. (height, width, 3)."""
    assert height > 0 and width > 0, f"scene size must be positive, got {height}x{width}"
    fields = [fractal_field(rng, height, width, beta) for beta in rng.uniform(*BETA_RANGE, size=FIELDS)]
    full = (slice(0, height), slice(0, width))
    background = np.broadcast_to(_fill(rng, "texture", full, fields, max(height, width)), (height, width, 3))
    # Shapes are laid front to back, each seen only where those in front leave it uncovered, until the scene is
    # covered; the background shows through only where the cap on shapes leaves holes.
    image = np.zeros((height, width, 3))
    covered = np.zeros((height, width, 1))
    min_radius = log_uniform(rng, *MIN_RADIUS_RANGE)
    radii = shape_radii(rng, MAX_SHAPES, min_radius, max(height, width) / 2)
    kinds = rng.choice(len(FILLS), size=MAX_SHAPES, p=FILL_WEIGHTS)
    for i, (radius, kind) in enumerate(zip(radii, kinds, strict=True)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        reach = radius + EDGE_RANGE[1]
        box = (slice(max(int(cy - reach), 0), min(int(cy + reach) + 1, height)),
               slice(max(int(cx - reach), 0), min(int(cx + reach) + 1, width)))
        if box[0].start >= box[0].stop or box[1].start >= box[1].stop:
            continue
        seen = _coverage(rng, cy, cx, radius, box)[..., None] * (1.0 - covered[box])
        image[box] += seen * _fill(rng, FILLS[kind], box, fields, radius)
        covered[box] += seen
        if i % 64 == 63 and covered.min() > 0.999:
            break
    image += (1.0 - covered) * background
    if rng.random() < GRAIN_PROBABILITY:  # fine grain over everything, as on sand, gravel or grass far away
        beta = rng.uniform(*GRAIN_BETA)
        amplitude = log_uniform(rng, *GRAIN_AMPLITUDE)
        image += amplitude * fractal_field(rng, height, width, beta)[..., None] * (1.0 + rng.uniform(-0.2, 0.2, 3))
    return np.clip(image, 0.0, 1.0)
