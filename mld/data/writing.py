"""Writing prepared datasets atomically: a finished dataset directory is complete or absent.

Everything is built in a hidden temporary directory beside the target and renamed onto it at the
end (a rename within a directory is atomic), so a crash, a full disk or a killed job leaves
nothing half-written where a workflow looks for a finished dataset.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mld.data.prepared import (
    IMAGE_ARRAY_FILE, IMAGE_LIST_FILE, LABELS_FILE, META_FILE, WORD_VECTORS_FILE, PreparedMeta,
)


@contextlib.contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes `target`, on failure it is removed."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise ValueError(f"{target} already exists; remove it or pass --overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    building.chmod(0o755)  # mkdtemp makes it private; a dataset is for every user of the machine
    try:
        yield building
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(building, target)
            shutil.rmtree(retired)
        else:
            os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def write_meta(directory: Path, meta: PreparedMeta) -> None:
    (directory / META_FILE).write_text(json.dumps(meta.to_json(), indent=1) + "\n", encoding="utf-8")


def write_word_vectors(directory: Path, vectors: np.ndarray) -> None:
    np.save(directory / WORD_VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))


def write_labels(directory: Path, split: str, labels: np.ndarray) -> None:
    split_dir = directory / split
    split_dir.mkdir(exist_ok=True)
    np.save(split_dir / LABELS_FILE, np.ascontiguousarray(labels, dtype=np.int8))


def create_label_array(directory: Path, split: str, count: int, num_classes: int,
                       fill: int) -> np.ndarray:
    """A writable memory-mapped label file [count, N] int8 filled with `fill`: too large for RAM
    at Open Images scale (millions of images x thousands of classes)."""
    split_dir = directory / split
    split_dir.mkdir(exist_ok=True)
    labels = np.lib.format.open_memmap(split_dir / LABELS_FILE, mode="w+", dtype=np.int8,
                                       shape=(count, num_classes))
    labels[:] = fill
    return labels


def create_image_array(directory: Path, split: str, count: int, image_size: int) -> np.ndarray:
    """A writable memory-mapped image file [count, S, S, 3] uint8 for array storage."""
    split_dir = directory / split
    split_dir.mkdir(exist_ok=True)
    return np.lib.format.open_memmap(split_dir / IMAGE_ARRAY_FILE, mode="w+", dtype=np.uint8,
                                     shape=(count, image_size, image_size, 3))


def write_image_list(directory: Path, split: str, paths: Sequence[str | Path]) -> None:
    split_dir = directory / split
    split_dir.mkdir(exist_ok=True)
    lines = [os.path.abspath(path) for path in paths]
    if any("\n" in line for line in lines):
        raise ValueError("an image path contains a line break; rename the file")
    (split_dir / IMAGE_LIST_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
