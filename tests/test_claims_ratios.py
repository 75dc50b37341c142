"""Speed claims are decided by the interval of a ratio over timing rounds; cost ratios are exact."""
from __future__ import annotations

import math

import pytest

from mld.report import stats
from mld.report.claims import Estimate, log_ratio_error, ratio_at_least, ratio_at_most


def test_the_log_ratio_error_combines_both_sides_relative_spreads():
    # relative standard errors 0.1 / sqrt(4) = 0.05 and 0.2 / sqrt(4) = 0.1
    assert log_ratio_error(Estimate(10.0, 1.0, 4), Estimate(5.0, 1.0, 4)) == pytest.approx(math.sqrt(0.05**2 + 0.1**2))
    assert log_ratio_error(Estimate(10.0, 1.0, 4), Estimate(5.0)) == pytest.approx(0.05)  # a reported value: exact
    assert log_ratio_error(Estimate(10.0, math.nan, 1), Estimate(5.0, 1.0, 4)) is None    # one round: no spread


@pytest.mark.parametrize("spread, verdict", [(0.2, stats.HOLDS), (8.0, stats.UNDETERMINED)])
def test_a_timed_ratio_holds_only_when_its_interval_clears_the_bound(spread, verdict):
    # 96 / 100 = 0.96 against a bound of 0.9: decided by the spread of five rounds each
    outcome = ratio_at_least(Estimate(96.0, spread, 5), Estimate(100.0, spread, 5), "speed", 0.9, timed=True)
    assert outcome.verdict == verdict
    assert "95% interval" in outcome.text and "over the timing rounds" in outcome.text


def test_a_timed_ratio_fails_when_its_whole_interval_lies_on_the_wrong_side():
    outcome = ratio_at_least(Estimate(50.0, 0.5, 5), Estimate(100.0, 0.5, 5), "speed", 0.9, timed=True)
    assert outcome.verdict == stats.FAILS
    collapsed = ratio_at_most(Estimate(60.0, 0.5, 5), Estimate(100.0, 0.5, 5), "collapse", 0.5, timed=True)
    assert collapsed.verdict == stats.FAILS


def test_a_single_timing_round_leaves_a_speed_claim_undetermined_but_not_a_cost_ratio():
    single = ratio_at_least(Estimate(96.0, math.nan, 1), Estimate(50.0, math.nan, 1), "speed", 0.9, timed=True)
    assert single.verdict == stats.UNDETERMINED and "single timing round" in single.text
    flops = ratio_at_most(Estimate(1.1, math.nan, 1), Estimate(1.0, math.nan, 1), "FLOPs", 1.2)
    assert flops.verdict == stats.HOLDS


def test_the_papers_single_numbers_are_compared_as_they_are():
    paper = ratio_at_least(Estimate(562.0), Estimate(575.0), "paper speed", 0.9, timed=True)
    assert paper.verdict == stats.HOLDS and paper.text == "paper speed: 562 / 575 = 0.977 (needs >= 0.9)"
