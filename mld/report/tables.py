"""The long-form results frame -> one pandas frame per paper table, the reproduced values beside the
reported ones (building only: mld.report.markdown renders them as tables.md).

For every table (the papers' tables from `mld.report.paper`, then registry tables the papers do not
report) this reads the rows of `mld.report.results` (one per run, seed and metric), summarises every
metric over seeds (mean, sample std, n) and pairs the reproduced rows with the reported rows.
Missing and infeasible runs become rows with a status instead of errors, so a partial results
tree still reports.

What a table compares depends on its data. On the papers' datasets a reproduced value sits beside
the reported one with their difference. On synthetic stand-ins absolute values mean nothing next
to the paper's, so a table with a baseline row (`baseline` in mld/report/paper_values.yaml) shows each
row's effect against it (an mAP difference with its noise margin, a FLOPs or speed ratio) beside
the paper's effect, and the paper's absolute values only for reference.

Pairing: a reproduced row joins the reported row with the same key. Count-like key columns
(queries, classes, layers, resolution) are paired by rank instead, among rows that agree on the
other key columns, when both sides have the same number of such rows: the embedded default scales
counts down (20 classes instead of 80), and its K = N/4 decoder must sit beside the paper's
K = N/4 row, not beside the paper's row that happens to have the same K. The run's own key is then
shown in the run column.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mld.report import results as long_form
from mld.report import stats
from mld.report.claims import MissingValue, Estimate

# A key column that picks the section of metrics.json "final" a row reads (Table 6: one zero-shot
# run gives a "zsl" row and a "gzsl" row): its metrics have that `section` in the frame.
SECTION_COLUMN = "task"
# Metrics shown for tables the papers do not report (e.g. the HSVLT ablations).
UNREPORTED_TABLE_METRICS = ("mAP", "flops_g", "params_m")
# Metrics whose effect is a difference (percentage points); every other metric's is a ratio.
DIFFERENCE_METRICS = frozenset({"mAP", "mAP_seen", "top1", "F1@3", "F1@5"})
# A metric's "mean", "std" and "n" are of the final selection (mld.report.results); its "best epoch mean",
# "best epoch std" and "best epoch n" of the official train.py's, shown beside the paper's value.
BEST_EPOCH = "best epoch"
METRIC_FIELDS = ("paper", "mean", "std", "n", f"{BEST_EPOCH} mean", f"{BEST_EPOCH} std", f"{BEST_EPOCH} n", "diff",
                 "paper effect", "effect", "effect margin")

# A table row's status: a run's own (ok, missing, infeasible: mld.report.results) or one of these.
STATUS_OK, STATUS_MISSING, STATUS_INFEASIBLE = long_form.STATUS_OK, long_form.STATUS_MISSING, long_form.STATUS_INFEASIBLE
STATUS_PAPER_ONLY = "paper only"
STATUS_PARTIAL = "partial"
STATUS_NOT_REPRODUCED = "not reproduced"
STATUS_NOT_COMPARED = "not compared"
NOT_COMPARED_REASON = ("the backbone started from random weights (from_scratch), the paper's from pretrained "
                       "weights; kept out of the claim checks")

LAYOUT_ABSOLUTE = "absolute"     # real data: paper, reproduced, difference
LAYOUT_EFFECTS = "effects"       # synthetic data with a baseline row: effects beside the paper's
LAYOUT_REFERENCE = "reference"   # synthetic data without a baseline: paper values for reference only


def metric_column(metric: str, field_name: str) -> str:
    """The frame column of one field ("paper", "mean", "std", "n", "diff", ...) of one metric."""
    return f"{metric} {field_name}"


def plain_value(value: Any) -> Any:
    """A key value as YAML and the registry write it: NaN -> None, 80.0 -> 80 (pandas floats ints)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NA:
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
    """What a table shows: its key and metric columns, the papers' rows (possibly none), its
    baseline row and, for a table the suite cannot produce, why."""

    table_id: str
    title: str
    source: str
    key: tuple[str, ...]
    metrics: tuple[str, ...]
    reported: pd.DataFrame
    baseline: Mapping[str, Any] | None = None
    not_reproduced: str | None = None

    @property
    def context(self) -> list[str]:
        """Reported columns that are neither key nor metric (dataset, backbone, note, ...)."""
        return [c for c in self.reported.columns if c not in self.key and c not in self.metrics]


def reported_spec(table_id: str) -> TableSpec:
    """A table as the papers report it (through mld.report.paper, the single source of reported numbers)."""
    from mld.report import paper

    spec = paper.table_spec(table_id)
    return TableSpec(table_id, spec["title"], spec["source"], tuple(spec["key"]), tuple(spec["metrics"]),
                     paper.paper_table(table_id), spec.get("baseline"), spec.get("not_reproduced"))


def unreported_spec(table_id: str, rows: Iterable[Mapping[str, Any]]) -> TableSpec:
    """A registry table without reported values: its key is the columns the runs' rows use."""
    key: list[str] = []
    for row in rows:
        key += [column for column in row if column not in key]
    return TableSpec(table_id, table_id.replace("_", " "), "not reported by the papers (reproduced only)",
                     tuple(key), UNREPORTED_TABLE_METRICS, pd.DataFrame(columns=key))


def format_number(value: Any, like: Any = None) -> str:
    """A measured number for people: 2 decimals; none from 1000 up; 3 significant digits below 0.1.
    `like` (a mean) sets the precision of a spread, so a std of 1e-16 prints as 0.00."""
    number = long_form.finite_number(value)
    if number is None:
        return str(value)
    scale = abs(long_form.finite_number(like) or 0.0) if like is not None else abs(number)
    if scale >= 1000:
        return f"{number:.0f}"
    return f"{number:.2f}" if scale >= 0.1 or scale == 0 else f"{number:.3g}"


def summarise(samples: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (NaN for one seed), n) of one metric over seeds; a spread
    that is float noise (a FLOPs count equal in every seed up to rounding) is 0."""
    values = np.asarray(list(samples), dtype=float)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    if values.size > 1 and std <= long_form.RELATIVE_NOISE * max(abs(mean), 1e-300):
        std = 0.0
    return mean, std, int(values.size)


# ---- observations from the long-form frame ------------------------------------------------------

@dataclass(frozen=True)
class RowStatus:
    """Whether a table row's runs finished (`status`, one of the STATUS_* words) and what to add
    (`detail`: the missing seeds, why a run is infeasible or not compared; None: nothing)."""

    status: str
    detail: str | None = None

    def __str__(self) -> str:
        """The row's status cell in the table and its CSV: "infeasible: <reason>"."""
        return self.status if self.detail is None else f"{self.status}: {self.detail}"


@dataclass
class Observation:
    """One reproduced row before it is summarised: each metric's value per finished seed."""

    origin: str                                   # run id or measurement id
    key: dict[str, Any]                           # the row's key columns, as the registry gives them
    expected: list[str]                           # the outputs it needs: "seed0", ... or "measurement"
    samples: dict[str, list[float]] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    environments: set[str] = field(default_factory=set)
    infeasible: str | None = None
    by_seed: dict[str, dict[int, float]] = field(default_factory=dict)      # metric -> seed -> value
    best: dict[str, list[float]] = field(default_factory=dict)              # metric -> best-epoch value per seed
    replicates: dict[str, dict[int, tuple[np.ndarray, str]]] = field(default_factory=dict)
    dataset: str | None = None
    backbone: str | None = None                   # "test_resnet [large]"
    stands_for: str | None = None                 # the paper's backbone of the run's role
    tables: tuple[str, ...] = ()
    compared: bool = True                         # False: random init where the paper's run was pretrained

    @property
    def status(self) -> RowStatus:
        if self.infeasible:
            return RowStatus(STATUS_INFEASIBLE, self.infeasible)
        if not self.compared and self.finished:
            return RowStatus(STATUS_NOT_COMPARED, NOT_COMPARED_REASON)
        missing = [name for name in self.expected if name not in self.finished]
        if not self.finished:
            return RowStatus(STATUS_MISSING, f"no output ({', '.join(missing)})")
        if missing:
            return RowStatus(STATUS_PARTIAL, f"{', '.join(missing)} missing")
        return RowStatus(STATUS_OK)

    def add(self, metric: str, value: Any, seed: int | None = None) -> None:
        number = long_form.finite_number(value)
        if number is not None:
            self.samples.setdefault(metric, []).append(number)
            if seed is not None:
                self.by_seed.setdefault(metric, {})[seed] = number

    def add_best(self, metric: str, value: Any) -> None:
        """A seed's value of `metric` under the official protocol's selection (the best evaluated epoch)."""
        number = long_form.finite_number(value)
        if number is not None:
            self.best.setdefault(metric, []).append(number)


def _seed_label(seed: Any) -> str:
    return "measurement" if plain_value(seed) is None else f"seed{int(seed)}"


def infeasible_text(reason: str, measured: Mapping[str, float]) -> str:
    """"<reason>; measured flops_g=178.6, ..." from an infeasible run's rows."""
    numbers_measured = ", ".join(f"{name}={format_number(value)}" for name, value in measured.items())
    return f"{reason}; measured {numbers_measured}" if numbers_measured else reason


def observe(member: pd.DataFrame, table_id: str, spec: TableSpec,
            replicates: Mapping[tuple[str, int, str], tuple[np.ndarray, str]],
            tables: Sequence[str] = ()) -> list[Observation]:
    """The rows one run or measurement gives a table, from its rows of the long-form frame in that
    table (`tables`: every table it fills).

    A zero-shot run gives one row per section of Table 6 (zsl, gzsl); a measurement with a metric
    per part (module timing's time_ms per module) one row per part, the part filling the key
    column the registry's row leaves out."""
    first = member.iloc[0]
    origin = str(first["run_id"])
    row = {column: plain_value(value) for column, value in long_form.row_key(first).items()}
    # A variant of the row: its key and the section or part of the metrics it reads (None: neither).
    variants: list[tuple[dict[str, Any], str | None, str | None]] = [(row, None, None)]
    if SECTION_COLUMN in spec.key and SECTION_COLUMN not in row:
        sections = sorted({value for value in spec.reported[SECTION_COLUMN] if isinstance(value, str)})
        variants = [({**row, SECTION_COLUMN: section}, section, None) for section in sections]
    else:
        parts_column = next((column for column in spec.key if column not in row), None)
        parts = list(dict.fromkeys(member.loc[member["metric"].isin(spec.metrics), "part"].dropna()))
        if parts_column and parts:
            variants = [({**row, parts_column: part}, None, part) for part in parts]
    expected = list(dict.fromkeys(_seed_label(seed) for seed in member["seed"]))
    compared = first["compared"]
    observations = []
    for key, section, part in variants:
        observation = Observation(origin, key, expected, dataset=first["dataset"],
                                  backbone=None if first["backbone_role"] is None
                                  else f"{first['backbone']} [{first['backbone_role']}]",
                                  stands_for=first["backbone_stands_for"], tables=tuple(tables),
                                  compared=compared is pd.NA or bool(compared))
        for seed, rows in member.groupby(member["seed"].map(_seed_label), sort=False):
            statuses = set(rows["status"])
            if statuses == {STATUS_MISSING}:
                continue
            observation.finished.append(seed)
            observation.modes.update(str(mode) for mode in rows["mode"].dropna())
            observation.environments.update(long_form.describe_environment(record)
                                            for record in rows.to_dict("records"))
            seed_number = plain_value(rows["seed"].iloc[0])
            if STATUS_INFEASIBLE in statuses:
                values = {str(m): float(v) for m, v in zip(rows["metric"], rows["value"]) if m is not None
                          and long_form.finite_number(v) is not None}
                observation.infeasible = infeasible_text(str(rows["reason"].iloc[0]), values)
            scoped = (rows["section"] == section if section else rows["section"].isna()) & (
                rows["part"] == part if part else rows["part"].isna())
            best = rows["selection"] == long_form.SELECTION_BEST_EPOCH
            for metric in spec.metrics:
                named = scoped & (rows["metric"] == metric)
                values = rows.loc[named & ~best, "value"]
                if len(values):
                    observation.add(metric, values.iloc[0], seed_number)
                best_values = rows.loc[named & best, "value"]
                if len(best_values):
                    observation.add_best(metric, best_values.iloc[0])
                unscoped = section is None and part is None
                if unscoped and seed_number is not None and (origin, seed_number, metric) in replicates:
                    observation.replicates.setdefault(metric, {})[seed_number] = replicates[
                        (origin, seed_number, metric)]
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


# ---- effects and their uncertainty --------------------------------------------------------------

def compare(a: Observation, b: Observation, metric: str) -> stats.Difference | None:
    """a - b of one metric over the seeds both have, with its standard error (mld.report.stats).

    The seed part is the spread of the per-seed differences; the image part, when both runs were
    scored on the same validation images, the paired bootstrap of the seed-mean difference."""
    a_values, b_values = a.by_seed.get(metric, {}), b.by_seed.get(metric, {})
    seeds = sorted(set(a_values) & set(b_values))
    if not seeds:
        return None
    per_seed = [a_values[s] - b_values[s] for s in seeds]
    seed_error = stats.seed_standard_error(per_seed)
    a_reps, b_reps = a.replicates.get(metric, {}), b.replicates.get(metric, {})
    image_error = None
    if all(s in a_reps and s in b_reps and a_reps[s][1] == b_reps[s][1] for s in seeds):
        interval = stats.paired_interval([a_values[s] for s in seeds], [b_values[s] for s in seeds],
                                         [a_reps[s][0] for s in seeds], [b_reps[s][0] for s in seeds])
        image_error = interval.standard_error
    if seed_error is None:
        source = (f"1 seed: training noise unknown; images alone ± {stats.Z_TWO_SIDED * image_error:.2f}"
                  if image_error is not None else "1 seed: noise unknown")
    else:
        source = (f"{len(seeds)} seeds + paired bootstrap over images" if image_error is not None
                  else f"{len(seeds)} seeds; no paired scores")
    return stats.Difference(float(np.mean(per_seed)), stats.combine(seed_error, image_error), source)


def paper_difference(a: float, b: float) -> stats.Difference:
    """A difference of two printed values: each is off by its rounding (mld.report.stats)."""
    return stats.Difference(a - b, math.hypot(stats.PRINTED_STANDARD_ERROR, stats.PRINTED_STANDARD_ERROR),
                            "printed values")


def _effect(metric: str, value: float, baseline: float) -> float:
    if metric in DIFFERENCE_METRICS:
        return value - baseline
    return value / baseline if baseline else math.nan


# ---- the frame ----------------------------------------------------------------------------------

def row_status(spec: TableSpec, observation: Observation | None) -> RowStatus:
    """A frame row's status: its run's, or why it has none."""
    if observation is None:
        return RowStatus(STATUS_NOT_REPRODUCED if spec.not_reproduced else STATUS_PAPER_ONLY)
    return observation.status


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
    row["status"] = str(row_status(spec, observation))
    for metric in spec.metrics:
        paper_value = long_form.finite_number(None if reported is None else reported.get(metric))
        samples = [] if observation is None else observation.samples.get(metric, [])
        mean, std, n = summarise(samples) if samples else (math.nan, math.nan, 0)
        row[metric_column(metric, "paper")] = math.nan if paper_value is None else paper_value
        row[metric_column(metric, "mean")] = mean
        row[metric_column(metric, "std")] = std
        row[metric_column(metric, "n")] = n
        best = [] if observation is None else observation.best.get(metric, [])
        best_mean, best_std, best_n = summarise(best) if best else (math.nan, math.nan, 0)
        row[metric_column(metric, f"{BEST_EPOCH} mean")] = best_mean
        row[metric_column(metric, f"{BEST_EPOCH} std")] = best_std
        row[metric_column(metric, f"{BEST_EPOCH} n")] = best_n
        row[metric_column(metric, "diff")] = math.nan
        for name in ("paper effect", "effect", "effect margin"):
            row[metric_column(metric, name)] = math.nan
    return row


@dataclass
class TableResult:
    """One table: its spec, the frame (one row per reported and/or reproduced row), how it is laid out."""

    spec: TableSpec
    frame: pd.DataFrame
    environments: list[str] = field(default_factory=list)
    run_keys: list[dict[str, Any] | None] = field(default_factory=list)  # per frame row: the run's own key
    observations: list[Observation | None] = field(default_factory=list)  # per frame row
    statuses: list[RowStatus] = field(default_factory=list)               # per frame row (its `status` cell)
    baselines: list[int | None] = field(default_factory=list)            # per frame row: its baseline's index
    layout: str = LAYOUT_ABSOLUTE
    datasets: list[str] = field(default_factory=list)                    # stand-in lines of its runs' data

    def side_keys(self, side: str) -> list[dict[str, Any] | None]:
        """Per frame row, its key on one side: the reported row's, or the run's own (they differ
        when counts were paired by rank); None where that side has no row."""
        if side == "reproduced":
            return list(self.run_keys)
        keys = self.frame[list(self.spec.key)].to_dict("records")
        return [{c: plain_value(v) for c, v in key.items()} if reported else None
                for key, reported in zip(keys, self.frame["reported"])]

    def runs_with_status(self, status: str) -> list[tuple[str, str]]:
        """(run or measurement id, status detail) of the rows with `status`, each once."""
        return list(dict.fromkeys((observation.origin, own.detail or "")
                                  for observation, own in zip(self.observations, self.statuses)
                                  if observation is not None and own.status == status))

    @property
    def modes(self) -> list[str]:
        return sorted({mode for observation in self.observations if observation is not None
                       for mode in observation.modes})


def _baseline_indices(spec: TableSpec, frame: pd.DataFrame) -> list[int | None]:
    """Per frame row, the index of its baseline row (None: no baseline, or the row is one)."""
    if not spec.baseline:
        return [None] * len(frame)
    match = {c: plain_value(v) for c, v in spec.baseline["match"].items()}
    within = list(spec.baseline.get("within", []))
    keys = [{c: plain_value(v) for c, v in key.items()} for key in frame[list(spec.key)].to_dict("records")]
    candidates = [i for i, key in enumerate(keys) if all(key.get(c) == v for c, v in match.items())]
    indices: list[int | None] = []
    for i, key in enumerate(keys):
        found = [j for j in candidates if all(keys[j].get(c) == key.get(c) for c in within)]
        indices.append(found[0] if found and found[0] != i else None)
    return indices


def _fill_effects(table: TableResult) -> None:
    frame, spec = table.frame, table.spec
    for i, j in enumerate(table.baselines):
        for metric in spec.metrics:
            paper_value, paper_base = frame.at[i, metric_column(metric, "paper")], None
            mean = frame.at[i, metric_column(metric, "mean")]
            if j is None:
                if table.layout == LAYOUT_ABSOLUTE and not math.isnan(paper_value) and not math.isnan(mean):
                    frame.at[i, metric_column(metric, "diff")] = mean - paper_value
                continue
            paper_base = frame.at[j, metric_column(metric, "paper")]
            if not (math.isnan(paper_value) or math.isnan(paper_base)):
                frame.at[i, metric_column(metric, "paper effect")] = _effect(metric, paper_value, paper_base)
            base_mean = frame.at[j, metric_column(metric, "mean")]
            if table.layout == LAYOUT_ABSOLUTE and not math.isnan(paper_value) and not math.isnan(mean):
                frame.at[i, metric_column(metric, "diff")] = mean - paper_value
            if math.isnan(mean) or math.isnan(base_mean):
                continue
            own, base = table.observations[i], table.observations[j]
            if metric in DIFFERENCE_METRICS and own is not None and base is not None:
                difference = compare(own, base, metric)
                if difference is not None:
                    frame.at[i, metric_column(metric, "effect")] = difference.value
                    margin = difference.margin()
                    frame.at[i, metric_column(metric, "effect margin")] = math.nan if margin is None else margin
            else:
                frame.at[i, metric_column(metric, "effect")] = _effect(metric, mean, base_mean)


def build_table(spec: TableSpec, observations: list[Observation], synthetic: bool = False,
                datasets: Sequence[str] = ()) -> TableResult:
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
    layout = LAYOUT_ABSOLUTE
    if synthetic:
        layout = LAYOUT_EFFECTS if spec.baseline else LAYOUT_REFERENCE
    table = TableResult(spec, frame, sorted({e for o in observations for e in o.environments}), run_keys,
                        [observation for _, observation in pairs], [row_status(spec, o) for _, o in pairs],
                        _baseline_indices(spec, frame), layout, list(datasets))
    _fill_effects(table)
    return table


def build_tables(collected: long_form.Collected, reported_ids: Sequence[str]) -> list[TableResult]:
    """Every table from the long-form frame: the reported ones in `reported_ids` order, then the
    rest in the order the frame first names them."""
    frame = collected.frame
    members = frame[frame["kind"].isin([long_form.KIND_RUN, long_form.KIND_MEASUREMENT])]
    datasets = frame[frame["kind"] == long_form.KIND_DATASET]
    synthetic_datasets = set(datasets.loc[datasets["dataset_source"] == "synthetic", "dataset"])
    stand_ins = dict(zip(datasets["dataset"], datasets["dataset_stands_for"]))
    groups = {key: rows for key, rows in members.groupby(["table_id", "run_id"], sort=False)}
    tables_of = {run_id: list(dict.fromkeys(rows["table_id"].dropna()))
                 for run_id, rows in members.groupby("run_id", sort=False)}
    named = list(dict.fromkeys(members["table_id"].dropna()))
    results = []
    for table_id in list(reported_ids) + [t for t in named if t not in reported_ids]:
        in_table = [run_id for table, run_id in groups if table == table_id]
        if table_id in reported_ids:
            spec = reported_spec(table_id)
        else:
            spec = unreported_spec(table_id, [long_form.row_key(groups[(table_id, r)].iloc[0]) for r in in_table])
        observations = [o for run_id in in_table for o in observe(groups[(table_id, run_id)], table_id, spec,
                                                                     collected.replicates, tables_of[run_id])]
        used = list(dict.fromkeys(o.dataset for o in observations if o.dataset))
        synthetic = bool(used) and all(d in synthetic_datasets for d in used)
        results.append(build_table(spec, observations, synthetic, [stand_ins[d] for d in used if d in stand_ins]))
    return results


# ---- values for the claim checks ----------------------------------------------------------------

@dataclass(frozen=True)
class Compared:
    """A difference between two rows of one side, and the paper's difference of the same rows."""

    difference: stats.Difference
    paper_effect: float | None


class TableValues:
    """The `mld.report.claims.Values` lookup over built tables, on the paper's or the reproduced side."""

    def __init__(self, tables: Iterable[TableResult], side: str) -> None:
        if side not in ("paper", "reproduced"):
            raise ValueError(f"side must be 'paper' or 'reproduced', not {side!r}")
        self.side = side
        self.tables = {table.spec.table_id: table for table in tables}

    def _table(self, table_id: str) -> TableResult:
        if table_id not in self.tables:
            raise MissingValue(f"table {table_id} (not built)")
        return self.tables[table_id]

    def _index(self, table_id: str, key: Mapping[str, Any]) -> int:
        """The index of the one frame row whose key on this side matches `key`."""
        table = self._table(table_id)
        wanted = {column: plain_value(value) for column, value in key.items()}
        unknown = set(wanted) - set(table.spec.key)
        if unknown:  # the registry's rows for this table changed shape: the check cannot find its row
            raise MissingValue(f"key column(s) {sorted(unknown)} in {table_id} (its key is {list(table.spec.key)})")
        matches = [index for index, own in zip(table.frame.index, table.side_keys(self.side))
                   if own is not None and all(own.get(c) == v for c, v in wanted.items())]
        if len(matches) != 1:
            raise MissingValue(f"{self.side} row {wanted} in {table_id} ({len(matches) or 'no'} matching rows)")
        return int(matches[0])

    def get(self, table_id: str, metric: str, **key: Any) -> Estimate:
        index = self._index(table_id, key)
        row = self._table(table_id).frame.loc[index]
        if self.side == "paper":
            value = row[metric_column(metric, "paper")]
            if math.isnan(value):
                raise MissingValue(f"reported {metric} of {key} in {table_id} (not reported)")
            return Estimate(float(value))
        n = int(row[metric_column(metric, "n")])
        if n == 0 or self._table(table_id).statuses[index].status == STATUS_NOT_COMPARED:
            raise MissingValue(f"reproduced {metric} of {key} in {table_id} ({row['status']})")
        return Estimate(float(row[metric_column(metric, "mean")]), float(row[metric_column(metric, "std")]), n)

    def difference(self, table_id: str, metric: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> Compared:
        """a - b of one metric, with its noise (mld.report.stats), and the paper's a - b of the same rows."""
        table = self._table(table_id)
        i, j = self._index(table_id, a), self._index(table_id, b)
        column = metric_column(metric, "paper")
        pa, pb = table.frame.at[i, column], table.frame.at[j, column]
        paper_effect = None if math.isnan(pa) or math.isnan(pb) else float(pa - pb)
        if self.side == "paper":
            if paper_effect is None:
                raise MissingValue(f"reported {metric} of {a} or {b} in {table_id} (not reported)")
            return Compared(paper_difference(float(pa), float(pb)), paper_effect)
        own, other = table.observations[i], table.observations[j]
        for observation, key in ((own, a), (other, b)):
            if observation is not None and not observation.compared:
                raise MissingValue(f"reproduced {metric} of {key} in {table_id} ({observation.status})")
        difference = None if own is None or other is None else compare(own, other, metric)
        if difference is None:
            raise MissingValue(f"reproduced {metric} of {a} and {b} in {table_id} (no common seeds)")
        return Compared(difference, paper_effect)

    def keys(self, table_id: str, **filters: Any) -> list[dict[str, Any]]:
        """This side's row keys that match `filters`, in table order."""
        wanted = {column: plain_value(value) for column, value in filters.items()}
        return [own for own in self._table(table_id).side_keys(self.side)
                if own is not None and all(own.get(c) == v for c, v in wanted.items())]

    def infeasible(self, table_id: str, **key: Any) -> bool:
        """Reproduced: the run's status is infeasible. Paper: the row reports some metrics but not
        others (Table 2's transformer-decoder: FLOPs, and "NA" for mAP)."""
        index = self._index(table_id, key)
        row = self._table(table_id).frame.loc[index]
        if self.side == "reproduced":
            return self._table(table_id).statuses[index].status == STATUS_INFEASIBLE
        reported = [not math.isnan(row[metric_column(m, "paper")]) for m in self.tables[table_id].spec.metrics]
        return any(reported) and not all(reported)
