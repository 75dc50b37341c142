"""`mld plan`: what a workflow target will cost before it is submitted.

    mld plan [TARGET ...] [--configfile FILE] [--config KEY=VALUE ...]

For each target (a named ablation such as `heads`, or `all`) and rule: the jobs still to run
(finished runs are not counted), the GPU-hours requested from Slurm and the GPU-hours expected
(mld/estimate.py), and the disk the image stores still to write will take. A run with a feasibility
budget (Table 2's transformer-decoder) is measured first: one its budget will refuse at start is
counted as refused, expected to cost minutes. Config files and `--config` overrides work as for `snakemake`, so the plan is
of exactly what `snakemake TARGET --configfile FILE --config ...` would submit, e.g.
`--config seeds=[0] skip_datasets=[openimages]`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mld import estimate, paths
from mld.commands import add_config_arguments, workflow_config

# What a run that its budget refuses costs: setting up, measuring its cost, writing its record.
REFUSED_MINUTES = 10.0

ALL = "all"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="jobs and GPU-hours of workflow targets, before submitting",
                                   description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"named targets (snakemake's; default: every named target and {ALL})")
    parser.set_defaults(func=_plan)


@dataclass
class RuleCost:
    """The jobs of one rule in a target and their GPU time, in hours."""

    jobs: int = 0
    requested_gpu_h: float = 0.0
    expected_gpu_h: float = 0.0
    over_cap: int = 0  # jobs expected to outlast their (capped) limit: resubmitted, resuming
    refused: int = 0  # jobs whose feasibility budget will refuse them at start (expected: minutes)
    gpus_per_job: set[int] = field(default_factory=set)  # several: recipes.<name>.gpu gives some runs more

    def add(self, requested_min: float, expected_min: float, gpus: int, refused: bool = False) -> None:
        self.jobs += 1
        self.gpus_per_job.add(gpus)
        self.refused += refused
        expected_min = min(expected_min, REFUSED_MINUTES) if refused else expected_min
        self.over_cap += expected_min > requested_min
        self.requested_gpu_h += requested_min * gpus / 60
        self.expected_gpu_h += expected_min * gpus / 60


def target_costs(registry: Any, tables: Iterable[str], refusals: Mapping[str, str] = {}) -> dict[str, RuleCost]:
    """Jobs and GPU-hours by rule of the runs and measurements that make `tables` and are not done;
    `refusals` are the runs their budget will refuse (`expected_refusals`)."""
    config = registry.config
    skipped = set(config.get("skip_datasets", []))
    costs = {"train": RuleCost(), "measure": RuleCost()}
    run_ids, measurement_ids = set(), set()
    for table_id in tables:
        runs, measurements = registry.table_members(table_id)
        run_ids.update(runs)
        measurement_ids.update(measurements)
    for run_id in sorted(run_ids):
        run = registry.runs[run_id]
        dataset = registry.run_dataset(run_id)
        if dataset["role"] in skipped:
            continue
        for seed in run.seeds:
            if Path(paths.run_metrics(run_id, seed)).exists():
                continue
            if estimate.rule_resource(config, "train", "runtime") == "estimate":
                expected, requested = estimate.run_minutes(registry, run_id, seed)
            else:
                expected = requested = estimate.rule_resource(config, "train", "runtime")
            costs["train"].add(requested, expected, estimate.run_gpus(config, run), refused=run_id in refusals)
    measure_gpus = estimate.rule_resource(config, "measure", "gpu")
    measure_minutes = estimate.rule_resource(config, "measure", "runtime")
    for measurement_id in sorted(measurement_ids):
        if not Path(paths.measurement_path(measurement_id)).exists():
            costs["measure"].add(measure_minutes, measure_minutes, measure_gpus)
    return {rule: cost for rule, cost in costs.items() if cost.jobs}


def expected_refusals(registry: Any, run_ids: Iterable[str]) -> dict[str, str]:
    """{run id: why its budget will refuse it} of the runs with a budget (each measured once; torch
    is imported only when there is one)."""
    refusals = {}
    skipped = set(registry.config.get("skip_datasets", []))
    for run_id in sorted(set(run_ids)):
        run = registry.runs[run_id]
        dataset = registry.run_dataset(run_id)
        if dataset["role"] in skipped or not any(value is not None for value in
                                                 run.config["train"].get("feasibility", {}).values()):
            continue
        from mld.engine.config import validate_run_config
        from mld.engine.costing import expected_refusal

        reason = expected_refusal(validate_run_config(run.config_for_seed(run.seeds[0]), source=run_id),
                                  int(dataset["num_classes"] or 1))
        if reason:
            refusals[run_id] = reason
    return refusals
def stores_to_write(registry: Any, targets: Sequence[str]) -> dict[str, float]:
    """The image stores the selected runs of `targets` (default: all) read that are not written
    yet, with their disk size in GB (mld.estimate.store_gb)."""
    named = dict(registry.targets)
    named[ALL] = list(registry.tables)
    skipped = set(registry.config.get("skip_datasets", []))
    stores = {}
    for target in targets or [ALL]:
        for table_id in named.get(target, ()):
            for run_id in registry.table_members(table_id)[0]:
                path = registry.runs[run_id].config["dataset"].get("store")
                if path is None or Path(path, "store.json").exists():
                    continue
                store = registry.stores[path]
                if registry.datasets[store.dataset]["role"] not in skipped:
                    stores[path] = estimate.store_gb(registry, store)
    return dict(sorted(stores.items()))


def plan(registry: Any, targets: Sequence[str]) -> list[tuple[str, str, RuleCost]]:
    """(target, rule, cost) rows; `all` is every table (the default target)."""
    named = dict(registry.targets)
    named[ALL] = list(registry.tables)
    unknown = [target for target in targets if target not in named]
    if unknown:
        raise ValueError(f"unknown target(s) {', '.join(unknown)}; the targets are {', '.join(named)}")
    rows = []
    chosen = targets or list(named)
    refusals = expected_refusals(registry, [run_id for target in chosen for table_id in named[target]
                                            for run_id in registry.table_members(table_id)[0]])
    for target in chosen:
        for rule, cost in target_costs(registry, named[target], refusals).items():
            rows.append((target, rule, cost))
    return rows


def format_plan(rows: Sequence[tuple[str, str, RuleCost]], label: str, stores: Mapping[str, float] | None = None) -> str:
    lines = [f"plan of: {label}", "(jobs still to run; GPU-hours = time limit x GPUs; expected from mld/estimate.py)",
             "(over cap: jobs expected to outlast the capped limit; each resubmission resumes from its checkpoint)",
             f"(refused: jobs their feasibility budget will refuse at start, expected at {REFUSED_MINUTES:g} min each)",
             "(GPUs per job: a recipe's `gpu` runs its jobs on several, one DDP process each; time scaled by"
             " resources.estimate.scaling_efficiency)",
             "", "| target | rule | jobs | GPU-h requested | GPU-h expected | over cap | refused | GPUs per job |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {target} | {rule} | {cost.jobs} | {cost.requested_gpu_h:,.1f} | {cost.expected_gpu_h:,.1f} "
              f"| {cost.over_cap} | {cost.refused} | {', '.join(map(str, sorted(cost.gpus_per_job)))} |"
              for target, rule, cost in rows]
    if not rows:
        lines.append("| - | - | 0 | 0 | 0 | 0 | 0 | - |")
    if stores:
        lines += ["", f"image stores to write (`image_store: false` decodes the files instead): "
                      f"{sum(stores.values()):,.1f} GB on disk",
                  *(f"  {path}: {size:,.1f} GB" for path, size in stores.items())]
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from mld.experiments import build_registry

    config = workflow_config(args, check_weights=True)
    registry = build_registry(config)
    print(format_plan(plan(registry, args.targets), config["label"], stores_to_write(registry, args.targets)))
    return 0
