"""`mld runs`: which runs make each table, and how each is trained (resolved settings).

One row per (run, table) of a workflow config's registry: the run id, the table and its row, the
dataset, backbone and head, K, the recipe and the training settings the engine will use (the run
config with the engine's defaults filled in), and what decides a run beyond its recipe: the input
mean and std, the feasibility budget (empty where none), where the backbone's weights come from
(and whether the run may be compared with the paper's), the micro-batches per step, and which
results it reports. Reads only YAML (timm only to resolve `normalize: timm`): no data.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any, Mapping

from mld.commands import add_config_arguments, workflow_config

COLUMNS = ("run_id", "table", "row", "recipe", "dataset", "num_classes", "backbone", "backbone_role",
           "backbone_options", "head", "queries", "resolution", "epochs", "batch_size", "optimizer", "lr",
           "weight_decay", "schedule", "warmup_epochs", "loss", "gamma_neg", "gamma_pos", "ema_decay", "cutout", "randaugment",
           "crop", "eval_crop_pct", "repeats", "mixup_alpha", "cutmix_alpha", "target_threshold", "unknown_labels", "mean", "std", "max_memory_gb", "max_gflops", "weights", "compared", "accumulation",
           "amp", "selection", "mode", "seeds")
# What every run reports (mld.engine): the final epoch's better of model and EMA, and the official
# code's choice, the best over the evaluated epochs of max(model, EMA).
SELECTION = "final; best over epochs (official)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs", help="list the runs of a workflow config, one row per run and table, with resolved settings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--table", metavar="TABLE", help="only this table's runs (e.g. table6_zsl)")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown",
                        help="markdown table (default) or CSV with a header row")
    parser.set_defaults(func=_list_runs)


def _plain(value: Any) -> Any:
    """A cell value: None -> empty, mappings and lists as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":")) if value else ""
    return value


def _mean_std(model: Mapping[str, Any]) -> tuple[str, str]:
    """The input mean and std the model normalises with ("0 0 0" and "1 1 1" for none)."""
    normalize = model["normalize"]
    if normalize == "timm":
        from mld.models import input_normalization

        resolved = input_normalization(model["backbone"], normalize)
    elif isinstance(normalize, Mapping):
        resolved = (normalize["mean"], normalize["std"])
    else:
        resolved = None
    mean, std = resolved or ((0, 0, 0), (1, 1, 1))
    return " ".join(f"{value:g}" for value in mean), " ".join(f"{value:g}" for value in std)


def run_rows(registry: Any, table: str | None = None) -> list[dict[str, Any]]:
    """The listing: one mapping per (run, table), in table order, with the engine's defaults filled in."""
    from mld.engine.config import validate_run_config

    tables = list(registry.tables)
    if table is not None:
        if table not in registry.tables:
            raise ValueError(f"unknown table {table!r}; the tables are {', '.join(tables)}")
        tables = [table]
    config = registry.config
    rows = []
    for table_id in tables:
        run_ids, _ = registry.table_members(table_id)
        for run_id in run_ids:
            run = registry.runs[run_id]
            resolved = validate_run_config(run.config_for_seed(run.seeds[0]), source=run_id)
            model, train = resolved["model"], resolved["train"]
            loss = train["loss"]
            role = run.settings.backbone
            mean, std = _mean_std(model) if resolved["features"] is None else ("", "")
            budget = train["feasibility"]
            rows.append({
                "run_id": run_id, "table": table_id,
                "row": ", ".join(f"{key}={_plain(value)}" for key, value in run.rows[table_id].items()),
                "recipe": run.recipes.get(table_id), "dataset": run.dataset,
                "num_classes": run.settings.num_classes, "backbone": model["backbone"],
                "backbone_role": role, "backbone_options": model["backbone_options"], "head": model["head"],
                "queries": run.settings.queries, "resolution": train["resolution"],
                "epochs": train["epochs"], "batch_size": train["batch_size"], "optimizer": train["optimizer"],
                "lr": train["lr"], "weight_decay": train["weight_decay"], "schedule": train["schedule"],
                "warmup_epochs": train["warmup_epochs"], "loss": loss["name"], "gamma_neg": loss.get("gamma_neg"), "gamma_pos": loss.get("gamma_pos"),
                "ema_decay": train["ema_decay"], "cutout": train["augment"]["cutout"],
                "randaugment": train["augment"]["randaugment"], "crop": train["augment"]["crop"],
                "eval_crop_pct": train["augment"]["eval_crop_pct"], "repeats": train["augment"]["repeats"],
                "mixup_alpha": train["mix"]["mixup_alpha"], "cutmix_alpha": train["mix"]["cutmix_alpha"],
                "target_threshold": loss.get("target_threshold"), "unknown_labels": resolved["dataset"]["unknown_labels"],
                "mean": mean, "std": std, "max_memory_gb": budget["max_memory_gb"],
                "max_gflops": budget["max_gflops"], "weights": run.weights, "compared": run.compared,
                "accumulation": train["accumulation"], "amp": train["amp"], "selection": SELECTION,
                "mode": config["mode"],
                "seeds": " ".join(str(seed) for seed in run.seeds),
            })
    return rows


def render_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({column: _plain(row[column]) for column in COLUMNS} for row in rows)
    return out.getvalue()


def render_markdown(rows: list[dict[str, Any]]) -> str:
    cells = [[str(_plain(row[column])).replace("|", "\\|") for column in COLUMNS] for row in rows]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines) + "\n"


def _list_runs(args: argparse.Namespace) -> int:
    from mld import experiments

    registry = experiments.build_registry(workflow_config(args))
    rows = run_rows(registry, args.table)
    print((render_csv if args.format == "csv" else render_markdown)(rows), end="")
    return 0
