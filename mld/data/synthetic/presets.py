"""Presets: synthetic datasets shaped like the paper's, sized for the CPU budget of the default.

| preset | stands for | classes | why it is shaped so |
| --- | --- | --- | --- |
| voc-like | Pascal VOC 2007 | 20 | few (1-4), mostly large objects per image |
| coco-like | MS-COCO 2014 | 80 | 2-6 objects, many small; long tail; co-occurring contexts |
| nus-like | NUS-WIDE zero-shot | 100 seen + 20 unseen | unseen classes compose seen attributes anew; |
|  |  |  | training images show seen classes only and miss 15% of their tags (noisy Flickr tags) |
| oi-like | Open Images v6 | 2,000 | thousands of classes, partial labels: unverified entries are -1 |
| pretrain | the backbones' ImageNet pretraining | 34 attributes | labels name the visible shapes, colours, |
|  |  |  | textures and rims: a backbone learns what every other preset's classes compose |
| imagenet-like | ImageNet-1k (single label) | 100 | one dominant object per image (+ small unlabelled distractors) |

Class sets, their frequencies and contexts are fixed by the preset's name (like a real dataset's
class list); the `seed` of a dataset only changes its images. Every preset renders at any image
size (64 px by default); the same seed gives the same scenes at every size.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from mld.data.synthetic.scenes import SceneSpec, class_prior
from mld.data.synthetic.vocabulary import (
    ATTRIBUTES, attribute_class_names, attribute_word_vectors, composition_grid, composition_name,
    composition_word_vectors,
)

_STRUCTURE_SEED = 7919
DEFAULT_IMAGE_SIZE = 64


@dataclass(frozen=True)
class Preset:
    """A synthetic dataset recipe; see the module docstring for what each one mimics."""

    name: str
    mimics: str
    scene: SceneSpec
    num_train: int
    num_val: int
    grid: tuple[int, int, int, int]  # how many shapes, colours, textures, rims classes draw from
    num_classes: int | None = None  # compositions drawn from the grid; None: attribute labels
    num_unseen: int = 0  # zero-shot: classes absent from training images
    labels: str = "objects"  # "objects", "attributes" or "dominant" (single label)
    num_contexts: int = 1
    zipf_exponent: float = 0.0
    context_boost: float = 1.0
    missing_tag_rate: float = 0.0  # training split only
    partial_labels: bool = False

    @property
    def task(self) -> str:
        return "single_label" if self.labels == "dominant" else "multilabel"


@dataclass(frozen=True)
class PresetClasses:
    """What a preset's images are drawn from and labelled with."""

    compositions: np.ndarray  # [M, 4] compositions objects are drawn from
    prior: np.ndarray  # [K, M] per-context sampling weights
    class_names: list[str]  # label columns
    word_vectors: np.ndarray  # [len(class_names), 300] float32
    seen: list[int] | None = None
    unseen: list[int] | None = None


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset(
        name="voc-like", mimics="Pascal VOC 2007",
        scene=SceneSpec(objects=(1, 4), object_radius=(0.06, 0.28), clutter=(2, 5)),
        num_train=2000, num_val=1000, grid=(6, 6, 2, 1), num_classes=20,
        num_contexts=4, zipf_exponent=0.6, context_boost=4.0,
    ),
    Preset(
        name="coco-like", mimics="MS-COCO 2014",
        scene=SceneSpec(objects=(2, 6), object_radius=(0.035, 0.2), clutter=(2, 6)),
        num_train=3000, num_val=1000, grid=(10, 10, 4, 1), num_classes=80,
        num_contexts=8, zipf_exponent=0.8, context_boost=6.0,
    ),
    Preset(
        name="nus-like", mimics="NUS-WIDE zero-shot (925 seen tags, 81 unseen concepts)",
        scene=SceneSpec(objects=(2, 5), object_radius=(0.04, 0.2), clutter=(2, 6)),
        num_train=3000, num_val=1000, grid=(8, 8, 4, 1), num_classes=120, num_unseen=20,
        num_contexts=8, zipf_exponent=0.8, context_boost=4.0, missing_tag_rate=0.15,
    ),
    Preset(
        name="oi-like", mimics="Open Images v6 (9,600 classes, partial labels)",
        scene=SceneSpec(objects=(2, 6), object_radius=(0.04, 0.2), clutter=(2, 6)),
        num_train=4000, num_val=1000, grid=(12, 12, 8, 3), num_classes=2000,
        num_contexts=16, zipf_exponent=0.5, context_boost=4.0, partial_labels=True,
    ),
    Preset(
        name="pretrain", mimics="the backbones' ImageNet pretraining (attribute labels)",
        scene=SceneSpec(objects=(2, 5), object_radius=(0.04, 0.22), clutter=(2, 6)),
        num_train=4000, num_val=1000, grid=(12, 12, 8, 3), labels="attributes",
    ),
    Preset(
        name="imagenet-like", mimics="ImageNet-1k (single label)",
        scene=SceneSpec(objects=(1, 3), object_radius=(0.035, 0.1), clutter=(2, 5),
                        dominant_radius=(0.2, 0.32)),
        num_train=3000, num_val=1000, grid=(12, 12, 8, 1), num_classes=100, labels="dominant",
    ),
)}

# Open Images' verification: most true labels and a few (mostly confusable) absent classes.
PARTIAL_POSITIVE_RATE = 0.85
PARTIAL_HARD_NEGATIVES = 6
PARTIAL_RANDOM_NEGATIVES = 4


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}") from None


def preset_num_classes(name: str) -> int:
    """The number of label columns of a preset, without building anything."""
    preset = get_preset(name)
    return len(attribute_class_names()) if preset.num_classes is None else preset.num_classes


def preset_classes(preset: Preset) -> PresetClasses:
    """The preset's class set, frequencies and word vectors (a function of its name only)."""
    rng = np.random.default_rng([_STRUCTURE_SEED, zlib.crc32(preset.name.encode())])
    grid = composition_grid(*preset.grid)
    if preset.num_classes is None:  # attribute labels: objects come from the whole grid, uniformly
        prior = np.full((1, len(grid)), 1.0 / len(grid))
        return PresetClasses(grid, prior, attribute_class_names(), attribute_word_vectors())
    if preset.num_classes > len(grid):
        raise ValueError(f"preset {preset.name}: {preset.num_classes} classes requested, "
                         f"the attribute grid {preset.grid} has only {len(grid)} compositions")
    compositions = grid[rng.choice(len(grid), size=preset.num_classes, replace=False)]
    prior = class_prior(rng, preset.num_classes, preset.num_contexts, preset.zipf_exponent,
                        preset.context_boost)
    seen = unseen = None
    if preset.num_unseen:
        unseen = _choose_unseen(rng, compositions, preset.num_unseen)
        seen = [index for index in range(preset.num_classes) if index not in set(unseen)]
    return PresetClasses(compositions, prior, [composition_name(c) for c in compositions],
                         composition_word_vectors(compositions), seen, unseen)


def _choose_unseen(rng: np.random.Generator, compositions: np.ndarray, count: int) -> list[int]:
    """Unseen classes whose every attribute value still appears in some seen class."""
    unseen: list[int] = []
    for candidate in rng.permutation(len(compositions)):
        trial = unseen + [int(candidate)]
        seen = np.delete(compositions, trial, axis=0)
        if all(np.isin(compositions[trial, column], seen[:, column]).all()
               for column in range(len(ATTRIBUTES))):
            unseen = trial
        if len(unseen) == count:
            return sorted(unseen)
    raise ValueError(f"cannot choose {count} unseen classes whose attributes all stay seen")
