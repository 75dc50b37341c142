"""From rendered scenes to label matrices, and the label imperfections of the real datasets.

A labelled object counts as present only if at least `VISIBLE_FRACTION` of its area is visible
in the final image (not hidden by later items, not cut off by the border), so labels say what
the image shows. The imperfections mimic the datasets the presets stand for: NUS-WIDE's Flickr
tags miss objects that are there, and Open Images verifies only some labels of each image.
"""
from __future__ import annotations

import numpy as np

from mld.data.synthetic.scenes import OBJECT, Layout
from mld.data.synthetic.vocabulary import ATTRIBUTES

VISIBLE_FRACTION = 0.3
UNKNOWN = -1


def _present(layout: Layout, visible: np.ndarray) -> np.ndarray:
    return (layout.kind == OBJECT) & (visible >= VISIBLE_FRACTION)


def object_labels(layout: Layout, visible: np.ndarray, num_classes: int) -> np.ndarray:
    """[n, C] int8: 1 where an object of the class is visible enough, else 0."""
    labels = np.zeros((len(layout), num_classes), dtype=np.int8)
    image, slot = np.nonzero(_present(layout, visible))
    labels[image, layout.class_index[image, slot]] = 1
    return labels


def attribute_labels(layout: Layout, visible: np.ndarray) -> np.ndarray:
    """[n, A] int8 over the attribute values shown, in `attribute_class_names` order."""
    image, slot = np.nonzero(_present(layout, visible))
    columns = []
    for kind, values in ATTRIBUTES.items():
        column = np.zeros((len(layout), len(values)), dtype=np.int8)
        column[image, getattr(layout, kind)[image, slot]] = 1
        columns.append(column[:, 1:] if kind == "rim" else column)  # a plain rim is no attribute
    return np.concatenate(columns, axis=1)


def dominant_labels(layout: Layout, num_classes: int) -> np.ndarray:
    """[n, C] one-hot int8: the class of each image's largest object (its dominant one)."""
    radius = np.where(layout.kind == OBJECT, layout.radius, -np.inf)
    largest = radius.argmax(axis=1)
    labels = np.zeros((len(layout), num_classes), dtype=np.int8)
    labels[np.arange(len(layout)), layout.class_index[np.arange(len(layout)), largest]] = 1
    return labels


def drop_positives(rng: np.random.Generator, labels: np.ndarray, rate: float) -> np.ndarray:
    """Missing tags: each positive becomes a negative with probability `rate` (NUS-WIDE's noise)."""
    dropped = (labels == 1) & (rng.random(labels.shape) < rate)
    return np.where(dropped, np.int8(0), labels).astype(np.int8)


def verify_partially(rng: np.random.Generator, labels: np.ndarray, compositions: np.ndarray,
                     positive_rate: float, hard_negatives: int, random_negatives: int) -> np.ndarray:
    """Open Images-like partial labels: only verified entries are known, the rest are -1.

    Open Images' annotators verified candidate labels proposed by a classifier: most true labels
    (each with probability `positive_rate`) and some absent ones - mostly confusable classes
    (sharing at least two attributes with a present class) - are known; every other class of the
    image is unknown.
    """
    verified = np.full(labels.shape, UNKNOWN, dtype=np.int8)
    positive = labels == 1
    verified[positive & (rng.random(labels.shape) < positive_rate)] = 1
    shared = (compositions[:, None, :] == compositions[None, :, :]).sum(axis=2) >= 2
    confusable = np.zeros(labels.shape, dtype=bool)
    for image in range(len(labels)):
        present = np.flatnonzero(positive[image])
        if len(present):
            confusable[image] = shared[present].any(axis=0)
    negative = ~positive
    _mark_random(rng, verified, confusable & negative, hard_negatives)
    _mark_random(rng, verified, negative & (verified == UNKNOWN), random_negatives)
    return verified


def _mark_random(rng: np.random.Generator, verified: np.ndarray, candidates: np.ndarray, count: int) -> None:
    """Set up to `count` random candidate entries of each row to 0 (verified negative)."""
    if count <= 0:
        return
    count = min(count, verified.shape[1])
    keys = np.where(candidates, rng.random(verified.shape), np.inf)
    chosen = np.argpartition(keys, count - 1, axis=1)[:, :count]
    rows = np.arange(len(verified))[:, None]
    verified[rows, chosen] = np.where(np.isfinite(keys[rows, chosen]), np.int8(0), verified[rows, chosen])
