"""Workflow config files: `base:` inheritance, schema validation and the data checks.

A workflow config (config/*.yaml, validated against workflow/schemas/config.schema.yaml) says
where the data comes from, which backbone plays which role, the training recipes and how big each
experiment is. The same validator checks the experiments table (mld/experiments/table.yaml), so
both report a problem the same way: the key, what is wrong, and the schema file to read.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

# `base:` paths are relative to the checkout (the Snakefile's folder), like the configs themselves.
CHECKOUT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = CHECKOUT / "workflow" / "schemas" / "config.schema.yaml"


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


def schema_problems(document: Any, schema_path: str | Path, prefix: str = "config key") -> list[str]:
    """Every way `document` breaks the JSON schema in `schema_path`, one line each, with its key."""
    import jsonschema  # only needed here; keeps `import mld.experiments` cheap

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
        detail = error.message
        if error.validator == "oneOf":  # name the allowed forms and what is wrong with the closest
            forms = [sub.get("$ref", "").rsplit("/", 1)[-1] or sub.get("type", "?") for sub in error.validator_value]
            # The form that matched deepest is the one the user meant.
            closest = max(error.context, key=lambda sub: len(sub.absolute_path))
            detail = f"matches none of the allowed forms ({', '.join(forms)}); closest: {closest.message}"
        problems.append(f"{prefix} {key}: {detail}")
    return problems


def validate_config(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Check a resolved workflow config against the schema; one line per problem, with its key."""
    problems = schema_problems(dict(config), schema_path)
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
