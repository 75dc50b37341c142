"""What `mld prepare`'s train/evaluation overlap check costs (mld.data.overlap.shared_files).

Writes --train and --val files of random bytes, sizes uniform in [--min-kb, --max-kb] KiB (so some
sizes occur in both splits, as in a real dataset), with --copies evaluation files that are byte
copies of training files. Prints the time of the check, how many files it hashed, and, for
comparison, the time to hash every file. The files are fresh, so they sit in the page cache: the
figures are the CPU's cost, without disk reads.

    .venv/bin/python benchmarks/overlap_speed.py [--train 3000 --val 1500 --min-kb 20 --max-kb 60]
"""
from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mld.atomic import file_sha256
from mld.data.overlap import shared_files


def write_files(directory: Path, count: int, sizes: np.ndarray, rng: np.random.Generator) -> list[Path]:
    directory.mkdir()
    paths = [directory / f"{index:06d}.jpg" for index in range(count)]
    for path, size in zip(paths, sizes):
        path.write_bytes(rng.bytes(int(size)))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=1500)
    parser.add_argument("--min-kb", type=int, default=20)
    parser.add_argument("--max-kb", type=int, default=60)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        sizes = rng.integers(args.min_kb << 10, (args.max_kb << 10) + 1, args.train + args.val)
        train = write_files(Path(scratch) / "train", args.train, sizes[:args.train], rng)
        evaluation = write_files(Path(scratch) / "val", args.val, sizes[args.train:], rng)
        for index in range(args.copies):
            evaluation[index].write_bytes(train[index].read_bytes())
        size_of = {path: os.stat(path).st_size for path in train + evaluation}
        train_sizes = collections.Counter(size_of[path] for path in train)
        eval_sizes = {size_of[path] for path in evaluation}
        hashed = sum(1 for path in train if size_of[path] in eval_sizes) + \
            sum(1 for path in evaluation if size_of[path] in train_sizes)
        start = time.perf_counter()
        shared = shared_files(train, evaluation)
        check_s = time.perf_counter() - start
        start = time.perf_counter()
        for path in train + evaluation:
            file_sha256(path)
        hash_all_s = time.perf_counter() - start
    total = args.train + args.val
    megabytes = sum(size_of.values()) / 2**20
    print(f"{args.train} train + {args.val} val files, {megabytes:.0f} MiB; {len(shared)} shared found "
          f"({args.copies} planted)")
    print(f"overlap check: {check_s:.3f} s ({1e6 * check_s / total:.0f} us per file), "
          f"{hashed} files hashed ({100 * hashed / total:.1f}%)")
    print(f"hashing every file instead: {hash_all_s:.3f} s ({hash_all_s / check_s:.1f}x the check)")


if __name__ == "__main__":
    main()
