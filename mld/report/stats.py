"""Verdicts a statistician would sign, and the paired bootstrap over validation images.

A claim compares two numbers; what it can conclude depends on how well the data pins their
difference down. `Difference` is an estimated difference with its standard error; the three
verdicts follow from the difference's interval:

* "A beats B (by more than t)": holds when the 95% interval lies above t; does not hold when it
  lies below the paper's effect (the data excludes what the paper reports) or below t;
  otherwise undetermined, and the verdict says how small the margin would have had to be.
* "A equals B" (equivalence, two one-sided tests at 5% each against a stated bound d): holds when
  the 90% interval lies inside [-d, d]; does not hold when the 95% interval lies wholly outside
  it; otherwise undetermined.
* "A is at most d above B" (non-inferiority, e.g. "group decoding costs at most 0.3 mAP"): holds
  when the one-sided 95% upper bound is below d; does not hold when the lower bound is above d.

The standard error of a reproduced difference has two parts (`combine`): the seed spread of the
per-seed differences (training noise, sd / sqrt(n)) and, when both runs were scored on the same
validation images, the paired bootstrap over those images (the noise of the finite validation
set, which more seeds do not average away). A printed value's rounding error is uniform on +-half
of its last digit.

Paired bootstrap: every run on a validation set of N images is scored on the same R resamples of
those images (multinomial image weights drawn from a generator seeded by (BOOTSTRAP_SEED, N)), so
the resampled metric of two runs can be subtracted replicate by replicate. Per seed this gives the
difference's bootstrap distribution; over seeds, the replicates of the seed-mean difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import numpy as np

HOLDS = "holds"
FAILS = "does not hold"
UNDETERMINED = "undetermined"
NOT_CHECKED = "not checked"

Z_TWO_SIDED = 1.959963984540054    # 95% two-sided
Z_ONE_SIDED = 1.6448536269514722   # 95% one-sided (each test of TOST at 5%)
# The papers print one decimal (Table 1's stacked layers: two); a printed value is its true value
# rounded, an error uniform on +-0.05, whose standard deviation is 0.05 / sqrt(3).
PRINTED_HALF_DIGIT = 0.05
PRINTED_STANDARD_ERROR = PRINTED_HALF_DIGIT / math.sqrt(3)

BOOTSTRAP_SEED = 20240613
BOOTSTRAP_REPLICATES = 500

VERDICT_RULES = (
    "Each difference gets a 95% interval, difference ± margin, margin = 1.96 x its standard error; the "
    "standard error combines the seed spread of the per-seed differences (sd / sqrt(n); needs n >= 2 seeds) "
    "and, where both runs were scored on the same validation images, a paired bootstrap over those images "
    f"({BOOTSTRAP_REPLICATES} resamples, per seed and combined over seeds); a printed paper value has a rounding "
    f"error of ±{PRINTED_HALF_DIGIT:g} (standard error {PRINTED_STANDARD_ERROR:.3f}). "
    "\"A beats B\": holds when the interval lies above the claimed gain (0 unless the claim states one); "
    "does not hold when it lies below the paper's effect; else undetermined. \"A equals B\": two one-sided "
    "tests against the bound written beside the claim: holds when the 90% interval lies inside ±bound, does "
    "not hold when the 95% interval lies outside it, else undetermined. \"At most d\": holds when the "
    "one-sided 95% bound is below d, does not hold when the difference is above d by more than its margin. "
    "An undetermined verdict names the margin that would have decided it.")


@dataclass(frozen=True)
class Difference:
    """An estimated difference `value` = a - b; `standard_error` None when it cannot be known."""

    value: float
    standard_error: float | None
    source: str = ""

    def margin(self, z: float = Z_TWO_SIDED) -> float | None:
        return None if self.standard_error is None else z * self.standard_error

    def __str__(self) -> str:
        margin = self.margin()
        spread = "noise unknown" if margin is None else f"± {margin:.2f}"
        return f"{self.value:+.2f} ({spread}{'; ' + self.source if self.source else ''})"


BEATS, EQUALS, AT_MOST = "beats", "equals", "at most"


@dataclass(frozen=True)
class Comparison:
    """One tested difference of a claim, as the claims figure draws it: the estimate with its 95%
    margin, the paper's effect of the same rows and the bound the test uses (`beats`: the claimed
    gain; `equals`: the equivalence bound, ±; `at most`: the allowed maximum)."""

    name: str
    test: str
    value: float
    margin: float | None
    bound: float
    paper_effect: float | None
    verdict: str


@dataclass(frozen=True)
class Verdict:
    """A verdict and the numbers behind it: the margin had, the margin that would decide, and the
    differences it tested (none for checks on ratios or means)."""

    verdict: str
    text: str
    margin: float | None = None
    needed: float | None = None
    comparisons: tuple[Comparison, ...] = ()


def _tested(verdict: Verdict, name: str, test: str, difference: Difference, bound: float,
            paper_effect: float | None = None) -> Verdict:
    """The verdict with the difference it tested recorded beside it."""
    comparison = Comparison(name, test, difference.value, difference.margin(), bound, paper_effect, verdict.verdict)
    return replace(verdict, comparisons=(comparison,))


def with_paper_effect(verdict: Verdict, paper_effect: float | None) -> Verdict:
    """The verdict with the paper's effect set on the differences it tested."""
    return replace(verdict, comparisons=tuple(replace(c, paper_effect=paper_effect) for c in verdict.comparisons))


def combine(seed_standard_error: float | None, image_standard_error: float | None) -> float | None:
    """The standard error of a difference from its two independent noise sources (None: unknown).

    The seed part is required: without it the training noise is unknown and so is the total."""
    if seed_standard_error is None:
        return None
    return math.hypot(seed_standard_error, image_standard_error or 0.0)


def seed_standard_error(per_seed_differences: Sequence[float]) -> float | None:
    """sd / sqrt(n) of per-seed differences; None below 2 seeds."""
    values = np.asarray(per_seed_differences, dtype=float)
    if values.size < 2:
        return None
    return float(values.std(ddof=1) / math.sqrt(values.size))


def _bounds(difference: Difference, z: float) -> tuple[float, float] | None:
    margin = difference.margin(z)
    return None if margin is None else (difference.value - margin, difference.value + margin)


def _noise_unknown(text: str) -> Verdict:
    return Verdict(UNDETERMINED, f"{text}; fewer than 2 seeds: seed noise unknown")


def _undecided(text: str, margin: float | None, needed: float) -> Verdict:
    """Undetermined, naming the margin below which the data would have decided."""
    needed = max(needed, 0.0)
    return Verdict(UNDETERMINED, f"{text}; deciding needs a margin below {needed:.2f}", margin, needed)


def beats(difference: Difference, name: str, at_least: float = 0.0, paper_effect: float | None = None) -> Verdict:
    """`difference` = better - worse exceeds `at_least`; refuted when the paper's effect is excluded."""
    return _tested(_beats(difference, name, at_least, paper_effect), name, BEATS, difference, at_least, paper_effect)


def _beats(difference: Difference, name: str, at_least: float, paper_effect: float | None) -> Verdict:
    claimed = f" (claimed gain > {at_least:g})" if at_least else ""
    paper = "" if paper_effect is None else f"; paper's effect {paper_effect:+.2f}"
    text = f"{name}: {difference}{claimed}{paper}"
    bounds = _bounds(difference, Z_TWO_SIDED)
    if bounds is None:
        return _noise_unknown(text)
    margin = difference.margin()
    low, high = bounds
    refute_below = max(at_least, paper_effect) if paper_effect is not None else max(at_least, 0.0)
    if low > at_least:
        return Verdict(HOLDS, text, margin)
    if high < refute_below or (paper_effect is None and high <= at_least):
        return Verdict(FAILS, text, margin)
    # Deciding needs an interval that clears at_least (holds) or falls below the refutation bound.
    return _undecided(text, margin, max(difference.value - at_least, refute_below - difference.value))


def equivalent(difference: Difference, name: str, bound: float) -> Verdict:
    """Two one-sided tests: `difference` lies within ±bound."""
    return _tested(_equivalent(difference, name, bound), name, EQUALS, difference, bound)


def _equivalent(difference: Difference, name: str, bound: float) -> Verdict:
    text = f"{name}: {difference} (equivalence bound ±{bound:g})"
    if difference.standard_error is None:
        return _noise_unknown(text)
    margin = difference.margin()
    low, high = _bounds(difference, Z_ONE_SIDED)
    if -bound < low and high < bound:
        return Verdict(HOLDS, text, margin)
    outer_low, outer_high = _bounds(difference, Z_TWO_SIDED)
    if outer_low > bound or outer_high < -bound:
        return Verdict(FAILS, text, margin)
    room = bound - abs(difference.value)
    return _undecided(text, margin, room * Z_TWO_SIDED / Z_ONE_SIDED if room > 0 else abs(difference.value) - bound)


def at_most(difference: Difference, name: str, bound: float) -> Verdict:
    """Non-inferiority: `difference` (a drop or a gain) is at most `bound`."""
    return _tested(_at_most(difference, name, bound), name, AT_MOST, difference, bound)


def _at_most(difference: Difference, name: str, bound: float) -> Verdict:
    text = f"{name}: {difference} (allowed at most {bound:.3g})"
    if difference.standard_error is None:
        return _noise_unknown(text)
    margin = difference.margin()
    if difference.value + difference.margin(Z_ONE_SIDED) < bound:
        return Verdict(HOLDS, text, margin)
    if difference.value - margin > bound:
        return Verdict(FAILS, text, margin)
    return _undecided(text, margin, abs(bound - difference.value))


def all_hold(verdicts: Iterable[Verdict]) -> Verdict:
    """Sub-claims that must all hold: fails if any fails, undetermined if any is, else holds."""
    verdicts = list(verdicts)
    kinds = {v.verdict for v in verdicts}
    verdict = FAILS if FAILS in kinds else UNDETERMINED if UNDETERMINED in kinds else HOLDS
    margins = [v.margin for v in verdicts if v.margin is not None]
    return Verdict(verdict, "; ".join(f"[{v.verdict}] {v.text}" for v in verdicts), max(margins, default=None),
                   comparisons=tuple(c for v in verdicts for c in v.comparisons))


# ---- the paired bootstrap -----------------------------------------------------------------------

def resample_weights(num_images: int, replicates: int = BOOTSTRAP_REPLICATES) -> np.ndarray:
    """[R, N] multinomial image counts, the same for every run on a validation set of N images."""
    rng = np.random.default_rng([BOOTSTRAP_SEED, num_images])
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=replicates).astype(np.float64)


def weighted_average_precision(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                               block: int = 2048) -> np.ndarray:
    """mAP in percent [R] of `scores` [N, C] against `targets` [N, C] under image weights [R, N].

    An image of weight w counts as w copies (the copies tie, so all get the precision at the end
    of their tie group, as sklearn's average_precision_score); unknown entries (-1) are ignored,
    and classes without a weighted positive are left out of the mean, as `mld.metrics` does.

    The precision at a positive image is (weight of the positives scored at least as high) /
    (weight of the known images scored at least as high): both are matrix products of the weights
    with 0/1 "scored at least as high" columns, one column per positive entry, `block` columns at a
    time. Weights are counts and the products integers below 2**24, exact in float32."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    positive, known = targets > 0, targets >= 0
    total = np.zeros(weights.shape[0])
    counted = np.zeros(weights.shape[0])
    for classes in _class_blocks(positive.sum(axis=0), block):
        above, hit, image, starts, offset = [], [], [], [], 0
        for column in classes:
            rows = np.flatnonzero(positive[:, column])
            at_least = (scores[:, column, None] >= scores[rows, column][None, :]) & known[:, column, None]
            starts.append(offset)
            offset += len(rows)
            above.append(at_least)
            hit.append(at_least & positive[:, column, None])
            image.append(rows)
        seen = weights @ np.concatenate(above, axis=1).astype(np.float32)
        hits = weights @ np.concatenate(hit, axis=1).astype(np.float32)
        own = weights[:, np.concatenate(image)].astype(np.float64)  # each positive's weight [R, K]
        precision = np.divide(hits, seen, out=np.zeros(seen.shape), where=seen > 0)
        positives = np.add.reduceat(own, starts, axis=1)
        has = positives > 0
        ap = np.add.reduceat(own * precision, starts, axis=1) / np.where(has, positives, 1.0)
        total += np.where(has, ap, 0.0).sum(axis=1)
        counted += has.sum(axis=1)
    return 100.0 * total / np.maximum(counted, 1)


def _class_blocks(positives_per_class: np.ndarray, block: int) -> Iterator[list[int]]:
    """The classes with positives, in runs whose positives add up to about `block` (at least one class)."""
    run, size = [], 0
    for column in np.flatnonzero(positives_per_class):
        if run and size + positives_per_class[column] > block:
            yield run
            run, size = [], 0
        run.append(int(column))
        size += int(positives_per_class[column])
    if run:
        yield run


def weighted_top1(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Top-1 accuracy in percent [R] under image weights [R, N] (targets one-hot [N, C])."""
    correct = np.asarray(targets)[np.arange(len(scores)), np.asarray(scores).argmax(axis=1)] > 0
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return 100.0 * (weights * correct).sum(axis=1) / weights.sum(axis=1)


@dataclass(frozen=True)
class PairedInterval:
    """The paired bootstrap of a seed-mean difference a - b over the same validation images."""

    value: float              # mean over seeds of the per-seed full-data differences
    per_seed: tuple[float, ...]
    standard_error: float     # sd of the replicates of the seed-mean difference
    low: float                # 2.5% and 97.5% percentiles of those replicates
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_interval(a_full: Sequence[float], b_full: Sequence[float], a_replicates: Sequence[np.ndarray],
                    b_replicates: Sequence[np.ndarray]) -> PairedInterval:
    """Combine per-seed full-data metrics and bootstrap replicates (seeds paired by position)."""
    if not (len(a_full) == len(b_full) == len(a_replicates) == len(b_replicates)) or not len(a_full):
        raise ValueError("paired_interval needs the same, non-zero number of seeds on both sides")
    per_seed = tuple(float(a) - float(b) for a, b in zip(a_full, b_full))
    replicates = np.mean([np.asarray(a) - np.asarray(b) for a, b in zip(a_replicates, b_replicates)], axis=0)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return PairedInterval(float(np.mean(per_seed)), per_seed, float(replicates.std(ddof=1)), float(low), float(high))
