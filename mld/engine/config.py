"""Run config: load, fill the paper's defaults, validate every field.

A run config is the engine's only input (see "Run config" in docs/architecture.md). Its keys,
types, bounds and defaults are a JSON schema (run_config.schema.yaml beside this file, the schema
language of the workflow config), checked here before any data or model is touched, so that a
typo in a YAML file fails in a second with a message naming the file, the key, the value and the
fix, instead of hours later or, worse, silently training with a default. Unknown keys are errors
for the same reason. What the schema cannot say (keys that depend on each other) is checked after it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from mld.schema import is_section, schema_problems, show

SCHEMA_PATH = Path(__file__).with_name("run_config.schema.yaml")
SCHEMA: dict[str, Any] = yaml.safe_load(SCHEMA_PATH.read_text())

# The paper's recipe (ML-Decoder, appendix "MS-COCO training details") is the default.
PAPER_LOSS = SCHEMA["properties"]["train"]["properties"]["loss"]["default"]

# Keys that change how a run executes but not what it computes: a run may resume with
# different values (e.g. more loader workers on a bigger node).
EXECUTION_KEYS = ("train.num_workers", "train.log_every_s", "train.device", "dataset.store")
# A job's config file leaves them out (mld.paths.JOB_CONFIG); its command line gives them:
# `mld train --run-config FILE --set train.num_workers=8` (mld.launch passes them on).


class ConfigError(ValueError):
    """A run config is invalid; the message lists every problem found, one per line."""


# train.accumulation: choose the micro-batches from the memory estimate and the device's memory.
ACCUMULATION_AUTO = "auto"

# The losses of single-label runs: softmax cross-entropy or a sigmoid loss (mld.losses names).
SOFTMAX_LOSS = "softmax_ce"
SINGLE_LABEL_LOSSES = (SOFTMAX_LOSS, "bce", "asl")

# train.augment.randaugment as a string: a timm RandAugment configuration.
RANDAUGMENT_PREFIX = "rand-"

# What an image store holds (mld.data.store): the images resized to squares, bilinear; only
# transforms with these train.augment values start from those pixels.
STORE_AUGMENT = {"crop": "resize", "interpolation": "bilinear", "eval_crop_pct": None}


def reads_stored_pixels(augment: Mapping[str, Any] | None) -> bool:
    """Whether a train.augment block's transforms can read an image store (left-out keys: the
    defaults, which can)."""
    return all((augment or {}).get(key, value) == value for key, value in STORE_AUGMENT.items())


def _with_defaults(values: Any, schema: Mapping[str, Any]) -> Any:
    """`values` with every left-out key of every section set to its default (values are copied).

    Keys come in the schema's order (unknown ones after them), whatever order the file had: a
    config read from a file and the same config given as a mapping are equal, key order included.
    """
    if values is None and is_section(schema):
        values = {}
    if not (is_section(schema) and isinstance(values, dict)):
        return copy.deepcopy(values)
    out = {}
    for key, spec in schema["properties"].items():
        if key in values:
            out[key] = _with_defaults(values[key], spec)
        elif is_section(spec):
            out[key] = _with_defaults({}, spec)
        elif "default" in spec:
            out[key] = copy.deepcopy(spec["default"])
    out.update({key: copy.deepcopy(value) for key, value in values.items() if key not in out})
    return out


def _cross_field_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    loss_name = config["train"]["loss"]["name"]
    if config["task"] == "single_label" and loss_name not in SINGLE_LABEL_LOSSES:
        problems.append(f"train.loss.name = {show(loss_name)}: a single_label run needs one of "
                        f"{', '.join(SINGLE_LABEL_LOSSES)} ({SOFTMAX_LOSS} = softmax, bce/asl = sigmoid)")
    if config["task"] != "single_label" and loss_name == SOFTMAX_LOSS:
        problems.append(f"train.loss.name = {SOFTMAX_LOSS}: softmax cross-entropy needs task: single_label; "
                        f"use bce or asl for task {config['task']}")
    train = config["train"]
    accumulation = train["accumulation"]
    if isinstance(accumulation, str) and accumulation != ACCUMULATION_AUTO:
        problems.append(f"train.accumulation = {show(accumulation)}: expected an integer >= 1 or {ACCUMULATION_AUTO}")
    elif isinstance(accumulation, int) and accumulation > train["batch_size"]:
        problems.append(f"train.accumulation = {accumulation}: more micro-batches than the batch has images "
                        f"(train.batch_size = {train['batch_size']}); lower it or use {ACCUMULATION_AUTO}")
    if train["warmup_epochs"] and train["schedule"] == "onecycle":
        problems.append(f"train.warmup_epochs = {show(train['warmup_epochs'])}: the onecycle schedule warms up "
                        "by itself (train.pct_start); use schedule: cosine or constant, or remove warmup_epochs")
    if train["warmup_epochs"] >= train["epochs"]:
        problems.append(f"train.warmup_epochs = {show(train['warmup_epochs'])}: the warm-up must end before the "
                        f"run's train.epochs = {train['epochs']}; shorten it")
    problems += _augment_problems(config)
    dataset = config["dataset"]
    if dataset["unknown_labels"] == "negative" and dataset["unknown_weight"] is None:
        problems.append("dataset.unknown_weight: missing; unknown_labels: negative needs the weight of "
                        "unknown labels as negatives (e.g. 0.1)")
    if dataset["unknown_labels"] == "ignore" and dataset["unknown_weight"] is not None:
        problems.append(f"dataset.unknown_weight = {show(dataset['unknown_weight'])}: only used with "
                        "unknown_labels: negative; remove it or set unknown_labels: negative")
    return problems


def mixing_enabled(mix: Mapping[str, Any]) -> bool:
    """Whether a train.mix block mixes batches (Mixup or CutMix has an alpha above 0)."""
    return mix["mixup_alpha"] > 0 or mix["cutmix_alpha"] > 0


def _augment_problems(config: Mapping[str, Any]) -> list[str]:
    """train.augment and train.mix keys that contradict each other, the task or the data source."""
    augment, mix, problems = config["train"]["augment"], config["train"]["mix"], []
    randaugment = augment["randaugment"]
    if isinstance(randaugment, str) and not randaugment.startswith(RANDAUGMENT_PREFIX):
        problems.append(f"train.augment.randaugment = {show(randaugment)}: expected true, false or a timm "
                        f"RandAugment string starting with {RANDAUGMENT_PREFIX} (e.g. rand-m7-mstd0.5-inc1)")
    for key in ("crop_scale", "crop_ratio"):
        low, high = augment[key]
        if low > high:
            problems.append(f"train.augment.{key} = {show(augment[key])}: the first value is the lower bound; "
                            f"swap them")
    if augment["crop"] == "resize" and augment["hflip"] > 0:
        problems.append(f"train.augment.hflip = {show(augment['hflip'])}: flips are part of timm's pipeline; "
                        "set crop: random_resized, or remove hflip")
    if augment["crop"] == "random_resized" and augment["cutout"] > 0:
        problems.append(f"train.augment.cutout = {show(augment['cutout'])}: timm's pipeline (crop: random_resized) "
                        "has no Cutout; set cutout: 0")
    if config["dataset"]["store"] is not None:
        needs_raw = [f"{key} = {show(augment[key])}" for key, square in STORE_AUGMENT.items() if augment[key] != square]
        if needs_raw:
            problems.append(f"dataset.store: the image store holds the images resized to squares, but "
                            f"train.augment.{', '.join(needs_raw)} needs the images themselves; remove dataset.store "
                            "(in a workflow config: image_store: false)")
    if mixing_enabled(mix):
        if config["task"] != "single_label":
            problems.append(f"train.mix: Mixup / CutMix mix one class per image; a {config['task']} run cannot "
                            "use them (set mixup_alpha and cutmix_alpha to 0, or task: single_label)")
        if config["features"] is not None:
            problems.append("train.mix: Mixup / CutMix mix images, and this run trains on cached features; "
                            "remove features or the mix block")
        if config["train"]["batch_size"] % 2:
            problems.append(f"train.batch_size = {config['train']['batch_size']}: Mixup / CutMix mix image i with "
                            "image B-1-i of each batch and need an even batch size")
    elif mix["label_smoothing"] > 0:
        problems.append(f"train.mix.label_smoothing = {show(mix['label_smoothing'])}: smooths the mixed targets "
                        "and is only used with mixup_alpha or cutmix_alpha above 0")
    return problems


def validate_run_config(raw: Any, source: str = "<run config>") -> dict[str, Any]:
    """Return the config with every default filled in, or raise ConfigError listing all problems.

    `source` names where the config came from (a file path) in the error messages.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of run settings at the top level, "
                          f"got {type(raw).__name__}")
    config = _with_defaults(raw, SCHEMA)
    problems = schema_problems(config, SCHEMA) or _cross_field_problems(config)
    if problems:
        raise ConfigError(f"{source}: invalid run config:\n" + "\n".join(f"  {source}: {p}" for p in problems))
    return config


def check_components(config: Mapping[str, Any], source: str = "<run config>") -> None:
    """Check what the config hands to other modules (loss, head, backbone) before any work starts.

    Imports torch (and timm when a backbone will be built), so it is separate from
    `validate_run_config`.
    """
    from mld.heads import check_head_options
    from mld.losses import create_loss

    problems = []
    try:
        create_loss(**config["train"]["loss"])
    except (ValueError, TypeError) as error:
        problems.append(f"train.loss = {show(config['train']['loss'])}: {error}")
    model = config["model"]
    options = dict(model["head_options"], **({"num_groups": model["num_groups"]} if model["num_groups"] else {}))
    try:
        check_head_options(model["head"], options)
    except ValueError as error:
        problems.append(f"model.head = {model['head']}, model.head_options: {error}")
    randaugment = config["train"]["augment"]["randaugment"]
    if isinstance(randaugment, str):
        from mld.data.transforms import randaugment as randaugment_transform

        try:
            randaugment_transform(224, randaugment)
        except (AssertionError, ValueError, KeyError) as error:  # timm asserts on unknown sections
            reason = str(error) or "an unknown section"
            problems.append(f"train.augment.randaugment = {randaugment}: timm cannot read it ({reason}); see "
                            "timm.data.auto_augment.rand_augment_transform for the sections")
    # With cached features the backbone never runs: the cache names it, checked when it is opened.
    if config["features"] is None and not _is_timm_model(model["backbone"]):
        problems.append(f"model.backbone = {model['backbone']}: not a timm model; see timm.list_models()")
    elif config["features"] is None:
        from mld.models import input_normalization

        try:
            input_normalization(model["backbone"], model["normalize"])
        except ValueError as error:
            problems.append(f"model.normalize = {show(model['normalize'])}: {error}")
    if problems:
        raise ConfigError(f"{source}: invalid run config:\n" + "\n".join(f"  {source}: {p}" for p in problems))


def _is_timm_model(name: str) -> bool:
    import timm

    return timm.is_model(name)


def parse_execution_setting(text: str) -> tuple[str, Any]:
    """`train.num_workers=8` -> ("train.num_workers", 8); only EXECUTION_KEYS are accepted."""
    key, sep, value = text.partition("=")
    if not sep or key not in EXECUTION_KEYS:
        raise ValueError(f"--set {text!r}: give KEY=VALUE with KEY one of {', '.join(EXECUTION_KEYS)} "
                         "(the settings that do not change a result)")
    return key, yaml.safe_load(value)


def with_execution(config: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with execution settings (dotted EXECUTION_KEYS) in place of its own."""
    out = dict(config)
    for key, value in settings.items():
        section_name, name = key.split(".")
        out[section_name] = {**(out.get(section_name) or {}), name: value}
    return out


def load_run_config(path: str | Path, execution: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read and validate a run config YAML file, with the job's execution settings in place."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"run config {path} does not exist; pass the path of a run YAML") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if execution and isinstance(raw, Mapping):
        raw = with_execution(raw, execution)
    return validate_run_config(raw, source=str(path))


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with every left-out key set to its default, unvalidated: a config recorded before a
    key existed reads as the same run as long as the key keeps its default (which computes what
    the older version computed)."""
    return _with_defaults(dict(config), SCHEMA)


def result_defining(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its execution-only keys: two runs agree on this iff they compute the same."""
    out = copy.deepcopy(dict(config))
    for dotted in EXECUTION_KEYS:
        *parents, last = dotted.split(".")
        section = out
        for part in parents:
            section = section.get(part) or {}  # a cost measurement's config has no dataset
        section.pop(last, None)
    return out
