"""Refuse a dataset whose training and evaluation splits share an image.

A score measured on images the model trained on is inflated, and nothing downstream can tell;
the official ML-Decoder code shipped exactly this (its training set read from the validation
path, its logs show identical 40,137-image sets). An evaluation image is shared when the
training split lists the same file (whatever path reaches it: a symbolic or hard link, `..`) or
a file with the same bytes (a copy under another name). Files are compared by device and inode,
then by SHA-256 only where a size occurs in both splits, so a clean split costs one `stat` per
image plus the hashes of the few files whose size collides (benchmarks/overlap_speed.py).
Array-stored images (the synthetic sets) are compared by the SHA-256 of each image's pixels.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mld.atomic import file_sha256

OVERRIDE_FLAG = "--allow-overlap"
TRAIN_SPLIT = "train"
SHOWN = 5  # shared images named in the message
SAME_FILE, SAME_CONTENT = "same file", "same content"


@dataclass(frozen=True)
class SharedImage:
    """An evaluation image that is also a training image, and how they match."""

    evaluation: str
    train: str
    how: str  # SAME_FILE or SAME_CONTENT


class SplitOverlapError(ValueError):
    """Training and evaluation splits share images; the message names some and the override flag."""


def shared_files(train: Sequence[Path], evaluation: Sequence[Path]) -> list[SharedImage]:
    """The evaluation files (in order) that are a training file or hold the same bytes as one.

    Indexes the evaluation split and streams the training split, so memory grows with the
    evaluation split (Open Images: 41,620 images against 9 million training ones).
    """
    eval_stats = [os.stat(path) for path in evaluation]
    eval_by_inode: dict[tuple[int, int], list[int]] = {}
    for j, status in enumerate(eval_stats):
        eval_by_inode.setdefault((status.st_dev, status.st_ino), []).append(j)
    eval_sizes = {status.st_size for status in eval_stats}
    found: dict[int, tuple[int, str]] = {}
    same_size: list[tuple[int, int]] = []  # (training index, size) of files whose size an evaluation file has
    for i, path in enumerate(train):
        status = os.stat(path)
        for j in eval_by_inode.get((status.st_dev, status.st_ino), ()):
            found.setdefault(j, (i, SAME_FILE))
        if status.st_size in eval_sizes:
            same_size.append((i, status.st_size))
    by_content: dict[tuple[int, str], int] = {}
    for i, size in same_size:
        by_content.setdefault((size, file_sha256(train[i])), i)
    train_sizes = {size for _, size in same_size}
    for j, status in enumerate(eval_stats):
        if j not in found and status.st_size in train_sizes:
            i = by_content.get((status.st_size, file_sha256(evaluation[j])))
            if i is not None:
                found[j] = (i, SAME_CONTENT)
    return [SharedImage(str(evaluation[j]), str(train[i]), how) for j, (i, how) in sorted(found.items())]


def shared_arrays(train: np.ndarray, evaluation: np.ndarray) -> list[SharedImage]:
    """The evaluation images [n, H, W, 3] (in order) whose pixels equal a training image's."""
    first: dict[bytes, int] = {}
    for index, image in enumerate(train):
        first.setdefault(_pixels_digest(image), index)
    return [SharedImage(f"image {j}", f"image {i}", SAME_CONTENT) for j, image in enumerate(evaluation)
            if (i := first.get(_pixels_digest(image))) is not None]


def check_no_shared_images(splits: Mapping[str, Sequence[Path]] | Mapping[str, np.ndarray], where: str) -> None:
    """Raise SplitOverlapError if an evaluation split shares an image with the training split.

    `splits` maps split names to image paths (file storage) or image arrays (array storage);
    every split but "train" is compared with "train". `where` names the dataset in the message.
    """
    train = splits[TRAIN_SPLIT]
    for split, images in splits.items():
        if split == TRAIN_SPLIT:
            continue
        shared = shared_arrays(train, images) if isinstance(train, np.ndarray) else shared_files(train, images)
        if shared:
            examples = "; ".join(f"{split} {image.evaluation} = {TRAIN_SPLIT} {image.train} ({image.how})"
                                 for image in shared[:SHOWN])
            more = f"; and {len(shared) - SHOWN} more" if len(shared) > SHOWN else ""
            raise SplitOverlapError(
                f"{where}: {len(shared)} of {len(images)} {split} images are also {TRAIN_SPLIT} images, "
                f"e.g. {examples}{more}. Scores on them would be inflated: fix the split lists, or pass "
                f"{OVERRIDE_FLAG} to `mld prepare` (in a workflow config: the dataset's "
                f"`options: {{allow_overlap: true}}`) to keep them")


def _pixels_digest(image: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
