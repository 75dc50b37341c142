"""Evaluation metrics of the papers, exact and fast enough for Open Images scale.

All results are in percent. Targets use the prepared format's codes: 1 positive, 0 negative and
-1 unknown; an unknown entry is ignored, as if that image had not been labelled for that class.

Average precision is the non-interpolated AP of sklearn's `average_precision_score`, ties
included: all images tied at one score form one threshold. For a positive with score s this is
precision(>= s) = positives(>= s) / labelled(>= s), and AP is its mean over the positives. Both
counts come from binary searches in the sorted scores, so the whole cost is one NumPy sort per
class (faster than `torch.sort` on CPU), run on class chunks in threads (NumPy releases the GIL
while sorting), which bounds memory.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mld.data.prepared import images_with_positive

ArrayLike = np.ndarray | torch.Tensor

POSITIVE, NEGATIVE, UNKNOWN = 1, 0, -1
DEFAULT_TOP_K = (3, 5)
MAX_THREADS = 8  # default cap on mAP threads: each holds a chunk of the score matrix


@dataclass(frozen=True)
class AveragePrecision:
    """Per-class AP in percent; NaN marks a class without positives, which mAP leaves out."""

    per_class: np.ndarray

    @property
    def num_excluded(self) -> int:
        return int(np.isnan(self.per_class).sum())

    @property
    def mean(self) -> float:
        if self.num_excluded == self.per_class.size:
            raise ValueError(
                f"mAP is undefined: none of the {self.per_class.size} classes has a positive "
                "target; evaluate on a split that contains positives")
        return float(np.nanmean(self.per_class))


def _as_numpy(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()  # exact: every half value is a float32 value
        array = array.numpy()
    array = np.asarray(array)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [images, classes], got shape {array.shape}")
    return array


def _scores_and_targets(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores, targets = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    if scores.shape[0] == 0:
        raise ValueError("scores and targets hold no images")
    return scores, targets


def _check_block(scores: np.ndarray, targets: np.ndarray, first_image: int = 0,
                 first_class: int = 0) -> None:
    """Reject what sklearn rejects (non-finite scores) and labels outside {-1, 0, 1}.

    scores and targets are [images, classes] blocks starting at (first_image, first_class).
    """
    checks = ((~np.isfinite(scores), scores, "scores must be finite (e.g. sigmoid probabilities)"),
              ((targets != POSITIVE) & (targets != NEGATIVE) & (targets != UNKNOWN), targets,
               "targets must be 1 (positive), 0 (negative) or -1 (unknown, ignored)"))
    for bad, values, rule in checks:
        if bad.any():
            image, cls = np.argwhere(bad)[0]
            raise ValueError(f"{rule}; found {values[image, cls]!r} at image "
                             f"{first_image + image}, class {first_class + cls}")


def _class_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class in [0, 1]; ignored entries must hold -inf. Sorts `scores` in place."""
    positives = np.sort(scores[targets == POSITIVE])
    if positives.size == 0:
        return float("nan")
    scores.sort()
    labelled_at_or_above = scores.size - np.searchsorted(scores, positives, side="left")
    positives_at_or_above = positives.size - np.searchsorted(positives, positives, side="left")
    return float(np.mean(positives_at_or_above / labelled_at_or_above))


def _columns(array: np.ndarray, start: int, stop: int, dtype: np.dtype,
             rows_per_copy: int = 512) -> np.ndarray:
    """Columns start:stop as a C-ordered [columns, images] copy.

    Copied in row blocks: one plain transposed copy of a wide matrix is cache-unfriendly and
    about four times slower.
    """
    out = np.empty((stop - start, array.shape[0]), dtype=dtype)
    for row in range(0, array.shape[0], rows_per_copy):
        out[:, row:row + rows_per_copy] = array[row:row + rows_per_copy, start:stop].T
    return out


def _chunk_ap(scores: np.ndarray, targets: np.ndarray, start: int, stop: int) -> np.ndarray:
    # Integer scores become float64 (exact) so that ignored entries can hold -inf.
    float_type = scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64
    block = _columns(scores, start, stop, float_type)
    labels = _columns(targets, start, stop, targets.dtype)
    _check_block(block.T, labels.T, first_class=start)
    block[labels == UNKNOWN] = -np.inf  # below every finite score: never ranked above a positive
    return np.array([_class_ap(row, row_labels) for row, row_labels in zip(block, labels)])


def average_precision_per_class(scores: ArrayLike, targets: ArrayLike, *, chunk_size: int = 128,
                                num_threads: int | None = None) -> AveragePrecision:
    """Non-interpolated AP of every class, equal to sklearn's `average_precision_score`.

    scores and targets are [images, classes] arrays or tensors (a 1-D pair is one class).
    Classes are processed `chunk_size` at a time in `num_threads` threads (default: the CPU
    count, at most 8), so the extra memory is about 2 x threads x chunk_size x images x the
    score's item size.
    """
    scores, targets = _scores_and_targets(scores, targets)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    num_classes = scores.shape[1]
    starts = range(0, num_classes, chunk_size)
    workers = num_threads or min(os.cpu_count() or 1, MAX_THREADS, len(starts))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = pool.map(
            lambda start: _chunk_ap(scores, targets, start, min(start + chunk_size, num_classes)),
            starts)
        per_class = np.concatenate(list(chunks))
    return AveragePrecision(per_class=100.0 * per_class)


def mean_average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """mAP in percent over the classes that have a positive target (see module doc)."""
    return average_precision_per_class(scores, targets).mean


def _image_blocks(scores: np.ndarray, targets: np.ndarray, entries: int = 1 << 22):
    """Validated row blocks of about `entries` entries, so temporary masks stay small."""
    step = max(1, entries // scores.shape[1])
    for start in range(0, scores.shape[0], step):
        block, labels = scores[start:start + step], targets[start:start + step]
        _check_block(block, labels, first_image=start)
        yield block, labels


def _harmonic(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def threshold_metrics(scores: ArrayLike, targets: ArrayLike,
                      threshold: float = 0.5) -> dict[str, float]:
    """CP, CR, CF1 (per class, then averaged) and OP, OR, OF1 (pooled), in percent.

    A score >= threshold is a positive prediction. Classes without positives are left out of
    CP and CR, as from mAP; a class with no positive prediction has precision 0. CF1 and OF1
    are the harmonic means of the averaged precision and recall (the ML-GCN convention).
    """
    scores, targets = _scores_and_targets(scores, targets)
    num_classes = scores.shape[1]
    true_pos = np.zeros(num_classes, dtype=np.int64)
    predicted = np.zeros(num_classes, dtype=np.int64)
    positives = np.zeros(num_classes, dtype=np.int64)
    for block, labels in _image_blocks(scores, targets):
        is_pos = labels == POSITIVE
        predicted_pos = (block >= threshold) & (labels != UNKNOWN)
        true_pos += (predicted_pos & is_pos).sum(axis=0)
        predicted += predicted_pos.sum(axis=0)
        positives += is_pos.sum(axis=0)
    has_pos = positives > 0
    if not has_pos.any():
        raise ValueError("threshold metrics are undefined: no class has a positive target")
    class_precision = np.divide(true_pos, predicted, out=np.zeros(num_classes),
                                where=predicted > 0)
    cp = float(class_precision[has_pos].mean())
    cr = float((true_pos[has_pos] / positives[has_pos]).mean())
    op = float(true_pos.sum() / predicted.sum()) if predicted.sum() else 0.0
    orec = float(true_pos.sum() / positives.sum())
    return {"CP": 100 * cp, "CR": 100 * cr, "CF1": 100 * _harmonic(cp, cr),
            "OP": 100 * op, "OR": 100 * orec, "OF1": 100 * _harmonic(op, orec)}


def f1_at_top_k(scores: ArrayLike, targets: ArrayLike, k: int) -> float:
    """F1 of each image's K best-scored classes, pooled over images (NUS-WIDE ZSL protocol).

    precision = TP / (images x K), recall = TP / positives. Unknown entries are never among
    the top K while labelled ones remain; ties at the K-th score are broken arbitrarily.
    """
    scores, targets = _scores_and_targets(scores, targets)
    num_images, num_classes = scores.shape
    if not 1 <= k <= num_classes:
        raise ValueError(f"top-K needs 1 <= K <= number of classes ({num_classes}), got K={k}")
    true_pos = positives = 0
    for block, labels in _image_blocks(scores, targets):
        ranked = np.where(labels == UNKNOWN, -np.inf, block)
        top = np.argpartition(-ranked, k - 1, axis=1)[:, :k]
        true_pos += int((np.take_along_axis(labels, top, axis=1) == POSITIVE).sum())
        positives += int((labels == POSITIVE).sum())
    if positives == 0:
        raise ValueError("F1@K is undefined: the targets contain no positive")
    return 100 * _harmonic(true_pos / (num_images * k), true_pos / positives)


def _class_index(classes: Sequence[int], num_classes: int, name: str) -> np.ndarray:
    index = np.asarray(classes)
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty list of class indices, got {classes!r}")
    outside = index[(index < 0) | (index >= num_classes)]
    if outside.size:
        raise ValueError(f"{name} has class index {outside[0]} outside 0..{num_classes - 1}")
    if np.unique(index).size != index.size:
        raise ValueError(f"{name} lists a class more than once")
    return index


def class_subset_metrics(scores: ArrayLike, targets: ArrayLike, classes: Sequence[int],
                         top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[str, float]:
    """mAP and F1@K over a subset of the classes: {"mAP", "F1@3", "F1@5"} by default."""
    scores, targets = _scores_and_targets(scores, targets)
    index = _class_index(classes, scores.shape[1], "classes")
    scores, targets = scores[:, index], targets[:, index]
    result = {"mAP": mean_average_precision(scores, targets)}
    result.update({f"F1@{k}": f1_at_top_k(scores, targets, k) for k in top_k})
    return result


def zero_shot_evaluation(scores: ArrayLike, targets: ArrayLike, unseen_classes: Sequence[int],
                         seen_classes: Sequence[int], top_k: Sequence[int] = DEFAULT_TOP_K,
                         unseen_scores: ArrayLike | None = None) -> dict[str, dict[str, float]]:
    """ZSL (unseen classes only) and GZSL (seen and unseen together) metrics.

    `scores` [images, classes] score every class. `unseen_scores` [images, len(unseen_classes)],
    when given, come from a pass over the unseen classes alone (the official protocol: a model
    whose classes interact, through self-attention or shared groups, scores them differently
    there) and give the ZSL metrics; without them ZSL reads the unseen columns of `scores`.
    Each class set is scored on the images with a positive among it (the official protocol,
    mld.data.prepared.images_with_positive): ZSL on those with an unseen positive, GZSL on those
    with any.
    """
    unseen, seen = list(unseen_classes), list(seen_classes)
    overlap = set(unseen) & set(seen)
    if overlap:
        raise ValueError(f"classes {sorted(overlap)[:5]} are both seen and unseen")
    all_scores, all_targets = _scores_and_targets(scores, targets)
    unseen_targets = all_targets[:, _class_index(unseen, all_targets.shape[1], "unseen_classes")]
    zsl_scores, unseen_targets = _scores_and_targets(
        all_scores[:, unseen] if unseen_scores is None else unseen_scores, unseen_targets)
    zsl_images = images_with_positive(unseen_targets)
    classes = seen + unseen
    gzsl_images = images_with_positive(all_targets[:, _class_index(classes, all_targets.shape[1], "classes")])
    return {"zsl": class_subset_metrics(zsl_scores[zsl_images], unseen_targets[zsl_images],
                                        list(range(len(unseen))), top_k),
            "gzsl": class_subset_metrics(all_scores[gzsl_images], all_targets[gzsl_images], classes, top_k)}


def top1_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy in percent; labels are class indices [images] or one-hot [images, classes]."""
    scores = _as_numpy(scores, "scores")
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    predicted = scores.argmax(axis=1)
    if labels.ndim == 2:
        if labels.shape != scores.shape:
            raise ValueError(f"one-hot labels {labels.shape} and scores {scores.shape} differ")
        correct = labels[np.arange(len(predicted)), predicted] == POSITIVE
    elif labels.shape == (scores.shape[0],):
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise ValueError(f"labels must be class indices in 0..{scores.shape[1] - 1}")
        correct = predicted == labels
    else:
        raise ValueError(f"labels of shape {labels.shape} match neither [images] nor "
                         f"[images, classes] for scores of shape {scores.shape}")
    return 100.0 * float(correct.mean())
