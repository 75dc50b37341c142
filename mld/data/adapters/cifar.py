"""CIFAR-100 (Table 14): 100 fine classes, 50,000 training and 10,000 test images (the test set
validates), single-label, 32 x 32 px, stored as the prepared format's image array.

Either standard release is read, the binary one first when both are present:
```
cifar-100-binary/  train.bin, test.bin: records of <coarse label byte><fine label byte><3072 pixel
                   bytes: 1024 red, 1024 green, 1024 blue, rows first>; fine_label_names.txt
cifar-100-python/  train, test: pickled dicts with b'data' [n, 3072] uint8 (same pixel order) and
                   b'fine_labels'; meta: b'fine_label_names'
```
`<root>` is either folder or the folder holding it. The pickles are read by
mld.data.restricted_pickle, which refuses any file naming a global beyond NumPy's array
reconstruction: a crafted file is refused before it can run anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mld.data.adapters.common import ArraySplit, ReadDataset, one_hot
from mld.data.restricted_pickle import load_data_pickle

NUM_CLASSES = 100
IMAGE_SIZE = 32
PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE
SPLIT_FILES = {"train": "train", "val": "test"}  # prepared split -> the release's file stem
RELEASE_FOLDERS = ("cifar-100-binary", "cifar-100-python")


def _release(root: Path) -> tuple[Path, str]:
    """(folder, "binary" | "python") of the release at or under `root`."""
    for folder in (root, *(root / name for name in RELEASE_FOLDERS)):
        if (folder / "train.bin").is_file():
            return folder, "binary"
        if (folder / "train").is_file() and (folder / "meta").is_file():
            return folder, "python"
    raise FileNotFoundError(f"no CIFAR-100 release at {root}: expected train.bin / test.bin / "
                            "fine_label_names.txt (binary version) or train / test / meta (python version), "
                            f"in {root} or its {' or '.join(RELEASE_FOLDERS)} folder")


def _images(pixels: np.ndarray) -> np.ndarray:
    """[n, 3072] channel-planar rows -> [n, 32, 32, 3] uint8."""
    return np.ascontiguousarray(pixels.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1))


def _checked_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{where}: fine labels must lie in [0, {NUM_CLASSES}), found {labels.min()}..{labels.max()}")
    return labels


def read_binary_split(records_file: Path) -> ArraySplit:
    try:
        raw = np.fromfile(records_file, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR-100 file {records_file} does not exist") from None
    record = 2 + PIXELS
    if raw.size % record:
        raise ValueError(f"{records_file}: {raw.size} bytes are not whole records of {record} bytes "
                         "(coarse label, fine label, 3072 pixels); is this CIFAR-100's binary version?")
    records = raw.reshape(-1, record)
    fine = _checked_labels(records[:, 1].astype(np.int64), str(records_file))
    return ArraySplit(_images(records[:, 2:]), one_hot(fine, NUM_CLASSES))


def _key(content: Any, key: bytes, where: Path) -> Any:
    if not isinstance(content, dict):
        raise ValueError(f"{where}: expected a pickled dict, found {type(content).__name__}")
    for candidate in (key, key.decode()):  # the release's Python 2 keys are bytes; a re-pickled copy's may be str
        if candidate in content:
            return content[candidate]
    raise ValueError(f"{where}: key {key!r} is missing; is this CIFAR-100's python version?")


def read_python_split(pickle_file: Path) -> ArraySplit:
    content = load_data_pickle(pickle_file)
    pixels = np.asarray(_key(content, b"data", pickle_file))
    fine = np.asarray(_key(content, b"fine_labels", pickle_file), dtype=np.int64)
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != PIXELS or len(pixels) != len(fine):
        raise ValueError(f"{pickle_file}: b'data' must be [n, {PIXELS}] uint8 with one b'fine_labels' entry per "
                         f"row, found {list(pixels.shape)} {pixels.dtype} and {len(fine)} labels")
    return ArraySplit(_images(pixels), one_hot(_checked_labels(fine, str(pickle_file)), NUM_CLASSES))


def _names(values: Any, where: Path) -> list[str]:
    names = [value.decode() if isinstance(value, bytes) else str(value) for value in values]
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{where}: lists {len(names)} fine class names, CIFAR-100 has {NUM_CLASSES}")
    return names


def read_cifar100(root: str | Path) -> ReadDataset:
    folder, version = _release(Path(root))
    if version == "binary":
        names_file = folder / "fine_label_names.txt"
        try:
            lines = names_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"CIFAR-100 class names {names_file} do not exist") from None
        class_names = _names([line.strip() for line in lines if line.strip()], names_file)
        splits = {split: read_binary_split(folder / f"{stem}.bin") for split, stem in SPLIT_FILES.items()}
    else:
        class_names = _names(_key(load_data_pickle(folder / "meta"), b"fine_label_names", folder / "meta"),
                             folder / "meta")
        splits = {split: read_python_split(folder / stem) for split, stem in SPLIT_FILES.items()}
    return ReadDataset(name="cifar100", source=f"CIFAR-100 ({version} version) at {folder}",
                       class_names=class_names, splits=splits, task="single_label")
