"""Cells of the experiments table + a workflow config -> the Registry.

Only what is derived lives here: run ids, the engine run config of each cell (its recipe over the
shared `train:` block), one run for cells that compute the same thing, the datasets to prepare
and, in the embedded default, the backbones to pretrain and the feature maps to cache.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from mld import paths
from mld.engine.config import reads_stored_pixels
from mld.experiments.config import ExperimentConfigError, deep_merge
from mld.weights import backbone_weights, pretraining_identity, shipped_file
from mld.experiments.records import (
    DatasetEntry,
    FeatureCache,
    ImageStoreEntry,
    Measurement,
    RANDOM_INIT,
    PretrainedBackbone,
    Registry,
    Run,
    RunSettings,
    starting_weights,
)
from mld.experiments.table import DEFAULT_BACKBONE, Cell, expand, read_table

# The engine's task for each dataset role; roles not listed are multilabel.
TASK_BY_ROLE = {"nus": "zero_shot", "imagenet": "single_label", "cifar100": "single_label",
                "stanford_cars": "single_label"}
# Heads that read every backbone stage (feature_kind "multiscale"); the rest read the last map.
# Spelled out here because importing mld.heads would import torch while Snakemake parses.
MULTISCALE_HEADS = frozenset({"hsvlt"})
# `mld prepare <adapter>` options that name files; relative values are under the dataset's root.
ADAPTER_PATH_OPTIONS = frozenset({"word_vectors", "class_descriptions", "train_labels", "val_labels", "train_images",
                                  "val_images", "classes"})
# Adapters whose release is one folder given as --root (Open Images takes its files one by one).
ADAPTERS_WITH_ROOT = frozenset({"coco", "voc", "nuswide", "cifar100", "stanford_cars"})
# Adapters that refuse a class set of another size than the config's num_classes (--num-classes).
ADAPTERS_CHECKING_CLASS_COUNT = frozenset({"openimages"})
# The keys of the shared `train:` block that feature extraction reads (the rest is training).
EXTRACTION_TRAIN_KEYS = ("amp", "device", "num_workers", "log_every_s")
PRETRAIN_ROLE = "pretrain"
# Table 3's augmentations: (additive noise, random-query).
ZSL_AUGMENTATIONS = {"none": (False, False), "additive_noise": (True, False), "random_query": (False, True),
                     "both": (True, True)}
# Table 8's group fully-connected head types, as the paper names them -> ML-Decoder's head_type.
ZSL_HEAD_TYPES = {"learnable": "learnable", "learnable_shared": "shared", "nlp": "nlp"}
DEFAULT_QUERY_TYPE = "fixed_random"
# A backbone role's `normalize` when the config gives none (mld.models.input_normalization; spelled
# out here because importing mld.models would import torch while Snakemake parses).
NORMALIZE_TIMM = "timm"


def dataset_prepare_arguments(entry: DatasetEntry) -> list[Any]:
    """The `mld prepare` arguments that make one dataset: a synthetic preset rendered at the entry's
    size, or a real release converted by its adapter, which checks the config's class count where
    it can (so a wrong class list fails at preparation, not in the first training job)."""
    if entry.source == "synthetic":
        options = {key: entry[key] for key in ("image_size", "seed", "num_train", "num_val")}
        return ["synthetic", "--preset", entry.preset, *option_flags(options)]
    if entry.source != "adapter":
        raise ExperimentConfigError(f"dataset {entry.name} is already prepared at {entry.path}; nothing to make")
    arguments: list[Any] = [entry.adapter]
    if entry.adapter in ADAPTERS_WITH_ROOT:
        arguments += ["--root", entry.root]
    if entry.adapter in ADAPTERS_CHECKING_CLASS_COUNT:
        arguments += ["--num-classes", entry.num_classes]
    return arguments + option_flags(entry.options)


def option_flags(options: Mapping[str, Any]) -> list[Any]:
    """{num_train: 5, keep_unlabelled: true} -> ["--num-train", 5, "--keep-unlabelled"]."""
    flags: list[Any] = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, value]
    return flags


class _Builder:
    """Fills a Registry from a validated config; one method per kind of thing the runs need."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.cached = config["mode"] == "cached_features"
        self.registry = Registry(config=copy.deepcopy(dict(config)))
        self.registry.targets = {name: list(tables) for name, tables in read_table()["targets"].items()}
        for tables in self.registry.targets.values():
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
        if role not in self.config["datasets"]:
            raise ExperimentConfigError(f"config key datasets.{role}: missing; the experiments use this dataset role")
        spec = self.config["datasets"][role]
        if "num_classes" in spec:
            return int(spec["num_classes"])
        from mld.data import preset_num_classes  # light: reads the preset table, no rendering

        return int(preset_num_classes(spec["synthetic"]["preset"]))

    def dataset(self, role: str, resolution: int) -> str:
        """The id of the prepared dataset a run on `role` at `resolution` reads."""
        spec = self.config["datasets"][role]
        name = spec["name"]
        common = {"role": role, "num_classes": self.num_classes(role),
                  "unknown_labels": spec.get("unknown_labels", "ignore"),
                  "unknown_weight": spec.get("unknown_weight", 1.0)}
        if "synthetic" in spec:
            # Synthetic images are rendered at the input resolution, so each resolution is a dataset.
            if resolution != self.config["resolution"]:
                name = f"{name}-{resolution}px"
            entry = DatasetEntry(name=name, source="synthetic", path=paths.dataset_dir(name),
                                 preset=spec["synthetic"]["preset"], image_size=resolution,
                                 seed=self.config.get("synthetic", {}).get("seed", 0),
                                 num_train=spec["synthetic"].get("num_train"),
                                 num_val=spec["synthetic"].get("num_val"), **common)
        elif "adapter" in spec:
            from pathlib import Path

            root = Path(spec["root"])
            if not root.is_absolute() and self.config.get("data_root"):
                root = Path(self.config["data_root"]) / root
            # File options (annotation CSVs, image folders, word vectors) are relative to the root.
            options = {key: str(root / value) if key in ADAPTER_PATH_OPTIONS else value
                       for key, value in spec.get("options", {}).items()}
            entry = DatasetEntry(name=name, source="adapter", path=paths.dataset_dir(name),
                                 adapter=spec["adapter"], root=str(root), options=options, **common)
        else:
            entry = DatasetEntry(name=name, source="prepared", path=spec["prepared"], **common)
        self.registry.datasets.setdefault(name, entry)
        return name

    def _dataset_block(self, dataset_id: str) -> dict[str, Any]:
        entry = self.registry.datasets[dataset_id]
        block = {"path": entry.path, "unknown_labels": entry.unknown_labels}
        if entry.unknown_labels == "negative":
            block["unknown_weight"] = entry.unknown_weight
        return block

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
            "normalize": copy.deepcopy(spec.get("normalize", NORMALIZE_TIMM)),
        }

    def configured_backbone(self, backbone_id: str) -> dict[str, Any]:
        """The backbone block with the weights the config gives it (a file wins, then the weights
        cache, then timm's pretrained: mld.weights.backbone_weights)."""
        return self.backbone_block(backbone_id, *backbone_weights(self.config, backbone_id))

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
        """Register the pretraining run of a backbone (embedded default); return its weights file: the
        shipped one of `pretraining.weights` (checked by mld.weights.check_shipped_backbones when the
        workflow starts), else the one the pretraining job writes."""
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
            shipped = pretraining.get("weights")
            self.registry.backbones[backbone_id] = PretrainedBackbone(
                config=config, dataset=dataset_id, run_dir=paths.backbone_run(backbone_id),
                weights=shipped_file(shipped, backbone_id) if shipped else paths.backbone_weights(backbone_id),
                identity=pretraining_identity(config, dataset_prepare_arguments(self.registry.datasets[dataset_id])),
                shipped=bool(shipped))
        return self.registry.backbones[backbone_id].weights

    def feature_cache(self, backbone_id: str, dataset_id: str, head: str, resolution: int) -> str:
        """Register the cached feature maps of a dataset under a pretrained backbone; return the dir.

        Heads that read every stage get a multiscale cache; all others share the last feature map.
        """
        multiscale = head in MULTISCALE_HEADS
        features_id = f"{backbone_id}/{dataset_id}" + ("-multiscale" if multiscale else "")
        path = paths.features_dir(features_id)
        if features_id not in self.registry.features:
            self.registry.features[features_id] = FeatureCache(
                backbone=backbone_id, dataset=dataset_id, multiscale=multiscale, path=path,
                # What the extractor reads: the dataset, the pretrained backbone and the resolution;
                # the head only says whether one map or every stage is cached.
                config={
                    "run_id": f"features/{features_id}",
                    "seed": 0,
                    "dataset": self._dataset_block(dataset_id),
                    "features": None,
                    # No head options: only the backbone's features are extracted, so a change
                    # to a head's options must not invalidate the cache.
                    "model": {**self.model_block(backbone_id, head if multiscale else "gap", None, {}),
                              "head_options": {}},
                    "task": TASK_BY_ROLE.get(self.registry.datasets[dataset_id].role, "multilabel"),
                    # Only what extraction uses: a change to the training recipe keeps the cache.
                    "train": {**{key: self.config["train"][key] for key in EXTRACTION_TRAIN_KEYS
                                 if key in self.config["train"]}, "resolution": resolution},
                })
        return path

    def image_store(self, dataset_id: str, resolution: int) -> str | None:
        """Register the image store an end-to-end run on a real dataset reads; return its path.

        None for synthetic datasets (already arrays, rendered at the resolution) and given prepared
        ones, and when the config's `image_store: false` asks for decoding every epoch instead.
        """
        if not self.config.get("image_store", True) or self.registry.datasets[dataset_id].source != "adapter":
            return None
        path = paths.STORE.format(dataset=dataset_id, resolution=resolution)
        self.registry.stores.setdefault(path, ImageStoreEntry(dataset=dataset_id, resolution=resolution, path=path))
        return path

    # ---- runs

    def recipe(self, cell: Cell) -> Mapping[str, Any]:
        recipes = self.config["recipes"]
        if cell.recipe not in recipes:
            raise ExperimentConfigError(
                f"config key recipes.{cell.recipe}: missing; table {cell.table} trains with it "
                f"(defined: {', '.join(recipes) or 'none'}); add it to `recipes:` of the config"
            )
        return recipes[cell.recipe]

    def head_options(self, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
        """(every option a cell sets, the ones beyond the config's defaults that make it a variant)."""
        options: dict[str, Any] = {}
        if cell.head == "ml_decoder":
            options["query_type"] = cell.query_type or DEFAULT_QUERY_TYPE
            if cell.augmentation:
                noise, random_query = ZSL_AUGMENTATIONS[cell.augmentation]
                strength = self.config["experiments"]["query_augmentation"]
                options.update(head_type=ZSL_HEAD_TYPES[cell.head_type],
                               query_noise=strength["query_noise"] if noise else 0.0,
                               random_queries=strength["random_queries"] if random_query else 0)
        extra = self.differs(cell.head, cell.head_options)
        return {**options, **extra}, extra

    def run(self, cell: Cell) -> str:
        """Register the cell's run (or find the identical one) and give it its row."""
        recipe = self.recipe(cell)
        resolution = cell.resolution or recipe.get("resolution") or self.config["resolution"]
        dataset_id = self.dataset(cell.dataset, resolution)
        options, extra = self.head_options(cell)
        model = self.model_block(cell.backbone, cell.head, cell.num_groups, options)
        # The recipe's and the cell's train keys replace the shared ones whole (a loss's options
        # belong to it).
        train = {**copy.deepcopy(self.config["train"]), **copy.deepcopy(dict(recipe.get("train", {}))),
                 **copy.deepcopy(cell.train), "resolution": resolution}
        features, store = None, None
        if self.cached:
            features = self.feature_cache(self.backbone_id(cell.backbone), dataset_id, cell.head, resolution)
        elif reads_stored_pixels(train.get("augment")):  # timm's crops need the images themselves
            store = self.image_store(dataset_id, resolution)
        config = {
            "dataset": {**self._dataset_block(dataset_id), **({"store": store} if store else {})},
            "features": features,
            "model": model,
            "task": TASK_BY_ROLE.get(cell.dataset, "multilabel"),
            "train": train,
        }
        run_id = self._run_id(cell, resolution, extra)
        existing = self.registry.runs.get(run_id)
        if existing is None:
            existing = self.registry.runs[run_id] = Run(
                run_id, config, list(self.config["seeds"]), dataset=dataset_id,
                backbone_role=self.backbone_id(cell.backbone),
                settings=RunSettings(dataset=cell.dataset, backbone=cell.backbone, head=cell.head,
                                     num_groups=cell.num_groups, queries=cell.queries, num_classes=cell.num_classes))
        elif existing.config != config:
            raise AssertionError(f"two different runs got the id {run_id}; make the id say what differs")
        existing.rows[cell.table] = dict(cell.row)
        existing.recipes[cell.table] = cell.recipe
        self._judge_weights(existing, cell, recipe)
        if run_id not in self.registry.tables.setdefault(cell.table, []):
            self.registry.tables[cell.table].append(run_id)
        return run_id

    def _judge_weights(self, run: Run, cell: Cell, recipe: Mapping[str, Any]) -> None:
        """Where the run's backbone starts, and whether that may be compared with the paper's run.

        End to end, a backbone role with neither `weights` nor `pretrained` would train from random
        weights: refused unless the role says `from_scratch: true`, and then compared with the paper
        only where the paper's recipe trains from scratch too (`recipes.<name>.from_scratch`).
        """
        run.weights = starting_weights(run.config["model"])
        if self.cached or run.weights != RANDOM_INIT:
            return
        role = self.backbone_id(cell.backbone)
        if not recipe.get("from_scratch"):
            run.compared = False
        if not self.config["backbones"][role].get("from_scratch"):
            run.refusal = (
                f"config key backbones.{role}: run {run.run_id} (table {cell.table}) would train "
                f"{self.config['backbones'][role]['name']} from random weights, while the paper's run started "
                f"from pretrained weights; give backbones.{role}.weights: FILE (e.g. the official checkpoint) or "
                f"pretrained: true, or set backbones.{role}.from_scratch: true to train it from random weights "
                "(its rows are then marked and kept out of the claim checks)")

    def _run_id(self, cell: Cell, resolution: int, extra: Mapping[str, Any]) -> str:
        """dataset[-Npx] / [backbone] / head tag [/ variant]: what differs between runs."""
        parts = [self.config["datasets"][cell.dataset]["name"]]
        if resolution != self.config["resolution"]:
            parts[0] += f"-{resolution}px"
        if self.backbone_id(cell.backbone) != self.backbone_id(DEFAULT_BACKBONE):
            parts.append(self.backbone_id(cell.backbone))
        if cell.head == "ml_decoder":
            # `-k{K}`, not num_groups: run ids name users' finished run folders, kept as they are.
            parts.append("ml_decoder-full" if cell.num_groups is None else f"ml_decoder-k{cell.num_groups}")
        else:
            parts.append(cell.head + (f"-{cell.tag}" if extra else ""))
        variant = cell.variant
        if variant is None and cell.head == "ml_decoder":
            variant = (f"{cell.query_type}_queries-{cell.head_type}_head-aug_{cell.augmentation}"
                       if cell.augmentation else cell.query_type or DEFAULT_QUERY_TYPE)
        if variant:
            parts.append(variant)
        return "/".join(parts)

    # ---- cost measurements

    def measurement(self, cell: Cell) -> str:
        """Register the cell's measurement (or find the identical one) and give it its row."""
        settings = self.config["measurements"]
        tag = f"{cell.head}-n{cell.num_classes}" + (f"-k{cell.num_groups}" if cell.num_groups else "")
        backbone_id = self.backbone_id(cell.backbone)
        # Another backbone than measurements.backbone (Figure 6's ResNets) is named in the id.
        scope = "" if backbone_id == self.backbone_id(settings["backbone"]) else f"{backbone_id}/"
        measurement_id = f"{cell.measure}/{scope}{tag}"
        # Speed does not depend on the weights' values: measurements use untrained models.
        # The configured head as it is: no query scheme of a run's (a timing does not depend on it).
        model = self.model_block(cell.backbone, cell.head, cell.num_groups, self.differs(cell.head, cell.head_options),
                                 trained=False)
        measurement = Measurement(
            kind=cell.measure,
            # What `mld measure` reads: the model block of a run config and the resolution.
            config={"run_id": measurement_id, "model": model, "train": {"resolution": settings["resolution"]}},
            num_classes=cell.num_classes, resolution=settings["resolution"],
            options=copy.deepcopy(settings.get("options", {})), rows={}, path=paths.measurement_path(measurement_id))
        existing = self.registry.measurements.setdefault(measurement_id, measurement)
        if existing.config != measurement.config:
            raise AssertionError(f"two different measurements got the id {measurement_id}; "
                                 "make the id say what differs")
        existing.rows[cell.table] = dict(cell.row)
        if measurement_id not in self.registry.tables.setdefault(cell.table, []):
            self.registry.tables[cell.table].append(measurement_id)
        return measurement_id


def build_registry(config: Mapping[str, Any]) -> Registry:
    """Every run, table, dataset, backbone, feature cache and measurement of a validated config.

    Every run config is checked as the engine will check it (recipe keys, values, K against the
    class count), so a mistake is named while the workflow is planned, not inside a job.
    """
    builder = _Builder(config)
    k_sources: dict[str, str] = {}  # run id -> the config key (or table entry) its K comes from
    for cell in expand(config, builder.num_classes):
        if cell.measure:
            builder.measurement(cell)
        else:
            run_id = builder.run(cell)
            if cell.num_groups_source:
                k_sources.setdefault(run_id, cell.num_groups_source)
    check_run_configs(builder.registry, k_sources)
    return builder.registry


def check_run_configs(registry: Registry, k_sources: Mapping[str, str] = {}) -> None:
    """Raise ExperimentConfigError listing every run config the engine would refuse, by its recipe;
    a K above the class count by the config key that sets it (`k_sources`: run id -> key)."""
    from mld.engine.config import ConfigError, validate_run_config  # torch-free

    problems: list[str] = []
    for run in registry.runs.values():
        recipes = " and ".join(f"recipes.{name}" for name in sorted(set(run.recipes.values())))
        where = f"run {run.run_id} (trained with {recipes} over the shared train block)"
        try:
            validate_run_config(run.config_for_seed(run.seeds[0]), source=where)
        except ConfigError as error:
            problems += [line.strip() for line in str(error).splitlines()[1:] if line.strip() not in problems]
        groups, classes = run.config["model"]["num_groups"], run.settings.num_classes
        if groups is not None and classes is not None and groups > classes:
            source = k_sources.get(run.run_id, "the `experiments:` value of its table entry (mld/experiments/table.yaml)")
            problems.append(f"run {run.run_id}: K = {groups} groups for {classes} classes (table(s) "
                            f"{', '.join(run.rows)}); K must not exceed the class count: lower {source}")
    if problems:
        raise ExperimentConfigError("invalid runs:\n  " + "\n  ".join(problems))
