"""Cached backbone features: write them once, train many heads on them.

Layout (docs/architecture.md, "Cached backbone features"):
  <dir>/meta.json            backbone, weights file hash, resolution, feature shapes, splits
  <dir>/<split>.npy          [n, C, H, W] float16 (single feature map)
  <dir>/<split>.stage<i>.npy one file per backbone stage (multiscale heads, e.g. HSVLT)
Each array is filled through a memory map in a temporary file and renamed when complete, and
meta.json is written last, so a directory with meta.json is always a complete cache.
"""
from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mld.atomic import atomic_path, file_sha256, write_json

FORMAT = "mld-features/1"


def split_files(directory: Path, split: str, num_stages: int | None) -> list[Path]:
    """The array files of one split: one file for a single map, one per stage for multiscale."""
    if num_stages is None:
        return [directory / f"{split}.npy"]
    return [directory / f"{split}.stage{stage}.npy" for stage in range(num_stages)]


def write_split(directory: Path, split: str, num_samples: int,
                feature_batches: Iterable[torch.Tensor | Sequence[torch.Tensor]]) -> list[list[int]]:
    """Store a split's features (in sample order) as float16; return the per-sample shapes.

    The first batch decides the layout (one map, or a list of stage maps).
    """
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        arrays: list[np.ndarray] = []
        position = 0
        for batch in feature_batches:
            maps = [batch] if isinstance(batch, torch.Tensor) else list(batch)
            if not arrays:
                num_stages = None if isinstance(batch, torch.Tensor) else len(maps)
                for path, first in zip(split_files(directory, split, num_stages), maps):
                    temporary = stack.enter_context(atomic_path(path))
                    arrays.append(np.lib.format.open_memmap(
                        temporary, mode="w+", dtype=np.float16, shape=(num_samples, *first.shape[1:])))
                    _reserve(temporary)
            size = len(maps[0])
            for array, feature_map in zip(arrays, maps):
                array[position:position + size] = feature_map.detach().float().cpu().numpy()
            position += size
        if position != num_samples:
            raise ValueError(f"feature extraction of split {split!r} produced {position} samples, "
                             f"expected {num_samples}")
        for array in arrays:
            array.flush()
        return [list(array.shape[1:]) for array in arrays]


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped file's blocks now: a full disk is then an OSError naming the file
    (raised through atomic_path), not a crash on a later write into the map."""
    with open(path, "rb+") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    write_json(directory / "meta.json", {"format": FORMAT, **meta})


@dataclass(frozen=True)
class FeatureCache:
    """An opened cache directory (its meta.json, checked)."""

    directory: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, directory: str | Path) -> "FeatureCache":
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{meta_path} does not exist: {directory} is not a complete feature cache; create it "
                "with `mld extract-features --run-config RUN.yaml --out DIR`")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}; "
                             "re-extract the features with this version of mld")
        return cls(directory, meta)

    @property
    def num_stages(self) -> int | None:
        return None if self.meta["feature_kind"] == "single" else len(self.meta["shapes"])

    @property
    def in_channels(self) -> int | list[int]:
        """What a head built on these features takes as `in_channels`."""
        channels = [shape[0] for shape in self.meta["shapes"]]
        return channels[0] if self.num_stages is None else channels

    def check_matches(self, backbone: str, weights_sha256: str | None, resolution: int,
                      splits: dict[str, int], source: str) -> None:
        """Refuse a cache made from another backbone, weights file, resolution or dataset."""
        found = {"backbone": self.meta["backbone"], "resolution": self.meta["resolution"],
                 "splits": self.meta["splits"]}
        wanted = {"backbone": backbone, "resolution": resolution, "splits": splits}
        if weights_sha256 is not None:
            found["weights_sha256"] = self.meta["weights_sha256"]
            wanted["weights_sha256"] = weights_sha256
        for key in wanted:
            if found[key] != wanted[key]:
                raise ValueError(
                    f"{self.directory / 'meta.json'}: {key} is {found[key]!r} but {source} needs "
                    f"{wanted[key]!r}; point `features` at a cache extracted for this run or re-extract it")

    def dataset(self, split: str, labels: np.ndarray) -> "CachedFeatures":
        arrays = [np.load(path, mmap_mode="r") for path in split_files(self.directory, split, self.num_stages)]
        if any(len(array) != len(labels) for array in arrays):
            raise ValueError(f"{self.directory}: split {split!r} holds {len(arrays[0])} feature rows but the "
                             f"dataset has {len(labels)} labels; re-extract the features")
        return CachedFeatures(arrays, labels, single=self.num_stages is None)


class CachedFeatures(torch.utils.data.Dataset):
    """Feature maps and labels of one split, read a batch at a time from memory-mapped arrays.

    Keys are (index, seed) pairs like every engine dataset; cached features carry no
    augmentation, so the seed is unused. `__getitems__` lets the DataLoader fetch a whole batch
    with one indexing operation per array.
    """

    def __init__(self, arrays: list[np.ndarray], labels: np.ndarray, single: bool) -> None:
        self.arrays = arrays
        self.labels = labels
        self.single = single

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, keys: list[tuple[int, int]]):
        indices = np.fromiter((index for index, _ in keys), dtype=np.int64, count=len(keys))
        maps = [torch.from_numpy(np.asarray(array[indices], dtype=np.float32)) for array in self.arrays]
        return (maps[0] if self.single else maps), torch.from_numpy(np.asarray(self.labels[indices]))

    def __getitem__(self, key: tuple[int, int]):
        features, labels = self.__getitems__([key])
        return (features[0] if self.single else [stage[0] for stage in features]), labels[0]


def keep_batch(batch: Any) -> Any:
    """collate_fn for datasets that already return whole batches (see CachedFeatures)."""
    return batch
