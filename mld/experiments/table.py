"""The experiments table (table.yaml) read and expanded into cells: one row of one table each.

An entry of the table names a table row and the run (or measurement) that fills it; lists, `$name`
references to the workflow config and `cases:` make grids. Expanding needs the config (how big
each grid is) and the class count of each dataset role (`N`); nothing here imports torch.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from mld.experiments.config import ExperimentConfigError
from mld.schema import schema_problems

TABLE_PATH = Path(__file__).with_name("table.yaml")
TABLE_SCHEMA_PATH = Path(__file__).with_name("table.schema.yaml")

# Entry keys whose list values are grids (one cell per value); the rest are set whole.
GRID_FIELDS = ("dataset", "backbone", "head", "num_groups", "query_type", "head_type", "augmentation", "resolution",
               "classes")
# Entry keys whose strings may hold `{name}` templates.
TEMPLATED_FIELDS = ("row", "head_options", "tag", "variant", "recipe")
DEFAULT_BACKBONE = "medium"
MEASURED_BACKBONE = "$measurements.backbone"
FULL_DECODING = "full"


@dataclass(frozen=True)
class Cell:
    """One row of one table and what computes it: a run (recipe set) or a measurement (measure set)."""

    table: str
    row: dict[str, Any]
    head: str
    dataset: str | None = None
    backbone: str = DEFAULT_BACKBONE
    recipe: str | None = None
    num_groups: int | None = None         # ML-Decoder's K; None: full decoding (or another head)
    num_groups_source: str | None = None  # where K is set: its config key (experiments.NAME) or table entry
    queries: int | None = None            # the head's queries (the paper's column): K, N for full
    #                                       decoding and the transformer-decoder, None for GAP
    num_classes: int | None = None
    query_type: str | None = None
    head_type: str | None = None
    augmentation: str | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None
    resolution: int | None = None
    train: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    measure: str | None = None


@functools.lru_cache(maxsize=None)
def _read_table(path: Path) -> dict[str, Any]:
    table = yaml.safe_load(path.read_text())
    problems = schema_problems(table, yaml.safe_load(TABLE_SCHEMA_PATH.read_text()), prefix=f"{path.name} key ")
    if problems:
        raise ExperimentConfigError(f"invalid experiments table {path} (see {TABLE_SCHEMA_PATH.name}):\n  "
                                    + "\n  ".join(problems))
    return table


def read_table(path: Path = TABLE_PATH) -> dict[str, Any]:
    """The validated experiments table (targets, the paper's names, the entries)."""
    return _read_table(Path(path))


# --------------------------------------------------------------------------- values and templates


def config_value(config: Mapping[str, Any], reference: str, where: str) -> Any:
    """`$name` -> experiments.name; `$block.name` -> block.name of the workflow config."""
    path = reference.lstrip("$").split(".")
    if len(path) == 1:
        path = ["experiments", *path]
    value: Any = config
    for depth, part in enumerate(path):
        if not isinstance(value, Mapping) or part not in value:
            key = ".".join(path[:depth + 1])
            raise ExperimentConfigError(f"config key {key}: missing; {where} uses {reference}")
        value = value[part]
    return value


def evaluate(value: Any, config: Mapping[str, Any], num_classes: int | None, where: str) -> Any:
    """An entry value: `$name`, N, N/$name, min(...), max(...); anything else is itself."""
    if not isinstance(value, str):
        return value
    if value == "N":
        if num_classes is None:
            raise ExperimentConfigError(f"{where}: N (the class count) needs a dataset or `classes`")
        return num_classes
    function = re.fullmatch(r"(min|max)\((.*)\)", value)
    if function:
        arguments: list[Any] = []
        for part in function.group(2).split(","):
            result = evaluate(part.strip(), config, num_classes, where)
            arguments += result if isinstance(result, list) else [result]
        return (min if function.group(1) == "min" else max)(arguments)
    if value.startswith("N/"):
        return max(1, evaluate("N", config, num_classes, where) // evaluate(value[2:], config, num_classes, where))
    if value.startswith("$"):
        return config_value(config, value, where)
    return value


def fill(value: Any, context: Mapping[str, Any], where: str) -> Any:
    """Replace `{name}` templates: a whole-string template keeps the value's type."""
    if isinstance(value, dict):
        return {key: fill(inner, context, where) for key, inner in value.items()}
    if isinstance(value, list):
        return [fill(inner, context, where) for inner in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        whole = re.fullmatch(r"\{(\w+)\}", value)
        return context[whole.group(1)] if whole else value.format(**context)
    except KeyError as error:
        raise ExperimentConfigError(f"{where}: template {value!r} names {error}, which is no field or grid "
                                    f"value of the entry ({', '.join(sorted(context))})") from None


# --------------------------------------------------------------------------- expansion


def _axis(key: str, value: Any, config: Mapping[str, Any], where: str) -> list[Any] | None:
    """The values of a grid axis, or None when `value` is one value (resolved later)."""
    if isinstance(value, str) and value.startswith("$"):
        value = config_value(config, value, where)
    if isinstance(value, list) and (key in GRID_FIELDS or key == "grid"):
        return value
    return None


def _assignments(entry: Mapping[str, Any], config: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """Every combination of the entry's grids, in the order its keys are written; cases win."""
    partial: list[tuple[dict[str, Any], frozenset[str]]] = [({}, frozenset())]
    for key, value in entry.items():
        if key == "table":
            continue
        if key == "cases":
            partial = [({**values, **case}, fixed | set(case)) for values, fixed in partial for case in value]
            continue
        axes = value.items() if key == "grid" else [(key, value)]
        for name, axis_value in axes:
            values = _axis(name if key != "grid" else "grid", axis_value, config, where)
            choices = values if values is not None else [axis_value]
            partial = [(values_ if name in fixed else {**values_, name: choice}, fixed)
                       for values_, fixed in partial for choice in choices]
    return [values for values, _ in partial]


def paper_class_count(role: str | None, num_classes: int | None,
                      paper_names: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """How the paper counts a dataset role's classes where its count differs from the data's
    (table.yaml paper_names.class_counts: Open Images' 9,605 trainable classes are the paper's
    "9600"): {classes, paper, note}, or None when the paper's count is the data's."""
    names = read_table()["paper_names"] if paper_names is None else paper_names
    count = names.get("class_counts", {}).get(role)
    return dict(count) if count and count["classes"] == num_classes else None


def _cell(table_id: str, values: dict[str, Any], config: Mapping[str, Any], paper_names: Mapping[str, Any],
          num_classes: Callable[[str], int], where: str) -> Cell:
    values = {key: evaluate(value, config, None, where) if key == "dataset" else value
              for key, value in values.items()}
    measure = values.get("measure")
    dataset = values.get("dataset")
    if measure and values.get("classes") is not None:
        n = int(evaluate(values["classes"], config, None, where))
    elif dataset is None:
        raise ExperimentConfigError(f"{where}: a run needs a dataset role (a measurement: `classes` or a dataset role)")
    else:
        n = num_classes(dataset)
    head = values["head"]
    groups = values.get("num_groups")
    if groups in (None, FULL_DECODING) or head != "ml_decoder":
        groups = None
    else:
        groups = int(evaluate(groups, config, n, where))
    queries = {"gap": None, "hsvlt": None, "ml_decoder": groups or n}.get(head, n)
    resolution = evaluate(values.get("resolution"), config, n, where)
    # A measurement times the config's measurements.backbone unless its entry names one.
    backbone = evaluate(values.get("backbone", MEASURED_BACKBONE if measure else DEFAULT_BACKBONE), config, n, where)
    context = {**{key: value for key, value in values.items() if not isinstance(value, (dict, list))},
               "dataset": dataset, "backbone": backbone, "num_groups": groups, "queries": queries, "N": n, "classes": n,
               "resolution": resolution, "paper_backbone": paper_names["backbones"].get(backbone, backbone),
               "paper_dataset": paper_names["datasets"].get(dataset, dataset),
               "paper_classes": (paper_class_count(dataset, n, paper_names) or {"paper": n})["paper"]}
    filled = {key: fill(values.get(key), context, where) for key in TEMPLATED_FIELDS}
    if filled["row"] is None:
        raise ExperimentConfigError(f"{where}: no `row:` (the row's key columns in table {table_id})")
    if not measure and not filled["recipe"]:
        raise ExperimentConfigError(f"{where}: no `recipe:` (a recipe of the config's `recipes:`)")
    return Cell(table=table_id, row=filled["row"], head=head, dataset=dataset, backbone=backbone,
                recipe=filled["recipe"], num_groups=groups, queries=queries, num_classes=n,
                query_type=evaluate(values.get("query_type"), config, n, where),
                head_type=evaluate(values.get("head_type"), config, n, where),
                augmentation=evaluate(values.get("augmentation"), config, n, where),
                head_options=filled["head_options"] or {}, tag=filled["tag"],
                resolution=None if resolution is None else int(resolution),
                train={key: evaluate(value, config, n, where) for key, value in (values.get("train") or {}).items()},
                variant=filled["variant"], measure=measure)


def expand(config: Mapping[str, Any], num_classes: Callable[[str], int],
           table: Mapping[str, Any] | None = None) -> list[Cell]:
    """Every cell of the experiments table under a workflow config, in table order; entries of the
    config's `skip_tables` are left out (their dataset and backbone roles need not exist)."""
    table = read_table() if table is None else table
    skipped = set(config.get("skip_tables", []))
    cells = []
    for index, entry in enumerate(table["experiments"]):
        if entry["table"] in skipped:
            continue
        where = f"{TABLE_PATH.name} experiments.{index} (table {entry['table']})"
        for values in _assignments(entry, config, where):
            cell = _cell(entry["table"], values, config, table["paper_names"], num_classes, where)
            cells.append(replace(cell, num_groups_source=_groups_source(entry.get("num_groups"), where))
                         if cell.num_groups else cell)
    return cells


def _groups_source(groups: Any, where: str) -> str:
    """The config keys a table entry's K reads (`$name` -> experiments.name), or the entry itself."""
    names = re.findall(r"\$([\w.]+)", groups) if isinstance(groups, str) else []
    keys = [name if "." in name else f"experiments.{name}" for name in names]
    return " and ".join(f"config key {key}" for key in keys) if keys else f"{where} num_groups"
