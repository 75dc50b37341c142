"""Run outputs -> one pandas frame per paper table, the reproduced values beside the reported ones.

For every table (the papers' tables from `mld.paper`, then registry tables the papers do not
report) this reads each run's `metrics.json`/`cost.json` per seed, or a cost measurement's JSON,
summarises every metric over seeds (mean, sample std, n), pairs the reproduced rows with the
reported rows and gives the difference (reproduced mean - reported). Missing runs and infeasible
runs become rows with a status instead of errors, so a partial results tree still reports.

Pairing: a reproduced row joins the reported row with the same key. Count-like key columns
(queries, classes, layers, resolution) are paired by rank instead, among rows that agree on the
other key columns, when both sides have the same number of such rows: the embedded default scales
counts down (20 classes instead of 80), and its K = N/4 decoder must sit beside the paper's
K = N/4 row, not beside the paper's row that happens to have the same K. The run's own key is then
shown in the `run row` column.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from mld.claims import NOISE_DEFINITION, Estimate, MissingValue
from mld.experiments import Registry, Run, measurement_path, run_dir

# Metrics a run reads from cost.json; every other metric comes from metrics.json "final".
COST_FILE_METRICS = frozenset({"flops_g", "params_m", "head_flops_g", "head_params_m"})
# A key column that picks the section of metrics.json "final" a row reads (Table 6: one zero-shot
# run gives a "zsl" row and a "gzsl" row).
SECTION_COLUMN = "task"
# Metrics shown for tables the papers do not report (e.g. the HSVLT ablations).
UNREPORTED_TABLE_METRICS = ("mAP", "flops_g", "params_m")
METRIC_FIELDS = ("paper", "mean", "std", "n", "diff")

STATUS_OK = "ok"
STATUS_PAPER_ONLY = "paper only"
STATUS_MISSING = "missing"
STATUS_PARTIAL = "partial"
STATUS_INFEASIBLE = "infeasible"


def metric_column(metric: str, field_name: str) -> str:
    """The frame column of one field ("paper", "mean", "std", "n", "diff") of one metric."""
    return f"{metric} {field_name}"


def plain_value(value: Any) -> Any:
    """A key value as YAML and the registry write it: NaN -> None, 80.0 -> 80 (pandas floats ints)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else float(value)
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class TableSpec:
    """What a table shows: its key and metric columns, and the papers' rows (possibly none)."""

    table_id: str
    title: str
    source: str
    key: tuple[str, ...]
    metrics: tuple[str, ...]
    reported: pd.DataFrame

    @property
    def context(self) -> list[str]:
        """Reported columns that are neither key nor metric (dataset, backbone, note, ...)."""
        return [c for c in self.reported.columns if c not in self.key and c not in self.metrics]


def reported_spec(table_id: str) -> TableSpec:
    """A table as the papers report it (through mld.paper, the single source of reported numbers)."""
    from mld import paper

    spec = paper.table_spec(table_id)
    return TableSpec(table_id, spec["title"], spec["source"], tuple(spec["key"]), tuple(spec["metrics"]),
                     paper.paper_table(table_id))


def unreported_spec(table_id: str, rows: Iterable[Mapping[str, Any]]) -> TableSpec:
    """A registry table without reported values: its key is the columns the runs' rows use."""
    key: list[str] = []
    for row in rows:
        key += [column for column in row if column not in key]
    return TableSpec(table_id, table_id.replace("_", " "), "not reported by the papers (reproduced only)",
                     tuple(key), UNREPORTED_TABLE_METRICS, pd.DataFrame(columns=key))


# ---- reading run outputs ------------------------------------------------------------------------

def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None when the file does not exist; a clear error when it is bad."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun the job that writes it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}; delete it and rerun "
                         "the job that writes it")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _format_number(value: Any, like: Any = None) -> str:
    """A measured number for people: 2 decimals; none from 1000 up; 3 significant digits below 0.1.
    `like` (a mean) sets the precision of a spread, so a std of 1e-16 prints as 0.00."""
    number = _number(value)
    if number is None:
        return str(value)
    scale = abs(_number(like) or 0.0) if like is not None else abs(number)
    if scale >= 1000:
        return f"{number:.0f}"
    return f"{number:.2f}" if scale >= 0.1 or scale == 0 else f"{number:.3g}"


@dataclass
class Observation:
    """One reproduced row before it is summarised: each metric's value per finished seed."""

    origin: str                                   # run id or measurement id
    key: dict[str, Any]                           # the row's key columns, as the registry gives them
    expected: list[str]                           # the outputs it needs: "seed0", ... or a JSON path
    samples: dict[str, list[float]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    environments: set[str] = field(default_factory=set)
    infeasible: str | None = None

    @property
    def status(self) -> str:
        if self.infeasible:
            return f"{STATUS_INFEASIBLE}: {self.infeasible}"
        missing = [name for name in self.expected if name not in self.finished]
        if not self.finished:
            return f"{STATUS_MISSING}: no output ({', '.join(missing)})"
        if missing:
            return f"{STATUS_PARTIAL}: {', '.join(missing)} missing"
        return STATUS_OK

    def add(self, metric: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            self.samples.setdefault(metric, []).append(number)


@dataclass(frozen=True)
class SeedOutputs:
    """One seed's metrics.json and cost.json (cost may be absent)."""

    seed: int
    metrics: dict[str, Any]
    cost: dict[str, Any]


def read_seed(results_dir: Path, run_id: str, seed: int) -> SeedOutputs | None:
    """A finished seed's outputs, or None when its metrics.json is not there yet."""
    seed_dir = Path(run_dir(run_id, seed, str(results_dir)))
    metrics = read_json(seed_dir / "metrics.json")
    if metrics is None:
        return None
    return SeedOutputs(seed, metrics, read_json(seed_dir / "cost.json") or {})


def infeasible_text(metrics: Mapping[str, Any], cost: Mapping[str, Any]) -> str:
    """"<reason>; measured flops_g=178.6, ..." from an infeasible run's outputs."""
    measured = {**cost, **(metrics.get("cost") or {})}
    numbers_measured = ", ".join(f"{name}={_format_number(value)}" for name, value in measured.items()
                                 if _number(value) is not None)
    reason = str(metrics.get("reason") or "over the run's train.feasibility budget")
    return f"{reason}; measured {numbers_measured}" if numbers_measured else reason


def describe_environment(versions: Any) -> str:
    """One line naming the software and hardware a result came from (metrics.json "versions")."""
    if not isinstance(versions, Mapping) or not versions:
        return "not recorded"
    return ", ".join(f"{name} {value}" for name, value in versions.items())


def run_metric(metric: str, seed: SeedOutputs, section: str | None) -> Any:
    """One metric of one seed: cost metrics from cost.json, the rest from metrics.json "final"."""
    if metric in COST_FILE_METRICS:
        return {**seed.cost, **(seed.metrics.get("cost") or {})}.get(metric)
    final = seed.metrics.get("final") or {}
    scope = final.get(section) if section else final
    return scope.get(metric) if isinstance(scope, Mapping) else None


def observe_run(run: Run, table_id: str, spec: TableSpec, results_dir: Path) -> list[Observation]:
    """The rows one run gives a table (two for Table 6's zsl/gzsl sections, else one)."""
    row = {column: plain_value(value) for column, value in run.rows[table_id].items()}
    sections: Sequence[str | None] = [None]
    if SECTION_COLUMN in spec.key and SECTION_COLUMN not in row:
        sections = sorted({value for value in spec.reported[SECTION_COLUMN] if isinstance(value, str)})
    seeds = [read_seed(results_dir, run.run_id, seed) for seed in run.seeds]
    observations = []
    for section in sections:
        key = dict(row) if section is None else {**row, SECTION_COLUMN: section}
        observation = Observation(run.run_id, key, [f"seed{seed}" for seed in run.seeds])
        for outputs in filter(None, seeds):
            observation.finished.append(f"seed{outputs.seed}")
            if "mode" in outputs.metrics:
                observation.modes.add(str(outputs.metrics["mode"]))
            observation.environments.add(describe_environment(outputs.metrics.get("versions")))
            if outputs.metrics.get("infeasible"):
                observation.infeasible = infeasible_text(outputs.metrics, outputs.cost)
            for metric in spec.metrics:
                observation.add(metric, run_metric(metric, outputs, section))
        observations.append(observation)
    return observations


def observe_measurement(measurement_id: str, entry: Mapping[str, Any], table_id: str, spec: TableSpec,
                        results_dir: Path) -> list[Observation]:
    """The rows one cost measurement (results/cost/<id>.json, an mld.cost report) gives a table.

    Metrics are the report's top-level keys. A metric given per part (module timing's `time_ms`:
    {module: ms}) gives one row per part, the part filling the key column the registry's row
    leaves out (`module`).
    """
    path = Path(measurement_path(measurement_id, str(results_dir)))
    row = {column: plain_value(value) for column, value in entry["rows"][table_id].items()}
    report = read_json(path)
    parts_column = next((column for column in spec.key if column not in row), None)
    per_part = {metric: report[metric] for metric in spec.metrics
                if report is not None and isinstance(report.get(metric), Mapping)}
    if parts_column and per_part:
        parts = list(dict.fromkeys(part for values in per_part.values() for part in values))
        keys = [{**row, parts_column: part} for part in parts]
    else:
        parts, keys = [None], [row]
    observations = []
    for part, key in zip(parts, keys):
        observation = Observation(measurement_id, key, [str(path)])
        if report is not None:
            observation.finished.append(str(path))
            observation.modes.add("measurement")
            observation.environments.add(describe_environment(
                {**(report.get("versions") or {}), **{k: report[k] for k in ("device", "amp") if k in report}}))
            if report.get("infeasible"):
                observation.infeasible = infeasible_text(report, {})
            for metric in spec.metrics:
                value = report.get(metric)
                observation.add(metric, value.get(part) if isinstance(value, Mapping) else value)
        observations.append(observation)
    return observations


# ---- pairing reproduced rows with reported rows -------------------------------------------------

def _key_of(row: Mapping[str, Any], key: Sequence[str]) -> tuple:
    return tuple(plain_value(row.get(column)) for column in key)


def _count_columns(spec: TableSpec, reported: list[dict], observations: list[Observation]) -> list[str]:
    """Key columns whose values are all numbers or empty on both sides (queries, classes, ...)."""
    counts = []
    for column in spec.key:
        values = [row.get(column) for row in reported] + [o.key.get(column) for o in observations]
        present = [value for value in values if value is not None]
        if present and all(_is_count(value) for value in present):
            counts.append(column)
    return counts


def _rank(values: tuple) -> tuple:
    return tuple((value is not None, value if value is not None else 0) for value in values)


def pair_rows(spec: TableSpec, observations: list[Observation]) -> list[tuple[dict | None, Observation | None]]:
    """(reported row, reproduced row) pairs in the reported order, then reproduced-only rows."""
    reported = [{c: plain_value(v) for c, v in row.items()} for row in spec.reported.to_dict("records")]
    seen: dict[tuple, str] = {}
    for observation in observations:
        key = _key_of(observation.key, spec.key)
        if key in seen:
            raise ValueError(f"table {spec.table_id}: runs {seen[key]} and {observation.origin} both give the row "
                             f"{dict(zip(spec.key, key))}; give them different rows in mld.experiments")
        seen[key] = observation.origin
    counts = _count_columns(spec, reported, observations)
    labels = [column for column in spec.key if column not in counts]
    partner: dict[int, Observation] = {}
    unpaired = list(observations)
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(reported):
        groups.setdefault(_key_of(row, labels), []).append(index)
    for label, indices in groups.items():
        members = [o for o in unpaired if _key_of(o.key, labels) == label]
        if counts and len(members) == len(indices):
            indices = sorted(indices, key=lambda i: _rank(_key_of(reported[i], counts)))
            members = sorted(members, key=lambda o: _rank(_key_of(o.key, counts)))
        else:
            exact = {_key_of(o.key, spec.key): o for o in members}
            matched = [(i, exact.get(_key_of(reported[i], spec.key))) for i in indices]
            indices = [i for i, o in matched if o is not None]
            members = [o for i, o in matched if o is not None]
        for index, observation in zip(indices, members):
            partner[index] = observation
            unpaired.remove(observation)
    pairs: list[tuple[dict | None, Observation | None]] = [(row, partner.get(i)) for i, row in enumerate(reported)]
    return pairs + [(None, observation) for observation in unpaired]


# ---- the frame ----------------------------------------------------------------------------------

def summarise(samples: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (NaN for one seed), n) of one metric over seeds."""
    series = pd.Series(list(samples), dtype=float)
    return float(series.mean()), float(series.std(ddof=1)), int(series.size)


def _frame_row(spec: TableSpec, reported: dict | None, observation: Observation | None) -> dict[str, Any]:
    key_source = reported if reported is not None else observation.key
    row: dict[str, Any] = {column: plain_value(key_source.get(column)) for column in spec.key}
    for column in spec.context:
        row[column] = plain_value((reported or {}).get(column))
    own_key = {} if observation is None else {c: observation.key.get(c) for c in spec.key}
    differing = {c: v for c, v in own_key.items() if reported is not None and plain_value(reported.get(c)) != v}
    row["reported"] = reported is not None
    row["run"] = None if observation is None else observation.origin
    row["run row"] = ", ".join(f"{c}={v}" for c, v in differing.items()) or None
    row["mode"] = None if observation is None else ", ".join(sorted(observation.modes)) or None
    row["status"] = STATUS_PAPER_ONLY if observation is None else observation.status
    for metric in spec.metrics:
        paper_value = _number(None if reported is None else reported.get(metric))
        samples = [] if observation is None else observation.samples.get(metric, [])
        mean, std, n = summarise(samples) if samples else (math.nan, math.nan, 0)
        row[metric_column(metric, "paper")] = math.nan if paper_value is None else paper_value
        row[metric_column(metric, "mean")] = mean
        row[metric_column(metric, "std")] = std
        row[metric_column(metric, "n")] = n
        row[metric_column(metric, "diff")] = mean - paper_value if paper_value is not None else math.nan
    return row


@dataclass
class TableResult:
    """One table: its spec and the frame (one row per reported and/or reproduced row)."""

    spec: TableSpec
    frame: pd.DataFrame
    environments: list[str] = field(default_factory=list)

    run_keys: list[dict[str, Any] | None] = field(default_factory=list)  # per frame row: the run's own key

    def side_keys(self, side: str) -> list[dict[str, Any] | None]:
        """Per frame row, its key on one side: the reported row's, or the run's own (they differ
        when counts were paired by rank); None where that side has no row."""
        if side == "reproduced":
            return list(self.run_keys)
        keys = self.frame[list(self.spec.key)].to_dict("records")
        return [{c: plain_value(v) for c, v in key.items()} if reported else None
                for key, reported in zip(keys, self.frame["reported"])]

    def runs_with_status(self, prefix: str) -> list[tuple[str, str]]:
        """(run or measurement id, status detail) of the rows whose status starts with `prefix`."""
        rows = self.frame[["run", "status"]].dropna()
        rows = rows[rows["status"].str.startswith(prefix)].drop_duplicates()
        return [(run, status.removeprefix(prefix).lstrip(": ")) for run, status in rows.itertuples(index=False)]

    @property
    def modes(self) -> list[str]:
        return sorted({mode for cell in self.frame["mode"].dropna() for mode in cell.split(", ")})


def build_table(spec: TableSpec, observations: list[Observation]) -> TableResult:
    """Pair, summarise and lay out one table."""
    pairs = pair_rows(spec, observations)
    rows = [_frame_row(spec, reported, observation) for reported, observation in pairs]
    columns = list(spec.key) + spec.context + ["reported", "run", "run row", "mode", "status"]
    columns += [metric_column(m, f) for m in spec.metrics for f in METRIC_FIELDS]
    frame = pd.DataFrame(rows, columns=columns)
    for column in [*spec.key, *spec.context]:  # keep 80 as 80 beside None (pandas would make it 80.0)
        frame[column] = pd.Series([row[column] for row in rows], index=frame.index, dtype=object)
    run_keys = [None if observation is None else {c: plain_value(observation.key.get(c)) for c in spec.key}
                for _, observation in pairs]
    return TableResult(spec, frame, sorted({e for o in observations for e in o.environments}), run_keys)


def build_tables(registry: Registry, results_dir: str | Path, reported_ids: Sequence[str]) -> list[TableResult]:
    """Every table: the reported ones in `reported_ids` order, then the registry's other tables."""
    results_dir = Path(results_dir)
    table_ids = list(reported_ids) + [t for t in registry.tables if t not in reported_ids]
    results = []
    for table_id in table_ids:
        run_ids, measurement_ids = registry.table_members(table_id) if table_id in registry.tables else ([], [])
        if table_id in reported_ids:
            spec = reported_spec(table_id)
        else:
            spec = unreported_spec(table_id, [registry.runs[r].rows[table_id] for r in run_ids]
                                   + [registry.measurements[m]["rows"][table_id] for m in measurement_ids])
        observations = [o for r in run_ids for o in observe_run(registry.runs[r], table_id, spec, results_dir)]
        observations += [o for m in measurement_ids
                         for o in observe_measurement(m, registry.measurements[m], table_id, spec, results_dir)]
        results.append(build_table(spec, observations))
    return results


# ---- values for the claim checks ----------------------------------------------------------------

class TableValues:
    """The `mld.claims.Values` lookup over built tables, on the paper's or the reproduced side."""

    def __init__(self, tables: Iterable[TableResult], side: str) -> None:
        if side not in ("paper", "reproduced"):
            raise ValueError(f"side must be 'paper' or 'reproduced', not {side!r}")
        self.side = side
        self.tables = {table.spec.table_id: table for table in tables}

    def _table(self, table_id: str) -> TableResult:
        if table_id not in self.tables:
            raise MissingValue(f"table {table_id} (not built)")
        return self.tables[table_id]

    def _row(self, table_id: str, key: Mapping[str, Any]) -> pd.Series:
        """The one frame row whose key on this side matches `key`."""
        table = self._table(table_id)
        wanted = {column: plain_value(value) for column, value in key.items()}
        unknown = set(wanted) - set(table.spec.key)
        if unknown:  # the registry's rows for this table changed shape: the check cannot find its row
            raise MissingValue(f"key column(s) {sorted(unknown)} in {table_id} (its key is {list(table.spec.key)})")
        matches = [index for index, own in zip(table.frame.index, table.side_keys(self.side))
                   if own is not None and all(own.get(c) == v for c, v in wanted.items())]
        if len(matches) != 1:
            raise MissingValue(f"{self.side} row {wanted} in {table_id} ({len(matches) or 'no'} matching rows)")
        return table.frame.loc[matches[0]]

    def get(self, table_id: str, metric: str, **key: Any) -> Estimate:
        row = self._row(table_id, key)
        if self.side == "paper":
            value = row[metric_column(metric, "paper")]
            if math.isnan(value):
                raise MissingValue(f"reported {metric} of {key} in {table_id} (not reported)")
            return Estimate(float(value))
        n = int(row[metric_column(metric, "n")])
        if n == 0:
            raise MissingValue(f"reproduced {metric} of {key} in {table_id} ({row['status']})")
        return Estimate(float(row[metric_column(metric, "mean")]), float(row[metric_column(metric, "std")]), n)

    def keys(self, table_id: str, **filters: Any) -> list[dict[str, Any]]:
        """This side's row keys that match `filters`, in table order."""
        wanted = {column: plain_value(value) for column, value in filters.items()}
        return [own for own in self._table(table_id).side_keys(self.side)
                if own is not None and all(own.get(c) == v for c, v in wanted.items())]

    def infeasible(self, table_id: str, **key: Any) -> bool:
        """Reproduced: the run's status is infeasible. Paper: the row reports some metrics but not
        others (Table 2's transformer-decoder: FLOPs, and "NA" for mAP)."""
        row = self._row(table_id, key)
        if self.side == "reproduced":
            return str(row["status"]).startswith(STATUS_INFEASIBLE)
        reported = [not math.isnan(row[metric_column(m, "paper")]) for m in self.tables[table_id].spec.metrics]
        return any(reported) and not all(reported)


# ---- markdown -----------------------------------------------------------------------------------

MODE_LABELS = {
    "cached_features": "cached features (heads trained on the frozen, pretrained backbone's cached feature maps)",
    "end_to_end": "end to end (backbone and head trained on images)",
    "measurement": "cost measurements on the machine that ran the job",
}


@dataclass(frozen=True)
class ReportHeader:
    """What produced the results: printed at the top of tables.md."""

    config: str
    label: str
    mode: str
    seeds: Sequence[int]
    datasets: Sequence[str]
    synthetic: bool


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (cells escaped: '|' would split a cell)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def _reproduced_cell(row: pd.Series, metric: str) -> str:
    n = int(row[metric_column(metric, "n")])
    if n == 0:
        status = str(row["status"])
        if status == STATUS_PAPER_ONLY:
            return "—"
        return status.split(":")[0] if status.startswith((STATUS_INFEASIBLE, STATUS_MISSING)) else "n/a"
    mean, std = row[metric_column(metric, "mean")], row[metric_column(metric, "std")]
    spread = "" if math.isnan(std) else f" ± {_format_number(std, like=mean)}"
    return f"{_format_number(mean)}{spread} (n={n})"


def _paper_cell(row: pd.Series, metric: str) -> str:
    value = row[metric_column(metric, "paper")]
    if not row["reported"]:
        return "—"
    return "NA" if math.isnan(value) else f"{value:g}"


def _diff_cell(row: pd.Series, metric: str) -> str:
    value = row[metric_column(metric, "diff")]
    return "" if math.isnan(value) else f"{value:+.2f}"


def _key_cell(value: Any) -> str:
    value = plain_value(value)
    return "—" if value is None else str(value)


def _run_cell(row: pd.Series) -> str:
    if row["run"] is None or (isinstance(row["run"], float) and math.isnan(row["run"])):
        return "—"
    own = f" ({row['run row']})" if isinstance(row["run row"], str) else ""
    return f"`{row['run']}`{own}"


def render_table(table: TableResult) -> str:
    """The markdown rows of one table: paper, reproduced and difference per metric."""
    spec, frame = table.spec, table.frame
    notes = "note" in spec.context
    reported = not spec.reported.empty
    parts = ("paper", "reproduced", "diff") if reported else ("reproduced",)
    header = list(spec.key) + [f"{m} {part}" for m in spec.metrics for part in parts]
    header += ["run", "status"] + (["note"] if notes else [])
    rows = []
    for _, row in frame.iterrows():
        cells = [_key_cell(row[column]) for column in spec.key]
        for metric in spec.metrics:
            if reported:
                cells += [_paper_cell(row, metric), _reproduced_cell(row, metric), _diff_cell(row, metric)]
            else:
                cells.append(_reproduced_cell(row, metric))
        cells += [_run_cell(row), str(row["status"])]
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


def render_section(table: TableResult, claims: pd.DataFrame) -> str:
    """One table's section: title, provenance, missing/infeasible runs, the table, its claims."""
    spec = table.spec
    parts = [f"## {spec.title} (`{spec.table_id}`)",
             f"Source: {spec.source}. Reproduced: {_mode_text(table.modes)}."]
    for prefix, what in ((STATUS_MISSING, "Missing runs"), (STATUS_PARTIAL, "Runs with missing seeds")):
        runs = table.runs_with_status(prefix)
        if runs:
            parts.append(f"{what}: " + "; ".join(f"`{run}` ({detail})" for run, detail in runs) + ".")
    for run, detail in table.runs_with_status(STATUS_INFEASIBLE):
        parts.append(f"Infeasible, not trained: `{run}`: {detail}.")
    parts.append(render_table(table))
    own_claims = claims[claims["table"] == spec.table_id]
    if not own_claims.empty:
        parts.append("Claims:\n\n" + render_claims(own_claims))
    return "\n\n".join(parts)


def render_markdown(tables: Sequence[TableResult], claims: pd.DataFrame, header: ReportHeader) -> str:
    """The whole results/tables.md."""
    environments = sorted({e for table in tables for e in table.environments})
    counts = claims["reproduced verdict"].value_counts()
    summary = ", ".join(f"{counts[verdict]} {verdict}" for verdict in counts.index)
    data = ("synthetic stand-ins for the papers' datasets: absolute values are not comparable with the "
            "papers', only the comparisons within a table are" if header.synthetic else "the papers' datasets")
    lines = [
        f"# Reproduced results: {header.label}",
        "",
        f"- Config: `{header.config}` (mode {header.mode}, seeds {', '.join(map(str, header.seeds))}).",
        f"- Data: {data}.",
        *(f"  - {dataset}" for dataset in header.datasets),
        f"- Training: {MODE_LABELS.get(header.mode, header.mode)}.",
        "- Software and hardware of the runs (metrics.json `versions`):",
        *(f"  - {environment}" for environment in environments or ["no run outputs yet"]),
        "- Reproduced cells: mean ± sample standard deviation over seeds (n = seeds with outputs); "
        "diff = reproduced mean - paper value; \"—\": no such row on that side; NA: the paper reports none.",
        f"- Within seed noise: {NOISE_DEFINITION}",
        f"- Claims on the reproduced values: {summary or 'none'} (of {len(claims)}).",
    ]
    glance = markdown_table(["claim", "table", "reproduced", "paper"],
                            claims[["claim", "table", "reproduced verdict", "paper verdict"]].itertuples(index=False))
    sections = ["## Claims at a glance (evidence under each table)\n\n" + glance]
    sections += [render_section(table, claims) for table in tables]
    orphans = claims[~claims["table"].isin([t.spec.table_id for t in tables])]
    if not orphans.empty:
        sections.append("## Claims on tables not built\n\n" + render_claims(orphans))
    return "\n".join(lines) + "\n\n" + "\n\n".join(sections) + "\n"
