"""The claims at a glance: a forest plot of every difference the claim checks test.

One panel per table with claims, in two columns. Each claim is a bold line naming it and its
verdict, followed by the differences its check tested (`stats.Comparison`): the reproduced effect with its 95%
margin, coloured by that difference's verdict, the paper's effect of the same rows beside it, and
the region where the claim holds shaded, its edge being the claim's bound (a claimed gain, an
equivalence bound ±d, an allowed maximum). Claims checked on ratios or means (throughput, FLOPs,
the Figure 5 curve) have no interval to draw: the figure lists them with their verdicts under
the panels. Like every table, it is a view of
runs.csv: the checks run on the reproduced values the tables are built from.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from mld.report.claims import Values, run_check
from mld.report.stats import AT_MOST, BEATS, EQUALS, FAILS, HOLDS, NOT_CHECKED, UNDETERMINED, Comparison

VERDICT_COLOURS = {HOLDS: "#1a9850", FAILS: "#d73027", UNDETERMINED: "#f39c12", NOT_CHECKED: "#808080"}
HOLDS_REGION = "#e5f5e0"
BOUND_COLOUR = "#4d4d4d"
PAPER_MARKER = dict(marker="D", markersize=7, markerfacecolor="none", markeredgecolor="black", linestyle="none")
# Sizes in inches: a line of a panel, a panel's title above it and its axis below, the column
# of row labels, the figure's title, the legend and one line of footer text, the outer margin.
ROW_INCHES, TITLE_INCHES, AXIS_INCHES, LABEL_INCHES = 0.3, 0.5, 0.55, 2.3
PANEL_WIDTH, TOP_INCHES, LEGEND_INCHES, TEXT_LINE_INCHES, MARGIN = 7.5, 0.45, 0.35, 0.16, 0.15
COLUMNS = 2
FOOTER_CHARACTERS_PER_INCH = 15
LEGEND_INCHES_PER_ENTRY = 2.9
LABEL_WIDTH = 34         # characters per line of a row label
TITLE_WIDTH = 62         # characters per line of a panel title
PADDING = 0.08           # of the x range, either side


@dataclass(frozen=True)
class Line:
    """One line of a panel: a claim (`comparison` None) or a difference its check tested."""

    label: str
    verdict: str
    comparison: Comparison | None = None


def _lines(claims: Sequence[Mapping[str, Any]], values: Values) -> tuple[dict[str, list[Line]], list[Line]]:
    """Per table (in the claims' order), its claims and their tested differences; and the claims
    checked without an interval (ratios, means)."""
    panels: dict[str, list[Line]] = {}
    undrawn = []
    for claim in claims:
        verdict = run_check(claim, values)
        heading = Line(f"{claim['id']} ({claim['table']}): {verdict.verdict}", verdict.verdict)
        if not verdict.comparisons:
            undrawn.append(heading)
            continue
        lines = panels.setdefault(claim["table"], [])
        lines.append(Line(f"{claim['id']}: {verdict.verdict}", verdict.verdict))
        lines += [Line(comparison.name, comparison.verdict, comparison) for comparison in verdict.comparisons]
    return panels, undrawn


def _colour(verdict: str) -> str:
    return VERDICT_COLOURS.get(verdict, VERDICT_COLOURS[NOT_CHECKED])


def _holds_region(comparison: Comparison, low: float, high: float) -> tuple[float, float]:
    """Where a difference makes its test hold (before noise): the shaded region."""
    if comparison.test == BEATS:
        return comparison.bound, high
    if comparison.test == EQUALS:
        return -comparison.bound, comparison.bound
    if comparison.test == AT_MOST:
        return low, comparison.bound
    raise ValueError(f"unknown test {comparison.test!r} of {comparison.name!r}")


def _x_range(lines: Sequence[Line]) -> tuple[float, float]:
    points = [0.0]
    for line in lines:
        c = line.comparison
        if c is None:
            continue
        margin = c.margin or 0.0
        points += [c.value - margin, c.value + margin, c.bound] + ([-c.bound] if c.test == EQUALS else [])
        points += [] if c.paper_effect is None else [c.paper_effect]
    low, high = min(points), max(points)
    pad = PADDING * ((high - low) or 1.0)
    return low - pad, high + pad


def _draw_panel(axes: Any, table_id: str, title: str, lines: Sequence[Line]) -> None:
    low, high = _x_range(lines)
    axes.set_xlim(low, high)
    axes.set_ylim(len(lines) - 0.5, -0.5)
    axes.axvline(0.0, color="#999999", linewidth=0.8, zorder=1)
    for y, line in enumerate(lines):
        c = line.comparison
        if c is None:
            axes.text(0.005, y, line.label, transform=axes.get_yaxis_transform(), fontsize=8, fontweight="bold",
                      va="center", color=_colour(line.verdict))
            continue
        start, end = _holds_region(c, low, high)
        axes.add_patch(Rectangle((start, y - 0.42), end - start, 0.84, facecolor=HOLDS_REGION, edgecolor="none",
                                 zorder=0))
        for edge in ((start, end) if c.test == EQUALS else (c.bound,)):
            axes.plot([edge, edge], [y - 0.42, y + 0.42], color=BOUND_COLOUR, linewidth=1.2, zorder=2)
        colour = _colour(c.verdict)
        if c.margin is None:
            axes.plot([c.value], [y], marker="o", markerfacecolor="white", markeredgecolor=colour, linestyle="none",
                      zorder=3)
            right_half = c.value > (low + high) / 2  # the note goes to the side with room
            axes.annotate("noise unknown", (c.value, y), xytext=(-6 if right_half else 6, -3), fontsize=7,
                          textcoords="offset points", ha="right" if right_half else "left", color=colour)
        else:
            axes.errorbar([c.value], [y], xerr=[c.margin], marker="o", color=colour, capsize=3, linewidth=2,
                          markersize=5, zorder=3)
        if c.paper_effect is not None:
            axes.plot([c.paper_effect], [y], zorder=4, **PAPER_MARKER)
    axes.set_yticks(range(len(lines)))
    axes.set_yticklabels(["" if line.comparison is None else textwrap.fill(line.label, LABEL_WIDTH)
                          for line in lines], fontsize=8)
    axes.tick_params(axis="y", length=0)
    axes.grid(axis="x", alpha=0.3)
    axes.set_title(textwrap.fill(f"{table_id}: {title}", TITLE_WIDTH), fontsize=9, loc="left")
    axes.set_xlabel("difference [percentage points]", fontsize=8)
    axes.tick_params(axis="x", labelsize=8)


def _columns(heights: Sequence[int]) -> list[list[int]]:
    """Panel indices per column, in order, each column about as tall as the others."""
    total, columns, filled = sum(heights), [[] for _ in range(COLUMNS)], 0
    for index, height in enumerate(heights):
        column = min(int(COLUMNS * (filled + height / 2) / max(total, 1)), COLUMNS - 1)
        columns[column].append(index)
        filled += height
    return [column for column in columns if column]


def _legend_handles() -> list[Any]:
    handles = [Line2D([], [], marker="o", color=VERDICT_COLOURS[v], linewidth=2, label=f"reproduced ± 95%: {v}")
               for v in (HOLDS, FAILS, UNDETERMINED)]
    return handles + [Line2D([], [], label="paper's effect", **PAPER_MARKER),
                      Patch(facecolor=HOLDS_REGION, edgecolor=BOUND_COLOUR,
                            label="where the claim holds (edge: its bound)")]


def _legend_columns(width: float) -> int:
    return max(1, min(len(_legend_handles()), int(width / LEGEND_INCHES_PER_ENTRY)))


def _footer(figure: Figure, undrawn: Sequence[Line], text_inches: float, height: float) -> None:
    """What the marks mean, and the claims with no interval to draw."""
    width = figure.get_figwidth()
    figure.legend(handles=_legend_handles(), loc="lower center", bbox_to_anchor=(0.5, (text_inches + MARGIN) / height),
                  ncols=_legend_columns(width), fontsize=8, frameon=False)
    if undrawn:
        figure.text(MARGIN / width, MARGIN / height, _footer_text(undrawn, width), fontsize=8, va="bottom")


def _footer_text(undrawn: Sequence[Line], width: float) -> str:
    if not undrawn:
        return ""
    return textwrap.fill("Checked on ratios or means, no interval to draw (evidence in tables.md): "
                         + "; ".join(line.label for line in undrawn), int(width * FOOTER_CHARACTERS_PER_INCH))


def claims_figure(claims: Sequence[Mapping[str, Any]], values: Values, titles: Mapping[str, str],
                  label: str) -> Figure:
    """The forest plot of the claims' checks on `values` (the reproduced side); `titles`: table id -> title.

    Panels are placed at fixed sizes in inches (no layout engine: matplotlib's constrained
    layout of such a grid ends in float noise that changes the SVG's clip ids between drawings)."""
    panels, undrawn = _lines(claims, values)
    names = list(panels)
    heights = [TITLE_INCHES + len(panels[name]) * ROW_INCHES + AXIS_INCHES for name in names]
    columns = _columns(heights) or [[]]
    width = PANEL_WIDTH * len(columns)
    legend_lines = math.ceil(len(_legend_handles()) / _legend_columns(width))
    text_inches = TEXT_LINE_INCHES * (_footer_text(undrawn, width).count("\n") + 1 if undrawn else 0)
    footer = text_inches + LEGEND_INCHES * legend_lines + 2 * MARGIN
    height = TOP_INCHES + max(sum(heights[i] for i in column) for column in columns) + footer
    figure = Figure(figsize=(width, height))
    for place, column in enumerate(columns):
        top = TOP_INCHES
        for index in column:
            lines = panels[names[index]]
            plot = len(lines) * ROW_INCHES
            rect = [(place * PANEL_WIDTH + LABEL_INCHES) / width, (height - top - TITLE_INCHES - plot) / height,
                    (PANEL_WIDTH - LABEL_INCHES - MARGIN) / width, plot / height]
            _draw_panel(figure.add_axes(rect), names[index], titles.get(names[index], names[index]), lines)
            top += heights[index]
    if not names:
        figure.text(0.5, 0.5, "no claim with a tested difference", ha="center", va="center")
    _footer(figure, undrawn, text_inches, height)
    figure.suptitle(f"The papers' claims checked on the reproduced values ({label})", fontsize=11,
                    y=1 - MARGIN / height, va="top")
    return figure
