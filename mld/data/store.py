"""The image store: a prepared dataset's images decoded once, at a run's input resolution.

```
<store dir>/
  store.json     format, dataset (its path), dataset_sha256, resolution, splits {split: images}
  <split>.npy    [n, R, R, 3] uint8, memory-mapped (random access, one file per split)
```

The paper's transforms resize to the square input resolution first and augment after (see
mld.data.transforms), so images stored right after that resize give every run exactly the
pixels, hence the results, it gets from the raw files, without decoding a JPEG per image and
epoch. Labels, classes and word vectors stay in the dataset. `dataset_sha256` fingerprints the
dataset's meta.json and image lists, so a store is refused for another or a re-prepared dataset.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mld import atomic
from mld.data.prepared import IMAGE_ARRAY_FILE, IMAGE_LIST_FILE, META_FILE, PreparedMeta, open_prepared

FORMAT = "mld-store/1"
STORE_FILE = "store.json"


class StoreError(ValueError):
    """An image store that is missing, incomplete or made from something else; the message says which."""


def dataset_sha256(meta: PreparedMeta) -> str:
    """A fingerprint of what a store is made from: the dataset's meta.json and each split's images."""
    digest = hashlib.sha256()
    files = [meta.path / META_FILE] + [
        meta.split_dir(split) / (IMAGE_LIST_FILE if meta.image_storage == "files" else IMAGE_ARRAY_FILE)
        for split in sorted(meta.splits)]
    for path in files:
        digest.update(atomic.file_sha256(path).encode())
    return digest.hexdigest()


def store_bytes(images: int, resolution: int) -> int:
    """The disk size of a store of `images` images at `resolution` px (what `mld plan` adds up)."""
    return images * resolution * resolution * 3


@dataclass(frozen=True)
class ImageStore:
    """An opened store (store.json read); `images(split)` memory-maps a split's array."""

    path: Path
    dataset: str
    dataset_sha256: str
    resolution: int
    splits: dict[str, int]

    def images(self, split: str) -> np.ndarray:
        """Images [n, R, R, 3] uint8 of `split`, memory-mapped."""
        if split not in self.splits:
            raise StoreError(f"{self.path / STORE_FILE}: no split {split!r}; it has {sorted(self.splits)}")
        array_file = self.path / f"{split}.npy"
        try:
            images = np.load(array_file, mmap_mode="r")
        except (FileNotFoundError, ValueError) as error:
            raise StoreError(f"{array_file}: missing or unreadable ({error}); write the store again "
                             "with `mld prepare store`") from None
        expected = (self.splits[split], self.resolution, self.resolution, 3)
        if images.shape != expected or images.dtype != np.uint8:
            raise StoreError(f"{array_file}: expected {list(expected)} uint8 as store.json says, found "
                             f"{list(images.shape)} {images.dtype}; write the store again with `mld prepare store`")
        return images

    def check_matches(self, meta: PreparedMeta, resolution: int, source: str) -> None:
        """Refuse a store of another dataset, another version of it or another resolution."""
        fix = (f"write it again with `mld prepare store --dataset {meta.path} --resolution {resolution} "
               f"--out {self.path}`, or set dataset.store: null")
        if self.resolution != resolution:
            raise StoreError(f"{source}: dataset.store {self.path} holds {self.resolution} px images, but "
                             f"train.resolution = {resolution}; {fix}")
        if self.dataset_sha256 != dataset_sha256(meta) or any(
                self.splits.get(split) != count for split, count in meta.splits.items()):
            raise StoreError(f"{source}: dataset.store {self.path} was written from another dataset than "
                             f"{meta.path} (or before it was prepared again); {fix}")


def open_store(path: str | Path) -> ImageStore:
    """Read a store's store.json (written last, so its presence marks a complete store)."""
    path = Path(path)
    store_file = path / STORE_FILE
    try:
        raw = json.loads(store_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{store_file}: missing; {path} is not a complete image store (write one "
                         "with `mld prepare store`)") from None
    except json.JSONDecodeError as error:
        raise StoreError(f"{store_file}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise StoreError(f"{store_file}: not an {FORMAT} store; write it again with `mld prepare store`")
    try:
        return ImageStore(path=path, dataset=str(raw["dataset"]), dataset_sha256=str(raw["dataset_sha256"]),
                          resolution=int(raw["resolution"]),
                          splits={str(k): int(v) for k, v in raw["splits"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StoreError(f"{store_file}: incomplete or malformed ({type(error).__name__}: {error}); "
                         "write it again with `mld prepare store`") from None


def write_store(dataset: str | Path, resolution: int, out: str | Path, num_workers: int = 0,
                batch_size: int = 64) -> ImageStore:
    """Decode every image of `dataset` once, resize it as the runs do, and write the store to `out`.

    Each split's array is written under a temporary name and renamed when full; store.json last.
    `num_workers` loader processes decode in parallel (errors name the broken file).
    """
    # Here: loading imports this module, and reading a store (mld plan) needs no torch.
    import torch

    from mld.data.loading import ImageDataset, make_loader, workers_stopped
    from mld.data.sampling import EvalBatchSampler, SeededSamples

    meta = open_prepared(dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(out)
    (out / STORE_FILE).unlink(missing_ok=True)  # an old store stops being one while it is rewritten
    for split, count in meta.splits.items():
        images = SeededSamples(ImageDataset(meta, split, resolution))  # the evaluation transform: resize only
        loader = make_loader(images, EvalBatchSampler(count, batch_size), None, num_workers, torch.device("cpu"))
        with atomic.atomic_path(out / f"{split}.npy") as temporary, workers_stopped():
            array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8,
                                              shape=(count, resolution, resolution, 3))
            start = 0
            for batch, _ in loader:
                array[start:start + len(batch)] = batch.permute(0, 2, 3, 1).numpy()
                start += len(batch)
            array.flush()
            del array
    store = ImageStore(path=out, dataset=str(meta.path), dataset_sha256=dataset_sha256(meta),
                       resolution=resolution, splits=dict(meta.splits))
    atomic.write_json(out / STORE_FILE, {"format": FORMAT, "dataset": store.dataset,
                                         "dataset_sha256": store.dataset_sha256, "resolution": resolution,
                                         "splits": store.splits})
    return store
