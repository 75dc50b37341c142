"""Scene layouts: which objects an image holds, where, how large, in which order they are drawn.

A layout is sampled in resolution-free units (positions and radii are fractions of the image
side), so rendering the same seed at 48, 64 or 96 px shows the same scenes: only the detail
differs, which is what the resolution ablation measures.

Real multi-label data has long-tailed class frequencies and classes that co-occur (a fork
with a knife); the prior below gives each class a Zipf weight and a "context" (a scene type):
an image first draws a context, whose classes then get `context_boost` times their weight.
Objects are mostly drawn large-first, so small objects are rarely hidden and large ones are
often partly occluded; muted clutter items, which name no class, are interleaved with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mld.data.synthetic.shapes import CLUTTER_SHAPE_IDS
from mld.data.synthetic.vocabulary import COLOUR_RGB

EMPTY, OBJECT, CLUTTER = 0, 1, 2
MAX_ROTATION = np.deg2rad(12.0)  # keeps square and diamond (45 degrees apart) distinct
BACKGROUND_GRID = 4


@dataclass(frozen=True)
class SceneSpec:
    """How a preset's images are laid out; radii are fractions of the image side."""

    objects: tuple[int, int]  # labelled objects per image, inclusive range
    object_radius: tuple[float, float]  # log-uniform
    clutter: tuple[int, int]
    clutter_radius: tuple[float, float] = (0.02, 0.09)
    dominant_radius: tuple[float, float] | None = None  # single-label: one large object


@dataclass
class Layout:
    """Items of `n` images, `L` slots each, in drawing order; unused slots have kind EMPTY."""

    kind: np.ndarray  # [n, L] int8: EMPTY, OBJECT or CLUTTER
    class_index: np.ndarray  # [n, L] int32, -1 for clutter and empty slots
    shape: np.ndarray  # [n, L] int16, indexes SHAPES then CLUTTER_SHAPES
    colour: np.ndarray  # [n, L] int16, indexes COLOURS; -1 for clutter (muted, no class colour)
    texture: np.ndarray  # [n, L] int16
    rim: np.ndarray  # [n, L] int16
    rgb: np.ndarray  # [n, L, 3] float32, 0..255
    centre: np.ndarray  # [n, L, 2] float32 (x, y) in image sides
    radius: np.ndarray  # [n, L] float32 in image sides
    angle: np.ndarray  # [n, L] float32 radians
    aspect: np.ndarray  # [n, L] float32
    background: np.ndarray  # [n, G, G, 3] float32 colour grid
    grating: np.ndarray  # [n, 4] float32: amplitude, cycles per image, orientation, phase

    def __len__(self) -> int:
        return len(self.kind)

    def select(self, rows: slice) -> "Layout":
        return Layout(**{name: value[rows] for name, value in vars(self).items()})


def class_prior(rng: np.random.Generator, num_classes: int, num_contexts: int,
                zipf_exponent: float, context_boost: float) -> np.ndarray:
    """Sampling weights [num_contexts, num_classes], each row summing to 1."""
    rank = rng.permutation(num_classes)
    weights = (1.0 + rank) ** -zipf_exponent
    context_of_class = rng.integers(num_contexts, size=num_classes)
    boost = np.where(context_of_class[None, :] == np.arange(num_contexts)[:, None], context_boost, 1.0)
    prior = weights[None, :] * boost
    return prior / prior.sum(axis=1, keepdims=True)


def sample_layout(rng: np.random.Generator, num_images: int, spec: SceneSpec,
                  compositions: np.ndarray, prior: np.ndarray) -> Layout:
    """Sample the scenes of `num_images` images whose classes are `compositions` [C, 4].

    `prior` [K, C] holds per-context class weights (zero weight: the class never appears).
    """
    objects = _sample_objects(rng, num_images, spec, prior)
    clutter = _sample_clutter(rng, num_images, spec)
    items = {name: np.concatenate([objects[name], clutter[name]], axis=1) for name in objects}
    order = np.argsort(items.pop("draw_key"), axis=1, kind="stable")
    items = {name: np.take_along_axis(value, order if value.ndim == 2 else order[..., None], axis=1)
             for name, value in items.items()}
    class_index = items["class_index"]
    is_object = class_index >= 0
    composition = compositions[np.where(is_object, class_index, 0)]
    shape = np.where(is_object, composition[..., 0], items["clutter_shape"])
    colour = np.where(is_object, composition[..., 1], -1)
    texture = np.where(is_object, composition[..., 2], items["clutter_texture"])
    rim = np.where(is_object, composition[..., 3], 0)
    rgb = np.where(is_object[..., None], _object_colours(rng, composition[..., 1]), items["clutter_rgb"])
    kind = np.where(is_object, OBJECT, np.where(items["clutter_shape"] >= 0, CLUTTER, EMPTY))
    background, grating = _sample_background(rng, num_images)
    return Layout(
        kind=kind.astype(np.int8), class_index=class_index.astype(np.int32),
        shape=shape.astype(np.int16), colour=colour.astype(np.int16),
        texture=texture.astype(np.int16), rim=rim.astype(np.int16),
        rgb=rgb.astype(np.float32), centre=items["centre"].astype(np.float32),
        radius=items["radius"].astype(np.float32), angle=items["angle"].astype(np.float32),
        aspect=items["aspect"].astype(np.float32), background=background, grating=grating,
    )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(low, high, size))


def _sample_objects(rng: np.random.Generator, n: int, spec: SceneSpec,
                    prior: np.ndarray) -> dict[str, np.ndarray]:
    slots = spec.objects[1]
    counts = rng.integers(spec.objects[0], spec.objects[1] + 1, size=n)
    context = rng.integers(len(prior), size=n)
    class_index = np.empty((n, slots), dtype=np.int64)
    for k, weights in enumerate(prior):
        rows = np.flatnonzero(context == k)
        class_index[rows] = rng.choice(len(weights), size=(len(rows), slots), p=weights)
    radius = _log_uniform(rng, spec.object_radius, (n, slots))
    draw_key = rng.random((n, slots)) - 3.0 * radius  # mostly large first
    if spec.dominant_radius is not None:
        # Single-label: slot 0 is the labelled object, large and drawn last; the others are
        # small unlabelled distractors (an ImageNet photo shows other things too).
        radius[:, 0] = rng.uniform(*spec.dominant_radius, size=n)
        draw_key[:, 0] = np.inf
    used = np.arange(slots)[None, :] < counts[:, None]
    class_index[~used] = -1
    draw_key[~used] = np.inf
    return {
        "class_index": class_index, "radius": radius, "draw_key": draw_key,
        "centre": _centres(rng, radius, dominant=spec.dominant_radius is not None),
        "angle": rng.uniform(-MAX_ROTATION, MAX_ROTATION, (n, slots)),
        "aspect": rng.uniform(0.87, 1.15, (n, slots)),
        "clutter_shape": np.full((n, slots), -1), "clutter_texture": np.zeros((n, slots), int),
        "clutter_rgb": np.zeros((n, slots, 3)),
    }


def _centres(rng: np.random.Generator, radius: np.ndarray, dominant: bool) -> np.ndarray:
    # Centres may come close to the border: a truncated object is labelled only while enough
    # of it stays visible (see render.visible_fraction).
    centre = rng.uniform(0.04, 0.96, radius.shape + (2,))
    if dominant:
        centre[:, 0] = rng.uniform(0.35, 0.65, (len(radius), 2))
    return centre


def _sample_clutter(rng: np.random.Generator, n: int, spec: SceneSpec) -> dict[str, np.ndarray]:
    slots = spec.clutter[1]
    counts = rng.integers(spec.clutter[0], spec.clutter[1] + 1, size=n)
    used = np.arange(slots)[None, :] < counts[:, None]
    radius = _log_uniform(rng, spec.clutter_radius, (n, slots))
    draw_key = np.where(used, rng.random((n, slots)) - 3.0 * radius, np.inf)
    return {
        "class_index": np.full((n, slots), -1), "radius": radius, "draw_key": draw_key,
        "centre": rng.uniform(0.0, 1.0, (n, slots, 2)),
        "angle": rng.uniform(0.0, 2 * np.pi, (n, slots)),
        "aspect": rng.uniform(0.7, 1.4, (n, slots)),
        "clutter_shape": np.where(used, rng.choice(CLUTTER_SHAPE_IDS, size=(n, slots)), -1),
        "clutter_texture": rng.choice([0, 4], size=(n, slots)),  # solid or speckled
        "clutter_rgb": _muted_colours(rng, (n, slots)),
    }


def _object_colours(rng: np.random.Generator, colour_ids: np.ndarray) -> np.ndarray:
    brightness = rng.uniform(0.86, 1.08, colour_ids.shape + (1,))
    jitter = rng.normal(0.0, 7.0, colour_ids.shape + (3,))
    return np.clip(COLOUR_RGB[colour_ids] * brightness + jitter, 0, 255)


def _muted_colours(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Low-saturation mid-tone colours: far from every class colour, including white and black."""
    hue = rng.random(shape)
    saturation = rng.uniform(0.08, 0.35, shape)
    value = rng.uniform(0.32, 0.75, shape)
    return _hsv_to_rgb(hue, saturation, value) * 255.0


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    sector = (np.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
    ramp = np.clip(np.minimum(sector, 4.0 - sector), 0.0, 1.0)
    return value[..., None] * (1.0 - saturation[..., None] * ramp)


def _sample_background(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    base = _muted_colours(rng, (n, 1, 1))
    grid = base + rng.normal(0.0, 20.0, (n, BACKGROUND_GRID, BACKGROUND_GRID, 3))
    grating = np.stack([
        rng.uniform(4.0, 16.0, n), rng.uniform(3.0, 10.0, n),
        rng.uniform(0.0, np.pi, n), rng.uniform(0.0, 2 * np.pi, n),
    ], axis=1)
    return np.clip(grid, 0, 255).astype(np.float32), grating.astype(np.float32)
