"""`mld prepare store`: decode a prepared dataset's images once, at a run's input resolution.

  mld prepare store --dataset results/data/coco --resolution 448 --out results/stores/coco/448px

A run reads the store when its config sets `dataset.store` (the workflow does so for end-to-end
runs on real datasets); its results are those of the raw files (see mld.data.store). With
`--compress` each image is stored as a JPEG (`--quality`): a fraction of the disk, nearly (not
exactly) the same pixels.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mld.data.store import DEFAULT_QUALITY, store_bytes, write_store


def add_store_parser(kinds: argparse._SubParsersAction) -> None:
    """Add `store` to the kinds of `mld prepare`."""
    store = kinds.add_parser("store", help="decode a prepared dataset's images once at a run's resolution",
                             description=__doc__.splitlines()[0])
    store.add_argument("--dataset", required=True, type=Path, help="the prepared dataset directory")
    store.add_argument("--resolution", required=True, type=int, help="the runs' train.resolution in px")
    store.add_argument("--out", required=True, type=Path, help="the store directory to write")
    store.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                       help="decoding processes (default: the CPUs available, %(default)s)")
    store.add_argument("--compress", action="store_true",
                       help="store JPEGs instead of exact pixels (lossy; a fraction of the disk)")
    store.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                       help="JPEG quality with --compress (default %(default)s)")
    store.set_defaults(func=_prepare_store)


def _prepare_store(args: argparse.Namespace) -> int:
    if args.resolution < 1:
        raise ValueError(f"--resolution {args.resolution}: give the runs' train.resolution in px (>= 1)")
    if not 1 <= args.quality <= 95:
        raise ValueError(f"--quality {args.quality}: give a JPEG quality from 1 to 95 (Pillow's useful range)")
    store = write_store(args.dataset, args.resolution, args.out, num_workers=args.workers,
                        quality=args.quality if args.compress else None)
    images = sum(store.splits.values())
    form = f"JPEG quality {store.quality}" if args.compress else "exact"
    size = store.disk_bytes() if args.compress else store_bytes(images, store.resolution)
    print(f"{store.path}: {images} images of {args.dataset} at {store.resolution} px ({form}), {size / 1e9:.2f} GB")
    return 0
