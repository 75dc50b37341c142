"""Render a preset's splits and write them as a prepared dataset (array storage).

Every random stream is seeded by (seed, preset, split, purpose), so the same arguments give
byte-identical files (with the same NumPy version), train and val never share scenes, and the
scenes do not depend on the image size.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

import mld
from mld.data.overlap import check_no_shared_images
from mld.data.prepared import PreparedMeta, open_prepared
from mld.data.synthetic import labels as label_rules
from mld.data.synthetic.presets import (
    DEFAULT_IMAGE_SIZE, PARTIAL_HARD_NEGATIVES, PARTIAL_POSITIVE_RATE, PARTIAL_RANDOM_NEGATIVES,
    Preset, PresetClasses, get_preset, preset_classes,
)
from mld.data.synthetic.render import render_layout
from mld.data.synthetic.scenes import sample_layout
from mld.data.writing import (
    atomic_directory, create_image_array, write_labels, write_meta, write_word_vectors,
)

SPLITS = ("train", "val")
_LAYOUT, _PIXELS, _LABELS = 0, 1, 2
MIN_IMAGE_SIZE = 16


def render_split(preset: Preset, classes: PresetClasses, split: str, count: int, image_size: int,
                 seed: int, images_out: np.ndarray) -> np.ndarray:
    """Render `count` images of a split into `images_out` [count, S, S, 3]; return labels [count, N]."""
    def stream(purpose: int) -> list[int]:
        return [seed, zlib.crc32(preset.name.encode()), zlib.crc32(split.encode()), purpose]

    prior = classes.prior
    if classes.unseen is not None and split == "train":
        prior = prior.copy()  # zero-shot: training images show seen classes only
        prior[:, classes.unseen] = 0.0
        prior /= prior.sum(axis=1, keepdims=True)
    layout = sample_layout(np.random.default_rng(stream(_LAYOUT)), count, preset.scene,
                           classes.compositions, prior)
    visible = render_layout(layout, image_size, stream(_PIXELS), images_out)
    rng = np.random.default_rng(stream(_LABELS))
    if preset.labels == "attributes":
        return label_rules.attribute_labels(layout, visible)
    if preset.labels == "dominant":
        return label_rules.dominant_labels(layout, len(classes.class_names))
    labels = label_rules.object_labels(layout, visible, len(classes.class_names))
    if preset.missing_tag_rate and split == "train":
        labels = label_rules.drop_positives(rng, labels, preset.missing_tag_rate)
    if preset.partial_labels:
        labels = label_rules.verify_partially(rng, labels, classes.compositions, PARTIAL_POSITIVE_RATE,
                                              PARTIAL_HARD_NEGATIVES, PARTIAL_RANDOM_NEGATIVES)
    return labels


def prepare_synthetic(preset_name: str, out: str | Path, image_size: int = DEFAULT_IMAGE_SIZE,
                      seed: int = 0, num_train: int | None = None, num_val: int | None = None,
                      overwrite: bool = False, allow_overlap: bool = False) -> PreparedMeta:
    """Render a preset into a prepared dataset at `out` (written atomically); return its metadata.

    Refused if a validation image equals a training image pixel for pixel, unless `allow_overlap`.
    """
    preset = get_preset(preset_name)
    counts = {"train": preset.num_train if num_train is None else num_train,
              "val": preset.num_val if num_val is None else num_val}
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {image_size} px is too small to show the objects; use >= {MIN_IMAGE_SIZE}")
    if seed < 0 or any(count < 1 for count in counts.values()):
        raise ValueError(f"seed must be >= 0 and split sizes >= 1; got seed {seed}, sizes {counts}")
    classes = preset_classes(preset)
    with atomic_directory(out, overwrite=overwrite) as building:
        rendered = {}
        for split in SPLITS:
            rendered[split] = create_image_array(building, split, counts[split], image_size)
            labels = render_split(preset, classes, split, counts[split], image_size, seed, rendered[split])
            rendered[split].flush()
            write_labels(building, split, labels)
        if not allow_overlap:
            check_no_shared_images(rendered, f"synthetic preset {preset.name}, seed {seed}")
        del rendered
        write_word_vectors(building, classes.word_vectors)
        write_meta(building, PreparedMeta(
            path=Path(out), name=preset.name,
            source=f"synthetic preset {preset.name} (mimics {preset.mimics}), seed {seed}, "
                   f"{image_size} px, mld {mld.__version__}",
            num_classes=len(classes.class_names), class_names=tuple(classes.class_names),
            task=preset.task, splits=counts, image_storage="array", image_size=image_size,
            seen_classes=None if classes.seen is None else tuple(classes.seen),
            unseen_classes=None if classes.unseen is None else tuple(classes.unseen),
        ))
    return open_prepared(out)
