"""Figure 5: mAP vs FLOPs for GAP and ML-Decoder across backbone sizes, paper beside reproduced;
Figure 6: ImageNet top-1 against measured inference speed (`top1_vs_speed`).

The paper's TResNet points (tens of GFLOPs, MS-COCO) and the reproduced ones (the embedded
default's tiny backbones on synthetic data) differ in scale by orders of magnitude, so they get a
panel each. The figure is built on a bare `matplotlib.figure.Figure` (Agg for PNG, the SVG backend
for SVG): no pyplot, no global backend state, nothing shown on screen.
"""
from __future__ import annotations

import io
import math
import textwrap

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mld.report.tables import TableResult, metric_column, plain_value

HEAD_STYLES = {  # head -> (label, marker, colour)
    "gap": ("GAP", "o", "tab:blue"),
    "ml_decoder": ("ML-Decoder", "s", "tab:orange"),
    "transformer_decoder": ("transformer-decoder", "^", "tab:green"),
    "hsvlt": ("HSVLT", "D", "tab:red"),
}
X_METRIC, Y_METRIC = "flops_g", "mAP"
TITLE_WIDTH = 60  # characters per line of a panel title


def _points(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """(head, backbone, flops, mAP, mAP std) of one side's rows that have both values."""
    if side == "paper":
        x, y = frame[metric_column(X_METRIC, "paper")], frame[metric_column(Y_METRIC, "paper")]
        spread = pd.Series(math.nan, index=frame.index)
    else:
        x, y = frame[metric_column(X_METRIC, "mean")], frame[metric_column(Y_METRIC, "mean")]
        spread = frame[metric_column(Y_METRIC, "std")]
    points = pd.DataFrame({"head": frame["head"].map(plain_value), "backbone": frame["backbone"].map(plain_value),
                           "flops": x, "map": y, "std": spread})
    return points.dropna(subset=["flops", "map"]).sort_values("flops")


def _draw(axes: Axes, points: pd.DataFrame, title: str, x: str = "flops", y: str = "map",
          xlabel: str = "FLOPs [G multiply-accumulates]", ylabel: str = "mAP [%]") -> None:
    """One panel: a line per head through its backbones' (x, y) points, with y's std as error bars."""
    axes.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=9)
    axes.margins(0.15)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if points.empty:
        axes.text(0.5, 0.5, "no values yet", ha="center", va="center", transform=axes.transAxes)
        return
    for head, group in points.groupby("head", sort=False):
        label, marker, colour = HEAD_STYLES.get(head, (str(head), "x", "tab:gray"))
        errors = None if group["std"].isna().all() else group["std"].fillna(0.0)
        axes.errorbar(group[x], group[y], yerr=errors, marker=marker, color=colour, label=label,
                      capsize=3, linestyle="-" if len(group) > 1 else "none")
        for backbone, x_value, y_value in zip(group["backbone"], group[x], group[y]):
            axes.annotate(str(backbone), (x_value, y_value), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.legend(fontsize=8)


def _require_key_columns(table: TableResult) -> None:
    missing = {"backbone", "head"} - set(table.frame.columns)
    if missing:
        raise ValueError(f"table {table.spec.table_id} lacks the column(s) {sorted(missing)} the figure needs")


def map_vs_flops(table: TableResult, reproduced_label: str) -> Figure:
    """The two-panel figure from the `figure5` table (key columns `backbone` and `head`)."""
    _require_key_columns(table)
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    paper_axes, reproduced_axes = figure.subplots(1, 2)
    _draw(paper_axes, _points(table.frame, "paper"), f"Paper: {table.spec.source}")
    _draw(reproduced_axes, _points(table.frame, "reproduced"),
          f"Reproduced: {reproduced_label} (mean ± std over seeds)")
    figure.suptitle(table.spec.title, fontsize=11)
    return figure


def figure_bytes(figure: Figure, file_format: str) -> bytes:
    """The figure encoded as PNG or SVG, without timestamps so that reruns give identical files."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if file_format == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "mld", "svg.fonttype": "none"}):
        figure.savefig(buffer, format=file_format, dpi=150, metadata=metadata)
    return buffer.getvalue()


def top1_vs_speed(top1: TableResult, speed: TableResult, reproduced_label: str) -> Figure:
    """Figure 6 from the `figure6` (top-1) and `figure6_speed` (measured inference images/s) tables,
    joined on their key (backbone, head), in Figure 5's style. The paper plots its points without
    giving their speeds, so it gets no panel: its known top-1 values are named in the title."""
    for table in (top1, speed):
        _require_key_columns(table)
    accuracy = pd.DataFrame({"backbone": top1.frame["backbone"].map(plain_value),
                             "head": top1.frame["head"].map(plain_value),
                             "top1": top1.frame[metric_column("top1", "mean")],
                             "std": top1.frame[metric_column("top1", "std")]}).dropna(subset=["top1"])
    speeds = pd.DataFrame({"backbone": speed.frame["backbone"].map(plain_value),
                           "head": speed.frame["head"].map(plain_value),
                           "speed": speed.frame[metric_column("inference_images_per_s", "mean")]}).dropna()
    points = accuracy.merge(speeds, on=["backbone", "head"]).sort_values("speed")
    reported = top1.frame.dropna(subset=[metric_column("top1", "paper")])
    paper_values = ", ".join(
        f"{plain_value(row['backbone'])} {HEAD_STYLES.get(plain_value(row['head']), (row['head'],))[0]} "
        f"{row[metric_column('top1', 'paper')]:g}" for _, row in reported.iterrows())
    figure = Figure(figsize=(7.5, 5.2), layout="constrained")
    axes = figure.subplots()
    _draw(axes, points, f"Reproduced: {reproduced_label} (mean ± std over seeds). Paper ({top1.spec.source}): "
          f"{paper_values or 'no values'}", x="speed", y="top1",
          xlabel="inference speed [images/s, measured]", ylabel="top-1 [%]")
    figure.suptitle(textwrap.fill(top1.spec.title, TITLE_WIDTH + 10), fontsize=11)
    return figure
