"""What every real-dataset adapter produces, and how it becomes a prepared dataset.

An adapter reads a dataset's own annotation files into a `ReadDataset`: class names, and for
each split the image paths and labels. Images stay where they are (the prepared dataset lists
their absolute paths); labels are dense, or sparse when the matrix is too large for memory
(Open Images: millions of images x thousands of classes). A release that ships its pixels in
arrays (CIFAR-100) gives `ArraySplit`s instead, written as the format's image array.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mld.data.overlap import check_no_shared_images
from mld.data.prepared import PreparedMeta, open_prepared
from mld.data.writing import (
    atomic_directory, create_image_array, create_label_array, write_image_list, write_labels, write_meta,
    write_word_vectors,
)


@dataclass
class SparseLabels:
    """Known entries of a label matrix; every other entry is `fill`."""

    shape: tuple[int, int]
    rows: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    fill: int = -1

    def select_rows(self, keep: np.ndarray) -> "SparseLabels":
        new_row = np.cumsum(keep) - 1
        kept = keep[self.rows]
        return SparseLabels((int(keep.sum()), self.shape[1]), new_row[self.rows[kept]],
                            self.columns[kept], self.values[kept], self.fill)


@dataclass
class FileSplit:
    paths: list[Path]
    labels: np.ndarray | SparseLabels

    def select(self, keep: np.ndarray) -> "FileSplit":
        labels = self.labels.select_rows(keep) if isinstance(self.labels, SparseLabels) else self.labels[keep]
        return FileSplit([path for path, kept in zip(self.paths, keep) if kept], labels)


@dataclass
class ArraySplit:
    """A split whose pixels the release ships in arrays: square images [n, S, S, 3] uint8."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class ReadDataset:
    name: str
    source: str
    class_names: list[str]
    splits: dict[str, FileSplit] | dict[str, ArraySplit]
    seen_classes: list[int] | None = None
    unseen_classes: list[int] | None = None
    word_vectors_required: bool = False
    task: str = "multilabel"  # or "single_label": one positive per image


def one_hot(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Single-label labels [n, N] int8 from class indices [n]."""
    labels = np.zeros((len(classes), num_classes), np.int8)
    labels[np.arange(len(classes)), classes] = 1
    return labels


def keep_existing_images(split: FileSplit, where: str, skip_missing: bool) -> FileSplit:
    """Drop images whose file is missing when `skip_missing`, else refuse naming one of them."""
    exists = np.array([path.is_file() for path in split.paths], dtype=bool)
    if exists.all():
        return split
    first_missing = split.paths[int(np.argmin(exists))]
    if not skip_missing:
        raise FileNotFoundError(
            f"{int((~exists).sum())} of {len(exists)} images listed by {where} are missing, e.g. "
            f"{first_missing}; check the dataset root, or pass --skip-missing-images to leave them out")
    return split.select(exists)


def write_read_dataset(dataset: ReadDataset, out: str | Path,
                       word_vectors: Callable[[Sequence[str]], np.ndarray] | None = None,
                       overwrite: bool = False, allow_overlap: bool = False) -> PreparedMeta:
    """Write an adapter's result as a prepared dataset at `out`, atomically: file storage, or array
    storage when the splits are `ArraySplit`s.

    Refused (mld.data.overlap.SplitOverlapError) if the evaluation split shares an image with the
    training split (the same file or content; for arrays the same pixels), unless `allow_overlap`.
    """
    if word_vectors is None and dataset.word_vectors_required:
        raise ValueError(f"{dataset.name} is a zero-shot dataset: pass --word-vectors FILE or --sentence-model NAME")
    if not allow_overlap:
        check_no_shared_images({split: content.images if isinstance(content, ArraySplit) else content.paths
                                for split, content in dataset.splits.items()}, dataset.source)
    vectors = None if word_vectors is None else word_vectors(dataset.class_names)
    if vectors is not None and vectors.shape[0] != len(dataset.class_names):
        raise ValueError(f"got {vectors.shape[0]} word vectors for {len(dataset.class_names)} classes")
    arrays = all(isinstance(content, ArraySplit) for content in dataset.splits.values())
    if not arrays and any(isinstance(content, ArraySplit) for content in dataset.splits.values()):
        raise ValueError(f"{dataset.name}: every split stores its images alike (arrays or files), not both")
    image_size = None
    with atomic_directory(out, overwrite=overwrite) as building:
        for split, content in dataset.splits.items():
            if isinstance(content, ArraySplit):
                image_size = content.images.shape[1]
                images = create_image_array(building, split, len(content.images), image_size)
                images[:] = content.images
                images.flush()
                del images
            else:
                write_image_list(building, split, content.paths)
            labels = content.labels
            if isinstance(labels, SparseLabels):
                dense = create_label_array(building, split, *labels.shape, fill=labels.fill)
                order = np.argsort(labels.rows, kind="stable")  # row order: sequential writes
                dense[labels.rows[order], labels.columns[order]] = labels.values[order]
                dense.flush()
                del dense
            else:
                write_labels(building, split, labels)
        if vectors is not None:
            write_word_vectors(building, vectors)
        write_meta(building, PreparedMeta(
            path=Path(out), name=dataset.name, source=dataset.source, num_classes=len(dataset.class_names),
            class_names=tuple(dataset.class_names), task=dataset.task,
            splits={split: content.labels.shape[0] for split, content in dataset.splits.items()},
            image_storage="array" if arrays else "files", image_size=image_size,
            seen_classes=None if dataset.seen_classes is None else tuple(dataset.seen_classes),
            unseen_classes=None if dataset.unseen_classes is None else tuple(dataset.unseen_classes),
        ))
    return open_prepared(out)
