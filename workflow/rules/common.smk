"""The resolved workflow config, the experiment registry, and the helpers the rules call.

Only functions and set-up live here; the rules are in data.smk, train.smk, measure.smk, report.smk.
Paths come from mld.paths (the one layout mld and the rules share).
"""

import os
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from mld import estimate, paths
from mld.engine.config import EXECUTION_KEYS, result_defining
from mld.experiments import (
    ExperimentConfigError,
    build_registry,
    check_dataset_source,
    check_dataset_sources,
    dataset_prepare_arguments,
    load_config,
    option_flags,
)
from mld.weights import WeightsConfigError, check_shipped_backbones

REPO = Path(workflow.basedir)


# Resolved by the one loader (mld.experiments.load_config) and validated before anything is
# scheduled: a bad key fails here, naming the key and the fix. `base:` is relative to the checkout.
try:
    _resolved = load_config(config, dict(workflow.config_settings.config), root=REPO, check_weights=True)
    config.clear()
    config.update(_resolved)
    REGISTRY = build_registry(config)
    for _run in REGISTRY.runs.values():  # every run's GPUs split its batch (named key otherwise)
        estimate.run_gpus(config, _run)
    check_shipped_backbones(config, REGISTRY.backbones)
except (ExperimentConfigError, WeightsConfigError) as error:
    raise WorkflowError(str(error)) from None

# Jobs run `python -m mld` with the interpreter that runs Snakemake (or the rule's conda env,
# with --software-deployment-method conda), importing this checkout's mld either way. Slurm jobs
# inherit this environment (sbatch --export=ALL). With a weights cache the jobs never ask the hub.
os.environ.update(
    PATH=os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")])),
    PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
)
if config.get("weights_cache") or config.get("offline"):
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


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
    """A prepared dataset by its id; see checked_path."""
    return checked_path(lookup(REGISTRY.datasets, dataset_id, "dataset"))


def checked_path(entry):
    """A prepared dataset's path; real datasets are checked to exist here, before any job starts."""
    try:
        check_dataset_source(entry)
    except ExperimentConfigError as error:
        raise WorkflowError(str(error)) from None
    return entry["path"]


def selected(run_id):
    """A run is left out of every target when its dataset role is in `skip_datasets`."""
    return REGISTRY.run_dataset(run_id)["role"] not in config.get("skip_datasets", [])


def run_outputs(run_ids):
    return [
        paths.run_metrics(run_id, seed)
        for run_id in run_ids
        if selected(run_id)
        for seed in REGISTRY.runs[run_id].seeds
    ]


def target_inputs(table_ids):
    """The input function of the targets (`report` and each named ablation); see checked_outputs."""
    return lambda wildcards: checked_outputs(table_ids)


def checked_outputs(table_ids):
    """`table_outputs`, once every real dataset their selected runs read is there; the missing ones
    all named in one message, while the jobs are planned."""
    entries = [
        REGISTRY.run_dataset(run_id)
        for table_id in table_ids
        for run_id in REGISTRY.table_members(table_id)[0]
        if selected(run_id)
    ]
    needed = {entry["path"]: entry for entry in entries}
    try:
        check_dataset_sources(sorted(needed.values(), key=lambda entry: entry["role"]))
    except ExperimentConfigError as error:
        # Snakemake would word an input function's error under a traceback: this one is the
        # user's to fix, so it is said alone and planning stops (no job exists yet).
        logger.error(f"Error: {error}")
        raise SystemExit(1) from None
    return table_outputs(table_ids)


def table_outputs(table_ids):
    """What the tables read: every selected run's metrics for every seed, and every measurement."""
    outputs = []
    for table_id in table_ids:
        run_ids, measurement_ids = REGISTRY.table_members(table_id)
        outputs += run_outputs(run_ids) + [paths.measurement_path(m) for m in measurement_ids]
    return sorted(set(outputs))


# ------------------------------------------------------------------ job config files


def job_engine_config(kind, name):
    """The full engine config of one job (`kind` of mld.paths.JOB_KINDS, `name` as the records give it)."""
    try:
        return REGISTRY.job_config(kind, name)
    except KeyError:
        raise WorkflowError(f"no {kind} job is named {name!r} in the registry (mld.experiments)") from None


def job_config_content(wildcards):
    """What defines a job's result, as YAML: the `job_config` rule's param, so a job reruns exactly
    when its result would change; execution settings stay out (see `execution_flags`)."""
    content = result_defining(job_engine_config(wildcards.kind, wildcards.name))
    return yaml.safe_dump(content, sort_keys=False)


def execution_flags(kind, name, job=None):
    """`--set train.num_workers=8 ...`: a job's execution settings (the image store too), for
    mld.launch (not a trigger); a training `job` (mld.estimate.TrainJob) brings its loader workers."""
    engine = job_engine_config(kind, name)
    if job is not None:
        engine["train"]["num_workers"] = job.num_workers
    flags = []
    for key in EXECUTION_KEYS:
        section, option = key.split(".")
        if option in engine.get(section, {}):
            flags += ["--set", f"{key}={engine[section][option]}"]
    return command_line(flags)


# ------------------------------------------------------------------ resources


def resource(rule_name, key, default=None):
    """A rule's resource from the config's `resources:`, falling back to `default`."""
    return estimate.rule_resource(config, rule_name, key, default)


def capped(rule_name, key, cap_key, base):
    """Grows with each retry of a failed job, never above the rule's cap."""
    cap = resource(rule_name, cap_key)
    return lambda wildcards, attempt: int(min(cap or float("inf"), base(wildcards) * attempt))


def base_runtime(rule_name):
    if resource(rule_name, "runtime") != "estimate":
        return lambda wildcards: resource(rule_name, "runtime")
    return lambda wildcards: sum(
        estimate.run_minutes(REGISTRY, wildcards.run_id, seed)[1] for seed in job_seeds(wildcards)
    )


def train_job(wildcards):
    """The size of a run's training job (mld.estimate.train_job): its GPUs, and the threads,
    memory and loader workers that grow with them."""
    return estimate.train_job(config, lookup(REGISTRY.runs, wildcards.run_id, "run"))


def rule_resources(rule_name, execution_settings=None, job=None):
    """Memory and time (growing with each retry, up to the rule's caps), GPUs, and the execution
    settings mld.launch passes on: resources, not params, so changing them reruns nothing. `job`
    (train_job) sizes each job by its run's GPUs instead of the rule's flat values."""
    mem_mb = (lambda w: job(w).mem_mb) if job else (lambda w: resource(rule_name, "mem_mb"))
    return dict(
        mem_mb=capped(rule_name, "mem_mb", "max_mem_mb", mem_mb),
        runtime=capped(rule_name, "runtime", "max_runtime", base_runtime(rule_name)),
        gpu=(lambda w: job(w).gpus) if job else resource(rule_name, "gpu"),
        execution=execution_settings or "",
    )


def launched(command):
    """A rule's shell command run through `python -m mld.launch` with the job's GPUs, threads and
    execution settings (resources, so changing them reruns nothing).

    Inside a Slurm job the engine is told to checkpoint and stop `stop_margin_min` before the
    job's time limit (Slurm's own --signal would kill Snakemake's job step: see mld.launch)."""
    margin = config["resources"].get("estimate", {}).get("stop_margin_min", 5)
    return (
        "python -m mld.launch --gpus {resources.gpu} --threads {threads} --time-limit-min {resources.runtime}"
        f" --stop-margin-min {margin} {{resources.execution}} -- {command}"
    )


def execution(kind, name_of, job=None):
    """The `execution` resource of a rule: its jobs' execution settings (see execution_flags)."""
    return lambda wildcards: execution_flags(kind, name_of(wildcards), job(wildcards) if job else None)


# ------------------------------------------------------------------ input functions and arguments


def command_line(arguments):
    return " ".join(shlex.quote(str(argument)) for argument in arguments)


def prepare_arguments(wildcards):
    """The `mld prepare` arguments that make one dataset (mld.experiments.dataset_prepare_arguments)."""
    try:
        return command_line(dataset_prepare_arguments(lookup(REGISTRY.datasets, wildcards.dataset, "dataset")))
    except ExperimentConfigError as error:
        raise WorkflowError(str(error)) from None


def raw_dataset_input(wildcards):
    """The files a real dataset's adapter reads (checked to exist, naming the config key), not its
    root folder: an unrelated file added to the release does not prepare it again."""
    entry = lookup(REGISTRY.datasets, wildcards.dataset, "dataset")
    if entry["source"] != "adapter":
        return []
    dataset_path(wildcards.dataset)
    reads = [f"{entry['root']}/{relative}" for relative in paths.ADAPTER_READS[entry["adapter"]]]
    option_files = [
        value for key, value in entry["options"].items() if isinstance(value, str) and value.startswith(entry["root"])
    ]
    return sorted(set(reads + option_files))


def pretraining_inputs(wildcards):
    backbone = lookup(REGISTRY.backbones, wildcards.backbone, "pretrained backbone")
    inputs = {
        "dataset": dataset_path(backbone["dataset"]),
        "config": paths.job_config("backbones", wildcards.backbone),
    }
    weights = backbone["config"]["model"]["backbone_weights"]
    return {**inputs, **({"weights": weights} if weights else {})}


def feature_inputs(wildcards):
    cache = lookup(REGISTRY.features, wildcards.features, "feature cache")
    return {
        "dataset": dataset_path(cache["dataset"]),
        "weights": REGISTRY.backbones[cache["backbone"]]["weights"],
        "config": paths.job_config("features", wildcards.features),
    }


def job_seeds(wildcards):
    """The seeds one training job trains: its `seed` wildcard, or (cached features) all the run's."""
    if "seed" in wildcards.keys():
        return [int(wildcards.seed)]
    return lookup(REGISTRY.runs, wildcards.run_id, "run").seeds


def train_inputs(wildcards):
    """The job's config (its first seed's: `mld train --seeds` sets the seed) and, as triggers, the
    other seeds' configs; the features or the dataset; the backbone weights."""
    run = lookup(REGISTRY.runs, wildcards.run_id, "run")
    if run.refusal:  # e.g. a backbone that would train from random weights unasked
        raise WorkflowError(run.refusal)
    first, *others = [paths.job_config("runs", paths.run_job_name(run.run_id, seed)) for seed in job_seeds(wildcards)]
    inputs = {"config": first, **({"seed_configs": others} if others else {})}
    if run.config["features"]:
        inputs["features"] = run.config["features"]
    else:
        inputs["dataset"] = checked_path(REGISTRY.run_dataset(run.run_id))
        if run.config["dataset"].get("store"):
            inputs["store"] = run.config["dataset"]["store"]
    if run.config["model"]["backbone_weights"]:
        inputs["weights"] = run.config["model"]["backbone_weights"]
    return inputs


def measure_arguments(wildcards):
    """`mld measure <kind>` flags of one measurement beyond its config file."""
    measurement = lookup(REGISTRY.measurements, wildcards.measurement, "measurement")
    options = {
        "num_classes": measurement["num_classes"],
        "resolution": measurement["resolution"],
        **measurement["options"],
    }
    return command_line(option_flags(options))
