"""How long a training job takes, and what to ask Slurm for: an estimate instead of a flat 48 h.

expected minutes = (epochs x training images / training images per second
                    + evaluations x validation images / inference images per second)
                   / (GPUs x scaling efficiency, the efficiency counting only from 2 GPUs)

The speeds are the throughput measured on the cluster's GPU (`snakemake throughput`, the
results/measurements/throughput/*.json files, when present) or else the paper's Table 9 (TResNet-M at
224 px on a V100, mld/report/paper_values.yaml) times the config's `resources.estimate.speedup`; either
is scaled to the run's resolution (by pixels) and backbone (by `backbone_cost`, relative to the
measured one). The request is the expectation times a margin plus a fixed overhead, capped; a
retry asks for more only up to the cap (a resumed job needs only what is left).

A run's job has `resources.train.gpu` GPUs unless its recipe gives it more (`recipes.<name>.gpu`):
then it is that many one-GPU jobs in one, with N times their CPU threads, memory and loader
workers (`train_job`), and its N processes (torchrun, DDP) split the recipe's global batch.
Light: no torch (Snakemake calls it while planning).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from mld.experiments import ExperimentConfigError

# The papers' reported values (read through mld.report.paper elsewhere; that module imports pandas).
PAPER_VALUES = Path(__file__).resolve().parent / "report" / "paper_values.yaml"

THROUGHPUT_TABLE = "table9_throughput"
# Heads without a Table 9 row are timed like this one (the closest in cost).
FALLBACK_HEAD = "ml_decoder"
# What an N-GPU job's speed is of N one-GPU jobs' (resources.estimate.scaling_efficiency), unless
# the config says: the suite's assumption for DDP on one node, not a measurement.
DEFAULT_SCALING_EFFICIENCY = 0.9


@dataclass(frozen=True)
class Speed:
    """Training and inference images per second at `resolution` px, and where they come from."""

    train: float
    inference: float
    resolution: int
    source: str


@lru_cache(maxsize=1)
def paper_throughput() -> tuple[dict[str, Any], ...]:
    """Table 9's rows: head, classes, train_images_per_s, inference_images_per_s, resolution."""
    tables = yaml.safe_load(PAPER_VALUES.read_text())["tables"]
    return tuple(tables[THROUGHPUT_TABLE]["rows"])


def _nearest(rows: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    return min(rows, key=lambda row: abs(math.log(row["classes"]) - math.log(max(1, num_classes))))


def paper_speed(head: str, num_classes: int, speedup: float = 1.0) -> Speed:
    """Table 9's speed of a head at the nearest class count, times the cluster's speed-up."""
    rows = [row for row in paper_throughput() if row["head"] == head]
    used = head
    if not rows:
        rows, used = [row for row in paper_throughput() if row["head"] == FALLBACK_HEAD], FALLBACK_HEAD
    row = _nearest(rows, num_classes)
    source = f"paper Table 9 ({used}, {row['classes']} classes, V100)" + (f" x {speedup:g}" if speedup != 1 else "")
    return Speed(row["train_images_per_s"] * speedup, row["inference_images_per_s"] * speedup,
                 int(row["resolution"]), source)


def measured_speed(measurements: Mapping[str, Mapping[str, Any]], head: str, num_classes: int) -> Speed | None:
    """The nearest throughput measurement of a head that has been made (results/measurements/throughput/*.json)."""
    candidates = []
    for entry in measurements.values():
        if entry["kind"] != "throughput" or not Path(entry["path"]).is_file():
            continue
        row = next(iter(entry["rows"].values()))
        if row["head"] == head:
            candidates.append((abs(math.log(entry["num_classes"]) - math.log(max(1, num_classes))), entry))
    if not candidates:
        return None
    entry = min(candidates, key=lambda item: item[0])[1]
    result = json.loads(Path(entry["path"]).read_text())
    found = result.get("throughput", result)
    if not found.get("train_images_per_s"):
        return None
    return Speed(float(found["train_images_per_s"]), float(found["inference_images_per_s"]), int(entry["resolution"]),
                 f"measured ({entry['path']})")


def evaluations(train: Mapping[str, Any]) -> int:
    """How often the validation split is scored: every `eval_every` epochs, or once (0)."""
    epochs, every = int(train.get("epochs", 1)), int(train.get("eval_every", 1) or 0)
    return 1 if every <= 0 else max(1, math.ceil(epochs / every))


def expected_minutes(train: Mapping[str, Any], num_train: int, num_val: int, speed: Speed, *,
                     gpus: int = 1, efficiency: float = 1.0, backbone_cost: float = 1.0) -> float:
    """Minutes of wall time of one run on `gpus` GPUs: linear scaling times `efficiency` from 2 GPUs."""
    scale = (int(train["resolution"]) / speed.resolution) ** 2 * backbone_cost
    seconds = (int(train.get("epochs", 1)) * num_train / speed.train
               + evaluations(train) * num_val / speed.inference) * scale
    return seconds / 60 / (gpus * efficiency if gpus > 1 else 1)


def requested_minutes(expected: float, *, margin: float, overhead: float, cap: float, attempt: int = 1) -> int:
    """The time limit to ask for: expectation x margin + overhead, more on retries, never above the cap."""
    return int(min(cap, math.ceil((expected * margin + overhead) * attempt)))


def dataset_sizes(dataset_entry: Mapping[str, Any], hints: Mapping[str, Mapping[str, int]]) -> tuple[int, int, str]:
    """(train, val) image counts of a dataset: its meta.json once prepared, else the config's numbers."""
    meta = Path(dataset_entry["path"]) / "meta.json"
    if meta.is_file():
        splits = json.loads(meta.read_text()).get("splits", {})
        if "train" in splits:
            return int(splits["train"]), int(splits.get("val", 0)), str(meta)
    role = dataset_entry["role"]
    if dataset_entry.get("source") == "synthetic" and dataset_entry.get("num_train"):
        return int(dataset_entry["num_train"]), int(dataset_entry.get("num_val") or 0), "config (synthetic)"
    if role in hints:
        return int(hints[role]["train"]), int(hints[role].get("val", 0)), f"resources.estimate.images.{role}"
    raise KeyError(f"config key resources.estimate.images.{role}: the size of dataset {dataset_entry['name']} is "
                   "unknown before it is prepared; give {train: N, val: M}")


def store_gb(registry: Any, store: Mapping[str, Any]) -> float:
    """The disk size (GB) of an image store (mld.data.store): N images x R x R x 3 bytes."""
    dataset = registry.datasets[store["dataset"]]
    num_train, num_val, _ = dataset_sizes(dataset, registry.config["resources"].get("estimate", {}).get("images", {}))
    return (num_train + num_val) * store["resolution"] ** 2 * 3 / 1e9


def rule_resource(config: Mapping[str, Any], rule_name: str, key: str, default: Any = None) -> Any:
    """A rule's resource from the config's `resources:`, falling back to `default`."""
    resources = config["resources"]
    return resources.get(rule_name, {}).get(key, resources["default"].get(key, default))


@dataclass(frozen=True)
class TrainJob:
    """What one training job asks for: GPUs (one process each), and CPU threads, memory (MB) and
    loader workers for all its processes together."""

    gpus: int
    threads: int
    mem_mb: int
    num_workers: int


def run_gpus(config: Mapping[str, Any], run: Any) -> int:
    """GPUs of a run's training job: `recipes.<name>.gpu` of the recipe(s) its rows train with (the
    most, for a run that several tables share), else `resources.train.gpu`. Refused, naming the key,
    when the recipe's global batch does not split evenly across them."""
    given = {name: config["recipes"][name]["gpu"] for name in sorted(set(run.recipes.values()))
             if config["recipes"].get(name, {}).get("gpu") is not None}
    key = max(given, key=given.get) if given else None
    gpus = given[key] if key else rule_resource(config, "train", "gpu")
    batch = run.config["train"]["batch_size"]
    if gpus > 1 and batch % gpus:
        where = f"recipes.{key}.gpu" if key else "resources.train.gpu"
        raise ExperimentConfigError(
            f"config key {where} = {gpus}: run {run.run_id} has train.batch_size = {batch}, the global batch "
            f"that its {gpus} processes (one per GPU) split evenly; give a GPU count that divides {batch}")
    return gpus


def train_job(config: Mapping[str, Any], run: Any) -> TrainJob:
    """A run's training job: `resources.train` (threads, mem_mb) and the run's `train.num_workers`
    are those of a job with `resources.train.gpu` GPUs; a run given N times the GPUs gets N times them."""
    gpus = run_gpus(config, run)
    scale = max(1, gpus) / max(1, rule_resource(config, "train", "gpu"))

    def scaled(value: int) -> int:
        return int(math.ceil(value * scale))

    return TrainJob(gpus, scaled(rule_resource(config, "train", "threads")),
                    scaled(rule_resource(config, "train", "mem_mb")), scaled(run.config["train"].get("num_workers", 0)))


def run_minutes(registry: Any, run_id: str, seed: int) -> tuple[float, int]:
    """(expected, requested) minutes of the training job of one run and seed (first attempt)."""
    config = registry.config
    settings = config["resources"].get("estimate", {})
    run = registry.runs[run_id]
    train, model = run.config_for_seed(int(seed))["train"], run.config["model"]
    dataset = registry.run_dataset(run_id)
    num_classes = dataset.get("num_classes") or 1
    speed = measured_speed(registry.measurements, model["head"], num_classes) \
        or paper_speed(model["head"], num_classes, settings.get("speedup", 1.0))
    num_train, num_val, _ = dataset_sizes(dataset, settings.get("images", {}))
    role = next((role for role, spec in config["backbones"].items()
                 if isinstance(spec, Mapping) and spec["name"] == model["backbone"]), None)
    expected = expected_minutes(train, num_train, num_val, speed, gpus=run_gpus(config, run),
                                efficiency=settings.get("scaling_efficiency", DEFAULT_SCALING_EFFICIENCY),
                                backbone_cost=settings.get("backbone_cost", {}).get(role, 1.0))
    requested = requested_minutes(expected, margin=settings.get("margin", 1.5),
                                  overhead=settings.get("overhead_min", 10),
                                  cap=rule_resource(config, "train", "max_runtime") or float("inf"))
    return expected, requested
