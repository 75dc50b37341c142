"""Verdicts on constructed cases and the paired bootstrap against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from mld import metrics
from mld.report import stats
from mld.report.stats import Difference


def test_an_equal_pair_with_huge_noise_is_undetermined():
    verdict = stats.equivalent(Difference(0.1, 2.0), "a - b", bound=0.4)
    assert verdict.verdict == stats.UNDETERMINED
    assert verdict.margin == pytest.approx(1.96 * 2.0, rel=1e-3)
    # It needed a margin of (0.4 - 0.1) * 1.96 / 1.645 to show equivalence.
    assert verdict.needed == pytest.approx(0.3 * stats.Z_TWO_SIDED / stats.Z_ONE_SIDED)
    assert "deciding needs a margin below 0.36" in verdict.text


def test_a_tight_equal_pair_holds():
    assert stats.equivalent(Difference(0.05, 0.05), "a - b", bound=0.4).verdict == stats.HOLDS


def test_a_large_gap_contradicts_an_equality():
    assert stats.equivalent(Difference(3.0, 0.2), "a - b", bound=0.4).verdict == stats.FAILS
    assert stats.equivalent(Difference(-3.0, 0.2), "a - b", bound=0.4).verdict == stats.FAILS


def test_a_small_noisy_gain_is_undetermined_not_refuted():
    verdict = stats.beats(Difference(0.3, 0.5), "a - b", paper_effect=0.8)
    assert verdict.verdict == stats.UNDETERMINED
    assert verdict.needed == pytest.approx(0.5)  # max(0.3 - 0, 0.8 - 0.3)


def test_a_gain_is_refuted_only_when_the_data_excludes_the_papers_effect():
    assert stats.beats(Difference(0.0, 0.05), "a - b", paper_effect=0.8).verdict == stats.FAILS
    assert stats.beats(Difference(2.0, 0.2), "a - b", paper_effect=0.8).verdict == stats.HOLDS
    # A claimed gain of more than 1: an interval above 0 but not above 1 does not show it.
    assert stats.beats(Difference(1.2, 0.2), "a - b", at_least=1.0, paper_effect=1.1).verdict == stats.UNDETERMINED
    assert stats.beats(Difference(1.6, 0.2), "a - b", at_least=1.0, paper_effect=1.1).verdict == stats.HOLDS


def test_unknown_noise_is_undetermined():
    for verdict in (stats.beats(Difference(5.0, None), "x"), stats.equivalent(Difference(0.0, None), "x", 0.4),
                    stats.at_most(Difference(0.0, None), "x", 0.3)):
        assert verdict.verdict == stats.UNDETERMINED


def test_at_most():
    assert stats.at_most(Difference(0.1, 0.05), "drop", 0.3).verdict == stats.HOLDS
    assert stats.at_most(Difference(1.0, 0.1), "drop", 0.3).verdict == stats.FAILS
    assert stats.at_most(Difference(0.3, 0.5), "drop", 0.3).verdict == stats.UNDETERMINED


def test_combined_standard_error_needs_the_seed_part():
    assert stats.combine(0.3, 0.4) == pytest.approx(0.5)
    assert stats.combine(None, 0.4) is None
    assert stats.seed_standard_error([1.0]) is None
    assert stats.seed_standard_error([1.0, 3.0]) == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))


def test_weighted_average_precision_by_hand():
    targets = np.array([[1], [0], [1]])
    a = np.array([[0.9], [0.8], [0.7]])
    b = np.array([[0.7], [0.8], [0.9]])
    weights = np.array([[1, 1, 1], [2, 1, 0]])
    # Unit weights: both rank pos, neg, pos: AP = (1 + 2/3) / 2. Weights (2, 1, 0): a's positive of weight 2
    # is first (precision 1), the other has weight 0: AP = 1. b ranks the weight-0 positive first, then the
    # negative (weight 1), then the weight-2 positive at precision 2/3: AP = 2/3.
    assert stats.weighted_average_precision(a, targets, weights) == pytest.approx([100 * 5 / 6, 100.0])
    assert stats.weighted_average_precision(b, targets, weights) == pytest.approx([100 * 5 / 6, 100 * 2 / 3])
    # Tied scores form one threshold: precision 1/2 for the tied positive.
    assert stats.weighted_average_precision(np.array([[0.5], [0.5]]), np.array([[1], [0]]), np.ones((1, 2))) \
        == pytest.approx([50.0])


def test_a_weighted_resample_scores_like_the_duplicated_images():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(40, 5)) / 5.0  # many ties
    targets = rng.random((40, 5)) < 0.3
    weights = stats.resample_weights(40, replicates=3)
    for row in weights:
        duplicated = np.repeat(np.arange(40), row.astype(int))
        expected = metrics.mean_average_precision(scores[duplicated], targets[duplicated])
        assert stats.weighted_average_precision(scores, targets, row[None])[0] == pytest.approx(expected)


def test_a_weighted_resample_ignores_unknown_labels_as_the_metric_does():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=(60, 9)) / 5.0
    targets = (rng.random((60, 9)) < 0.3).astype(np.int8)
    targets[rng.random((60, 9)) < 0.2] = -1  # Open Images: unverified entries
    weights = stats.resample_weights(60, replicates=4)
    resampled = stats.weighted_average_precision(scores, targets, weights, block=7)  # blocks split classes
    for row, value in zip(weights, resampled):
        duplicated = np.repeat(np.arange(60), row.astype(int))
        assert value == pytest.approx(metrics.mean_average_precision(scores[duplicated], targets[duplicated]))


def test_every_run_on_a_validation_set_gets_the_same_resamples():
    assert np.array_equal(stats.resample_weights(30), stats.resample_weights(30))
    assert stats.resample_weights(30).sum(axis=1).tolist() == [30.0] * stats.BOOTSTRAP_REPLICATES


def test_paired_interval_by_hand():
    interval = stats.paired_interval([5.0], [3.0], [np.array([1.0, 2.0, 3.0])], [np.zeros(3)])
    assert interval.value == 2.0 and interval.per_seed == (2.0,)
    assert interval.standard_error == pytest.approx(1.0)
    assert (interval.low, interval.high) == pytest.approx((1.05, 2.95))
    # Over two seeds, the replicates of the seed-mean difference.
    two = stats.paired_interval([5.0, 4.0], [3.0, 3.0], [np.array([1.0, 3.0]), np.array([2.0, 4.0])],
                                [np.zeros(2), np.array([1.0, 1.0])])
    assert two.value == pytest.approx(1.5)
    assert two.standard_error == pytest.approx(np.std([1.0, 3.0], ddof=1))
