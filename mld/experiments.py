"""The registry of every experiment of the paper: which runs exist and which table uses them.

The Snakemake workflow and the tables both ask this module and never repeat it. A workflow config
(config/*.yaml, validated against workflow/schemas/config.schema.yaml) says where the data comes
from, which backbone plays which role and how big each experiment is; `build_registry` turns it
into runs (one engine run config each, trained once per seed), the tables that read them, and
what the runs need first: datasets to prepare and, in the embedded default, backbones to pretrain
and feature maps to cache. One run can fill rows of several tables (Table 1's ML-Decoder run is
also a row of Table 7): runs are identified by what they compute, so it is trained once.

This module is imported when Snakemake parses the workflow: it must stay light (no torch).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

RESULTS_DIR = "results"
# `base:` paths are relative to the checkout (the Snakefile's folder), like the configs themselves.
CHECKOUT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = CHECKOUT / "workflow" / "schemas" / "config.schema.yaml"

# The engine's task for each dataset role; roles not listed are multilabel.
TASK_BY_ROLE = {"nus": "zero_shot", "imagenet": "single_label"}
# Heads that read every backbone stage (feature_kind "multiscale"); the rest read the last map.
# Spelled out here because importing mld.heads would import torch while Snakemake parses.
MULTISCALE_HEADS = frozenset({"hsvlt"})
DEFAULT_BACKBONE = "medium"
# `mld prepare <adapter>` options that name files; relative values are under the dataset's root.
ADAPTER_PATH_OPTIONS = frozenset({"word_vectors", "class_descriptions", "train_labels", "val_labels", "train_images",
                                  "val_images", "classes"})
# Adapters whose release is one folder given as --root (Open Images takes its files one by one).
ADAPTERS_WITH_ROOT = frozenset({"coco", "voc", "nuswide"})
# The keys of the shared `train:` block that feature extraction reads (the rest is training).
EXTRACTION_TRAIN_KEYS = ("amp", "device", "num_workers", "log_every_s")
PRETRAIN_ROLE = "pretrain"

# Named ablations: `snakemake <name>` runs exactly the runs and measurements of these tables.
TARGETS = {
    "heads": ["table1_heads"],
    "extreme_classification": ["table2_extreme"],
    "query_augmentation": ["table3_query_aug"],
    "zsl_groups": ["table4_zsl_groups"],
    "coco": ["table5_coco_sota"],
    "zero_shot": ["table6_zsl"],
    "query_types": ["table7_query_types"],
    "zsl_query_head": ["table8_zsl_query_head"],
    "throughput": ["table9_throughput"],
    "resolution": ["resolution"],
    "stacked_layers": ["stacked_layers"],
    "module_timing": ["module_timing"],
    "voc": ["table11_voc"],
    "openimages": ["table12_openimages"],
    "single_label": ["table13_single_label"],
    "map_vs_flops": ["figure5"],
    "hsvlt": ["hsvlt_heads", "hsvlt_reported"],
    "hsvlt_ablation": ["hsvlt_ablation"],
}


class ExperimentConfigError(ValueError):
    """The workflow config cannot describe the experiments; the message names the key and the fix."""


@dataclass
class Run:
    """One run: an engine run config without its seed, its seeds, and its rows in each table."""

    run_id: str
    config: dict[str, Any]
    seeds: list[int]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

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
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, list[str]] = field(default_factory=dict)

    def table_members(self, table_id: str) -> tuple[list[str], list[str]]:
        """The (run ids, measurement ids) a table reads."""
        if table_id not in self.tables:
            raise KeyError(f"unknown table {table_id!r}; the tables are {', '.join(self.tables)}")
        members = self.tables[table_id]
        return ([m for m in members if m in self.runs], [m for m in members if m in self.measurements])


def run_dir(run_id: str, seed: int, results_dir: str = RESULTS_DIR) -> str:
    """Where a run's outputs live (metrics.json, predictions.npz, cost.json, ...)."""
    return f"{results_dir}/runs/{run_id}/seed{seed}"


def measurement_path(measurement_id: str, results_dir: str = RESULTS_DIR) -> str:
    """Where a cost measurement (throughput, module timing) is written."""
    return f"{results_dir}/cost/{measurement_id}.json"


# --------------------------------------------------------------------------- config files


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `override`, recursing into mappings (as Snakemake merges config files)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_base(config: Mapping[str, Any], root: str | Path = CHECKOUT) -> dict[str, Any]:
    """Apply `base: FILE` (a config this one extends; the path is relative to `root`), recursively."""
    seen: list[Path] = []
    resolved = dict(config)
    while "base" in resolved:
        path = Path(root) / str(resolved.pop("base"))
        if path in seen:
            raise ExperimentConfigError(f"config key base: {path} extends itself (through {seen})")
        seen.append(path)
        try:
            parent = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ExperimentConfigError(
                f"config key base: {path} does not exist; give a config file relative to {Path(root).resolve()}"
            ) from None
        if not isinstance(parent, dict):
            raise ExperimentConfigError(f"config key base: {path} does not hold a mapping of settings")
        resolved = deep_merge(parent, resolved)
    return resolved


def validate_config(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Check a resolved workflow config against the schema; one line per problem, with its key."""
    import jsonschema  # only needed here; keeps `import mld.experiments` cheap

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
        detail = error.message
        if error.validator == "oneOf":  # name the allowed forms and what is wrong with the closest
            forms = [sub.get("$ref", "").rsplit("/", 1)[-1] or sub.get("type", "?") for sub in error.validator_value]
            # The form that matched deepest is the one the user meant.
            closest = max(error.context, key=lambda sub: len(sub.absolute_path))
            detail = f"matches none of the allowed forms ({', '.join(forms)}); closest: {closest.message}"
        problems.append(f"config key {key}: {detail}")
    if problems:
        raise ExperimentConfigError(
            "invalid workflow config (see workflow/schemas/config.schema.yaml):\n  " + "\n  ".join(problems)
        )


def load_config(path: str | Path, root: str | Path = CHECKOUT, schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read a workflow config file, apply its `base`, validate it; what `build_registry` expects."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ExperimentConfigError(f"workflow config {path} does not exist") from None
    if not isinstance(raw, dict):
        raise ExperimentConfigError(f"workflow config {path} does not hold a mapping of settings")
    config = resolve_base(raw, root)
    validate_config(config, schema_path)
    return config


def check_dataset_source(dataset: Mapping[str, Any]) -> None:
    """Fail with the config key, the path and the fix when a real dataset's files are missing."""
    source = dataset["source"]
    if source == "synthetic":
        return
    path = Path(dataset["root"] if source == "adapter" else dataset["path"])
    key = f"datasets.{dataset['role']}.{'root' if source == 'adapter' else 'prepared'}"
    if not path.exists():
        raise ExperimentConfigError(
            f"config key {key}: {path} does not exist (needed by the runs on dataset {dataset['name']}); "
            f"point it at the dataset with --config data_root=DIR, or in your own config file "
            f"(`base: config/paper.yaml` plus `datasets: {{{dataset['role']}: {{...}}}}`)"
        )
    if source == "prepared" and not (path / "meta.json").is_file():
        raise ExperimentConfigError(
            f"config key {key}: {path} is not a prepared dataset (no meta.json); prepare it with "
            f"`mld prepare ... --out {path}` or use `adapter` + `root` to let the workflow prepare it"
        )


# --------------------------------------------------------------------------- the builder


class _Builder:
    """Fills a Registry from a validated config; one method per kind of thing the runs need."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.cached = config["mode"] == "cached_features"
        self.registry = Registry(config=copy.deepcopy(dict(config)))
        self.registry.targets = {name: list(tables) for name, tables in TARGETS.items()}
        for tables in TARGETS.values():
            for table_id in tables:
                self.registry.tables.setdefault(table_id, [])
        self._check_backbone_aliases()
        if self.cached and (PRETRAIN_ROLE not in config["datasets"] or "pretraining" not in config):
            raise ExperimentConfigError(
                "mode cached_features pretrains every backbone first: add datasets.pretrain "
                "(a synthetic dataset) and a `pretraining:` section, or use mode: end_to_end"
            )

    # ---- datasets

    def num_classes(self, role: str) -> int:
        spec = self.config["datasets"][role]
        if "num_classes" in spec:
            return int(spec["num_classes"])
        from mld.data import preset_num_classes  # light: reads the preset table, no rendering

        return int(preset_num_classes(spec["synthetic"]["preset"]))

    def dataset(self, role: str, resolution: int) -> str:
        """The id of the prepared dataset a run on `role` at `resolution` reads."""
        spec = self.config["datasets"][role]
        name = spec["name"]
        entry: dict[str, Any] = {"name": name, "role": role}
        if "synthetic" in spec:
            # Synthetic images are rendered at the input resolution, so each resolution is a dataset.
            if resolution != self.config["resolution"]:
                name = f"{name}-{resolution}px"
            entry.update(name=name, source="synthetic", preset=spec["synthetic"]["preset"], image_size=resolution,
                         seed=self.config.get("synthetic", {}).get("seed", 0),
                         num_train=spec["synthetic"].get("num_train"), num_val=spec["synthetic"].get("num_val"))
            entry["path"] = f"{RESULTS_DIR}/data/{name}"
        elif "adapter" in spec:
            root = Path(spec["root"])
            if not root.is_absolute() and self.config.get("data_root"):
                root = Path(self.config["data_root"]) / root
            # File options (annotation CSVs, image folders, word vectors) are relative to the root.
            options = {key: str(root / value) if key in ADAPTER_PATH_OPTIONS else value
                       for key, value in spec.get("options", {}).items()}
            entry.update(source="adapter", adapter=spec["adapter"], root=str(root), options=options,
                         path=f"{RESULTS_DIR}/data/{name}")
        else:
            entry.update(source="prepared", path=spec["prepared"])
        entry["unknown_labels"] = spec.get("unknown_labels", "ignore")
        entry["unknown_weight"] = spec.get("unknown_weight", 1.0)
        self.registry.datasets.setdefault(name, entry)
        return name

    # ---- backbones and feature caches

    def _check_backbone_aliases(self) -> None:
        for role, spec in self.config["backbones"].items():
            if isinstance(spec, str) and not isinstance(self.config["backbones"].get(spec), dict):
                raise ExperimentConfigError(
                    f"config key backbones.{role}: {spec!r} must name a role defined by a mapping "
                    f"({', '.join(r for r, s in self.config['backbones'].items() if isinstance(s, dict))})"
                )

    def backbone_id(self, role: str) -> str:
        """The role that defines the backbone (aliases resolved): roles sharing a backbone share runs."""
        if role not in self.config["backbones"]:
            raise ExperimentConfigError(
                f"config key backbones.{role}: missing; the experiments use this backbone role "
                f"(defined: {', '.join(self.config['backbones'])})"
            )
        spec = self.config["backbones"][role]
        return spec if isinstance(spec, str) else role

    def backbone_block(self, backbone_id: str, weights: str | None, pretrained: bool) -> dict[str, Any]:
        spec = self.config["backbones"][backbone_id]
        return {
            "backbone": spec["name"],
            "backbone_weights": weights,
            "backbone_options": copy.deepcopy(spec.get("options", {})),
            "pretrained": pretrained,
        }

    def configured_backbone(self, backbone_id: str) -> dict[str, Any]:
        """The backbone block with the weights the config gives it (none, a file or timm's pretrained)."""
        spec = self.config["backbones"][backbone_id]
        return self.backbone_block(backbone_id, spec.get("weights"), bool(spec.get("pretrained", False)))

    def model_block(self, backbone_role: str, head: str, num_groups: int | None,
                    head_options: Mapping[str, Any], trained: bool = True) -> dict[str, Any]:
        """The run config's `model:` block; `trained=False` leaves the weights out (cost measurements)."""
        backbone_id = self.backbone_id(backbone_role)
        if not trained:
            backbone = self.backbone_block(backbone_id, None, False)
        elif self.cached:
            backbone = self.backbone_block(backbone_id, self.pretrained_backbone(backbone_id), False)
        else:
            backbone = self.configured_backbone(backbone_id)
        return {**backbone, "head": head, "num_groups": num_groups,
                "head_options": deep_merge(self.config["heads"][head], head_options)}

    def differs(self, head: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options that differ from the head's configured defaults: what makes a run a variant."""
        defaults = self.config["heads"][head]
        return {key: value for key, value in options.items() if defaults.get(key, object()) != value}

    def pretrained_backbone(self, backbone_id: str) -> str:
        """Register the pretraining run of a backbone (embedded default); return its weights file."""
        if backbone_id not in self.registry.backbones:
            pretraining = self.config["pretraining"]
            resolution = self.config["resolution"]
            dataset_id = self.dataset(PRETRAIN_ROLE, resolution)
            config = {
                "run_id": f"pretrain/{backbone_id}",
                "seed": 0,
                "dataset": self._dataset_block(dataset_id),
                "features": None,
                "model": {
                    **self.configured_backbone(backbone_id),
                    "head": pretraining["head"],
                    "num_groups": None,
                    "head_options": copy.deepcopy(pretraining.get("head_options", {})),
                },
                "task": "multilabel",
                "train": deep_merge(pretraining["train"], {"resolution": resolution}),
            }
            self.registry.backbones[backbone_id] = {
                "config": config,
                "dataset": dataset_id,
                "run_dir": f"{RESULTS_DIR}/backbones/{backbone_id}",
                "weights": f"{RESULTS_DIR}/backbones/{backbone_id}.pt",
            }
        return self.registry.backbones[backbone_id]["weights"]

    def feature_cache(self, backbone_id: str, dataset_id: str, head: str, resolution: int) -> str:
        """Register the cached feature maps of a dataset under a pretrained backbone; return the dir.

        Heads that read every stage get a multiscale cache; all others share the last feature map.
        """
        multiscale = head in MULTISCALE_HEADS
        features_id = f"{backbone_id}/{dataset_id}" + ("-multiscale" if multiscale else "")
        path = f"{RESULTS_DIR}/features/{features_id}"
        if features_id not in self.registry.features:
            self.registry.features[features_id] = {
                "backbone": backbone_id,
                "dataset": dataset_id,
                "multiscale": multiscale,
                "path": path,
                # What the extractor reads: the dataset, the pretrained backbone and the resolution;
                # the head only says whether one map or every stage is cached.
                "config": {
                    "run_id": f"features/{features_id}",
                    "seed": 0,
                    "dataset": self._dataset_block(dataset_id),
                    "features": None,
                    # No head options: only the backbone's features are extracted, so a change
                    # to a head's options must not invalidate the cache.
                    "model": {**self.model_block(backbone_id, head if multiscale else "gap", None, {}),
                              "head_options": {}},
                    "task": TASK_BY_ROLE.get(self.registry.datasets[dataset_id]["role"], "multilabel"),
                    # Only what extraction uses: a change to the training recipe keeps the cache.
                    "train": {**{key: self.config["train"][key] for key in EXTRACTION_TRAIN_KEYS
                                 if key in self.config["train"]}, "resolution": resolution},
                },
            }
        return path

    def _dataset_block(self, dataset_id: str) -> dict[str, Any]:
        entry = self.registry.datasets[dataset_id]
        block = {"path": entry["path"], "unknown_labels": entry["unknown_labels"]}
        if entry["unknown_labels"] == "negative":
            block["unknown_weight"] = entry["unknown_weight"]
        return block

    # ---- runs

    def run(self, table_id: str, row: Mapping[str, Any], *, dataset: str, head: str,
            backbone: str = DEFAULT_BACKBONE, resolution: int | None = None, num_groups: int | None = None,
            head_options: Mapping[str, Any] | None = None, variant: str | None = None,
            train: Mapping[str, Any] | None = None, head_tag: str | None = None) -> str:
        """Register one run (or find the identical one) and give it a row in `table_id`."""
        resolution = resolution or self.config["resolution"]
        dataset_id = self.dataset(dataset, resolution)
        model = self.model_block(backbone, head, num_groups, head_options or {})
        features = None
        if self.cached:
            features = self.feature_cache(self.backbone_id(backbone), dataset_id, head, resolution)
        config = {
            "dataset": self._dataset_block(dataset_id),
            "features": features,
            "model": model,
            "task": TASK_BY_ROLE.get(dataset, "multilabel"),
            # A run's own train keys replace the shared ones whole (a loss's options belong to it).
            "train": {**copy.deepcopy(self.config["train"]), **copy.deepcopy(dict(train or {})),
                      "resolution": resolution},
        }
        run_id = self._run_id(dataset, resolution, backbone, head_tag or head, variant)
        existing = self.registry.runs.get(run_id)
        if existing is None:
            self.registry.runs[run_id] = Run(run_id, config, list(self.config["seeds"]))
        elif existing.config != config:
            raise AssertionError(f"two different runs got the id {run_id}; make the id say what differs")
        self.add_row(run_id, table_id, row)
        return run_id

    def add_row(self, run_id: str, table_id: str, row: Mapping[str, Any]) -> None:
        """Give an existing run a row in another table (one run, several tables)."""
        self.registry.runs[run_id].rows[table_id] = dict(row)
        if run_id not in self.registry.tables.setdefault(table_id, []):
            self.registry.tables[table_id].append(run_id)

    def _run_id(self, dataset: str, resolution: int, backbone: str, head_tag: str, variant: str | None) -> str:
        parts = [self.config["datasets"][dataset]["name"]]
        if resolution != self.config["resolution"]:
            parts[0] += f"-{resolution}px"
        if self.backbone_id(backbone) != self.backbone_id(DEFAULT_BACKBONE):
            parts.append(self.backbone_id(backbone))
        parts.append(head_tag)
        if variant:
            parts.append(variant)
        return "/".join(parts)

    # ---- cost measurements

    def measurement(self, kind: str, table_id: str, row: Mapping[str, Any], *, head: str, num_classes: int,
                    num_groups: int | None) -> str:
        settings = self.config["measurements"]
        tag = f"{head}-n{num_classes}" + (f"-k{num_groups}" if num_groups else "")
        measurement_id = f"{kind}/{tag}"
        # Speed does not depend on the weights' values: measurements use untrained models.
        model = self.model_block(settings["backbone"], head, num_groups, {}, trained=False)
        self.registry.measurements[measurement_id] = {
            "kind": kind,
            # What `mld profile` reads: the model block of a run config and the resolution.
            "config": {"run_id": measurement_id, "model": model, "train": {"resolution": settings["resolution"]}},
            "num_classes": num_classes,
            "resolution": settings["resolution"],
            "options": copy.deepcopy(settings.get("options", {})),
            "rows": {table_id: dict(row)},
            "path": measurement_path(measurement_id),
        }
        self.registry.tables.setdefault(table_id, []).append(measurement_id)
        return measurement_id


# --------------------------------------------------------------------------- the experiments
#
# One function per paper table. Row keys use the column names and values of mld/paper_values.yaml
# (the paper's names for datasets and backbones, whatever stands in for them in a config), so that
# reproduced and reported rows join on them.

PAPER_DATASET = {"coco": "ms_coco", "voc": "voc2007", "nus": "nus_wide", "openimages": "open_images",
                 "imagenet": "imagenet"}
# The paper's backbone of each role; the resolution table names TResNet-L by its version 2.
PAPER_BACKBONE = {"small": "tresnet_s", "medium": "tresnet_m", "large": "tresnet_l", "xlarge": "tresnet_xl",
                  "resnet50": "resnet50", "resnet101": "resnet101", "convnext": "convnext_small"}
RESOLUTION_TABLE_BACKBONE = {**PAPER_BACKBONE, "large": "tresnet_v2_l"}

# Table 3's augmentations: (additive noise, random-query).
ZSL_AUGMENTATIONS = {"none": (False, False), "additive_noise": (True, False), "random_query": (False, True),
                     "both": (True, True)}
# Table 8's group fully-connected head types, as the paper names them -> ML-Decoder's head_type.
ZSL_HEAD_TYPES = {"learnable": "learnable", "learnable_shared": "shared", "nlp": "nlp"}


def _queries(query_type: str = "fixed_random") -> dict[str, Any]:
    """ML-Decoder's options for a query scheme (names as mld.heads.ml_decoder spells them)."""
    return {"query_type": query_type}


def _zero_shot(b: _Builder, query_type: str, head_type: str, augmentation: str) -> dict[str, Any]:
    noise, random_query = ZSL_AUGMENTATIONS[augmentation]
    strength = b.config["experiments"]["query_augmentation"]
    return {"query_type": query_type, "head_type": ZSL_HEAD_TYPES[head_type],
            "query_noise": strength["query_noise"] if noise else 0.0,
            "random_queries": strength["random_queries"] if random_query else 0}


def _ml_decoder(b: _Builder, table_id: str, row: dict[str, Any], dataset: str, k: int, **run: Any) -> str:
    """An ML-Decoder run with K = k fixed random queries (the official head)."""
    return b.run(table_id, row, dataset=dataset, head="ml_decoder", num_groups=k, head_options=_queries(),
                 head_tag=f"ml_decoder-k{k}", variant="fixed_random", **run)


def _heads(b: _Builder) -> None:
    """Table 1: GAP, transformer-decoder and ML-Decoder (full and group) on MS-COCO."""
    n = b.num_classes("coco")
    b.run("table1_heads", {"head": "gap", "queries": None}, dataset="coco", head="gap")
    b.run("table1_heads", {"head": "transformer_decoder", "queries": n}, dataset="coco", head="transformer_decoder")
    for k in (max(1, n // b.config["experiments"]["group_factor"]), n):
        _ml_decoder(b, "table1_heads", {"head": "ml_decoder", "queries": k}, "coco", k)


def _query_types(b: _Builder) -> None:
    """Table 7: learnable, fixed NLP-based and fixed random queries, K = N."""
    n = b.num_classes("coco")
    for query_type in ("learnable", "nlp", "fixed_random"):
        b.run("table7_query_types", {"query_type": query_type}, dataset="coco", head="ml_decoder", num_groups=n,
              head_options=_queries(query_type), head_tag=f"ml_decoder-k{n}", variant=query_type)


def _extreme(b: _Builder) -> None:
    """Table 2 (thousands of classes; the transformer-decoder is reported infeasible by its cost)
    and Table 12's reproduced Open Images row (ML-Decoder with the most groups)."""
    n = b.num_classes("openimages")
    resolution = b.config["experiments"].get("extreme_resolution")
    b.run("table2_extreme", {"head": "gap", "queries": None}, dataset="openimages", head="gap", resolution=resolution)
    b.run("table2_extreme", {"head": "transformer_decoder", "queries": n}, dataset="openimages",
          head="transformer_decoder", resolution=resolution)
    groups = b.config["experiments"]["extreme_groups"]
    for k in groups:
        run_id = _ml_decoder(b, "table2_extreme", {"head": "ml_decoder", "queries": k}, "openimages", k,
                             resolution=resolution)
        if k == max(groups):
            b.add_row(run_id, "table12_openimages", {"method": "ml_decoder"})


def _zero_shot_runs(b: _Builder) -> None:
    """Tables 3, 4, 6 and 8 on the NUS-WIDE-like zero-shot set (ZSL and GZSL, seen classes trained)."""
    groups = b.config["experiments"]["zero_shot_groups"]

    def zsl_run(table_id: str, row: dict[str, Any], query_type: str, head_type: str, augmentation: str,
                k: int | None) -> str:
        return b.run(table_id, row, dataset="nus", head="ml_decoder", num_groups=k,
                     head_options=_zero_shot(b, query_type, head_type, augmentation),
                     head_tag="ml_decoder-full" if k is None else f"ml_decoder-k{k}",
                     variant=f"{query_type}_queries-{head_type}_head-aug_{augmentation}")

    # The paper's ZSL baseline is full decoding (K = N, one NLP query per class, so unseen classes get
    # theirs at test time) with a shared projection (section 2.3.3); group decoding uses Eq. 6.
    for augmentation in ZSL_AUGMENTATIONS:
        zsl_run("table3_query_aug", {"augmentation": augmentation}, "nlp", "learnable_shared", augmentation, None)
    best = zsl_run("table4_zsl_groups", {"head": "ml_decoder", "queries": b.num_classes("nus")}, "nlp",
                   "learnable_shared", "both", None)
    zsl_run("table4_zsl_groups", {"head": "ml_decoder", "queries": groups}, "nlp", "nlp", "both", groups)
    for query_type, head_type in (("nlp", "learnable"), ("nlp", "learnable_shared"), ("learnable", "nlp"),
                                  ("nlp", "nlp")):
        zsl_run("table8_zsl_query_head", {"query_type": query_type, "head_type": head_type}, query_type, head_type,
                "both", groups)
    b.add_row(best, "table6_zsl", {"method": "ml_decoder"})


def _resolution(b: _Builder) -> None:
    """The resolution table: backbone `large` at three resolutions and `xlarge` at the largest."""
    n = b.num_classes("coco")
    resolutions = b.config["experiments"]["resolutions"]
    cells = [("large", resolution) for resolution in resolutions] + [("xlarge", max(resolutions))]
    for backbone, resolution in cells:
        _ml_decoder(b, "resolution", {"backbone": RESOLUTION_TABLE_BACKBONE[backbone], "resolution": resolution},
                    "coco", n, backbone=backbone, resolution=resolution)


def _coco(b: _Builder) -> None:
    """Table 5's reproduced MS-COCO rows: ML-Decoder on backbones `large` and `resnet101`."""
    n = b.num_classes("coco")
    for backbone in ("large", "resnet101"):
        _ml_decoder(b, "table5_coco_sota", {"method": "ml_decoder", "backbone": PAPER_BACKBONE[backbone]}, "coco", n,
                    backbone=backbone)


def _stacked_layers(b: _Builder) -> None:
    """The stacked-layers table: GAP and a decoder (with self-attention) of 1, 2, 3 layers."""
    b.run("stacked_layers", {"head": "gap", "layers": None}, dataset="coco", head="gap")
    for layers in b.config["experiments"]["stacked_layers"]:
        options = b.differs("transformer_decoder", {"num_layers": layers})
        b.run("stacked_layers", {"head": "transformer_decoder", "layers": layers}, dataset="coco",
              head="transformer_decoder", head_options=options,
              head_tag="transformer_decoder" + (f"-l{layers}" if options else ""))


def _figure5(b: _Builder) -> None:
    """Figure 5: mAP vs FLOPs for three backbone sizes with GAP and ML-Decoder (K = N)."""
    n = b.num_classes("coco")
    for backbone in b.config["experiments"]["figure5_backbones"]:
        name = PAPER_BACKBONE[backbone]
        b.run("figure5", {"backbone": name, "head": "gap"}, dataset="coco", head="gap", backbone=backbone)
        _ml_decoder(b, "figure5", {"backbone": name, "head": "ml_decoder"}, "coco", n, backbone=backbone)


def _voc(b: _Builder) -> None:
    """Table 11: the reproduced Pascal VOC row (ML-Decoder, backbone `large` as the paper)."""
    _ml_decoder(b, "table11_voc", {"method": "ml_decoder"}, "voc", b.num_classes("voc"), backbone="large")


def _single_label(b: _Builder) -> None:
    """Table 13: single-label classification, GAP and ML-Decoder, with sigmoid and softmax."""
    k = b.config["experiments"]["single_label_groups"]
    losses = {"sigmoid": {}, "softmax": {"loss": {"name": "softmax_ce"}}}
    for activation, train in losses.items():
        row = {"recipe": "a2", "activation": activation}
        b.run("table13_single_label", {**row, "head": "gap"}, dataset="imagenet", head="gap", backbone="resnet50",
              train=train, variant=activation)
        b.run("table13_single_label", {**row, "head": "ml_decoder"}, dataset="imagenet", head="ml_decoder",
              backbone="resnet50", num_groups=k, head_options=_queries(), train=train, head_tag=f"ml_decoder-k{k}",
              variant=activation)


def _hsvlt(b: _Builder) -> None:
    """HSVLT beside GAP and ML-Decoder on one backbone, and HSVLT's own ablations (not reported)."""
    experiments = b.config["experiments"]
    for dataset in experiments["hsvlt_datasets"]:
        name = PAPER_DATASET[dataset]
        b.run("hsvlt_heads", {"dataset": name, "head": "gap"}, dataset=dataset, head="gap", backbone="convnext")
        _ml_decoder(b, "hsvlt_heads", {"dataset": name, "head": "ml_decoder"}, dataset, b.num_classes(dataset),
                    backbone="convnext")
        run_id = b.run("hsvlt_heads", {"dataset": name, "head": "hsvlt"}, dataset=dataset, head="hsvlt",
                       backbone="convnext")
        b.add_row(run_id, "hsvlt_reported", {"dataset": name})
    ablations = [({"num_scales": s}, f"scales{s}", {"ablation": "num_scales", "value": s})
                 for s in experiments["hsvlt_scales"]]
    ablations += [({"interaction": "cross_attention"}, "cross_attention",
                   {"ablation": "interaction", "value": "cross_attention"}),
                  ({"hamburger": False}, "no_hamburger", {"ablation": "hamburger", "value": False})]
    for options, tag, row in ablations:
        # An ablation equal to the configured HSVLT is the plain HSVLT run of the head comparison.
        options = b.differs("hsvlt", options)
        b.run("hsvlt_ablation", row, dataset=experiments["hsvlt_ablation_dataset"], head="hsvlt", backbone="convnext",
              head_options=options, head_tag=f"hsvlt-{tag}" if options else "hsvlt")


def _throughput(b: _Builder) -> None:
    """Table 9 and the per-module timing table: cost measurements, not trained runs."""
    settings = b.config["measurements"]
    k = settings["groups"]
    for n in settings["throughput_classes"]:
        b.measurement("throughput", "table9_throughput", {"head": "gap", "classes": n, "queries": None},
                      head="gap", num_classes=n, num_groups=None)
        b.measurement("throughput", "table9_throughput", {"head": "transformer_decoder", "classes": n, "queries": n},
                      head="transformer_decoder", num_classes=n, num_groups=None)
        b.measurement("throughput", "table9_throughput", {"head": "ml_decoder", "classes": n, "queries": min(k, n)},
                      head="ml_decoder", num_classes=n, num_groups=min(k, n))
    for n in settings["module_timing_classes"]:
        b.measurement("module_timing", "module_timing", {"head": "ml_decoder", "classes": n},
                      head="ml_decoder", num_classes=n, num_groups=min(k, n))
        b.measurement("module_timing", "module_timing", {"head": "transformer_decoder", "classes": n},
                      head="transformer_decoder", num_classes=n, num_groups=None)


EXPERIMENTS = (_heads, _query_types, _extreme, _zero_shot_runs, _resolution, _coco, _stacked_layers, _figure5, _voc,
               _single_label, _hsvlt, _throughput)


def build_registry(config: Mapping[str, Any]) -> Registry:
    """Every run, table, dataset, backbone, feature cache and measurement of a validated config."""
    builder = _Builder(config)
    for experiment in EXPERIMENTS:
        experiment(builder)
    return builder.registry
