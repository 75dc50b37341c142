"""Config resolution and validation, the experiment registry, and the helpers the rules call.

Only functions and set-up live here; the rules are in data.smk, train.smk, cost.smk, report.smk.
"""
import os
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from mld.experiments import (
    ADAPTERS_WITH_ROOT,
    ExperimentConfigError,
    build_registry,
    check_dataset_source,
    measurement_path,
    resolve_base,
    run_dir,
    validate_config,
)

REPO = Path(workflow.basedir)

# Validate before anything is scheduled: a bad key fails here, naming the key and the fix.
try:
    _resolved = resolve_base(config, root=REPO)
    validate_config(_resolved, REPO / "workflow" / "schemas" / "config.schema.yaml")
    config.clear()
    config.update(_resolved)
    REGISTRY = build_registry(config)
except ExperimentConfigError as error:
    raise WorkflowError(str(error)) from None

# Jobs run `python -m mld` with the interpreter that runs Snakemake (or the rule's conda env,
# with --software-deployment-method conda), importing this checkout's mld either way. Slurm jobs
# inherit this environment (sbatch --export=ALL).
os.environ.update(
    PATH=os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")])),
    PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
)


# ------------------------------------------------------------------ per-job config files


def shell_yaml(content):
    """A job's config as a shell-quoted YAML document. Rules take it as a param, so Snakemake reruns
    exactly the jobs whose config changed (rerun trigger `params`); the job writes it to a file."""
    return shlex.quote(yaml.safe_dump(content, sort_keys=False))


def run_config(wildcards):
    return shell_yaml(lookup(REGISTRY.runs, wildcards.run_id, "run").config_for_seed(int(wildcards.seed)))


def pretraining_config(wildcards):
    return shell_yaml(lookup(REGISTRY.backbones, wildcards.backbone, "pretrained backbone")["config"])


def features_config(wildcards):
    return shell_yaml(lookup(REGISTRY.features, wildcards.features, "feature cache")["config"])


def measurement_config(wildcards):
    return shell_yaml(lookup(REGISTRY.measurements, wildcards.measurement, "measurement")["config"])


# ------------------------------------------------------------------ resources


def resource(rule_name, key):
    """A rule's resource from the config's `resources:`, falling back to `default`."""
    resources = config["resources"]
    return resources.get(rule_name, {}).get(key, resources["default"][key])


def rule_resources(rule_name):
    """Memory and time of a rule (they grow with each retry of a failed job) and its GPUs."""
    return dict(
        mem_mb=lambda wildcards, attempt: resource(rule_name, "mem_mb") * attempt,
        runtime=lambda wildcards, attempt: resource(rule_name, "runtime") * attempt,
        gpu=resource(rule_name, "gpu"),
    )


def train_launcher(rule_name):
    """`python -m mld`, or torchrun over the job's GPUs when it has more than one (DDP)."""
    gpus = resource(rule_name, "gpu")
    if gpus > 1:
        return f"python -m torch.distributed.run --standalone --nproc-per-node {gpus} -m mld"
    return "python -m mld"


# ------------------------------------------------------------------ registry look-ups


def lookup(table, key, what):
    """An entry of a registry table, or an error that lists what exists."""
    try:
        return table[key]
    except KeyError:
        raise WorkflowError(
            f"unknown {what} {key!r}; the registry (mld.experiments) has: {', '.join(sorted(table))}"
        ) from None


def dataset_path(dataset_id):
    """A prepared dataset; real datasets are checked to exist here, before any job starts."""
    entry = lookup(REGISTRY.datasets, dataset_id, "dataset")
    try:
        check_dataset_source(entry)
    except ExperimentConfigError as error:
        raise WorkflowError(str(error)) from None
    return entry["path"]


DATASET_BY_PATH = {entry["path"]: dataset_id for dataset_id, entry in REGISTRY.datasets.items()}


def run_outputs(run_ids):
    return [f"{run_dir(run_id, seed)}/metrics.json" for run_id in run_ids for seed in REGISTRY.runs[run_id].seeds]


def table_outputs(table_ids):
    """What the tables read: every run's metrics for every seed, and every measurement."""
    outputs = []
    for table_id in table_ids:
        run_ids, measurement_ids = REGISTRY.table_members(table_id)
        outputs += run_outputs(run_ids) + [measurement_path(m) for m in measurement_ids]
    return sorted(set(outputs))


# ------------------------------------------------------------------ input functions and arguments


def command_line(arguments):
    return " ".join(shlex.quote(str(argument)) for argument in arguments)


def option_flags(options):
    """{num_train: 5, keep_unlabelled: true} -> ["--num-train", 5, "--keep-unlabelled"]."""
    flags = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, value]
    return flags


def prepare_arguments(wildcards):
    """The `mld prepare` arguments that make one dataset (synthetic preset or real adapter)."""
    entry = lookup(REGISTRY.datasets, wildcards.dataset, "dataset")
    if entry["source"] == "synthetic":
        arguments = ["synthetic", "--preset", entry["preset"], *option_flags(
            {key: entry[key] for key in ("image_size", "seed", "num_train", "num_val")})]
    elif entry["source"] == "adapter":
        arguments = [entry["adapter"]]
        if entry["adapter"] in ADAPTERS_WITH_ROOT:
            arguments += ["--root", entry["root"]]
        arguments += option_flags(entry["options"])
    else:
        raise WorkflowError(f"dataset {wildcards.dataset} is already prepared at {entry['path']}; nothing to make")
    return command_line(arguments)


def raw_dataset_input(wildcards):
    """A real dataset's raw release (checked to exist, naming the config key); none if synthetic."""
    entry = lookup(REGISTRY.datasets, wildcards.dataset, "dataset")
    dataset_path(wildcards.dataset)
    return [entry["root"]] if entry["source"] == "adapter" else []


def pretraining_inputs(wildcards):
    backbone = lookup(REGISTRY.backbones, wildcards.backbone, "pretrained backbone")
    return {"dataset": dataset_path(backbone["dataset"])}


def feature_inputs(wildcards):
    cache = lookup(REGISTRY.features, wildcards.features, "feature cache")
    return {
        "dataset": dataset_path(cache["dataset"]),
        "weights": REGISTRY.backbones[cache["backbone"]]["weights"],
    }


def train_inputs(wildcards):
    run = lookup(REGISTRY.runs, wildcards.run_id, "run")
    inputs = {}
    if run.config["features"]:
        inputs["features"] = run.config["features"]
    else:
        inputs["dataset"] = dataset_path(DATASET_BY_PATH[run.config["dataset"]["path"]])
    if run.config["model"]["backbone_weights"]:
        inputs["weights"] = run.config["model"]["backbone_weights"]
    return inputs


def profile_arguments(wildcards):
    """`mld profile <kind>` flags of one measurement beyond its config file."""
    measurement = lookup(REGISTRY.measurements, wildcards.measurement, "measurement")
    return command_line(option_flags(
        {"num_classes": measurement["num_classes"], "resolution": measurement["resolution"], **measurement["options"]}))
