"""tables.md: the tables of mld.report.tables rendered as markdown, with the claim checks, the
header saying what produced the results, and the reading guide.

Rendering only: every number comes from the built tables (TableResult) and the claims frame, so
`mld report --from runs.csv` rebuilds the same text byte for byte.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

from mld.report import results as long_form
from mld.report import stats
from mld.report.tables import (
    BEST_EPOCH,
    DIFFERENCE_METRICS,
    LAYOUT_ABSOLUTE,
    LAYOUT_EFFECTS,
    LAYOUT_REFERENCE,
    STATUS_INFEASIBLE,
    STATUS_MISSING,
    STATUS_NOT_COMPARED,
    STATUS_NOT_REPRODUCED,
    STATUS_PAPER_ONLY,
    STATUS_PARTIAL,
    RowStatus,
    TableResult,
    TableSpec,
    format_number,
    metric_column,
    plain_value,
)

MODE_LABELS = {
    "cached_features": "cached features (heads trained on the frozen, pretrained backbone's cached feature maps)",
    "end_to_end": "end to end (backbone and head trained on images)",
    "measurement": "cost measurements on the machine that ran the job",
}
LAYOUT_TEXT = {
    LAYOUT_EFFECTS: "synthetic stand-ins: each row's effect against the baseline row ({baseline}) beside the "
                    "paper's effect; the paper's absolute values only for reference",
    LAYOUT_REFERENCE: "synthetic stand-ins: the paper's values only for reference (no baseline row to measure "
                      "effects against, and absolute values are not comparable)",
    LAYOUT_ABSOLUTE: "reproduced values beside the paper's, and their difference",
}


BEST_EPOCH_TEXT = (f"Selection: \"{BEST_EPOCH}\" is the official train.py's (behind the paper's numbers), the "
                   "highest over the evaluated epochs (every train.eval_every-th and the last) of the better of the "
                   "model and its EMA; \"reproduced\" is the last epoch's better of the two, which differences, "
                   "effects and claims use.")


@dataclass(frozen=True)
class ReportHeader:
    """What produced the results: printed at the top of tables.md (from the frame's header rows)."""

    config: str
    label: str
    mode: str
    seeds: Sequence[int]
    datasets: Sequence[str]
    backbones: Sequence[str]
    synthetic: bool
    commit: str = "unknown"
    skipped_tables: Sequence[str] = ()   # the config's skip_tables: planned nothing there


def header_fields(config_path: str, label: str, mode: str, seeds: Sequence[int],
                  skipped_tables: Sequence[str] = ()) -> long_form.Header:
    """The header `mld.report.results.collect` stores, so that a runs.csv alone can print it."""
    return long_form.Header(label, config_path, mode, tuple(seeds), tuple(skipped_tables))


def read_header(frame: pd.DataFrame) -> ReportHeader:
    """The header from the frame's header rows (the first report row's label, config and mode: a
    merged file's sites agree on the mode and may differ in the rest)."""
    kind = frame["kind"]
    report = frame[kind == long_form.KIND_REPORT]
    first = report.iloc[0] if len(report) else pd.Series(dtype=object)
    datasets = frame[kind == long_form.KIND_DATASET]
    backbones = frame[kind == long_form.KIND_BACKBONE]
    used = set(frame.loc[kind.isin([long_form.KIND_RUN, long_form.KIND_MEASUREMENT]), "dataset"].dropna())
    dataset_lines = [str(text) for name, text in zip(datasets["dataset"], datasets["dataset_stands_for"])
                     if name in used or not used]
    backbone_lines = [str(text) + (f", standing for {paper}" if paper else "")
                      for text, paper in zip(backbones["description"], backbones["backbone_stands_for"])]
    commits = sorted(set(report["git_commit"].dropna()))
    seeds = [int(seed) for seed in frame.loc[kind == long_form.KIND_SEED, "seed"]]
    return ReportHeader(config=str(first.get("config_file")), label=str(first.get("label")),
                        mode=str(first.get("mode")), seeds=seeds, datasets=dataset_lines, backbones=backbone_lines,
                        synthetic="synthetic" in set(datasets["dataset_source"].dropna()),
                        commit=", ".join(commits) or "unknown",
                        skipped_tables=list(frame.loc[kind == long_form.KIND_SKIPPED_TABLE, "table_id"]))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (cells escaped: '|' would split a cell)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def _reproduced_cell(row: pd.Series, metric: str, status: RowStatus, selection: str = "") -> str:
    """The mean ± std (n) of one metric; `selection` "" for the final values, BEST_EPOCH for the official's."""
    prefix = f"{selection} " if selection else ""
    n = int(row[metric_column(metric, f"{prefix}n")])
    if n == 0:
        if status.status in (STATUS_PAPER_ONLY, STATUS_NOT_REPRODUCED):
            return "—"
        return status.status if status.status in (STATUS_INFEASIBLE, STATUS_MISSING) else "n/a"
    mean, std = row[metric_column(metric, f"{prefix}mean")], row[metric_column(metric, f"{prefix}std")]
    spread = "" if math.isnan(std) else f" ± {format_number(std, like=mean)}"
    return f"{format_number(mean)}{spread} (n={n})"


def _paper_cell(row: pd.Series, metric: str) -> str:
    value = row[metric_column(metric, "paper")]
    if not row["reported"]:
        return "—"
    return "NA" if math.isnan(value) else f"{value:g}"


def _diff_cell(row: pd.Series, metric: str) -> str:
    value = row[metric_column(metric, "diff")]
    return "" if math.isnan(value) else f"{value:+.2f}"


def _effect_text(metric: str, value: float, margin: float = math.nan, paper: bool = False) -> str:
    if math.isnan(value):
        return ""
    if metric not in DIFFERENCE_METRICS:
        return f"×{value:.3g}"
    if paper:
        return f"{round(value, 2):+g}"
    return f"{value:+.2f}" + ("" if math.isnan(margin) else f" ± {margin:.2f}")


def _effect_cells(table: TableResult, index: int, metric: str) -> list[str]:
    row = table.frame.loc[index]
    if table.spec.baseline and table.baselines[index] is None and _is_baseline(table, index):
        return ["baseline", "baseline" if int(row[metric_column(metric, "n")]) else "—"]
    paper = _effect_text(metric, row[metric_column(metric, "paper effect")], paper=True)
    effect = _effect_text(metric, row[metric_column(metric, "effect")], row[metric_column(metric, "effect margin")])
    if effect and metric in DIFFERENCE_METRICS and math.isnan(row[metric_column(metric, "effect margin")]):
        effect += " (noise unknown)"
    return [paper, effect]


def _is_baseline(table: TableResult, index: int) -> bool:
    match = {c: plain_value(v) for c, v in table.spec.baseline["match"].items()}
    return all(plain_value(table.frame.at[index, c]) == v for c, v in match.items())


def _key_cell(value: Any) -> str:
    value = plain_value(value)
    return "—" if value is None else str(value)


def _run_cell(table: TableResult, index: int) -> str:
    row, observation = table.frame.loc[index], table.observations[index]
    if observation is None:
        return "—"
    cell = f"`{observation.origin}`" + (f" ({row['run row']})" if isinstance(row["run row"], str) else "")
    paper_backbone = plain_value(row["backbone"]) if "backbone" in row.index else None
    stands_for = paper_backbone if isinstance(paper_backbone, str) and row["reported"] else observation.stands_for
    if observation.backbone:
        cell += f": {observation.backbone}" + (f" for {stands_for}" if stands_for else "")
    others = [t for t in observation.tables if t and t != table.spec.table_id]
    if others:
        cell += f"; the same run is in {', '.join(others)}"
    return cell


def best_epoch_metrics(table: TableResult) -> list[str]:
    """The table's metrics some row has best-epoch values of (those get a "best epoch" column)."""
    return [m for m in table.spec.metrics if (table.frame[metric_column(m, f"{BEST_EPOCH} n")] > 0).any()]


def render_table(table: TableResult) -> str:
    """The markdown rows of one table, laid out as its data allows (see the module docstring)."""
    spec, frame = table.spec, table.frame
    notes = "note" in spec.context
    reproduced = any(observation is not None for observation in table.observations)
    if not reproduced and spec.not_reproduced:
        parts: tuple[str, ...] = ("paper",)
    elif spec.reported.empty:
        parts = ("reproduced",)
    elif table.layout == LAYOUT_EFFECTS:
        parts = ("paper", "paper effect", "reproduced", "effect")
    elif table.layout == LAYOUT_REFERENCE:
        parts = ("paper", "reproduced")
    else:
        parts = ("paper", "reproduced", "diff")
    with_best = best_epoch_metrics(table)
    metric_parts = {m: tuple(shown for part in parts for shown in
                             ((BEST_EPOCH, part) if part == "reproduced" and m in with_best else (part,)))
                    for m in spec.metrics}
    header = list(spec.key) + [f"{m} {part}" for m in spec.metrics for part in metric_parts[m]]
    header += (["run"] if reproduced else []) + ["status"] + (["note"] if notes else [])
    rows = []
    for index, row in frame.iterrows():
        cells = [_key_cell(row[column]) for column in spec.key]
        for metric in spec.metrics:
            effects = _effect_cells(table, index, metric) if "effect" in parts else []
            status = table.statuses[index]
            values = {"paper": _paper_cell(row, metric), "reproduced": _reproduced_cell(row, metric, status),
                      BEST_EPOCH: _reproduced_cell(row, metric, status, BEST_EPOCH) if metric in with_best else "",
                      "diff": _diff_cell(row, metric), "paper effect": effects[:1] and effects[0],
                      "effect": effects[1:] and effects[1]}
            cells += [values[part] or "" for part in metric_parts[metric]]
        cells += ([_run_cell(table, index)] if reproduced else []) + [str(row["status"])]
        if notes:
            cells.append("" if plain_value(row["note"]) is None else str(row["note"]))
        rows.append(cells)
    return markdown_table(header, rows)


def render_claims(claims: pd.DataFrame) -> str:
    """One bullet per claim: the verdict on the reproduced values, then on the paper's."""
    lines = []
    for claim in claims.to_dict("records"):
        lines.append(f"- **{claim['reproduced verdict']}**: `{claim['claim']}` — {claim['text']}\n"
                     f"  - reproduced: {claim['reproduced evidence']}\n"
                     f"  - paper ({claim['paper verdict']}): {claim['paper evidence']}")
    return "\n".join(lines)


def _mode_text(modes: Sequence[str]) -> str:
    return "; ".join(MODE_LABELS.get(mode, mode) for mode in modes) or "no outputs yet"


def _baseline_text(spec: TableSpec) -> str:
    baseline = spec.baseline or {}
    text = ", ".join(f"{c} {v}" for c, v in (baseline.get("match") or {}).items())
    within = baseline.get("within")
    return text + (f", with the same {', '.join(within)}" if within else "")


def render_section(table: TableResult, claims: pd.DataFrame, skipped: bool = False) -> str:
    """One table's section: title, provenance, missing/infeasible runs, the table, its claims.
    `skipped`: the config left the table out (skip_tables)."""
    spec = table.spec
    reproduced = any(observation is not None for observation in table.observations)
    parts = [f"## {spec.title} (`{spec.table_id}`)"]
    if spec.not_reproduced and not reproduced:
        parts.append(f"Source: {spec.source}. Not reproduced: {spec.not_reproduced}.")
    elif skipped and not reproduced:
        parts.append(f"Source: {spec.source}. Not planned by this config (`skip_tables`): the paper's values only.")
    else:
        parts.append(f"Source: {spec.source}. Reproduced: {_mode_text(table.modes)}.")
        if table.datasets:
            parts.append("Data: " + "; ".join(table.datasets) + ".")
        if not spec.reported.empty and reproduced:
            parts.append("Shown: " + LAYOUT_TEXT[table.layout].format(baseline=_baseline_text(spec)) + ".")
        if best_epoch_metrics(table):
            parts.append(BEST_EPOCH_TEXT)
    for status, what in ((STATUS_MISSING, "Missing runs"), (STATUS_PARTIAL, "Runs with missing seeds"),
                         (STATUS_NOT_COMPARED, "Not compared with the paper")):
        runs = table.runs_with_status(status)
        if runs:
            parts.append(f"{what}: " + "; ".join(f"`{run}` ({detail})" for run, detail in runs) + ".")
    for run, detail in table.runs_with_status(STATUS_INFEASIBLE):
        parts.append(f"Infeasible, not trained: `{run}`: {detail}.")
    parts.append(render_table(table))
    own_claims = claims[claims["table"] == spec.table_id]
    if not own_claims.empty:
        parts.append("Claims:\n\n" + render_claims(own_claims))
    return "\n\n".join(parts)


def _margin_cell(value: Any) -> str:
    number = long_form.finite_number(value)
    return "—" if number is None else f"{number:.2f}"


# What the noise margins cover, by training mode (the header's "What produced these results").
MARGIN_SCOPE = {
    "cached_features": "the heads' seeds and the validation images. The backbones are fixed, one pretrained "
                       "weights file per role (listed above), as the paper's runs start from fixed ImageNet "
                       "weights: every verdict is conditional on those weights, and a backbone pretrained "
                       "elsewhere (another CPU ends its pretraining elsewhere) moves the cells by more than "
                       "these margins (docs/data.md).",
    "end_to_end": "the seeds of whole training runs (backbone fine-tuning included) and the validation images; "
                  "every run of a backbone starts from the same pretrained weights (listed above).",
}
SPEED_MARGIN_SCOPE = ("A speed claim's interval covers the timing rounds of this one run, not the machine's state "
                      "from one run to the next (load, clock speed): a speed verdict near its bound can change on "
                      "a rerun on the same machine.")


def reading_guide(synthetic: bool) -> list[str]:
    """The opening of tables.md: how to read a row, what the verdicts mean, where the pictures are."""
    from mld.report.stats import FAILS, HOLDS, UNDETERMINED

    comparison = ("(on synthetic stand-ins) the row's effect against its table's baseline row (an mAP difference ± "
                  "its 95% noise margin, a cost as a ratio ×) beside the paper's effect" if synthetic
                  else "the difference reproduced - paper")
    return [
        "## How to read this file",
        "",
        "- A row is one configuration of the paper's table, named by the key columns (head, queries, ...): the "
        f"paper's value, the reproduced one (mean ± std over seeds, n seeds) and {comparison}; `run` names the "
        "run (its folder under results/runs/) and `status` says whether every seed finished.",
        f"- **{HOLDS}**: the reproduced numbers support the claim beyond their noise (the 95% interval clears its bound).",
        f"- **{FAILS}**: they contradict it beyond their noise (the interval lies wholly on the wrong side of the "
        "bound, or below the paper's effect).",
        f"- **{UNDETERMINED}**: the noise is too large to tell; the evidence names the margin that would decide.",
        "- Pictures, in `figures/` beside this file: `claims.png` (every tested difference with its interval, the "
        "paper's effect and the claim's bound, coloured by verdict), `map_vs_flops.png` (Figure 5) and "
        "`curves/<table>.png` (training loss and validation metrics per epoch of each table's runs, seeds "
        "overlaid); `snakemake --report report.html` puts them beside the tables in one HTML file.",
    ]


def render_markdown(tables: Sequence[TableResult], claims: pd.DataFrame, header: ReportHeader) -> str:
    """The whole tables.md."""
    from mld.report.claims import NOISE_DEFINITION

    environments = sorted({e for table in tables for e in table.environments})
    counts = claims["reproduced verdict"].value_counts()
    summary = ", ".join(f"{counts[verdict]} {verdict}" for verdict in sorted(counts.index))
    data = ("synthetic stand-ins for the papers' datasets: absolute values are not comparable with the "
            "papers'; the tables show effects within a table beside the paper's" if header.synthetic
            else "the papers' datasets")
    lines = [
        f"# Reproduced results: {header.label}",
        "",
        *reading_guide(header.synthetic),
        "",
        "## What produced these results",
        "",
        f"- Config: `{header.config}` (mode {header.mode}, seeds {', '.join(map(str, header.seeds))}); "
        f"collected at commit {header.commit}. Every number below is a view of `runs.csv` beside this file "
        "(`mld report --from runs.csv --out DIR` rebuilds it).",
        f"- Data: {data}.",
        *(f"  - {dataset}" for dataset in header.datasets),
        "- Backbones (by role):",
        *(f"  - {backbone}" for backbone in header.backbones),
        f"- Training: {MODE_LABELS.get(header.mode, header.mode)}.",
        "- Software and hardware of the runs (metrics.json `versions`):",
        *(f"  - {environment}" for environment in environments or ["no run outputs yet"]),
        "- Reproduced cells: mean ± sample standard deviation over seeds (n = seeds with outputs; a spread "
        "that is float noise prints as 0); \"—\": no such row on that side; NA: the paper reports none. "
        "Effects: mAP-like metrics as differences to the baseline row, ± the 95% noise margin of that "
        "difference; costs and speeds as ratios (×). A speed's n counts its timing rounds, taken with nothing "
        "else of the workflow running; a speed claim is decided by its ratio's 95% interval over the rounds.",
        f"- What the margins cover: {MARGIN_SCOPE.get(header.mode, MARGIN_SCOPE['end_to_end'])} {SPEED_MARGIN_SCOPE}",
        f"- Verdicts: {NOISE_DEFINITION}",
        f"- Claims on the reproduced values: {summary or 'none'} (of {len(claims)}).",
    ]
    glance = markdown_table(
        ["claim", "table", "reproduced", "largest noise margin", "paper"],
        [(c["claim"], c["table"], c["reproduced verdict"], _margin_cell(c["reproduced margin"]), c["paper verdict"])
         for c in claims.to_dict("records")])
    sections = ["## Claims at a glance (evidence under each table)\n\n" + glance]
    sections += [render_section(table, claims, table.spec.table_id in header.skipped_tables) for table in tables]
    orphans = claims[~claims["table"].isin([t.spec.table_id for t in tables])]
    if not orphans.empty:
        sections.append("## Claims on tables not built\n\n" + render_claims(orphans))
    return "\n".join(lines) + "\n\n" + "\n\n".join(sections) + "\n"
