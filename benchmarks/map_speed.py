"""Benchmark: mld.metrics mAP at Open Images scale against torch.sort and sklearn.

Random scores on a grid of --levels values (so many ties), about --positive-rate positives and
--unknown-rate unknown (-1, ignored) labels, 125,436 images x 9,600 classes by default (4.8 GB
of float32 scores; Open Images v6's test split, the larger of its two: the suite evaluates on the
41,620-image validation split, docs/data.md). Prints:
  * mld.metrics.average_precision_per_class: wall time and the peak of the memory NumPy
    allocates while it runs (tracemalloc sees NumPy's allocations);
  * one torch.sort of the same matrix, along the images axis (dim=0 of [images, classes]) in
    chunks of --chunk classes so that its indices fit in memory, and the same sort on
    contiguous class rows ([classes, images], dim=1, the copy not timed): the floor any exact
    mAP pays, and the ratio of our time to the faster of the two;
  * sklearn's average_precision_score on --sklearn-classes sampled classes, its time
    extrapolated to every class, and the largest |difference| from ours on those classes.

    python benchmarks/map_speed.py [--images 125436 --classes 9600 --levels 1000]
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from mld.metrics import UNKNOWN, average_precision_per_class


def make_problem(images: int, classes: int, levels: int, positive_rate: float,
                 unknown_rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores in {0, 1/levels, ...} and labels in {1, 0, -1}, built in row blocks."""
    rng = np.random.default_rng(seed)
    scores = np.empty((images, classes), dtype=np.float32)
    targets = np.empty((images, classes), dtype=np.int8)
    step = max(1, (1 << 24) // classes)
    for start in range(0, images, step):
        rows = slice(start, min(start + step, images))
        count = rows.stop - start
        scores[rows] = np.floor(rng.random((count, classes), dtype=np.float32) * levels) / levels
        draw = rng.random((count, classes), dtype=np.float32)
        targets[rows] = np.where(draw < positive_rate, 1,
                                 np.where(draw < positive_rate + unknown_rate, UNKNOWN, 0))
    return scores, targets


def time_ours(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray, int]:
    tracemalloc.start()
    start = time.perf_counter()
    per_class = average_precision_per_class(scores, targets).per_class
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, per_class, peak


def time_torch_sort(scores: np.ndarray, chunk: int) -> tuple[float, float]:
    """Seconds of torch.sort over the images axis: natural layout, then contiguous rows."""
    matrix = torch.from_numpy(scores)
    natural = contiguous = 0.0
    for start in range(0, matrix.shape[1], chunk):
        columns = matrix[:, start:start + chunk]
        begin = time.perf_counter()
        torch.sort(columns, dim=0)
        natural += time.perf_counter() - begin
        rows = columns.t().contiguous()
        begin = time.perf_counter()
        torch.sort(rows, dim=1)
        contiguous += time.perf_counter() - begin
    return natural, contiguous


def time_sklearn(scores: np.ndarray, targets: np.ndarray,
                 classes: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    values = []
    for column in classes:
        known = targets[:, column] != UNKNOWN
        truth = targets[known, column]
        values.append(100 * average_precision_score(truth, scores[known, column])
                      if truth.any() else np.nan)
    return time.perf_counter() - start, np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=125_436)
    parser.add_argument("--classes", type=int, default=9_600)
    parser.add_argument("--levels", type=int, default=1000, help="distinct score values")
    parser.add_argument("--positive-rate", type=float, default=0.01)
    parser.add_argument("--unknown-rate", type=float, default=0.05)
    parser.add_argument("--chunk", type=int, default=128, help="classes per torch.sort call")
    parser.add_argument("--sklearn-classes", type=int, default=24)
    args = parser.parse_args()

    start = time.perf_counter()
    scores, targets = make_problem(args.images, args.classes, args.levels, args.positive_rate,
                                   args.unknown_rate)
    print(f"data: {args.images:,} images x {args.classes:,} classes, {args.levels} score levels, "
          f"{scores.nbytes / 2**30:.2f} GiB of scores, made in {time.perf_counter() - start:.1f} s")
    print(f"torch threads: {torch.get_num_threads()}")

    ours, per_class, peak = time_ours(scores, targets)
    print(f"mld.metrics mAP:        {ours:8.1f} s  (mAP {np.nanmean(per_class):.4f}, "
          f"{int(np.isnan(per_class).sum())} classes without positives left out; "
          f"peak extra NumPy memory {peak / 2**20:.0f} MiB)")
    natural, contiguous = time_torch_sort(scores, args.chunk)
    floor = min(natural, contiguous)
    print(f"torch.sort dim=0:       {natural:8.1f} s  ([images, classes], {args.chunk}-class chunks)")
    print(f"torch.sort rows:        {contiguous:8.1f} s  ([classes, images] contiguous)")
    print(f"ratio ours / fastest torch.sort: {ours / floor:.2f}")

    sample = np.random.default_rng(1).choice(args.classes, size=min(args.sklearn_classes,
                                                                     args.classes), replace=False)
    sklearn_seconds, reference = time_sklearn(scores, targets, sample)
    extrapolated = sklearn_seconds * args.classes / len(sample)
    difference = np.nanmax(np.abs(per_class[sample] - reference))
    print(f"sklearn (extrapolated): {extrapolated:8.1f} s  ({len(sample)} classes in "
          f"{sklearn_seconds:.1f} s); ours is {extrapolated / ours:.1f}x faster")
    print(f"max |ours - sklearn| on those classes: {difference:.2e} (AP in percent)")
    print(f"process peak resident memory: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
