"""The long-form results frame (`results/runs.csv`): every measured number, one row each.

The workflow's first report step collects the run directories and cost measurements of a
registry into one frame; every table, claim, CSV and the figure are views of it, and
`mld report --from runs.csv` rebuilds them without run directories or a config. So the frame
carries what the tables need besides the numbers: each run's rows in each table (`rows`, JSON),
what stands in for the paper's datasets and backbones, and the report's header (`kind` report).

Row kinds (column `kind`):
* run: one row per (run, seed, selection, metric). Metrics are metrics.json "final" (sections
  flattened: "zsl/mAP", "gzsl/F1@3") and "best_epoch" (its selection metric, each candidate's, and
  its epoch), and cost.json (flops_g, params_m, ...). A seed without outputs is one row with
  status "missing" and no metric; an infeasible run's rows have status "infeasible" and its
  reason, with the cost it measured.
* selection: which weights a run's metric was measured with. "final": the last epoch's better of
  the model and its EMA (the suite's protocol); "best_epoch": the highest over the evaluated
  epochs of the better of the two (the official train.py's protocol, behind the paper's numbers);
  empty for what does not depend on it (costs, training time, measurements). A column, not a
  metric name prefix: "mAP" stays one metric, its protocol a key beside run and seed (runs.csv
  files written before the column hold final values only, and read back with it empty).
* measurement: one row per (measurement, metric); a metric given per part (module timing's
  time_ms per module) is one row per part, "time_ms/self_attention". A timing taken in rounds
  (mld.cost) has one row per round and metric, the round numbered in `seed`: the replicates whose
  spread decides a speed claim, as seeds decide an mAP one.
* report: the header (label, config, mode, seeds, git commit, one row per dataset and backbone).
* config: one row per run and measurement, its config (without the seed) as canonical JSON in
  `note`, so results from several places can be merged and compared key by key (mld.report.merge).

A merged file (`mld merge`) adds the column `site`: where each row came from.

Per-image scores for paired comparisons are kept as bootstrap replicates (mld.report.stats) in a
companion file beside runs.csv, `runs.bootstrap.npz`: for each (run, seed, metric) the metric on the
same R resamples of the validation images, and a digest of the validation targets, so two runs are
paired only when they were scored on the same images. The per-epoch history of each run (its
metrics.json "history") goes to a second companion, `runs.history.csv` (mld.report.history).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from mld.report import history, stats
from mld.atomic import canonical_json, config_hash, write_npz, write_text
from mld.data.prepared import images_with_positive
from mld.experiments import Registry, paper_class_count
from mld.paths import measurement_path, run_dir
from mld.weights import read_manifest, shipped_file

COLUMNS = ("kind", "run_id", "seed", "table_ids", "metric", "selection", "value", "status", "reason", "mode", "task",
           "dataset", "dataset_stands_for", "backbone", "backbone_role", "backbone_stands_for", "rows", "versions",
           "device", "git_commit", "config_hash", "note", "weights", "compared")
# Columns added after runs.csv files were first written: read as empty from older files (whose
# values are all final-epoch ones, from runs compared with the paper's).
LATER_COLUMNS = ("selection", "weights", "compared")
# Columns a runs.csv may have besides COLUMNS: where a merged row came from (mld.report.merge).
OPTIONAL_COLUMNS = ("site",)
KIND_RUN, KIND_MEASUREMENT, KIND_REPORT, KIND_CONFIG = "run", "measurement", "report", "config"
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


def describe_environment(versions: Any) -> str:
    """One line naming the software and hardware a result came from (metrics.json "versions")."""
    if not isinstance(versions, Mapping) or not versions:
        return "not recorded"
    return ", ".join(f"{name} {value}" for name, value in versions.items())


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


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(name, number) pairs of a nested mapping: {"zsl": {"mAP": 1}} -> ("zsl/mAP", 1.0)."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}/")
        elif (number := finite_number(value)) is not None:
            yield name, number


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


def backbone_role(config: Mapping[str, Any], model: Mapping[str, Any]) -> str | None:
    """The backbone role whose definition a run's model block uses (its first such role)."""
    for role, spec in config.get("backbones", {}).items():
        if isinstance(spec, Mapping) and spec.get("name") == model.get("backbone") \
                and dict(spec.get("options") or {}) == dict(model.get("backbone_options") or {}):
            return role
    return None


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


def _run_context(registry: Registry, run_id: str) -> dict[str, Any]:
    from mld.experiments import PAPER_BACKBONE  # the paper's name of each backbone role

    run = registry.runs[run_id]
    config = run.config
    path = (config.get("dataset") or {}).get("path")
    dataset_id = next((name for name, entry in registry.datasets.items() if entry.get("path") == path), None)
    entry = registry.datasets.get(dataset_id, {})
    model = config.get("model") or {}
    role = backbone_role(registry.config, model)
    return {"dataset": dataset_id, "dataset_stands_for": dataset_stand_in(entry) if entry else None,
            "backbone": model.get("backbone"), "backbone_role": role,
            "backbone_stands_for": PAPER_BACKBONE.get(role) if role else None,
            "task": config.get("task", "multilabel"), "table_ids": ";".join(t for t in registry.tables if run_id in registry.tables[t]),
            "rows": json.dumps(run.rows, sort_keys=True), "weights": run.weights or None,
            # False: the backbone started from random weights while the paper's started pretrained.
            "compared": None if run.compared else False}


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
            rows.append(_base_row(**common, status=STATUS_MISSING,
                                  reason=f"no metrics.json in {run_dir(run_id, seed)} (not run yet, or failed)"))
            continue
        cost = {**(read_json(seed_dir / "cost.json") or {}), **(metrics.get("cost") or {})}
        versions = metrics.get("versions") or {}
        epochs += history.rows(run_id, seed, metrics.get("history"))
        common.update(mode=metrics.get("mode"), versions=describe_environment(versions),
                      device=str(versions.get("gpu", "cpu")) if versions else None)
        if metrics.get("infeasible"):
            reason = str(metrics.get("reason") or "over the run's train.feasibility budget")
            numbers_measured = [(name, value) for name, value in flatten(cost) if name != "resolution"]
            rows += [_base_row(**common, metric=name, value=value, status=STATUS_INFEASIBLE, reason=reason)
                     for name, value in numbers_measured] or [
                _base_row(**common, status=STATUS_INFEASIBLE, reason=reason)]
            continue
        measured = [(selection, name, value) for selection in (SELECTION_FINAL, SELECTION_BEST_EPOCH)
                    for name, value in flatten({key: value for key, value in (metrics.get(selection) or {}).items()
                                                if key not in FINAL_SKIP})]
        measured += [(None, name, value) for name, value in flatten(cost) if name in COST_FILE_METRICS]
        if metrics.get("train_time_s") is not None:
            measured += [(None, name, value) for name, value in flatten({"train_time_s": metrics["train_time_s"]})]
        rows += [_base_row(**common, metric=name, selection=selection, value=value, status=STATUS_OK)
                 for selection, name, value in measured]
        paired = PAIRED_METRICS.get(task)
        arrays = _metric_arrays(seed_dir / "predictions.npz", task, data_path)
        if paired and arrays is not None:
            replicates[(run_id, seed, paired)] = _replicates(arrays, task)
    return rows, replicates, epochs


def _config_row(run_id: str, config: Mapping[str, Any], commit: str) -> dict:
    """A run's or measurement's config (without the seed), for merging results key by key."""
    return _base_row(kind=KIND_CONFIG, run_id=run_id, note=canonical_json(config), git_commit=commit)


def _collect_measurement(registry: Registry, measurement_id: str, results: Path, commit: str) -> list[dict]:
    entry = registry.measurements[measurement_id]
    path = Path(measurement_path(measurement_id, str(results)))
    report = read_json(path)
    config = entry.get("config") or {}
    common = {"kind": KIND_MEASUREMENT, "run_id": measurement_id, "git_commit": commit,
              "config_hash": config_hash(config), "backbone": (config.get("model") or {}).get("backbone"),
              "table_ids": ";".join(t for t in registry.tables if measurement_id in registry.tables[t]),
              "rows": json.dumps(entry["rows"], sort_keys=True), "mode": "measurement"}
    if report is None:
        return [_base_row(**common, status=STATUS_MISSING, reason=f"no {measurement_path(measurement_id)}")]
    common.update(versions=describe_environment({**(report.get("versions") or {}),
                                                 **{k: report[k] for k in ("device", "amp") if k in report}}),
                  device=str(report.get("device")))
    status, reason = (STATUS_INFEASIBLE, str(report.get("reason"))) if report.get("infeasible") else (STATUS_OK, None)
    skip = {"num_classes", "resolution", "batch_size", "warmup", "repeats", "min_seconds", "layers", "amp", "model",
            "rounds"}
    values = {key: value for key, value in report.items() if key not in skip}
    # A timing taken in rounds: one row set per round, the round in the seed column (a replicate,
    # as a seed is a run's), so its spread reaches the tables and the claims.
    rounds = list(enumerate(report["rounds"])) if report.get("rounds") else [(None, {})]
    return [_base_row(**common, seed=index, metric=name, value=value, status=status, reason=reason)
            for index, timing in rounds for name, value in flatten({**values, **timing})] \
        or [_base_row(**common, status=status, reason=reason)]


def _report_rows(registry: Registry, header: Mapping[str, Any], commit: str) -> list[dict]:
    from mld.experiments import PAPER_BACKBONE

    rows = [_base_row(kind=KIND_REPORT, metric=name, note=str(value), git_commit=commit)
            for name, value in header.items()]
    for name, entry in sorted(registry.datasets.items()):
        rows.append(_base_row(kind=KIND_REPORT, metric="dataset", dataset=name, reason=entry.get("source"),
                              dataset_stands_for=dataset_stand_in(entry), git_commit=commit))
    for role in registry.config.get("backbones", {}):
        rows.append(_base_row(kind=KIND_REPORT, metric="backbone", backbone_role=role, git_commit=commit,
                              note=describe_backbone(registry.config, role),
                              backbone_stands_for=PAPER_BACKBONE.get(role)))
    return rows


def collect(registry: Registry, results_dir: str | Path, header: Mapping[str, Any]) -> Collected:
    """The long-form frame of a results tree (runs, then measurements, then the header rows)."""
    results = Path(results_dir)
    commit = git_commit()
    rows: list[dict] = []
    configs: list[dict] = []
    replicates: dict = {}
    epochs: list[dict] = []
    for run_id in registry.runs:
        if not any(run_id in members for members in registry.tables.values()):
            continue
        run_rows, run_replicates, run_epochs = _collect_run(registry, run_id, results, commit)
        rows += run_rows
        replicates.update(run_replicates)
        epochs += run_epochs
        configs.append(_config_row(run_id, registry.runs[run_id].config, commit))
    for measurement_id in registry.measurements:
        rows += _collect_measurement(registry, measurement_id, results, commit)
        configs.append(_config_row(measurement_id, registry.measurements[measurement_id].get("config") or {}, commit))
    rows += _report_rows(registry, header, commit) + configs
    return Collected(normalise(pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)), replicates,
                     history.frame(epochs))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as objects with None for empty cells, values as floats, seeds as nullable ints:
    the same frame whether collected or read back."""
    frame = frame.astype(object)
    frame = frame.where(frame.notna() & (frame != ""), None)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    return frame[list(COLUMNS) + [column for column in OPTIONAL_COLUMNS if column in frame.columns]]


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
    """Software and hardware of every run seed and measurement with outputs (and its site, when merged)."""
    columns = list(ENVIRONMENT_COLUMNS) + [column for column in OPTIONAL_COLUMNS if column in frame.columns]
    measured = frame[frame["kind"].isin([KIND_RUN, KIND_MEASUREMENT]) & frame["versions"].notna()]
    return measured[columns].drop_duplicates(["kind", "run_id", "seed"]).reset_index(drop=True)


def read(path: str | Path) -> Collected:
    """A runs.csv (and its bootstrap and history companions when present) as `collect` made it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it with `mld report --configfile CONFIG --results DIR` "
                                "or give the runs.csv of a results folder")
    text_columns = [column for column in COLUMNS + OPTIONAL_COLUMNS if column not in ("seed", "value")]
    frame = pd.read_csv(path, dtype={column: "string" for column in text_columns},
                        keep_default_na=False, na_values={"value": [""], "seed": [""]})
    for column in LATER_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; it is not a runs.csv that mld wrote")
    frame = normalise(frame)
    replicates = {}
    companion = bootstrap_path(path)
    if companion.is_file():
        with np.load(companion) as archive:
            for i, (run_id, seed, metric, digest) in enumerate(json.loads(str(archive["index"]))):
                replicates[(run_id, int(seed), metric)] = (archive[f"r{i}"], digest)
    return Collected(frame, replicates, history.read(history.history_path(path)))
