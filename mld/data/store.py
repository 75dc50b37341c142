"""The image store: a prepared dataset's images decoded once, at a run's input resolution.

```
<store dir>/
  store.json     format, dataset (its path), dataset_sha256, resolution, splits {split: images},
                 encoding (raw | jpeg; raw when absent), quality (jpeg only)
  <split>.npy    raw: [n, R, R, 3] uint8, memory-mapped (random access, one file per split)
  <split>.jpeg   jpeg: the split's images as JPEG files (4:4:4) back to back, memory-mapped, and
  <split>.offsets.npy   [n + 1] int64: image i is bytes offsets[i]:offsets[i + 1]
```

The paper's transforms resize to the square input resolution first and augment after (see
mld.data.transforms), so images stored right after that resize give every run exactly the
pixels, hence the results, it gets from the raw files, without decoding a JPEG per image and
epoch. The compressed form (`mld prepare store --compress`: each resized image as a JPEG, for
datasets whose raw store is too big, Open Images' 9 M images at 224 px: 1.4 TB) is lossy: runs
read nearly the same pixels (benchmarks/loader_speed.py measures the difference, the size and
the decoding cost), not the same ones. Labels, classes and word vectors stay in the dataset.
`dataset_sha256` fingerprints the dataset's meta.json and image lists, so a store is refused for
another or a re-prepared dataset.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from mld import atomic
from mld.data.prepared import IMAGE_ARRAY_FILE, IMAGE_LIST_FILE, META_FILE, PreparedMeta, open_prepared

FORMAT = "mld-store/1"
STORE_FILE = "store.json"
RAW, JPEG = "raw", "jpeg"  # the encodings: exact uint8 arrays, or JPEG at `quality`
DEFAULT_QUALITY = 90  # `mld prepare store --compress` (benchmarks/loader_speed.py compares 90 and 95)
# Colour at full resolution (4:4:4; Pillow's default halves it, 4:2:0): on the benchmark's grainy
# photos at 224 px the mean pixel error at quality 90 falls from about 8 to 3 levels for 1.5x the bytes.
JPEG_SUBSAMPLING = 0


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


class JpegImages:
    """A split of a compressed store: image i decoded from its JPEG bytes on access, [R, R, 3] uint8."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        encoded = self.data[self.offsets[index]:self.offsets[index + 1]].tobytes()
        with Image.open(io.BytesIO(encoded)) as image:
            return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class ImageStore:
    """An opened store (store.json read); `images(split)` memory-maps a split's images."""

    path: Path
    dataset: str
    dataset_sha256: str
    resolution: int
    splits: dict[str, int]
    encoding: str = RAW
    quality: int | None = None  # of the JPEG encoding

    def images(self, split: str) -> np.ndarray | JpegImages:
        """Images [n, R, R, 3] uint8 of `split`, memory-mapped (JPEG: decoded one by one when read)."""
        if split not in self.splits:
            raise StoreError(f"{self.path / STORE_FILE}: no split {split!r}; it has {sorted(self.splits)}")
        if self.encoding == JPEG:
            return self._jpeg_images(split)
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

    def _jpeg_images(self, split: str) -> JpegImages:
        data_file, offsets_file = self.path / f"{split}.jpeg", self.path / f"{split}.offsets.npy"
        try:
            offsets = np.load(offsets_file)
            data = np.memmap(data_file, dtype=np.uint8, mode="r") if data_file.stat().st_size else np.zeros(0, np.uint8)
        except (FileNotFoundError, ValueError) as error:
            raise StoreError(f"{self.path}: {split}'s JPEG file or offsets missing or unreadable ({error}); "
                             "write the store again with `mld prepare store --compress`") from None
        if offsets.shape != (self.splits[split] + 1,) or int(offsets[-1]) != len(data):
            raise StoreError(f"{offsets_file}: expected {self.splits[split] + 1} offsets ending at the size of "
                             f"{data_file} ({len(data)} bytes), as store.json says; write the store again with "
                             "`mld prepare store --compress`")
        return JpegImages(data, offsets)

    def disk_bytes(self) -> int:
        """What the store's files take on disk."""
        return sum(path.stat().st_size for path in self.path.iterdir() if path.is_file())

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
        store = ImageStore(path=path, dataset=str(raw["dataset"]), dataset_sha256=str(raw["dataset_sha256"]),
                           resolution=int(raw["resolution"]),
                           splits={str(k): int(v) for k, v in raw["splits"].items()},
                           encoding=str(raw.get("encoding", RAW)), quality=raw.get("quality"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StoreError(f"{store_file}: incomplete or malformed ({type(error).__name__}: {error}); "
                         "write it again with `mld prepare store`") from None
    if store.encoding not in (RAW, JPEG):
        raise StoreError(f"{store_file}: encoding {store.encoding!r} is neither {RAW} nor {JPEG}; write it again "
                         "with `mld prepare store`")
    return store


def write_store(dataset: str | Path, resolution: int, out: str | Path, num_workers: int = 0,
                batch_size: int = 64, quality: int | None = None) -> ImageStore:
    """Decode every image of `dataset` once, resize it as the runs do, and write the store to `out`
    (with `quality`: each resized image as a JPEG of that quality, the compressed form).

    Each split's files are written under temporary names and renamed when full; store.json last.
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
        pixels = (image for batch, _ in loader for image in batch.permute(0, 2, 3, 1).numpy())
        with workers_stopped():
            if quality is None:
                _write_array(out / f"{split}.npy", pixels, (count, resolution, resolution, 3))
            else:
                _write_jpegs(out, split, pixels, quality)
    store = ImageStore(path=out, dataset=str(meta.path), dataset_sha256=dataset_sha256(meta),
                       resolution=resolution, splits=dict(meta.splits), encoding=RAW if quality is None else JPEG,
                       quality=quality)
    encoding = {} if quality is None else {"encoding": JPEG, "quality": quality}
    atomic.write_json(out / STORE_FILE, {"format": FORMAT, "dataset": store.dataset,
                                         "dataset_sha256": store.dataset_sha256, "resolution": resolution,
                                         "splits": store.splits, **encoding})
    return store


def _write_array(path: Path, pixels: Iterator[np.ndarray], shape: tuple[int, ...]) -> None:
    with atomic.atomic_path(path) as temporary:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        for index, image in enumerate(pixels):
            array[index] = image
        array.flush()
        del array


def _write_jpegs(out: Path, split: str, pixels: Iterator[np.ndarray], quality: int) -> None:
    offsets = [0]
    with atomic.atomic_path(out / f"{split}.jpeg") as temporary, open(temporary, "wb") as handle:
        for image in pixels:
            encoded = io.BytesIO()
            Image.fromarray(image).save(encoded, format="JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING)
            handle.write(encoded.getbuffer())
            offsets.append(offsets[-1] + encoded.getbuffer().nbytes)
    atomic.write_bytes(out / f"{split}.offsets.npy", lambda handle: np.save(handle, np.array(offsets, np.int64)))
