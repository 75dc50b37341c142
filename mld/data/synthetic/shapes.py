"""Shapes and textures as vectorised functions of object-local coordinates.

A shape function takes coordinates (u, v) in units of the object's radius (object centre at the
origin, y pointing down) and returns a distance-like value f that is below 1 inside the shape and
grows by about 1 per radius outside it; the renderer turns f into an anti-aliased coverage.
Shapes are kept apart from each other at small sizes and under the renderer's small rotations
(square and diamond differ by 45 degrees, the renderer rotates by at most 12).

A texture function takes coordinates (x, y) in image-width units (so a pattern has the same
period at every resolution: a low resolution blurs it, as real detail is lost when an image is
shrunk) and returns t in [0, 1]: 1 shows the object's colour, 0 its contrasting shade.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mld.data.synthetic.vocabulary import SHAPES, TEXTURES

Array = np.ndarray
TEXTURE_PERIOD = 0.065  # in image widths: about 4 px at 64 px


def _regular_polygon(sides: int, rotation: float) -> Callable[[Array, Array], Array]:
    angles = rotation + 2 * np.pi * np.arange(sides) / sides
    normals = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    apothem = np.float32(np.cos(np.pi / sides))

    def polygon(u: Array, v: Array) -> Array:
        distance = u * normals[0, 0] + v * normals[0, 1]
        for nx, ny in normals[1:]:
            distance = np.maximum(distance, u * nx + v * ny)
        return distance / apothem

    return polygon


def _circle(u: Array, v: Array) -> Array:
    return np.sqrt(u * u + v * v)


def _square(u: Array, v: Array) -> Array:
    return np.maximum(np.abs(u), np.abs(v)) / np.float32(0.8)


def _diamond(u: Array, v: Array) -> Array:
    return np.abs(u) + np.abs(v)


def _cross(u: Array, v: Array) -> Array:
    au, av = np.abs(u), np.abs(v)
    arm = np.float32(0.34)
    return np.minimum(np.maximum(au / arm, av), np.maximum(au, av / arm))


def _ring(u: Array, v: Array) -> Array:
    radius = _circle(u, v)
    return np.maximum(radius, np.float32(1.55) - radius)


def _star(u: Array, v: Array) -> Array:
    radius = _circle(u, v)
    angle = np.arctan2(u, -v)  # a point straight up
    outline = np.float32(0.5) + np.float32(0.5) * np.abs(np.cos(np.float32(2.5) * angle)) ** 3
    return radius / outline


def _crescent(u: Array, v: Array) -> Array:
    bite = np.sqrt((u - np.float32(0.45)) ** 2 + (v + np.float32(0.15)) ** 2) / np.float32(0.78)
    return np.maximum(_circle(u, v), np.float32(2.0) - bite)


def _semicircle(u: Array, v: Array) -> Array:
    return np.maximum(_circle(u, v), np.float32(1.0) + np.float32(3.0) * v)


def _tee(u: Array, v: Array) -> Array:
    top = np.maximum(np.abs(u), np.abs(v + np.float32(0.68)) / np.float32(0.32))
    stem = np.maximum(np.abs(u) / np.float32(0.3), np.abs(v - np.float32(0.15)) / np.float32(0.85))
    return np.minimum(top, stem)


def _bowtie(u: Array, v: Array) -> Array:
    au, av = np.abs(u), np.abs(v)
    return np.maximum(au, (av + np.float32(0.12)) / (au + np.float32(0.12)))


SHAPE_FUNCTIONS: dict[str, Callable[[Array, Array], Array]] = {
    "circle": _circle, "square": _square, "triangle": _regular_polygon(3, -np.pi / 2),
    "diamond": _diamond, "cross": _cross, "ring": _ring, "star": _star,
    "hexagon": _regular_polygon(6, 0.0), "crescent": _crescent, "semicircle": _semicircle,
    "tee": _tee, "bowtie": _bowtie,
}
assert tuple(SHAPE_FUNCTIONS) == SHAPES


def _blob(u: Array, v: Array) -> Array:
    return np.sqrt(u * u + (v / np.float32(0.55)) ** 2)


def _stick(u: Array, v: Array) -> Array:
    return np.maximum(np.abs(u), np.abs(v) / np.float32(0.16))


# Clutter gets shapes of its own, so that no clutter item shows a class's shape.
CLUTTER_SHAPES: tuple[str, ...] = ("blob", "stick")
_ALL_SHAPE_FUNCTIONS = [*SHAPE_FUNCTIONS.values(), _blob, _stick]
CLUTTER_SHAPE_IDS = np.arange(len(SHAPES), len(_ALL_SHAPE_FUNCTIONS))
# The farthest a shape reaches from its centre, in radii (the square's corners): sizes patches.
SHAPE_REACH = 1.15


def _phase(coordinate: Array) -> Array:
    return coordinate * np.float32(2 * np.pi / TEXTURE_PERIOD)


def _solid(x: Array, y: Array, noise: Array) -> Array:
    return np.ones_like(x)


def _striped(x: Array, y: Array, noise: Array) -> Array:
    return np.clip(0.5 + 2.0 * np.sin(_phase(y)), 0.0, 1.0)


def _checkered(x: Array, y: Array, noise: Array) -> Array:
    half = np.float32(0.5)
    return np.clip(0.5 + 4.0 * np.sin(half * _phase(x)) * np.sin(half * _phase(y)), 0.0, 1.0)


def _dotted(x: Array, y: Array, noise: Array) -> Array:
    cell_x = np.abs(np.mod(x / TEXTURE_PERIOD, 1.0) - 0.5)
    cell_y = np.abs(np.mod(y / TEXTURE_PERIOD, 1.0) - 0.5)
    distance = np.sqrt(cell_x * cell_x + cell_y * cell_y)
    return np.clip((distance - 0.3) * 8.0 + 0.5, 0.0, 1.0)


def _speckled(x: Array, y: Array, noise: Array) -> Array:
    return (noise > -0.6).astype(np.float32)


def _gradient(x: Array, y: Array, noise: Array) -> Array:
    return np.clip(0.5 + x / np.float32(2.2 * TEXTURE_PERIOD), 0.0, 1.0)


def _zigzag(x: Array, y: Array, noise: Array) -> Array:
    wave = np.abs(np.mod(x / TEXTURE_PERIOD, 1.0) - 0.5) * TEXTURE_PERIOD
    return np.clip(0.5 + 2.0 * np.sin(_phase(y + wave)), 0.0, 1.0)


def _gridded(x: Array, y: Array, noise: Array) -> Array:
    lines = np.minimum(np.abs(np.cos(_phase(x) * 0.5)), np.abs(np.cos(_phase(y) * 0.5)))
    return np.clip((lines - 0.3) * 4.0, 0.0, 1.0)


TEXTURE_FUNCTIONS: dict[str, Callable[[Array, Array, Array], Array]] = {
    "solid": _solid, "striped": _striped, "checkered": _checkered, "dotted": _dotted,
    "speckled": _speckled, "gradient": _gradient, "zigzag": _zigzag, "gridded": _gridded,
}
assert tuple(TEXTURE_FUNCTIONS) == TEXTURES


def shape_distance(shape_ids: Array, u: Array, v: Array) -> Array:
    """Distance-like values [M, P, P] of M objects whose shapes are `shape_ids` [M].

    Ids index `SHAPES`, then `CLUTTER_SHAPES`.
    """
    out = np.empty_like(u)
    for shape_id in np.unique(shape_ids):
        chosen = shape_ids == shape_id
        out[chosen] = _ALL_SHAPE_FUNCTIONS[shape_id](u[chosen], v[chosen])
    return out


def texture_pattern(texture_ids: Array, x: Array, y: Array, noise: Array) -> Array:
    """Texture values in [0, 1], [M, P, P], of M objects whose textures are `texture_ids` [M]."""
    out = np.empty_like(x)
    for texture_id in np.unique(texture_ids):
        chosen = texture_ids == texture_id
        out[chosen] = TEXTURE_FUNCTIONS[TEXTURES[texture_id]](x[chosen], y[chosen], noise[chosen])
    return out
