"""The registry of every experiment of the paper: which runs exist and which table uses them.

The experiments are data: mld/experiments/table.yaml names, for each row of each paper table,
the dataset and backbone roles, the head, K, the query and head types and the recipe it trains
with (grids expand). A workflow config (config/*.yaml, read by `load_config` and validated
against config.schema.yaml in this package) says where the data comes from, which backbone plays which
role, how each recipe trains and how big each grid is; `build_registry` turns both into runs (one
engine run config each, trained once per seed), the tables that read them, and what the runs need
first: datasets to prepare and, in the embedded default, backbones to pretrain and feature maps to
cache. One run can fill rows of several tables (Table 1's ML-Decoder run is also a row of Table
7): runs are identified by what they compute, so it is trained once. `mld runs` lists them.

This package is imported when Snakemake parses the workflow: it must stay light (no torch).
"""
from __future__ import annotations

from mld.experiments.builder import (
    ADAPTER_PATH_OPTIONS,
    ADAPTERS_CHECKING_CLASS_COUNT,
    ADAPTERS_WITH_ROOT,
    EXTRACTION_TRAIN_KEYS,
    MULTISCALE_HEADS,
    PRETRAIN_ROLE,
    TASK_BY_ROLE,
    ZSL_AUGMENTATIONS,
    ZSL_HEAD_TYPES,
    build_registry,
    dataset_prepare_arguments,
    option_flags,
)
from mld.experiments.config import (
    DEFAULT_CONFIG,
    SCHEMA_PATH,
    ExperimentConfigError,
    check_dataset_source,
    check_dataset_sources,
    deep_merge,
    load_config,
    parse_overrides,
    resolve_base,
    validate_config,
)
from mld.experiments.records import (
    DatasetEntry,
    FeatureCache,
    Measurement,
    PretrainedBackbone,
    Registry,
    Run,
    RunSettings,
)
from mld.experiments.table import DEFAULT_BACKBONE, TABLE_PATH, Cell, expand, paper_class_count, read_table

# Named ablations: `snakemake <name>` runs exactly the runs and measurements of these tables.
TARGETS: dict[str, list[str]] = read_table()["targets"]
# The paper's names of each dataset and backbone role (row keys of mld/report/paper_values.yaml).
PAPER_DATASET: dict[str, str] = read_table()["paper_names"]["datasets"]
PAPER_BACKBONE: dict[str, str] = read_table()["paper_names"]["backbones"]

__all__ = [
    "ADAPTER_PATH_OPTIONS", "ADAPTERS_CHECKING_CLASS_COUNT", "ADAPTERS_WITH_ROOT", "DEFAULT_BACKBONE", "DEFAULT_CONFIG",
    "EXTRACTION_TRAIN_KEYS", "MULTISCALE_HEADS", "PAPER_BACKBONE", "PAPER_DATASET", "PRETRAIN_ROLE",
    "SCHEMA_PATH", "TABLE_PATH", "TARGETS", "TASK_BY_ROLE", "ZSL_AUGMENTATIONS", "ZSL_HEAD_TYPES", "Cell",
    "DatasetEntry", "ExperimentConfigError", "FeatureCache", "Measurement", "PretrainedBackbone", "Registry", "Run",
    "RunSettings", "build_registry", "check_dataset_source", "check_dataset_sources", "dataset_prepare_arguments",
    "deep_merge", "expand", "load_config", "option_flags", "paper_class_count", "parse_overrides", "read_table",
    "resolve_base", "validate_config",
]
