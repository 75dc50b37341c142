"""Workflow config files: the one loader (files, `base:` inheritance, overrides), schema
validation and the data checks.

A workflow config (config/*.yaml, validated against config.schema.yaml beside this file, shipped
with the package) says where the data comes from, which backbone plays which role, the training
recipes and how big each experiment is. `load_config` is the only place a workflow config is
resolved: the Snakefile, every `mld` command and the tests call it. Schema problems are worded by
mld.schema, as for the experiments table (mld/experiments/table.yaml) and the run config: the
key, the value, what is accepted, and the schema file to read.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import yaml

from mld.schema import schema_problems

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
# The embedded default, relative to the checkout (where `snakemake` and `mld` run). It is not
# shipped with the package: an installed `mld` run elsewhere is given its config by path.
DEFAULT_CONFIG = Path("config") / "config.yaml"

# Config keys renamed so that each concept has one name (the rule `report`, K as `num_groups`):
# a user's config with the old spelling still works, and is told the new one.
RENAMED_KEYS = {"resources.tables": "resources.report", "measurements.groups": "measurements.num_groups"}

# A config: a file, or a mapping of settings already read (the Snakefile's merged `config`).
ConfigSource = Union[str, Path, Mapping[str, Any]]


class ExperimentConfigError(ValueError):
    """The workflow config cannot describe the experiments; the message names the key and the fix."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `override`, recursing into mappings (as Snakemake merges config files)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_base(config: Mapping[str, Any], root: str | Path = ".",
                 origin: str | Path | None = None) -> dict[str, Any]:
    """Apply `base: FILE` (a config this one extends), recursively. FILE is relative to `root`, the
    checkout (the Snakefile's folder, or the working directory of `mld`), or else to a folder above
    `origin`, the file that names it: config/test.yaml's `base: config/config.yaml` is found from any
    directory when config/test.yaml is given by path."""
    seen: list[Path] = []
    resolved = dict(config)
    while "base" in resolved:
        base = str(resolved.pop("base"))
        folders = [Path(root)] + (list(Path(origin).resolve().parents) if origin else [])
        path = next((folder / base for folder in folders if (folder / base).is_file()), Path(root) / base)
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
        resolved = deep_merge(renamed_keys(parent), resolved)
        origin = path
    return resolved


def renamed_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """One config document (a file, the overrides) with the old spellings of RENAMED_KEYS moved to
    their new names, each with a FutureWarning naming the new key; both spellings in one document is
    an error. Per document, before merging: a user's old spelling over a base's new one is the user's."""
    out = copy.deepcopy(dict(config))
    for old, new in RENAMED_KEYS.items():
        *parents, old_key = old.split(".")
        section = out
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or old_key not in section:
            continue
        new_key = new.rsplit(".", 1)[-1]
        if new_key in section:
            raise ExperimentConfigError(f"config key {old}: renamed to {new}, which is also given; remove {old}")
        warnings.warn(f"config key {old} is now called {new}; rename it in your config", FutureWarning, stacklevel=2)
        section[new_key] = section.pop(old_key)
    return out


def validate_config(config: Mapping[str, Any]) -> None:
    """Check a resolved workflow config against the schema; one line per problem, with its key."""
    problems = schema_problems(dict(config), yaml.safe_load(SCHEMA_PATH.read_text()), prefix="config key ")
    if problems:
        raise ExperimentConfigError(
            f"invalid workflow config (see {SCHEMA_PATH.name} in mld/experiments):\n  " + "\n  ".join(problems)
        )


def typed_value(value: Any) -> Any:
    """A `--config` value as a config file would type it: scalars written as text ("0", "false",
    "null") are read as YAML, recursing into lists and mappings (Snakemake leaves list items as
    strings: `--config seeds=[0]` reaches the workflow as ["0"])."""
    if isinstance(value, Mapping):
        return {key: typed_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed_value(item) for item in value]
    if isinstance(value, str):
        parsed = yaml.safe_load(value) if value.strip() else value
        return parsed if isinstance(parsed, (int, float, bool, type(None))) else value
    return value


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """Top-level `--config` overrides, typed as in a config file: Snakemake's mapping of them, or
    mld's KEY=VALUE words (["seeds=[0]", "label=x"] -> {"seeds": [0], "label": "x"})."""
    if isinstance(overrides, Mapping):
        return typed_value(dict(overrides))
    parsed = {}
    for entry in overrides:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ExperimentConfigError(f"--config {entry!r}: give KEY=VALUE (a top-level config key)")
        parsed[key] = yaml.safe_load(value) if value else None
    return parsed


def _read(source: ConfigSource) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        raw = yaml.safe_load(Path(source).read_text())
    except FileNotFoundError:
        if Path(source) == DEFAULT_CONFIG:
            raise ExperimentConfigError(
                f"no workflow config given, and the embedded default {DEFAULT_CONFIG} is not in the working "
                f"directory {Path.cwd()}: run from the checkout or give the config file by path (--configfile FILE)"
            ) from None
        raise ExperimentConfigError(f"workflow config {source} does not exist") from None
    if not isinstance(raw, dict):
        raise ExperimentConfigError(f"workflow config {source} does not hold a mapping of settings")
    return raw


def load_config(sources: ConfigSource | Sequence[ConfigSource] = (), overrides: Mapping[str, Any] | Iterable[str] = (),
                root: str | Path = ".", check_weights: bool = False) -> dict[str, Any]:
    """The resolved, validated workflow config, as every consumer sees it: the config files (later
    ones override earlier ones, as Snakemake merges them; none: the embedded default), then the
    `--config` overrides (each with old key spellings renamed: `renamed_keys`), then `base:` (see
    `resolve_base`), then the schema and, with `check_weights` (what submits jobs: the workflow,
    `mld plan`), the backbone weights (mld.weights.check_weights). What `build_registry` expects."""
    if isinstance(sources, (str, Path, Mapping)):
        sources = [sources]
    merged: dict[str, Any] = {}
    origin = None  # the file whose `base:` wins (the last one to set it)
    for source in sources or [DEFAULT_CONFIG]:
        document = renamed_keys(_read(source))
        merged = deep_merge(merged, document)
        if "base" in document:
            origin = None if isinstance(source, Mapping) else source
    config = resolve_base(deep_merge(merged, renamed_keys(parse_overrides(overrides))), root, origin)
    validate_config(config)
    if check_weights:
        from mld.weights import check_weights as check  # mld.weights reads configs; no cycle at import

        check(config)
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


def check_dataset_sources(datasets: Iterable[Mapping[str, Any]]) -> None:
    """Every real dataset among `datasets` whose files are missing, in one error (one line each, as
    `check_dataset_source` words it): a fresh clone learns everything it must provide at once."""
    problems = []
    for dataset in datasets:
        try:
            check_dataset_source(dataset)
        except ExperimentConfigError as error:
            problems.append(str(error))
    if problems:
        raise ExperimentConfigError(f"{len(problems)} dataset(s) of the requested targets missing:\n  "
                                    + "\n  ".join(problems))
