"""The claims figure: each tested difference with its interval, the paper's effect and the bound,
coloured by verdict; claims without an interval listed; reproducible bytes."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, Mapping

import pytest

from mld.report import claims_figure, stats
from mld.report.claims import MissingValue
from mld.report.figures import figure_bytes

QUERY_TYPES = [{"query_type": "learnable"}, {"query_type": "nlp"}]
CLAIMS = [
    {"id": "query_types_equal", "table": "table7_query_types", "text": "query types are equal",
     "equivalence": {"bound": 0.4, "source": "unit test"}},
    {"id": "better_tradeoff_than_larger_backbone", "table": "figure5", "text": "above the GAP curve"},
    {"id": "a_claim_without_a_check", "table": "figure5", "text": "unchecked"},
]


@dataclass(frozen=True)
class Compared:
    difference: stats.Difference
    paper_effect: float | None


class FakeValues:
    """Table 7 with two query types 0.1 apart (standard error 0.05); nothing else."""

    side = "reproduced"

    def keys(self, table_id: str, **filters: Any) -> list[dict[str, Any]]:
        if table_id != "table7_query_types":
            raise MissingValue(f"{table_id} (not built)")
        return [dict(row) for row in QUERY_TYPES]

    def difference(self, table_id: str, metric: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> Compared:
        return Compared(stats.Difference(0.1, 0.05, "unit test"), 0.0)

    def get(self, table_id: str, metric: str, **key: Any):
        raise MissingValue(f"{metric} of {key} in {table_id}")

    def infeasible(self, table_id: str, **key: Any) -> bool:
        return False


def test_the_checks_record_each_tested_difference_with_its_bound_and_the_papers_effect():
    panels, undrawn = claims_figure._lines(CLAIMS, FakeValues())
    assert list(panels) == ["table7_query_types"]
    heading, drawn = panels["table7_query_types"]
    assert (heading.label, heading.comparison) == ("query_types_equal: holds", None)
    assert drawn.comparison == stats.Comparison("learnable - nlp", stats.EQUALS, 0.1, stats.Z_TWO_SIDED * 0.05, 0.4,
                                                0.0, stats.HOLDS)
    assert [line.label for line in undrawn] == ["better_tradeoff_than_larger_backbone (figure5): undetermined",
                                                "a_claim_without_a_check (figure5): not checked"]


def test_beats_and_at_most_record_their_bounds_and_all_hold_keeps_every_difference():
    gain = stats.beats(stats.Difference(2.0, 0.5), "A - B", at_least=1.0, paper_effect=1.1)
    drop = stats.at_most(stats.Difference(0.1, 0.05), "drop", 0.3)
    both = stats.all_hold([gain, drop])
    assert [(c.test, c.bound, c.paper_effect, c.verdict) for c in both.comparisons] == [
        (stats.BEATS, 1.0, 1.1, stats.HOLDS), (stats.AT_MOST, 0.3, None, stats.HOLDS)]


@pytest.mark.parametrize("test, bound, region", [(stats.BEATS, 1.0, (1.0, 9.0)), (stats.EQUALS, 0.4, (-0.4, 0.4)),
                                                 (stats.AT_MOST, 0.3, (-9.0, 0.3))])
def test_the_shaded_region_is_where_the_test_holds(test, bound, region):
    comparison = stats.Comparison("x", test, 0.0, 0.1, bound, None, stats.HOLDS)
    assert claims_figure._holds_region(comparison, -9.0, 9.0) == region


def test_svg_names_claims_rows_and_unplotted_claims_and_renders_identically():
    figure = claims_figure.claims_figure(CLAIMS, FakeValues(), {"table7_query_types": "query types"}, "unit test")
    svg = figure_bytes(figure, "svg")
    texts = " ".join(element.text for element in ElementTree.fromstring(svg).iter() if element.text)
    assert "table7_query_types: query types" in texts
    assert "query_types_equal: holds" in texts and "learnable - nlp" in texts
    assert "a_claim_without_a_check (figure5): not checked" in texts
    assert "paper's effect" in texts and "unit test" in texts
    again = claims_figure.claims_figure(CLAIMS, FakeValues(), {"table7_query_types": "query types"}, "unit test")
    assert figure_bytes(again, "svg") == svg
    assert figure_bytes(again, "png") == figure_bytes(figure, "png")
