"""Vectorised NumPy rendering of scene layouts into uint8 images.

PIL draws one shape at a time (about 1,000 small images/s); here every item of a drawing layer
is rendered at once, over all images of a chunk: each item is evaluated on a square patch just
large enough for it (patches are grouped by size so that tiny objects do not pay for large
ones), then alpha-blended into a padded canvas with fancy indexing. An "owner" map records which
item covers each pixel last, which gives every object's visible fraction after occlusion by
later items and truncation by the image border.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mld.data.synthetic.scenes import EMPTY, Layout
from mld.data.synthetic.shapes import SHAPE_REACH, shape_distance, texture_pattern
from mld.data.synthetic.vocabulary import RIM_RGB, TEXTURES

CHUNK_IMAGES = 256
_HALF_SIZES = np.array([2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256])
_SPECKLED = TEXTURES.index("speckled")
_RIM_WIDTH_PX = 1.0
_NOISE_LEVEL = 8


def render_layout(layout: Layout, size: int, pixel_seed: Sequence[int],
                  out: np.ndarray) -> np.ndarray:
    """Render `layout` at `size` px into `out` [n, size, size, 3] uint8 (e.g. a memory map).

    Returns the visible fraction [n, L] of every item. Pixel noise comes from a generator
    seeded by `pixel_seed` and the chunk's first image index, so the result does not depend
    on how the work is split.
    """
    visible = np.zeros(layout.kind.shape, dtype=np.float32)
    for start in range(0, len(layout), CHUNK_IMAGES):
        rows = slice(start, min(start + CHUNK_IMAGES, len(layout)))
        rng = np.random.default_rng([*pixel_seed, start])
        out[rows], visible[rows] = _render_chunk(layout.select(rows), size, rng)
    return visible


def _render_chunk(layout: Layout, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, slots = layout.kind.shape
    radius_px = layout.radius * size
    stretch = np.maximum(layout.aspect, 1.0 / layout.aspect)
    needed = np.ceil(radius_px * SHAPE_REACH * stretch + 1.5).astype(int)
    half = _HALF_SIZES[np.minimum(np.searchsorted(_HALF_SIZES, needed), len(_HALF_SIZES) - 1)]
    drawn = layout.kind != EMPTY
    # The canvas is padded so that every patch fits, even one of an object cut by the border.
    origin = np.floor(layout.centre * size).astype(int)[drawn]
    extent = half[drawn][:, None]
    pad = int(max(0, (extent - origin).max(initial=0), (origin + extent - size + 1).max(initial=0))) + 1
    canvas = np.zeros((n, size + 2 * pad, size + 2 * pad, 3), dtype=np.float32)
    _paint_background(canvas[:, pad:pad + size, pad:pad + size], layout, size, rng)
    owner = np.full(canvas.shape[:3], -1, dtype=np.int16)
    area = np.zeros((n, slots), dtype=np.float32)
    for layer in range(slots):
        for half_size in np.unique(half[drawn[:, layer], layer]):
            rows = np.flatnonzero(drawn[:, layer] & (half[:, layer] == half_size))
            area[rows, layer] = _draw_items(canvas, owner, layout, rows, layer, int(half_size),
                                            size, pad, rng)
    inside = owner[:, pad:pad + size, pad:pad + size].astype(np.int64)
    image_of_pixel = np.arange(n)[:, None, None]
    keys = (image_of_pixel * slots + inside)[inside >= 0]
    counts = np.bincount(keys, minlength=n * slots).reshape(n, slots)
    visible = np.where(area > 0, counts / np.maximum(area, 1.0), 0.0).astype(np.float32)
    images = canvas[:, pad:pad + size, pad:pad + size] + np.float32(0.5)
    return np.clip(images, 0, 255).astype(np.uint8), visible


def _paint_background(target: np.ndarray, layout: Layout, size: int, rng: np.random.Generator) -> None:
    """A smooth colour field (bilinear upsampling of a coarse grid) + a faint grating + noise."""
    # Built channel-first, where adding per-pixel terms to all three channels is a fast broadcast.
    weights = _bilinear_weights(layout.background.shape[1], size)
    field = weights @ layout.background.transpose(0, 3, 1, 2) @ weights.T  # [n, 3, S, S]
    axis = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    amplitude, cycles, orientation, phase = (layout.grating[:, k, None, None] for k in range(4))
    position = axis[None, None, :] * np.cos(orientation) + axis[None, :, None] * np.sin(orientation)
    field += (amplitude * np.sin(np.float32(2 * np.pi) * cycles * position + phase))[:, None]
    # Uniform integer noise: as good as Gaussian here and several times cheaper to draw.
    field += rng.integers(-_NOISE_LEVEL, _NOISE_LEVEL + 1, field.shape, dtype=np.int8)
    target[...] = field.transpose(0, 2, 3, 1)


def _bilinear_weights(cells: int, size: int) -> np.ndarray:
    position = np.clip((np.arange(size) + 0.5) / size * cells - 0.5, 0.0, cells - 1.0)
    low = np.minimum(np.floor(position).astype(int), cells - 2) if cells > 1 else np.zeros(size, int)
    fraction = position - low
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), low] = 1.0 - fraction
    if cells > 1:
        weights[np.arange(size), low + 1] += fraction
    return weights


def _draw_items(canvas: np.ndarray, owner: np.ndarray, layout: Layout, rows: np.ndarray,
                layer: int, half: int, size: int, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Blend the items (rows, layer) into the canvas; return their covered areas in pixels."""
    offsets = np.arange(-half, half + 1)
    centre_px = layout.centre[rows, layer] * size  # [m, 2] (x, y)
    origin = np.floor(centre_px).astype(int)
    xs = origin[:, 0, None] + offsets  # [m, P] pixel columns
    ys = origin[:, 1, None] + offsets
    dx = (xs + 0.5 - centre_px[:, 0, None]).astype(np.float32)[:, None, :]
    dy = (ys + 0.5 - centre_px[:, 1, None]).astype(np.float32)[:, :, None]
    angle = layout.angle[rows, layer][:, None, None]
    cos, sin = np.cos(angle), np.sin(angle)
    local_x = cos * dx + sin * dy  # [m, P, P], pixels, object frame
    local_y = cos * dy - sin * dx
    radius = (layout.radius[rows, layer] * size)[:, None, None]
    aspect = layout.aspect[rows, layer][:, None, None]
    distance = shape_distance(layout.shape[rows, layer], local_x / (radius * aspect),
                              local_y * aspect / radius)
    alpha = np.clip(np.float32(0.5) + (1.0 - distance) * radius, 0.0, 1.0)
    colour = _surface(layout, rows, layer, local_x / size, local_y / size, rng)
    rim = layout.rim[rows, layer]
    if rim.any():
        inner_edge = np.clip((distance - 1.0) * radius + np.float32(_RIM_WIDTH_PX + 0.5), 0.0, 1.0)
        rim_weight = (inner_edge * (rim > 0)[:, None, None])[..., None]
        colour += rim_weight * (RIM_RGB[rim][:, None, None, :] - colour)

    image = rows[:, None, None]
    pixel_y = (ys + pad)[:, :, None]
    pixel_x = (xs + pad)[:, None, :]
    region = canvas[image, pixel_y, pixel_x]
    canvas[image, pixel_y, pixel_x] = region + alpha[..., None] * (colour - region)
    covered = alpha > 0.5
    owner[image, pixel_y, pixel_x] = np.where(covered, np.int16(layer), owner[image, pixel_y, pixel_x])
    return covered.sum(axis=(1, 2))


def _surface(layout: Layout, rows: np.ndarray, layer: int, x: np.ndarray, y: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Object colours [m, P, P, 3]: the texture mixes the colour with a contrasting shade."""
    texture = layout.texture[rows, layer]
    noise = np.zeros_like(x)
    speckled = texture == _SPECKLED
    if speckled.any():
        noise[speckled] = rng.standard_normal(x[speckled].shape, dtype=np.float32)
    pattern = texture_pattern(texture, x, y, noise)[..., None]
    rgb = layout.rgb[rows, layer][:, None, None, :]
    luminance = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    shade = np.where(luminance[..., None] > 110.0, rgb * np.float32(0.3), rgb + (255.0 - rgb) * np.float32(0.65))
    return shade + pattern * (rgb - shade)
