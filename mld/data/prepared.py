"""The prepared dataset format: the one layout every experiment reads, whatever made the images.

```
<dataset dir>/
  meta.json          format, name, source, num_classes, class_names, task, splits,
                     seen_classes / unseen_classes (class indices; zero-shot sets only),
                     image_storage ("array" | "files"), image_size (array storage)
  word_vectors.npy   [N, d] float32 (required for zero-shot sets, optional otherwise)
  <split>/labels.npy [n, N] int8: 1 positive, 0 negative, -1 unknown
  <split>/images.npy [n, H, W, 3] uint8 (array storage, memory-mapped)
  <split>/images.txt one path per line, relative to the dataset dir or absolute (file storage)
```

`open_prepared` reads meta.json cheaply (it is what a run needs to build its model);
`validate_prepared` checks every file against it, so that an inconsistent dataset is refused
with the name of the file at fault before hours of training start.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mld-prepared/1"
TASKS = ("multilabel", "single_label")
IMAGE_STORAGES = ("array", "files")
META_FILE = "meta.json"
WORD_VECTORS_FILE = "word_vectors.npy"
LABELS_FILE = "labels.npy"
IMAGE_ARRAY_FILE = "images.npy"
IMAGE_LIST_FILE = "images.txt"


def images_with_positive(labels: np.ndarray) -> np.ndarray:
    """Which images [n] bool have a positive (1) among `labels` [n, classes].

    The zero-shot protocol's image set for a class set (the official code's
    `get_relevant_samples`): training keeps the images with a seen-class positive, ZSL scores
    those with an unseen-class positive, GZSL those with any. An image without one adds only
    negatives to AP and K wrong guesses to F1@K.
    """
    return (np.asarray(labels) == 1).any(axis=1)


class DataWorkerSafe(Exception):
    """An error whose one-line message survives being raised in a DataLoader worker.

    torch raises a worker's error again in the main process as `type(error)(text)`, where the
    text is "Caught ... in DataLoader worker process N. Original Traceback ..." ending with the
    original message; constructed from such a text, these errors keep only that message (which
    names the file and says what to do), so the user sees it without a worker's traceback.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].rstrip("\n")
        super().__init__(message)


class PreparedDatasetError(DataWorkerSafe, ValueError):
    """A prepared dataset that does not follow the format; the message names the file."""


@dataclass(frozen=True)
class PreparedMeta:
    """The contents of a prepared dataset's meta.json, with accessors for its files."""

    path: Path
    name: str
    source: str
    num_classes: int
    class_names: tuple[str, ...]
    task: str
    splits: dict[str, int]
    image_storage: str
    image_size: int | None = None
    seen_classes: tuple[int, ...] | None = None
    unseen_classes: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def zero_shot(self) -> bool:
        return self.unseen_classes is not None

    def split_dir(self, split: str) -> Path:
        if split not in self.splits:
            raise PreparedDatasetError(f"{self.path / META_FILE}: no split {split!r}; "
                                       f"it has {sorted(self.splits)}")
        return self.path / split

    def labels(self, split: str) -> np.ndarray:
        """Labels [n, N] int8, memory-mapped."""
        return _load_array(self.split_dir(split) / LABELS_FILE)

    def images(self, split: str) -> np.ndarray:
        """Images [n, H, W, 3] uint8, memory-mapped (array storage)."""
        if self.image_storage != "array":
            raise PreparedDatasetError(f"{self.path / META_FILE}: images are stored as files; "
                                       "use image_paths()")
        return _load_array(self.split_dir(split) / IMAGE_ARRAY_FILE)

    def image_paths(self, split: str) -> list[Path]:
        """Absolute image paths of a split (file storage)."""
        if self.image_storage != "files":
            raise PreparedDatasetError(f"{self.path / META_FILE}: images are stored in an array; "
                                       "use images()")
        list_file = self.split_dir(split) / IMAGE_LIST_FILE
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise PreparedDatasetError(f"{list_file}: missing; the dataset is incomplete, prepare it again") from None
        return [self.path / line for line in lines]  # an absolute line stays absolute

    def word_vectors(self) -> np.ndarray:
        """Class word vectors [N, d] float32."""
        vectors_file = self.path / WORD_VECTORS_FILE
        if not vectors_file.exists():
            raise PreparedDatasetError(
                f"{vectors_file}: missing; this run needs class word vectors. Prepare the dataset "
                "again with --word-vectors FILE (GloVe text, .npy or .npz) or --sentence-model NAME")
        return np.array(_check_word_vectors(vectors_file, self.num_classes))  # in memory, writable

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "format": FORMAT, "name": self.name, "source": self.source,
            "num_classes": self.num_classes, "class_names": list(self.class_names), "task": self.task,
            "splits": dict(self.splits), "image_storage": self.image_storage,
        }
        if self.image_size is not None:
            meta["image_size"] = self.image_size
        if self.zero_shot:
            meta["seen_classes"] = list(self.seen_classes or ())
            meta["unseen_classes"] = list(self.unseen_classes or ())
        return {**meta, **self.extra}


def open_prepared(path: str | Path) -> PreparedMeta:
    """Read and check a prepared dataset's meta.json (not its other files: see validate_prepared)."""
    path = Path(path)
    meta_file = path / META_FILE
    try:
        raw = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreparedDatasetError(f"{meta_file}: missing; {path} is not a prepared dataset "
                                   "(make one with `mld prepare ...`)") from None
    except json.JSONDecodeError as error:
        raise PreparedDatasetError(f"{meta_file}: not valid JSON ({error})") from None
    return _parse_meta(path, raw)


def validate_prepared(path: str | Path, check_image_files: bool = True) -> PreparedMeta:
    """Check every file of a prepared dataset against its meta.json; return the metadata.

    Raises PreparedDatasetError naming the first inconsistent file. `check_image_files=False`
    skips the existence check of listed image files (slow for millions of files).
    """
    meta = open_prepared(path)
    vectors_file = meta.path / WORD_VECTORS_FILE
    if vectors_file.exists():
        _check_word_vectors(vectors_file, meta.num_classes)
    elif meta.zero_shot:
        raise PreparedDatasetError(f"{vectors_file}: missing; a zero-shot dataset needs class word vectors")
    for split, count in meta.splits.items():
        _check_labels(meta.split_dir(split) / LABELS_FILE, count, meta)
        if meta.image_storage == "array":
            _check_image_array(meta.split_dir(split) / IMAGE_ARRAY_FILE, count, meta.image_size)
        else:
            _check_image_list(meta, split, count, check_image_files)
    return meta


def _load_array(array_file: Path) -> np.ndarray:
    try:
        return np.load(array_file, mmap_mode="r")
    except FileNotFoundError:
        raise PreparedDatasetError(f"{array_file}: missing; the dataset is incomplete, prepare it again") from None
    except ValueError as error:
        raise PreparedDatasetError(f"{array_file}: not a readable .npy array ({error})") from None


def _require(meta_file: Path, raw: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in raw:
        raise PreparedDatasetError(f"{meta_file}: key {key!r} is missing")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PreparedDatasetError(f"{meta_file}: key {key!r} = {value!r} has the wrong type")
    return value


def _parse_meta(path: Path, raw: Any) -> PreparedMeta:
    meta_file = path / META_FILE
    if not isinstance(raw, dict):
        raise PreparedDatasetError(f"{meta_file}: expected a JSON object")
    if raw.get("format") != FORMAT:
        raise PreparedDatasetError(f"{meta_file}: format is {raw.get('format')!r}, expected {FORMAT!r}; "
                                   "prepare the dataset again with this version of mld")
    num_classes = _require(meta_file, raw, "num_classes", int)
    class_names = _require(meta_file, raw, "class_names", list)
    if len(class_names) != num_classes or len(set(class_names)) != num_classes:
        raise PreparedDatasetError(f"{meta_file}: class_names must hold num_classes = {num_classes} "
                                   f"distinct names; it holds {len(class_names)} "
                                   f"({len(set(class_names))} distinct)")
    task = _require(meta_file, raw, "task", str)
    if task not in TASKS:
        raise PreparedDatasetError(f"{meta_file}: task {task!r} is not one of {TASKS}")
    splits = _require(meta_file, raw, "splits", dict)
    if not splits or not all(isinstance(n, int) and n >= 0 for n in splits.values()):
        raise PreparedDatasetError(f"{meta_file}: splits must map split names to image counts, got {splits!r}")
    storage = _require(meta_file, raw, "image_storage", str)
    if storage not in IMAGE_STORAGES:
        raise PreparedDatasetError(f"{meta_file}: image_storage {storage!r} is not one of {IMAGE_STORAGES}")
    image_size = _require(meta_file, raw, "image_size", int) if storage == "array" else raw.get("image_size")
    seen, unseen = _class_subsets(meta_file, raw, num_classes)
    known = {"format", "name", "source", "num_classes", "class_names", "task", "splits", "image_storage",
             "image_size", "seen_classes", "unseen_classes"}
    return PreparedMeta(
        path=path, name=_require(meta_file, raw, "name", str), source=_require(meta_file, raw, "source", str),
        num_classes=num_classes, class_names=tuple(class_names), task=task, splits=dict(splits),
        image_storage=storage, image_size=image_size, seen_classes=seen, unseen_classes=unseen,
        extra={key: value for key, value in raw.items() if key not in known},
    )


def _class_subsets(meta_file: Path, raw: dict[str, Any],
                   num_classes: int) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    if ("seen_classes" in raw) != ("unseen_classes" in raw):
        raise PreparedDatasetError(f"{meta_file}: a zero-shot dataset needs both seen_classes and unseen_classes")
    if "seen_classes" not in raw:
        return None, None
    subsets = []
    for key in ("seen_classes", "unseen_classes"):
        indices = _require(meta_file, raw, key, list)
        if not indices or not all(isinstance(i, int) and 0 <= i < num_classes for i in indices):
            raise PreparedDatasetError(f"{meta_file}: {key} must be a non-empty list of class indices "
                                       f"in [0, {num_classes})")
        subsets.append(tuple(indices))
    if set(subsets[0]) & set(subsets[1]):
        raise PreparedDatasetError(f"{meta_file}: seen_classes and unseen_classes overlap")
    return subsets[0], subsets[1]


def _check_word_vectors(vectors_file: Path, num_classes: int) -> np.ndarray:
    """The word vectors [N, d] float32 of `vectors_file`, refused naming the file if they are not."""
    vectors = _load_array(vectors_file)
    if vectors.ndim != 2 or vectors.shape[0] != num_classes or vectors.dtype != np.float32:
        raise PreparedDatasetError(f"{vectors_file}: expected [{num_classes}, d] float32 (one row per class), "
                                   f"found {list(vectors.shape)} {vectors.dtype}; prepare the dataset again "
                                   "with --word-vectors FILE holding one vector per class")
    if not np.isfinite(vectors).all():
        raise PreparedDatasetError(f"{vectors_file}: holds non-finite values")
    return vectors


def _check_labels(labels_file: Path, count: int, meta: PreparedMeta) -> None:
    labels = _load_array(labels_file)
    if labels.shape != (count, meta.num_classes) or labels.dtype != np.int8:
        raise PreparedDatasetError(f"{labels_file}: expected [{count}, {meta.num_classes}] int8 as meta.json "
                                   f"says, found {list(labels.shape)} {labels.dtype}")
    # Chunked, so that a memory-mapped Open Images label matrix is never read whole.
    for start in range(0, count, 65536):
        chunk = np.asarray(labels[start:start + 65536])
        if chunk.size and (chunk.min() < -1 or chunk.max() > 1):
            raise PreparedDatasetError(f"{labels_file}: values must be 1, 0 or -1")
        if meta.task == "single_label" and not ((chunk == 1).sum(axis=1) == 1).all():
            raise PreparedDatasetError(f"{labels_file}: a single-label dataset needs exactly one positive per image")


def _check_image_array(images_file: Path, count: int, image_size: int | None) -> None:
    images = _load_array(images_file)
    expected = (count, image_size, image_size, 3)
    if images.shape != expected or images.dtype != np.uint8:
        raise PreparedDatasetError(f"{images_file}: expected {list(expected)} uint8 as meta.json says, "
                                   f"found {list(images.shape)} {images.dtype}")


def _check_image_list(meta: PreparedMeta, split: str, count: int, check_files: bool) -> None:
    list_file = meta.split_dir(split) / IMAGE_LIST_FILE
    paths = meta.image_paths(split)
    if len(paths) != count:
        raise PreparedDatasetError(f"{list_file}: lists {len(paths)} images but meta.json says {count}")
    if check_files:
        for image_path in paths:
            if not image_path.is_file():
                raise PreparedDatasetError(f"{list_file}: lists {image_path}, which does not exist")
