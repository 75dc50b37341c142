"""Loader throughput vs the training step it feeds, on this machine.

Measures images/s of
  * rendering the synthetic benchmark (coco-like),
  * the training loader over synthetic arrays (Cutout + RandAugment),
  * the training loader over a folder of JPEGs (decode + resize + augmentation),
  * one training step (forward + backward + AdamW) of a tiny timm model,
and prints one table. If a loader is slower than the step, training waits for data: use more
workers (JPEG folders) or lighter augmentation.

    .venv/bin/python benchmarks/loader_speed.py [--resolution 64] [--images 1024] [--workers 0 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mld.data import create_loader, prepare_synthetic
from mld.data.adapters.common import FileSplit, ReadDataset, write_read_dataset

JPEG_SIDE = 256  # stored JPEGs are larger than the input, as real photos are


def _rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def loader_rate(path: Path, resolution: int, batch_size: int, workers: int) -> float:
    loader = create_loader(path, "train", batch_size, resolution, train=True, num_workers=workers, seed=0)
    loader.set_epoch(0)
    iterator = iter(loader)
    next(iterator)  # leave worker start-up out of the measurement
    start, count = time.perf_counter(), 0
    for images, _ in iterator:
        count += len(images)
    return _rate(count, time.perf_counter() - start)


def jpeg_folder(directory: Path, count: int, side: int = JPEG_SIDE) -> Path:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = directory / "jpegs" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((side, side), Image.BILINEAR).save(path, quality=90)
        paths.append(path)
    labels = rng.integers(0, 2, (count, 10)).astype(np.int8)
    dataset = ReadDataset("jpegs", "benchmark JPEGs", [f"class {i}" for i in range(10)],
                          {"train": FileSplit(paths, labels), "val": FileSplit(paths[:1], labels[:1])})
    return write_read_dataset(dataset, directory / "jpeg-prepared").path


def training_step_rate(resolution: int, batch_size: int, model_name: str, steps: int = 5) -> float:
    import timm

    model = timm.create_model(model_name, num_classes=80)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, targets = torch.rand(batch_size, 3, resolution, resolution), torch.rand(batch_size, 80).round()

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return _rate(steps * batch_size, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--images", type=int, default=1024, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--model", default="test_resnet", help="timm model of the training step")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start = time.perf_counter()
        synthetic = prepare_synthetic("coco-like", scratch / "coco-like", image_size=args.resolution,
                                      num_train=args.images, num_val=16).path
        rows.append(("render coco-like (arrays)", 0, _rate(args.images + 16, time.perf_counter() - start)))
        jpegs = jpeg_folder(scratch, args.images)
        for workers in args.workers:
            rows.append(("loader: synthetic arrays, train aug", workers,
                         loader_rate(synthetic, args.resolution, args.batch_size, workers)))
            rows.append((f"loader: {JPEG_SIDE}px JPEG folder, train aug", workers,
                         loader_rate(jpegs, args.resolution, args.batch_size, workers)))
    rows.append((f"train step: {args.model}, batch {args.batch_size}", 0,
                 training_step_rate(args.resolution, args.batch_size, args.model)))
    print(f"resolution {args.resolution} px, torch threads {torch.get_num_threads()}")
    print(f"{'what':45s} {'workers':>7s} {'images/s':>10s}")
    for what, workers, rate in rows:
        print(f"{what:45s} {workers:7d} {rate:10.0f}")


if __name__ == "__main__":
    main()
