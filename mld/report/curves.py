"""Training curves: per run, the loss and the validation metrics per epoch, seeds overlaid.

One figure per table with trained runs (small multiples, one column of two panels per run: the
training loss above, logarithmic when it spans a decade, the validation metrics below), so a
diverged or under-trained run stands out. The numbers are the history companion of runs.csv
(mld.report.history), so the curves, like the tables, rebuild from the results alone. Quantities are
taken as the history has them: every one whose name contains "loss" goes to the loss panel,
every other one except the learning rate and timings (seconds) to the metrics panel (the
model's and the EMA's selection metric, e.g. `mAP_model`, `mAP_ema`), each with its own line
style; each seed has its own colour.
"""
from __future__ import annotations

import math
import textwrap
from typing import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mld.report.tables import TableResult

LOSS_MARK = "loss"
NOT_PLOTTED = frozenset({"lr"})
SECONDS_SUFFIX = "_s"                    # data_s, compute_s, time_s: timings, not curves
LINE_STYLES = ("-", "--", ":", "-.")
SEED_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
COLUMNS = 4
PANEL_WIDTH, PANEL_HEIGHT = 3.4, 1.9     # inches per run column, per panel
TITLE_WIDTH = 38
LOG_SPAN = 10.0                          # the loss panel is logarithmic when the loss spans a decade


def is_loss(quantity: str) -> bool:
    return LOSS_MARK in quantity


def is_metric(quantity: str) -> bool:
    return not is_loss(quantity) and quantity not in NOT_PLOTTED and not quantity.endswith(SECONDS_SUFFIX)


def table_runs(table: TableResult) -> list[str]:
    """The runs (and measurements) of a table, in its row order."""
    return list(dict.fromkeys(o.origin for o in table.observations if o is not None))


def _wrapped(run_id: str) -> str:
    """A run id on lines of at most TITLE_WIDTH characters, broken after a "/"."""
    lines = textwrap.wrap(run_id.replace("/", "/ "), TITLE_WIDTH, break_on_hyphens=False)
    return "\n".join(line.replace("/ ", "/") for line in lines)


def _styles(quantities: Sequence[str]) -> dict[str, str]:
    return {quantity: LINE_STYLES[i % len(LINE_STYLES)] for i, quantity in enumerate(quantities)}


def _draw(axes: Axes, rows: pd.DataFrame, styles: dict[str, str], seeds: dict[int, str], log: bool) -> None:
    for (quantity, seed), curve in rows.groupby(["quantity", "seed"], sort=True):
        curve = curve.sort_values("epoch")
        axes.plot(curve["epoch"], curve["value"], linestyle=styles[quantity], color=seeds[int(seed)], linewidth=1.2,
                  marker="." if len(curve) < 3 else None)
    low, high = (rows["value"].min(), rows["value"].max()) if len(rows) else (0.0, 0.0)
    if log and low > 0 and high / low >= LOG_SPAN:
        axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.tick_params(labelsize=7)


def curves_figure(table: TableResult, history: pd.DataFrame) -> Figure | None:
    """The curves of one table's runs (None when none of them kept a history)."""
    runs = [run for run in table_runs(table) if run in set(history["run_id"])]
    if not runs:
        return None
    rows = history[history["run_id"].isin(runs)]
    quantities = list(dict.fromkeys(sorted(rows["quantity"])))
    losses = [q for q in quantities if is_loss(q)]
    metrics = [q for q in quantities if is_metric(q)]
    styles = {**_styles(losses), **_styles(metrics)}
    seeds = {int(seed): SEED_COLOURS[i % len(SEED_COLOURS)] for i, seed in enumerate(sorted(set(rows["seed"])))}
    columns = min(COLUMNS, len(runs))
    lines = math.ceil(len(runs) / columns)
    figure = Figure(figsize=(PANEL_WIDTH * columns, 2 * PANEL_HEIGHT * lines + 1.0), layout="constrained")
    grid = figure.add_gridspec(2 * lines, columns)
    for index, run in enumerate(runs):
        line, column = divmod(index, columns)
        top = figure.add_subplot(grid[2 * line, column])
        bottom = figure.add_subplot(grid[2 * line + 1, column], sharex=top)
        own = rows[rows["run_id"] == run]
        _draw(top, own[own["quantity"].isin(losses)], styles, seeds, log=True)
        _draw(bottom, own[own["quantity"].isin(metrics)], styles, seeds, log=False)
        top.set_title(_wrapped(run), fontsize=8)
        top.tick_params(labelbottom=False)
        if column == 0:
            top.set_ylabel("training loss", fontsize=8)
            bottom.set_ylabel("validation", fontsize=8)
        bottom.set_xlabel("epoch", fontsize=8)
    legend = [Line2D([], [], color=colour, label=f"seed {seed}") for seed, colour in seeds.items()]
    legend += [Line2D([], [], color="black", linestyle=styles[q], label=f"{panel}: {q}")
               for panel, names in (("loss", losses), ("validation", metrics)) for q in names]
    figure.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 8), fontsize=8, frameon=False)
    figure.suptitle(textwrap.fill(f"Training curves of {table.spec.table_id}: {table.spec.title}", 110), fontsize=10)
    return figure


def curve_figures(tables: Sequence[TableResult], history: pd.DataFrame) -> dict[str, Figure]:
    """Table id -> its curves figure, for every table with a run that kept a history."""
    figures = {}
    for table in tables:
        figure = curves_figure(table, history)
        if figure is not None:
            figures[table.spec.table_id] = figure
    return figures
