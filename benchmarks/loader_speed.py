"""Training loader throughput: raw photo-sized JPEGs against the image store, beside the GPU's demand.

Side by side in one run, on photo-sized JPEG files written for the purpose, at the paper's two
input resolutions:
  * 640 x 480 JPEGs (MS-COCO-like) -> 448 px, and 1024 x 768 JPEGs (Open Images-like) -> 224 px;
  * "today": the training loader as runs used it before the store: decoding each file every
    epoch, and scaling to float32 in the loader (now done on the device after the copy);
  * "raw uint8": the same decoding, shipping bytes (what a run with `image_store: false` does);
  * "store": the loader over the image store (`mld prepare store`: each file decoded once, the
    write's own rate is printed too), the same pixels and augmentation (Cutout + RandAugment),
    shipping bytes;
  * per core (0 workers: everything in this process) and with loader worker processes;
and prints the training demand of Table 9 (TResNet-M + ML-Decoder on a V100, 224 px; scaled by
pixels to 448 px) beside them: a loader below it keeps such a GPU waiting. Then the compressed
store (`mld prepare store --compress`, JPEG at quality 90 and 95) beside the exact one: its disk
size, how fast its images are read back (decoding alone, and the training loader), and the mean
absolute difference of its pixels from the exact ones (in levels of 0-255).

    .venv/bin/python benchmarks/loader_speed.py [--images 96] [--workers 0 2] [--batch-size 16]

On a shared machine the figures move with the load: the loaders are measured in turn, the best of
--repeats counts, and the ratios of one run are what to compare.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mld import estimate
from mld.data import create_loader
from mld.data.adapters.common import FileSplit, ReadDataset, write_read_dataset
from mld.data.loading import PreparedLoader, make_loader, workers_stopped
from mld.data.store import open_store, write_store

# (what, JPEG width x height, input resolution): the two cases (COCO at 448 px, Open Images at 224 px).
CASES = (("640x480 JPEG -> 448 px", (640, 480), 448), ("1024x768 JPEG -> 224 px", (1024, 768), 224))
TABLE9_HEAD, TABLE9_CLASSES = "ml_decoder", 80
QUALITIES = (90, 95)  # the compressed store's JPEG qualities compared with the exact store


def _rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


class FloatItems(Dataset):
    """Items scaled to float32 where they are loaded, as the loader's workers did before the store
    (NumPy's float32 v / 255, the values model_input now computes on the device)."""

    def __init__(self, samples: Dataset) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, key):
        image, labels = self.samples[key]
        return torch.from_numpy(image.numpy().astype(np.float32) / np.float32(255.0)), labels


def loader_rate(path: Path, resolution: int, batch_size: int, workers: int, store: Path | None = None,
                floats: bool = False) -> float:
    """Images/s of the training loader (Cutout + RandAugment) after its first batch (worker start-up);
    `floats`: scaled to float32 in the loader (today's loader)."""
    loader = create_loader(path, "train", batch_size, resolution, train=True, num_workers=workers, seed=0,
                           store=store)
    if floats:
        loader = make_loader(FloatItems(loader.dataset), loader.batch_sampler, None, loader.num_workers,
                             torch.device("cpu"), loader_class=PreparedLoader)
    loader.set_epoch(0)
    with workers_stopped():
        iterator = iter(loader)
        next(iterator)
        start, count = time.perf_counter(), 0
        for images, _ in iterator:
            count += len(images)
        return _rate(count, time.perf_counter() - start)


def read_rate(store: Path) -> float:
    """Images/s of reading a store's training images back one by one (a JPEG store decodes them)."""
    images = open_store(store).images("train")
    start = time.perf_counter()
    for index in range(len(images)):
        np.array(images[index])  # a copy: the exact store's memory map is read, not only viewed
    return _rate(len(images), time.perf_counter() - start)


def mean_difference(store: Path, exact: Path) -> float:
    """Mean absolute pixel difference (levels of 0-255) of a store's training images from the exact store's."""
    images, reference = open_store(store).images("train"), open_store(exact).images("train")
    return float(np.mean([np.abs(images[i].astype(np.int16) - reference[i]).mean() for i in range(len(images))]))


def compare_compressed(dataset: Path, exact: Path, scratch: Path, resolution: int, args: argparse.Namespace) -> None:
    """The compressed stores beside the exact one: disk, read-back speed, loader speed, pixel difference."""
    exact_bytes = open_store(exact).disk_bytes()
    workers = " / ".join(map(str, args.workers))
    exact_loader = [loader_rate(dataset, resolution, args.batch_size, count, exact) for count in args.workers]
    print(f"{'':26s} exact store: {exact_bytes / 1e6:.1f} MB, read back at {read_rate(exact):.0f} images/s, "
          f"loader {' / '.join(f'{rate:.1f}' for rate in exact_loader)} images/s ({workers} workers)")
    for quality in QUALITIES:
        store = scratch / f"store-q{quality}"
        write_store(dataset, resolution, store, quality=quality)
        loader = [loader_rate(dataset, resolution, args.batch_size, count, store) for count in args.workers]
        size = open_store(store).disk_bytes()
        print(f"{'':26s} JPEG q{quality}: {size / 1e6:.1f} MB ({size / exact_bytes:.3f}x), read back at "
              f"{read_rate(store):.0f} images/s, loader {' / '.join(f'{rate:.1f}' for rate in loader)} images/s, "
              f"mean |pixel - exact| {mean_difference(store, exact):.2f} of 255")


def photo_folder(directory: Path, count: int, size: tuple[int, int], num_classes: int = 10) -> Path:
    """A prepared dataset of `count` JPEGs of `size` with photo-like detail (smooth shapes plus grain)."""
    rng = np.random.default_rng(0)
    width, height = size
    paths = []
    for index in range(count):
        path = directory / "jpegs" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
        pixels = pixels + rng.integers(-24, 25, (height, width, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    labels = (rng.random((count, num_classes)) < 0.05).astype(np.int8)
    dataset = ReadDataset("photos", "benchmark JPEGs", [f"class {i}" for i in range(num_classes)],
                          {"train": FileSplit(paths, labels), "val": FileSplit(paths[:1], labels[:1])})
    # The one validation image is a training image (it is never scored here): the overlap is allowed.
    return write_read_dataset(dataset, directory / "prepared", allow_overlap=True).path


def gpu_demand(resolution: int) -> float:
    """Table 9's training images/s of TResNet-M + ML-Decoder (V100), scaled by pixels to `resolution`."""
    speed = estimate.paper_speed(TABLE9_HEAD, TABLE9_CLASSES)
    return speed.train * (speed.resolution / resolution) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="JPEG files per case")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=2,
                        help="measure the three loaders in turn this often; the best of each counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{len(os.sched_getaffinity(0))} CPUs visible, torch threads 1, {args.images} images per case, "
          f"batch {args.batch_size}")
    print(f"{'case':26s} {'workers':>7s} {'today':>8s} {'raw uint8':>10s} {'store':>8s} {'store/today':>11s} "
          f"{'GPU needs':>10s}  (images/s)")
    for what, size, resolution in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            dataset = photo_folder(Path(scratch), args.images, size)
            kilobytes = np.mean([p.stat().st_size for p in (Path(scratch) / "jpegs").iterdir()]) / 1e3
            started = time.perf_counter()
            write_store(dataset, resolution, Path(scratch) / "store")
            written = _rate(args.images + 1, time.perf_counter() - started)
            store = Path(scratch) / "store"
            for workers in args.workers:
                today, raw, stored = 0.0, 0.0, 0.0
                for _ in range(args.repeats):  # in turn, so that a change of the machine's load hits all three
                    today = max(today, loader_rate(dataset, resolution, args.batch_size, workers, floats=True))
                    raw = max(raw, loader_rate(dataset, resolution, args.batch_size, workers))
                    stored = max(stored, loader_rate(dataset, resolution, args.batch_size, workers, store))
                print(f"{what:26s} {workers:7d} {today:8.1f} {raw:10.1f} {stored:8.1f} {stored / today:10.2f}x "
                      f"{gpu_demand(resolution):10.0f}")
            print(f"{'':26s} (JPEGs of {kilobytes:.0f} KB; the store was written once at {written:.1f} images/s, "
                  "0 workers)")
            compare_compressed(dataset, store, Path(scratch), resolution, args)


if __name__ == "__main__":
    main()
