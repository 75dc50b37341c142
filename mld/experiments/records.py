"""The registry's records: typed, frozen and torch-free, readable as mappings.

Every entry but a run is a frozen dataclass that also reads like the dict it replaced
(`entry["path"]`, `{**entry}`), so the workflow rules and the tables need not change. A run keeps
its mutable `rows`: one run can fill rows of several tables, added as the table rows are read.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mld import paths


class Record(Mapping):
    """A frozen dataclass read as a mapping of its fields (subclasses are dataclasses)."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DatasetEntry(Record):
    """A prepared dataset the runs read: rendered (synthetic), converted (adapter) or given (prepared)."""

    name: str
    role: str
    source: str                      # synthetic | adapter | prepared
    path: str
    num_classes: int | None = None   # what the config states (real data) or the preset has
    unknown_labels: str = "ignore"
    unknown_weight: float = 1.0
    preset: str | None = None        # synthetic
    image_size: int | None = None
    seed: int | None = None
    num_train: int | None = None
    num_val: int | None = None
    adapter: str | None = None       # adapter
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PretrainedBackbone(Record):
    """A backbone pretrained once (embedded default) before its feature maps are cached: by the
    pretraining job (`config`, into `run_dir`), or shipped with the suite (`shipped`, mld.weights)."""

    config: dict[str, Any]
    dataset: str
    run_dir: str
    weights: str
    identity: str                    # mld.weights.pretraining_identity: the manifest's `pretraining`
    shipped: bool = False


@dataclass(frozen=True)
class FeatureCache(Record):
    """The cached feature maps of one dataset under one pretrained backbone."""

    backbone: str
    dataset: str
    multiscale: bool
    path: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ImageStoreEntry(Record):
    """A real dataset's images decoded once at one resolution (mld.data.store), read by end-to-end runs."""

    dataset: str
    resolution: int
    path: str


@dataclass(frozen=True)
class Measurement(Record):
    """A cost measurement (throughput, module timing) of an untrained model."""

    kind: str
    config: dict[str, Any]
    num_classes: int
    resolution: int
    options: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    path: str


@dataclass(frozen=True)
class RunSettings(Record):
    """What a run was declared with in the experiments table: its dataset and backbone roles, head,
    K (`num_groups`), the head's query count (`queries`) and the class count it trains on."""

    dataset: str | None = None
    backbone: str | None = None
    head: str | None = None
    num_groups: int | None = None
    queries: int | None = None
    num_classes: int | None = None


@dataclass
class Run:
    """One run: an engine run config without its seed, its seeds, and its rows in each table.

    `dataset` is the id of the prepared dataset it reads (a key of Registry.datasets) and
    `backbone_role` the role that defines its backbone (`backbones:` of the workflow config, aliases
    resolved). `recipes` names the recipe of each table's row (`recipes:` of the workflow config) and
    `settings` what the run was declared with (dataset and backbone roles, K, ...), for `mld runs`.
    `weights` says where the backbone's starting weights come from (`starting_weights`);
    `compared` is False when they are random while the paper's run started from pretrained weights
    (its rows are marked and kept out of the claim checks); `refusal`, when set, is why the workflow
    refuses to train the run (the config key and the fix), said before any job starts.
    """

    run_id: str
    config: dict[str, Any]
    seeds: list[int]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    recipes: dict[str, str] = field(default_factory=dict)
    settings: RunSettings = field(default_factory=RunSettings)
    weights: str = ""
    compared: bool = True
    refusal: str | None = None
    dataset: str | None = None
    backbone_role: str | None = None

    def config_for_seed(self, seed: int) -> dict[str, Any]:
        """The run config the engine reads for one seed."""
        if seed not in self.seeds:
            raise KeyError(f"run {self.run_id} has seeds {self.seeds}, not {seed}")
        return {"run_id": self.run_id, "seed": seed, **copy.deepcopy(self.config)}


@dataclass
class Registry:
    """Everything the workflow makes, keyed by id (see docs/architecture.md)."""

    config: dict[str, Any]
    runs: dict[str, Run] = field(default_factory=dict)
    tables: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    backbones: dict[str, PretrainedBackbone] = field(default_factory=dict)
    features: dict[str, FeatureCache] = field(default_factory=dict)
    stores: dict[str, ImageStoreEntry] = field(default_factory=dict)  # by path
    measurements: dict[str, Measurement] = field(default_factory=dict)
    targets: dict[str, list[str]] = field(default_factory=dict)
    _training_jobs: dict[str, tuple[Run, int]] | None = field(default=None, init=False, repr=False, compare=False)

    def run_dataset(self, run_id: str) -> DatasetEntry:
        """The prepared dataset a run reads."""
        return self.datasets[self.runs[run_id].dataset]

    def job_config(self, kind: str, name: str) -> dict[str, Any]:
        """The engine config of one job, by its config file's kind and name (mld.paths.job_config):
        a training job's name is looked up among those its run gives, never parsed back."""
        if kind == "runs":
            if self._training_jobs is None:
                self._training_jobs = {paths.run_job_name(run.run_id, seed): (run, seed)
                                       for run in self.runs.values() for seed in run.seeds}
            run, seed = self._training_jobs[name]
            return run.config_for_seed(seed)
        tables: dict[str, Mapping[str, Mapping[str, Any]]] = {
            "backbones": self.backbones, "features": self.features, "measurements": self.measurements}
        return tables[kind][name]["config"]

    def table_members(self, table_id: str) -> tuple[list[str], list[str]]:
        """The (run ids, measurement ids) a table reads."""
        if table_id not in self.tables:
            raise KeyError(f"unknown table {table_id!r}; the tables are {', '.join(self.tables)}")
        members = self.tables[table_id]
        return ([m for m in members if m in self.runs], [m for m in members if m in self.measurements])


RANDOM_INIT = "random init"


def starting_weights(model: Mapping[str, Any]) -> str:
    """Where a run config's backbone starts: its weights file, timm's hub weights, or random init."""
    if model.get("backbone_weights"):
        return str(model["backbone_weights"])
    return f"timm:{model['backbone']}" if model.get("pretrained") else RANDOM_INIT
