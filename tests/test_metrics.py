"""mld.metrics against sklearn and against brute-force definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_score, recall_score

from mld import metrics


def random_problem(seed: int = 0, images: int = 300, classes: int = 23, levels: int = 6,
                   unknown: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid (many ties), some unknown labels, a class without positives."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (images, classes)).astype(np.float32) / levels
    targets = (rng.random((images, classes)) < 0.25).astype(np.int8)
    targets[rng.random((images, classes)) < unknown] = -1
    targets[:, 2] = np.where(targets[:, 2] == 1, 0, targets[:, 2])  # no positive left
    targets[:, 5] = np.where(rng.random(images) < 0.5, -1, 1)  # only positives and unknowns
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class AP in percent with unknown entries dropped; NaN without positives."""
    result = []
    for column in range(scores.shape[1]):
        known = targets[:, column] != -1
        truth = targets[known, column]
        result.append(100 * average_precision_score(truth, scores[known, column])
                      if truth.any() else np.nan)
    return np.array(result)


@pytest.mark.parametrize("chunk_size, num_threads", [(1, 1), (4, 2), (128, None)])
@pytest.mark.parametrize("seed, levels", [(0, 3), (1, 7), (2, 1000)])
def test_average_precision_matches_sklearn(seed, levels, chunk_size, num_threads):
    scores, targets = random_problem(seed, levels=levels)
    result = metrics.average_precision_per_class(scores, targets, chunk_size=chunk_size,
                                                 num_threads=num_threads)
    expected = sklearn_ap(scores, targets)
    np.testing.assert_array_equal(np.isnan(result.per_class), np.isnan(expected))
    np.testing.assert_allclose(result.per_class, expected, atol=1e-6, equal_nan=True)
    assert result.num_excluded == 1
    assert result.mean == pytest.approx(np.nanmean(expected), abs=1e-6)


def test_mean_average_precision_takes_tensors_and_half_precision():
    scores, targets = random_problem(3)
    expected = np.nanmean(sklearn_ap(scores, targets))
    tensor_scores = torch.from_numpy(scores).half()  # the grid values are exact in float16
    assert metrics.mean_average_precision(tensor_scores, torch.from_numpy(targets)) == \
        pytest.approx(expected, abs=1e-6)


def test_float64_scores_keep_their_distinctions():
    scores = np.array([0.5, 0.5 + 1e-12, 0.1, 0.9])  # equal in float32, distinct in float64
    targets = np.array([1, 0, 1, 0])
    assert metrics.mean_average_precision(scores, targets) == \
        pytest.approx(100 * average_precision_score(targets, scores))


def test_integer_scores_and_unmodified_inputs():
    scores, targets = random_problem(4)
    integer_scores = (scores * 6).astype(np.int64)
    before = integer_scores.copy()
    result = metrics.mean_average_precision(integer_scores, targets)
    assert result == pytest.approx(np.nanmean(sklearn_ap(integer_scores, targets)), abs=1e-6)
    np.testing.assert_array_equal(integer_scores, before)


def test_perfect_and_reversed_rankings():
    targets = np.array([[1], [1], [0], [0]])
    assert metrics.mean_average_precision(np.array([[4.0], [3], [2], [1]]), targets) == 100.0
    # Reversed: positives ranked 3rd and 4th -> precisions 1/3 and 2/4.
    assert metrics.mean_average_precision(np.array([[1.0], [2], [3], [4]]), targets) == \
        pytest.approx(100 * (1 / 3 + 2 / 4) / 2)


@pytest.mark.parametrize("scores, targets, message", [
    (np.zeros((3, 2)), np.zeros((3, 3)), "differ in shape"),
    (np.array([[0.1], [np.nan]]), np.array([[1], [0]]), "finite"),
    (np.array([[0.1], [0.2]]), np.array([[1], [2]]), "targets must be"),
    (np.array([[0.1], [0.2]]), np.array([[0], [-1]]), "has a positive target"),
    (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "shape"),
])
def test_average_precision_rejects_bad_input(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        metrics.mean_average_precision(scores, targets)


def test_bad_target_error_names_image_and_class():
    targets = np.zeros((4, 3), dtype=np.int8)
    targets[2, 1] = 5
    with pytest.raises(ValueError, match="image 2, class 1"):
        metrics.mean_average_precision(np.zeros((4, 3)), targets)


def test_threshold_metrics_match_sklearn_per_class_and_pooled():
    rng = np.random.default_rng(5)
    scores = rng.random((200, 7))
    targets = (rng.random((200, 7)) < 0.3).astype(np.int8)
    targets[rng.random((200, 7)) < 0.1] = -1
    result = metrics.threshold_metrics(scores, targets, threshold=0.6)
    precisions, recalls = [], []
    for column in range(7):
        known = targets[:, column] != -1
        truth, predicted = targets[known, column], scores[known, column] >= 0.6
        precisions.append(precision_score(truth, predicted, zero_division=0))
        recalls.append(recall_score(truth, predicted))
    known = targets != -1
    op = precision_score(targets[known], scores[known] >= 0.6)
    orec = recall_score(targets[known], scores[known] >= 0.6)
    cp, cr = np.mean(precisions), np.mean(recalls)
    assert result["CP"] == pytest.approx(100 * cp)
    assert result["CR"] == pytest.approx(100 * cr)
    assert result["CF1"] == pytest.approx(100 * 2 * cp * cr / (cp + cr))
    assert result["OP"] == pytest.approx(100 * op)
    assert result["OR"] == pytest.approx(100 * orec)
    assert result["OF1"] == pytest.approx(100 * 2 * op * orec / (op + orec))


def test_threshold_metrics_leave_out_classes_without_positives():
    scores = np.array([[0.9, 0.9], [0.1, 0.9]])
    targets = np.array([[1, 0], [0, 0]])
    result = metrics.threshold_metrics(scores, targets)
    assert result["CP"] == 100.0 and result["CR"] == 100.0  # class 1 is left out
    assert result["OP"] == pytest.approx(100 / 3)  # but its false positives count when pooled


def brute_force_f1_at_k(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    true_pos = sum(targets[i, top[i]].sum() for i in range(len(scores)))
    precision, recall = true_pos / (len(scores) * k), true_pos / targets.sum()
    return 100 * 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_f1_at_top_k_pools_over_images(k):
    rng = np.random.default_rng(k)
    scores = rng.random((50, 12))  # continuous: no ties at the K-th place
    targets = (rng.random((50, 12)) < 0.2).astype(np.int8)
    assert metrics.f1_at_top_k(scores, targets, k) == \
        pytest.approx(brute_force_f1_at_k(scores, targets, k))


def test_f1_at_top_k_skips_unknown_entries():
    scores = np.array([[0.9, 0.8, 0.1]])
    targets = np.array([[-1, 1, 0]])  # the best score is unknown: the top-1 is class 1
    assert metrics.f1_at_top_k(scores, targets, 1) == 100.0
    with pytest.raises(ValueError, match="1 <= K"):
        metrics.f1_at_top_k(scores, targets, 4)


def test_zero_shot_evaluation_uses_the_class_subsets_on_the_images_with_a_positive_among_them():
    scores, targets = random_problem(6, levels=1000, unknown=0.0)
    targets[:, 2] = 1  # every class has positives
    targets[:, 5] = np.where(np.arange(len(targets)) % 2, 1, 0)
    unseen, seen = [0, 3, 7, 9, 11, 20], [1, 2, 4, 5, 6, 8, 10]
    everything = seen + unseen
    # The official protocol: ZSL scores images 100-299 (an unseen positive each), GZSL images
    # 50-299 (a positive each); images 0-49 have none among these classes, images 50-99 only seen ones.
    targets[:100, unseen] = 0
    targets[100:, 0] = 1
    targets[:50, everything] = 0
    targets[50:100, 1] = 1
    result = metrics.zero_shot_evaluation(scores, targets, unseen, seen)
    assert set(result) == {"zsl", "gzsl"}
    assert set(result["zsl"]) == {"mAP", "F1@3", "F1@5"}
    assert result["zsl"]["mAP"] == pytest.approx(
        np.mean(sklearn_ap(scores[100:, unseen], targets[100:, unseen])), abs=1e-6)
    assert result["zsl"]["F1@3"] == pytest.approx(brute_force_f1_at_k(scores[100:, unseen], targets[100:, unseen], 3))
    assert result["gzsl"]["F1@3"] == pytest.approx(
        brute_force_f1_at_k(scores[50:, everything], targets[50:, everything], 3))
    assert result["gzsl"]["mAP"] == pytest.approx(
        np.mean(sklearn_ap(scores[50:, everything], targets[50:, everything])), abs=1e-6)
    # Scoring every image instead would add 100 images of negatives and their wrong top-3 guesses.
    assert result["zsl"]["F1@3"] > brute_force_f1_at_k(scores[:, unseen], targets[:, unseen], 3) + 5
    assert metrics.class_subset_metrics(scores[100:], targets[100:], unseen, top_k=()) == \
        {"mAP": result["zsl"]["mAP"]}


def test_zsl_from_the_unseen_pass_uses_its_scores_on_the_same_images():
    scores, targets = random_problem(8, images=40, classes=6, levels=1000, unknown=0.0)
    unseen, seen = [1, 4], [0, 2, 3, 5]
    targets[:, unseen] = 0
    targets[[3, 7, 20], 4] = 1
    targets[[7, 30], 1] = 1
    unseen_scores = np.random.default_rng(9).random((40, 2)).astype(np.float32)
    result = metrics.zero_shot_evaluation(scores, targets, unseen, seen, top_k=(1,), unseen_scores=unseen_scores)
    rows = [3, 7, 20, 30]  # the images with an unseen positive
    assert result["zsl"] == metrics.class_subset_metrics(unseen_scores[rows], targets[rows][:, unseen], [0, 1],
                                                         top_k=(1,))
    with pytest.raises(ValueError, match=r"scores \(39, 2\) and targets \(40, 2\) differ"):
        metrics.zero_shot_evaluation(scores, targets, unseen, seen, unseen_scores=unseen_scores[1:])


@pytest.mark.parametrize("unseen, seen, message", [
    ([0, 1], [1, 2], "both seen and unseen"),
    ([0, 99], [1], "outside"),
    ([0, 0], [1], "more than once"),
    ([], [1], "non-empty"),
])
def test_zero_shot_evaluation_rejects_bad_subsets(unseen, seen, message):
    scores, targets = random_problem(7)
    with pytest.raises(ValueError, match=message):
        metrics.zero_shot_evaluation(scores, targets, unseen, seen)


def test_top1_accuracy_from_indices_and_one_hot():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.9, 0.0, 0.1]])
    labels = np.array([1, 1, 2, 0])
    assert metrics.top1_accuracy(scores, labels) == 75.0
    one_hot = np.eye(3, dtype=np.int8)[labels]
    assert metrics.top1_accuracy(torch.from_numpy(scores), torch.from_numpy(one_hot)) == 75.0
    with pytest.raises(ValueError, match="class indices"):
        metrics.top1_accuracy(scores, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="match neither"):
        metrics.top1_accuracy(scores, np.array([0, 1]))
