"""The long-form results frame (`results/runs.csv`): every measured number, one row each, its keys
as columns.

The workflow's first report step collects the run directories and cost measurements of a
registry into one frame; every table, claim, CSV and figure is a view of it, and
`mld report --from runs.csv` rebuilds them without run directories or a config. So the frame
carries what the tables need besides the numbers: each run's row in each table (the `row_*`
columns), what stands in for the paper's datasets and backbones, and the report's header.
No cell holds a list, a mapping or JSON: every key is a column, every fact a row.

Row kinds (column `kind`):
* run: one row per (table, run, seed, selection, section, metric). `table_id` is one table the run
  fills and `row_<column>` its row there (`row_head`, `row_queries`, ...; empty: the table's row has
  no such column); a run in three tables has its numbers three times, once per table. `metric` is a
  metrics.json "final" or "best_epoch" key, `section` the part of "final" it sits in (Table 6's
  `zsl`, `gzsl`; empty for the rest), or a cost.json key (flops_g, params_m, ...) or train_time_s.
  A seed without outputs is one row per table with status "missing" and no metric; an infeasible
  run's rows have status "infeasible" and its `reason`, with the cost it measured.
* selection: which weights a run's metric was measured with. "final": the last epoch's better of
  the model and its EMA (the suite's protocol); "best_epoch": the highest over the evaluated
  epochs of the better of the two (the official train.py's protocol, behind the paper's numbers);
  empty for what does not depend on it (costs, training time, measurements).
* measurement: one row per (table, measurement, round, metric, part); a metric given per part
  (module timing's time_ms per module) has the part in `part`. A timing taken in rounds (mld.cost)
  has one row per round and metric, the round numbered in `seed`: the replicates whose spread
  decides a speed claim, as seeds decide an mAP one.
* report: the header, one row: `label`, `config_file`, `mode`, `git_commit`.
  seed: one row per seed the config plans (`seed`). skipped_table: one row per table the config
  leaves out (`table_id`, the config's skip_tables). dataset: one row per dataset (`dataset`,
  `dataset_source`, `dataset_stands_for`). backbone: one row per backbone role (`backbone_role`,
  its `description`, `backbone_stands_for`).
* config: one row per run and measurement and config key (without the seed): `config_key` the dotted
  key ("train.lr", "model.backbone_options.channels.0"), `config_value` its value, so results from
  several places can be merged and compared key by key (mld.report.merge).

What produced a run seed or measurement is in columns of its own: `device` and, for a measurement,
`amp`; the software versions of metrics.json "versions" (`mld_version`, `python_version`,
`torch_version`, `timm_version`, `numpy_version`, `cuda_version`, `platform`, `cpu`, `gpu`);
environments.csv and the tables' environment lines are views of them (`describe_environment`).

Typing: `seed` is an integer, `value` a float, `compared` and `amp` booleans, the rest text. The
`row_*` and `config_value` cells hold values that came from YAML (table.yaml, the config) and may be
of any scalar type within one column (hsvlt_ablation's `value`: 4, cross_attention, false), so each
cell is written as YAML writes that scalar (`4`, `false`, `null`, `cross_attention`; a string YAML
would read as another type is quoted: `'4'`) and read back with YAML's rules: ints stay ints, null
stays null (`null`, as opposed to an empty cell: no such key), strings stay strings.

A merged file (`mld merge`) adds the column `site`: where each row came from. A runs.csv written
by an older mld (one `table_ids` cell per run, its rows as JSON, the versions in one string) is
refused with the command that rebuilds it.

Per-image scores for paired comparisons are kept as bootstrap replicates (mld.report.stats) in a
companion file beside runs.csv, `runs.bootstrap.npz`: for each (run, seed, metric) the metric on the
same R resamples of the validation images, and a digest of the validation targets, so two runs are
paired only when they were scored on the same images. The per-epoch history of each run (its
metrics.json "history") goes to a second companion, `runs.history.csv` (mld.report.history).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from mld.report import history, stats
from mld.atomic import config_hash, write_npz, write_text
from mld.data.prepared import images_with_positive
from mld.experiments import Registry, paper_class_count
from mld.paths import measurement_path, run_dir
from mld.weights import read_manifest, shipped_file

# metrics.json "versions" key -> its column, in the order mld.engine.outputs.software_versions writes them.
VERSION_COLUMNS = {"mld": "mld_version", "python": "python_version", "torch": "torch_version",
                   "timm": "timm_version", "numpy": "numpy_version", "platform": "platform", "cpu": "cpu",
                   "cuda": "cuda_version", "gpu": "gpu"}
COLUMNS = ("kind", "table_id", "run_id", "seed", "selection", "section", "metric", "part", "value", "status",
           "reason", "mode", "task", "dataset", "dataset_stands_for", "backbone", "backbone_role",
           "backbone_stands_for", "weights", "compared", "device", "amp", *VERSION_COLUMNS.values(), "git_commit",
           "config_hash", "label", "config_file", "dataset_source", "description", "config_key", "config_value")
ROW_PREFIX = "row_"  # row_<column>: the run's row in table `table_id`, one column per key column
BOOLEAN_COLUMNS = ("compared", "amp")
# Columns a runs.csv may have besides COLUMNS and the row_* ones: where a merged row came from (mld.report.merge).
OPTIONAL_COLUMNS = ("site",)
# Columns of runs.csv files written by an older mld, which kept keys inside cells.
OLD_COLUMNS = ("table_ids", "rows", "versions", "note")
KIND_RUN, KIND_MEASUREMENT, KIND_CONFIG = "run", "measurement", "config"
KIND_REPORT, KIND_SEED, KIND_SKIPPED_TABLE, KIND_DATASET, KIND_BACKBONE = (
    "report", "seed", "skipped_table", "dataset", "backbone")
HEADER_KINDS = (KIND_REPORT, KIND_SEED, KIND_SKIPPED_TABLE, KIND_DATASET, KIND_BACKBONE)
STATUS_OK, STATUS_MISSING, STATUS_INFEASIBLE = "ok", "missing", "infeasible"
COST_FILE_METRICS = ("flops_g", "params_m", "head_flops_g", "head_params_m")
# metrics.json "final" and "best_epoch" keys that are bookkeeping, not measurements.
FINAL_SKIP = frozenset({"selected", "selected_by", "candidates"})
# The metrics.json sections of the two selections, which are also the values of column `selection`.
SELECTION_FINAL, SELECTION_BEST_EPOCH = "final", "best_epoch"
# Metrics whose per-image replicates are kept for paired comparisons: (metric, how it is scored).
PAIRED_METRICS = {"multilabel": "mAP", "zero_shot": "mAP", "single_label": "top1"}
BOOTSTRAP_SUFFIX = ".bootstrap.npz"  # runs.csv -> runs.bootstrap.npz (mld.paths.RUNS_BOOTSTRAP)
CSV_FLOAT_FORMAT = "%.10g"  # drops float noise (0.10000000000000002) and keeps every measured digit
# Spreads below this fraction of a value are float noise (a seed-independent FLOPs count): shown as 0.
RELATIVE_NOISE = 1e-9


@dataclass(frozen=True)
class Header:
    """What produced the results, stored as the header rows so that a runs.csv alone prints it."""

    label: str
    config_file: str | None = None
    mode: str | None = None
    seeds: Sequence[int] = ()
    skipped_tables: Sequence[str] = ()   # the config's skip_tables: planned nothing there


def bootstrap_path(runs_csv: str | Path) -> Path:
    """The companion file of a runs.csv."""
    path = Path(runs_csv)
    return path.with_name(path.name.removesuffix(".csv") + BOOTSTRAP_SUFFIX)


def finite_number(value: Any) -> float | None:
    """A finite real number as a float (not a bool, NaN or infinity), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


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


def scalar_text(value: Any) -> str:
    """A key or config value as its cell: the scalar as YAML writes it ("4", "false", "null", "gap",
    "'4'" for the string 4; "{}" or "[]" for an empty block), so that `scalar_value` gives back the
    same value of the same type."""
    if isinstance(value, (Mapping, list, tuple)):
        if value:
            raise ValueError(f"{value!r} is not a scalar; a runs.csv cell holds one value")
        return "{}" if isinstance(value, Mapping) else "[]"
    return _scalar_text(value)


@functools.lru_cache(maxsize=None, typed=True)
def _scalar_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("\n...\n").rstrip("\n")


@functools.lru_cache(maxsize=None)
def scalar_value(text: str) -> Any:
    """The value of a `row_*` or `config_value` cell (see `scalar_text`)."""
    return yaml.safe_load(text)


def row_key(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run's row in the table of one frame row, from its `row_*` cells (keys sorted, as the columns)."""
    return {column.removeprefix(ROW_PREFIX): scalar_value(text) for column, text in row.items()
            if column.startswith(ROW_PREFIX) and isinstance(text, str)}


def row_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """The `row_*` cells of a run's row in one table."""
    return {f"{ROW_PREFIX}{column}": scalar_text(value) for column, value in sorted(row.items())}


def describe_environment(row: Mapping[str, Any]) -> str:
    """One line naming the software and hardware of a run seed or measurement row ("mld 0.1.0,
    python 3.11.7, ..."; a measurement adds its device and amp)."""
    named = [(name, row.get(column)) for name, column in VERSION_COLUMNS.items()]
    if row.get("kind") == KIND_MEASUREMENT:
        named += [("device", row.get("device")), ("amp", row.get("amp"))]
    parts = [f"{name} {value}" for name, value in named if value is not None and value is not pd.NA]
    return ", ".join(parts) or "not recorded"


def _version_cells(versions: Any) -> dict[str, str]:
    if not isinstance(versions, Mapping):
        return {}
    return {column: str(versions[name]) for name, column in VERSION_COLUMNS.items() if name in versions}


def git_commit(root: Path = Path(".")) -> str:
    """The commit of the checkout (the working directory, where the results are) when the results
    are collected ("+dirty" with uncommitted changes)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def numbers_in(values: Mapping[str, Any]) -> Iterator[tuple[str, str | None, float]]:
    """(key, inner key, number) of every finite number of a mapping, one level of nesting deep:
    {"mAP": 1, "zsl": {"mAP": 2}} -> ("mAP", None, 1.0), ("zsl", "mAP", 2.0)."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from ((str(key), str(inner), number) for inner, item in value.items()
                        if (number := finite_number(item)) is not None)
        elif (number := finite_number(value)) is not None:
            yield str(key), None, number


def _config_leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every scalar (or empty block) of a config, keys sorted (as its
    canonical JSON); list items by index."""
    items = sorted(config.items()) if isinstance(config, Mapping) else enumerate(config) \
        if isinstance(config, (list, tuple)) else None
    if items is None or not config:
        yield prefix.rstrip("."), config
        return
    for key, value in items:
        yield from _config_leaves(value, f"{prefix}{key}.")


# ---- what stands in for what --------------------------------------------------------------------

PAPER_DATASET_NAMES = {"coco": "MS-COCO", "voc": "Pascal VOC 2007", "nus": "NUS-WIDE", "openimages": "Open Images",
                       "imagenet": "ImageNet", "pretrain": "the backbones' pretraining data"}


def dataset_stand_in(entry: Mapping[str, Any]) -> str:
    """"coco-like, synthetic (preset coco-like, 64 px), standing for MS-COCO"; a real dataset whose
    class count the paper states differently says so ("Open Images, 9605 classes: the paper's ...")."""
    paper_name = PAPER_DATASET_NAMES.get(str(entry.get("role")), str(entry.get("role")))
    counted = paper_class_count(entry.get("role"), entry.get("num_classes"))
    if counted:
        paper_name += f", {counted['classes']} classes: {counted['note']}"
    if entry.get("source") == "synthetic":
        sizes = [f"{entry[k]} {k.removeprefix('num_')}" for k in ("num_train", "num_val") if entry.get(k)]
        detail = f"synthetic preset {entry.get('preset')}, {entry.get('image_size')} px" + (
            f", {' / '.join(sizes)} images" if sizes else "")
        return f"{entry.get('name')}, synthetic ({detail}), standing for {paper_name}"
    if entry.get("source") == "adapter":
        return f"{entry.get('name')}: {paper_name} ({entry.get('adapter')} release at {entry.get('root')})"
    return f"{entry.get('name')}: {paper_name} (prepared dataset at {entry.get('path')})"


def describe_backbone(config: Mapping[str, Any], role: str) -> str:
    """"`large`: test_resnet {channels: [48, 72, 72, 144]}" or "`resnet101`: the `medium` backbone"."""
    spec = config["backbones"][role]
    if not isinstance(spec, Mapping):
        return f"`{role}`: the `{spec}` backbone"
    options = spec.get("options") or {}
    text = f"`{role}`: {spec['name']}" + (f" {json.dumps(options, sort_keys=True)}" if options else "")
    shipped = (config.get("pretraining") or {}).get("weights") if config.get("mode") == "cached_features" else None
    if shipped:
        entry = read_manifest(shipped).get(role) or {}
        return text + (f", pretrained weights {shipped_file(shipped, role)} (shipped; sha256 "
                       f"{str(entry.get('sha256'))[:12]}, made on {entry.get('made_on', 'unknown')})")
    return text + (f", weights {spec['weights']}" if spec.get("weights") else "")


# ---- collecting a results tree ------------------------------------------------------------------

@dataclass
class Collected:
    """The long-form frame, its bootstrap replicates ((run id, seed, metric) -> [R], digest) and
    the runs' per-epoch history (mld.report.history.COLUMNS)."""

    frame: pd.DataFrame
    replicates: dict[tuple[str, int, str], tuple[np.ndarray, str]] = field(default_factory=dict)
    history: pd.DataFrame = field(default_factory=history.empty)


def _targets_digest(targets: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(targets.astype(np.int8)).tobytes()
                          + str(targets.shape).encode()).hexdigest()[:16]


def _metric_arrays(prediction: Path, task: str, data_path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, targets) of the headline metric of a run's predictions.npz (ZSL: the unseen classes,
    on the images the ZSL metrics score: those with an unseen positive).

    ZSL mAP is scored from a pass over the unseen classes alone; predictions.npz holds the pass over
    all classes, so unless it also holds `zsl_scores` the unseen columns of that pass stand in
    (the same scores for full decoding, close to them for group decoding)."""
    if not prediction.is_file():
        return None
    with np.load(prediction) as archive:
        if task == "zero_shot" and "zsl_scores" in archive.files:
            return _zsl_images(archive["zsl_scores"], archive["zsl_targets"])
        scores, targets = archive["scores"], archive["targets"]
    if task == "zero_shot":
        meta = read_json(data_path / "meta.json") if data_path is not None else None
        unseen = (meta or {}).get("unseen_classes")
        if not unseen:
            return None
        return _zsl_images(scores[:, unseen], targets[:, unseen])
    return scores, targets


def _zsl_images(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = images_with_positive(targets)
    return scores[keep], targets[keep]


def _replicates(arrays: tuple[np.ndarray, np.ndarray], task: str) -> tuple[np.ndarray, str]:
    scores, targets = arrays
    weights = stats.resample_weights(len(scores))
    score = stats.weighted_top1 if task == "single_label" else stats.weighted_average_precision
    return score(scores, targets, weights).astype(np.float32), _targets_digest(targets)


def _base_row(**values: Any) -> dict[str, Any]:
    row = {column: None for column in COLUMNS}
    row.update(values)
    return row


def _in_tables(registry: Registry, member_id: str, rows: Mapping[str, Mapping[str, Any]],
               seed_rows: list[dict]) -> list[dict]:
    """Each row of one seed (or measurement round) once per table the run or measurement fills, with
    the table's id and the run's row there; once without a table when it fills none."""
    tables = [table_id for table_id, members in registry.tables.items() if member_id in members]
    if not tables:
        return seed_rows
    return [{**row, "table_id": table_id, **row_cells(rows[table_id])} for table_id in tables for row in seed_rows]


def _run_context(registry: Registry, run_id: str) -> dict[str, Any]:
    from mld.experiments import PAPER_BACKBONE  # the paper's name of each backbone role

    run = registry.runs[run_id]
    config = run.config
    entry = registry.datasets.get(run.dataset, {})
    model = config.get("model") or {}
    role = run.backbone_role
    return {"dataset": run.dataset, "dataset_stands_for": dataset_stand_in(entry) if entry else None,
            "backbone": model.get("backbone"), "backbone_role": role,
            "backbone_stands_for": PAPER_BACKBONE.get(role) if role else None,
            "task": config.get("task", "multilabel"), "weights": run.weights or None,
            # False: the backbone started from random weights while the paper's started pretrained.
            "compared": bool(run.compared)}


def _collect_run(registry: Registry, run_id: str, results: Path,
                 commit: str) -> tuple[list[dict], dict, list[dict]]:
    run = registry.runs[run_id]
    context = _run_context(registry, run_id)
    task = str(context["task"])
    data_path = Path((run.config.get("dataset") or {}).get("path") or results / "data" / "unknown")
    if not data_path.is_absolute():  # run configs name data relative to the workflow's directory
        data_path = results.parent / data_path if data_path.parts[0] == results.name else results / data_path
    rows, replicates, epochs = [], {}, []
    for seed in run.seeds:
        seed_dir = Path(run_dir(run_id, seed, str(results)))
        metrics = read_json(seed_dir / "metrics.json")
        common = {**context, "kind": KIND_RUN, "run_id": run_id, "seed": seed, "git_commit": commit,
                  "config_hash": config_hash(run.config_for_seed(seed))}
        if metrics is None:
            rows += _in_tables(registry, run_id, run.rows, [_base_row(
                **common, status=STATUS_MISSING, reason=f"no metrics.json in {run_dir(run_id, seed)} (not run yet, "
                                                        "or failed)")])
            continue
        cost = {**(read_json(seed_dir / "cost.json") or {}), **(metrics.get("cost") or {})}
        versions = metrics.get("versions") or {}
        epochs += history.rows(run_id, seed, metrics.get("history"))
        common.update(mode=metrics.get("mode"), **_version_cells(versions),
                      device=str(versions.get("gpu", "cpu")) if versions else None)
        if metrics.get("infeasible"):
            reason = str(metrics.get("reason") or "over the run's train.feasibility budget")
            measured = [(name, part, value) for name, part, value in numbers_in(cost) if name != "resolution"]
            seed_rows = [_base_row(**common, metric=name, part=part, value=value, status=STATUS_INFEASIBLE,
                                   reason=reason) for name, part, value in measured] or [
                _base_row(**common, status=STATUS_INFEASIBLE, reason=reason)]
            rows += _in_tables(registry, run_id, run.rows, seed_rows)
            continue
        # A metric of a section of "final" (Table 6's zsl, gzsl) has the section as its key.
        measured = [(selection, name if inner is None else inner, None if inner is None else name, value)
                    for selection in (SELECTION_FINAL, SELECTION_BEST_EPOCH)
                    for name, inner, value in numbers_in({key: value for key, value in
                                                          (metrics.get(selection) or {}).items()
                                                          if key not in FINAL_SKIP})]
        measured += [(None, name, None, value) for name, inner, value in numbers_in(cost)
                     if name in COST_FILE_METRICS and inner is None]
        if finite_number(metrics.get("train_time_s")) is not None:
            measured.append((None, "train_time_s", None, float(metrics["train_time_s"])))
        rows += _in_tables(registry, run_id, run.rows, [
            _base_row(**common, metric=name, section=section, selection=selection, value=value, status=STATUS_OK)
            for selection, name, section, value in measured])
        paired = PAIRED_METRICS.get(task)
        arrays = _metric_arrays(seed_dir / "predictions.npz", task, data_path)
        if paired and arrays is not None:
            replicates[(run_id, seed, paired)] = _replicates(arrays, task)
    return rows, replicates, epochs


def _config_rows(run_id: str, config: Mapping[str, Any], commit: str) -> list[dict]:
    """A run's or measurement's config (without the seed), one row per key, for merging results key by key."""
    return [_base_row(kind=KIND_CONFIG, run_id=run_id, config_key=key, config_value=scalar_text(value),
                      git_commit=commit) for key, value in _config_leaves(config)]


def configs(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each run's and measurement's config from its config rows, as {dotted key: value}."""
    rows = frame[frame["kind"] == KIND_CONFIG]
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, text in zip(rows["run_id"], rows["config_key"], rows["config_value"]):
        flat = out.setdefault(run_id, {})
        if key is not None:  # an empty config is one row without a key
            flat[key] = scalar_value(text)
    return out


def _collect_measurement(registry: Registry, measurement_id: str, results: Path, commit: str) -> list[dict]:
    entry = registry.measurements[measurement_id]
    path = Path(measurement_path(measurement_id, str(results)))
    report = read_json(path)
    config = entry.get("config") or {}
    common = {"kind": KIND_MEASUREMENT, "run_id": measurement_id, "git_commit": commit,
              "config_hash": config_hash(config), "backbone": (config.get("model") or {}).get("backbone"),
              "mode": "measurement"}
    rows = entry.get("rows") or {}
    if report is None:
        return _in_tables(registry, measurement_id, rows, [
            _base_row(**common, status=STATUS_MISSING, reason=f"no {measurement_path(measurement_id)}")])
    common.update(_version_cells(report.get("versions")), device=str(report.get("device")),
                  amp=report.get("amp") if isinstance(report.get("amp"), bool) else None)
    status, reason = (STATUS_INFEASIBLE, str(report.get("reason"))) if report.get("infeasible") else (STATUS_OK, None)
    skip = {"num_classes", "resolution", "batch_size", "warmup", "repeats", "min_seconds", "layers", "amp", "model",
            "rounds"}
    values = {key: value for key, value in report.items() if key not in skip}
    # A timing taken in rounds: one row set per round, the round in the seed column (a replicate,
    # as a seed is a run's), so its spread reaches the tables and the claims.
    rounds = list(enumerate(report["rounds"])) if report.get("rounds") else [(None, {})]
    measured = [row for index, timing in rounds for row in _in_tables(registry, measurement_id, rows, [
        _base_row(**common, seed=index, metric=name, part=part, value=value, status=status, reason=reason)
        for name, part, value in numbers_in({**values, **timing})])]
    return measured or _in_tables(registry, measurement_id, rows, [_base_row(**common, status=status, reason=reason)])


def _header_rows(registry: Registry, header: Header, commit: str) -> list[dict]:
    from mld.experiments import PAPER_BACKBONE

    rows = [_base_row(kind=KIND_REPORT, label=header.label, config_file=header.config_file, mode=header.mode,
                      git_commit=commit)]
    rows += [_base_row(kind=KIND_SEED, seed=seed, git_commit=commit) for seed in header.seeds]
    rows += [_base_row(kind=KIND_SKIPPED_TABLE, table_id=table_id, git_commit=commit)
             for table_id in header.skipped_tables]
    for name, entry in sorted(registry.datasets.items()):
        rows.append(_base_row(kind=KIND_DATASET, dataset=name, dataset_source=entry.get("source"),
                              dataset_stands_for=dataset_stand_in(entry), git_commit=commit))
    for role in registry.config.get("backbones", {}):
        rows.append(_base_row(kind=KIND_BACKBONE, backbone_role=role, git_commit=commit,
                              description=describe_backbone(registry.config, role),
                              backbone_stands_for=PAPER_BACKBONE.get(role)))
    return rows


def collect(registry: Registry, results_dir: str | Path, header: Header) -> Collected:
    """The long-form frame of a results tree (runs, then measurements, then the header and config rows)."""
    results = Path(results_dir)
    commit = git_commit()
    rows: list[dict] = []
    config_rows: list[dict] = []
    replicates: dict = {}
    epochs: list[dict] = []
    for run_id in registry.runs:
        if not any(run_id in members for members in registry.tables.values()):
            continue
        run_rows, run_replicates, run_epochs = _collect_run(registry, run_id, results, commit)
        rows += run_rows
        replicates.update(run_replicates)
        epochs += run_epochs
        config_rows += _config_rows(run_id, registry.runs[run_id].config, commit)
    for measurement_id in registry.measurements:
        rows += _collect_measurement(registry, measurement_id, results, commit)
        config_rows += _config_rows(measurement_id, registry.measurements[measurement_id].get("config") or {}, commit)
    rows += _header_rows(registry, header, commit) + config_rows
    keys = sorted({column for row in rows for column in row if column.startswith(ROW_PREFIX)})
    return Collected(normalise(pd.DataFrame(rows, columns=[*COLUMNS, *keys], dtype=object)), replicates,
                     history.frame(epochs))


def _columns(frame: pd.DataFrame) -> list[str]:
    """COLUMNS, then the row_* columns in name order, then the optional ones present."""
    keys = sorted(column for column in frame.columns if column.startswith(ROW_PREFIX))
    return [*COLUMNS, *keys, *(column for column in OPTIONAL_COLUMNS if column in frame.columns)]


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as objects with None for empty cells, values as floats, seeds as nullable ints,
    `compared` and `amp` as nullable booleans: the same frame whether collected or read back."""
    frame = frame.astype(object)
    frame = frame.where(frame.notna() & (frame != ""), None)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    for column in BOOLEAN_COLUMNS:
        frame[column] = frame[column].astype("boolean")
    return frame[_columns(frame)]


# ---- the files ----------------------------------------------------------------------------------

def write(collected: Collected, path: str | Path) -> None:
    """runs.csv and its companions: the bootstrap file (always written, empty when nothing is
    paired) and the history (always written, only a header when no run kept one)."""
    write_text(path, collected.frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    keys = sorted(collected.replicates)
    index = [[run_id, int(seed), metric, collected.replicates[(run_id, seed, metric)][1]]
             for run_id, seed, metric in keys]
    arrays = {f"r{i}": collected.replicates[key][0] for i, key in enumerate(keys)}
    write_npz(bootstrap_path(path), index=np.asarray(json.dumps(index)), **arrays)
    history.write(collected.history, history.history_path(path))


ENVIRONMENT_COLUMNS = ("kind", "run_id", "seed", "device", "versions", "git_commit")


def environments(frame: pd.DataFrame) -> pd.DataFrame:
    """Software and hardware of every run seed and measurement with outputs (and its site, when
    merged), its versions described in one line per row (`describe_environment`)."""
    measured = frame[frame["kind"].isin([KIND_RUN, KIND_MEASUREMENT]) & (frame["status"] != STATUS_MISSING)]
    measured = measured.drop_duplicates(["kind", "run_id", "seed"]).reset_index(drop=True)
    measured["versions"] = [describe_environment(row) for row in measured.to_dict("records")]
    columns = list(ENVIRONMENT_COLUMNS) + [column for column in OPTIONAL_COLUMNS if column in frame.columns]
    return measured[columns]


def read(path: str | Path) -> Collected:
    """A runs.csv (and its bootstrap and history companions when present) as `collect` made it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it with `mld report --configfile CONFIG --results DIR` "
                                "or give the runs.csv of a results folder")
    header = pd.read_csv(path, nrows=0).columns
    old = [column for column in OLD_COLUMNS if column in header]
    if old:
        raise ValueError(f"{path} was written by an older mld (its column(s) {old} hold several keys in one cell); "
                         "rebuild it from the run outputs with `mld report --configfile CONFIG --results DIR`")
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; it is not a runs.csv that mld wrote")
    typed = {"seed": "Int64", "value": "float64", **{column: "boolean" for column in BOOLEAN_COLUMNS}}
    frame = pd.read_csv(path, dtype={column: typed.get(column, "string") for column in header},
                        keep_default_na=False, na_values={column: [""] for column in typed})
    frame = normalise(frame)
    replicates = {}
    companion = bootstrap_path(path)
    if companion.is_file():
        with np.load(companion) as archive:
            for i, (run_id, seed, metric, digest) in enumerate(json.loads(str(archive["index"]))):
                replicates[(run_id, int(seed), metric)] = (archive[f"r{i}"], digest)
    return Collected(frame, replicates, history.read(history.history_path(path)))
