"""Where the workflow puts everything: the one layout that mld and the Snakemake rules both read.

Each path is a template whose `{fields}` are the rules' wildcards, so a rule's output is the
template itself and Python code fills it with `.format(...)`. Paths are relative to the
working directory (the repository root, or `snakemake --directory`).
"""
from __future__ import annotations

RESULTS = "results"
# The committed reference results: no rule writes here, so they never satisfy a target.
REFERENCE = f"{RESULTS}/reference"

# Prepared datasets, pretrained backbones (embedded default), feature caches.
DATASET = RESULTS + "/data/{dataset}"
BACKBONE_RUN = RESULTS + "/backbones/{backbone}"
BACKBONE_WEIGHTS = RESULTS + "/backbones/{backbone}.pt"
FEATURES = RESULTS + "/features/{features}"
# A real dataset's images decoded once at one input resolution (mld.data.store), for end-to-end runs.
STORE = RESULTS + "/stores/{dataset}/{resolution}px"

# One directory per (run, seed), and the measurements (Table 9's throughput, the per-module timing).
# A run's seeds live side by side in its directory (`mld train --seeds` writes <out>/SEED_DIR for each seed).
SEED_DIR = "seed{seed}"
RUN_ROOT = RESULTS + "/runs/{run_id}"
RUN_DIR = RUN_ROOT + "/" + SEED_DIR
RUN_METRICS = RUN_DIR + "/metrics.json"
MEASUREMENT = RESULTS + "/measurements/{measurement}.json"

# The tables, their CSVs and the figure, and the resolved workflow config they were made from.
TABLES_MD = RESULTS + "/tables.md"
# The long-form results every table is a view of, and its bootstrap companion (mld.report.results).
RUNS_CSV = RESULTS + "/runs.csv"
RUNS_BOOTSTRAP = RESULTS + "/runs.bootstrap.npz"
RUNS_HISTORY = RESULTS + "/runs.history.csv"  # every run's per-epoch history (mld.report.history)
TABLES_CSV = RESULTS + "/tables"
# Software and hardware of every run and measurement, a view of runs.csv.
ENVIRONMENTS = RESULTS + "/environments.csv"
FIGURES = RESULTS + "/figures"
FIGURE = FIGURES + "/map_vs_flops.{ext}"
CLAIMS_FIGURE = FIGURES + "/claims.{ext}"
CURVES = FIGURES + "/curves"  # <table id>.png: the training curves of each table's runs
SPEED_FIGURE = FIGURES + "/top1_vs_speed.{ext}"   # Figure 6
WORKFLOW_CONFIG = RESULTS + "/config.yaml"

# A job's config file: the result-defining part of what the engine reads (written by the
# `job_config` rule, an input of the job, so it changes only when the results would).
# `kind` is one of JOB_KINDS; `name` is a run id plus its seed, a backbone, a cache or a measurement.
JOB_CONFIG = RESULTS + "/configs/{kind}/{name}.yaml"
JOB_KINDS = ("runs", "backbones", "features", "measurements")
# Per-job logs and benchmark files (time and memory of each job, shown in the report).
LOG = RESULTS + "/logs/{rule}/{name}.log"
BENCHMARK = RESULTS + "/benchmarks/{rule}/{name}.tsv"
SLURM_LOGS = RESULTS + "/logs/slurm"

# What each dataset adapter reads under its --root: the prepared dataset depends on these
# entries (files, or folders whose listing is read), not on the root folder itself, so adding
# an unrelated file to a raw release does not prepare it again. File options (word vectors,
# Open Images' annotation files) are further inputs of their own.
ADAPTER_READS = {
    "coco": ("annotations/instances_train2014.json", "annotations/instances_val2014.json", "train2014", "val2014"),
    "voc": ("ImageSets/Main/trainval.txt", "ImageSets/Main/test.txt", "Annotations", "JPEGImages"),
    "nuswide": ("NUS_WID_Tags", "ConceptsList/Concepts81.txt", "ImageList", "Groundtruth/TrainTestLabels", "Flickr"),
    "openimages": (),
    # CIFAR-100 is read from whichever release the root holds (binary or python version), Stanford
    # Cars' test labels from the root or devkit/: only the entries every layout has are listed.
    "cifar100": (),
    "stanford_cars": ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train", "cars_test"),
}


def under(results_dir: str, path: str) -> str:
    """`path` of this layout with its `results/` prefix replaced by `results_dir` (another run's
    results folder, e.g. one `mld report --from` reads)."""
    return results_dir + path[len(RESULTS):] if results_dir != RESULTS else path


def dataset_dir(dataset_id: str) -> str:
    return DATASET.format(dataset=dataset_id)


def backbone_run(backbone_id: str) -> str:
    return BACKBONE_RUN.format(backbone=backbone_id)


def backbone_weights(backbone_id: str) -> str:
    return BACKBONE_WEIGHTS.format(backbone=backbone_id)


def features_dir(features_id: str) -> str:
    return FEATURES.format(features=features_id)


def run_dir(run_id: str, seed: int, results_dir: str = RESULTS) -> str:
    """Where a run's outputs live (metrics.json, predictions.npz, cost.json, ...)."""
    return under(results_dir, RUN_DIR.format(run_id=run_id, seed=seed))


def run_metrics(run_id: str, seed: int) -> str:
    return RUN_METRICS.format(run_id=run_id, seed=seed)


def measurement_path(measurement_id: str, results_dir: str = RESULTS) -> str:
    """Where a measurement (throughput, module timing) is written."""
    return under(results_dir, MEASUREMENT.format(measurement=measurement_id))


def job_config(kind: str, name: str) -> str:
    """The config file of one job; `kind` is one of JOB_KINDS."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; the kinds are {', '.join(JOB_KINDS)}")
    return JOB_CONFIG.format(kind=kind, name=name)


def run_job_name(run_id: str, seed: int) -> str:
    """The `name` of a training job's config, log and benchmark files."""
    return f"{run_id}/{SEED_DIR.format(seed=seed)}"
