"""Run config: load, fill the paper's defaults, validate every field.

A run config is the engine's only input (see "Run config" in docs/architecture.md). Every key is
checked here, before any data or model is touched, so that a typo in a YAML file fails in a
second with a message naming the file, the key, the value and the fix, instead of hours later
or, worse, silently training with a default. Unknown keys are errors for the same reason.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

# The paper's recipe (ML-Decoder, appendix "MS-COCO training details") is the default.
PAPER_LOSS = {"name": "asl", "gamma_neg": 4, "gamma_pos": 0, "clip": 0.05}

# Keys that change how a run executes but not what it computes: a run may resume with
# different values (e.g. more loader workers on a bigger node).
EXECUTION_KEYS = ("train.num_workers", "train.log_every_s", "train.device")


class ConfigError(ValueError):
    """A run config is invalid; the message lists every problem found, one per line."""


_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One config key: its default (or required) and a check that explains what is expected."""

    check: Callable[[Any], bool]
    expected: str
    default: Any = _REQUIRED
    nullable: bool = False

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int, default: Any = _REQUIRED, nullable: bool = False) -> Field:
    return Field(lambda v: _is_int(v) and v >= minimum, f"an integer >= {minimum}", default, nullable)


def number(low: float, high: float | None = None, *, open_low: bool = False, open_high: bool = False,
           default: Any = _REQUIRED, nullable: bool = False) -> Field:
    def check(value: Any) -> bool:
        if not _is_number(value):
            return False
        above = value > low if open_low else value >= low
        below = high is None or (value < high if open_high else value <= high)
        return above and below

    left = f"> {low}" if open_low else f">= {low}"
    right = "" if high is None else (f" and < {high}" if open_high else f" and <= {high}")
    return Field(check, f"a number {left}{right}", default, nullable)


def choice(*options: Any, default: Any = _REQUIRED) -> Field:
    return Field(lambda v: v in options, "one of " + ", ".join(map(str, options)), default)


def text(default: Any = _REQUIRED, nullable: bool = False) -> Field:
    return Field(lambda v: isinstance(v, str) and v != "", "a non-empty string", default, nullable)


def boolean(default: Any = _REQUIRED) -> Field:
    return Field(lambda v: isinstance(v, bool), "true or false", default)


def mapping(default: Any = _REQUIRED) -> Field:
    """A free-form mapping whose keys are checked by the code that consumes it."""
    return Field(lambda v: isinstance(v, dict), "a mapping (key: value pairs)", default)


def loss_spec(default: Any) -> Field:
    return Field(lambda v: isinstance(v, dict) and isinstance(v.get("name"), str),
                 "a mapping with a 'name' (e.g. {name: asl, gamma_neg: 4})", default)


SCHEMA: dict[str, Any] = {
    "run_id": text(),
    "seed": integer(0, default=0),
    "dataset": {
        "path": text(),
        "unknown_labels": choice("ignore", "negative", default="ignore"),
        "unknown_weight": number(0.0, 1.0, default=None, nullable=True),
    },
    "features": text(default=None, nullable=True),
    "model": {
        "backbone": text(),
        "backbone_weights": text(default=None, nullable=True),
        "backbone_options": mapping(default={}),
        "pretrained": boolean(default=False),
        "head": text(),
        "num_groups": integer(1, default=None, nullable=True),
        "head_options": mapping(default={}),
    },
    "task": choice("multilabel", "zero_shot", "single_label", default="multilabel"),
    "train": {
        "epochs": integer(1, default=40),
        "batch_size": integer(1, default=56),
        "optimizer": choice("adam", "adamw", default="adam"),
        "lr": number(0.0, open_low=True, default=2.0e-4),
        "weight_decay": number(0.0, default=1.0e-4),
        "schedule": choice("onecycle", "cosine", "constant", default="onecycle"),
        "pct_start": number(0.0, 1.0, open_low=True, open_high=True, default=0.2),
        "ema_decay": number(0.0, 1.0, open_high=True, default=0.9997, nullable=True),
        "loss": loss_spec(default=PAPER_LOSS),
        "resolution": integer(8, default=448),
        "augment": {
            "cutout": number(0.0, 1.0, default=0.5),
            "randaugment": boolean(default=True),
        },
        "amp": choice("auto", "bf16", "fp16", "off", default="auto"),
        "device": choice("auto", "cpu", "cuda", default="auto"),
        "num_workers": integer(0, default=8),
        "eval_every": integer(0, default=1),
        "log_every_s": number(0.0, open_low=True, default=60.0),
        "feasibility": {
            "max_gflops": number(0.0, open_low=True, default=None, nullable=True),
            "max_memory_gb": number(0.0, open_low=True, default=None, nullable=True),
        },
    },
}

# The losses of single-label runs: softmax cross-entropy or a sigmoid loss (mld.losses names).
SOFTMAX_LOSS = "softmax_ce"
SINGLE_LABEL_LOSSES = (SOFTMAX_LOSS, "bce", "asl")


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The fully defaulted config a section gets when it is left out entirely."""
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out[key] = _defaults(spec)
        elif not spec.required:
            out[key] = copy.deepcopy(spec.default)
    return out


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip().removesuffix("\n...")


def _validate_section(values: Any, schema: Mapping[str, Any], prefix: str,
                      problems: list[str]) -> dict[str, Any]:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        problems.append(f"{prefix.rstrip('.') or '<top level>'} = {_show(values)}: expected a mapping "
                        f"of keys ({', '.join(schema)})")
        return _defaults(schema)
    out: dict[str, Any] = {}
    for key in values:
        if key not in schema:
            problems.append(f"{prefix}{key}: unknown key; the keys allowed here are "
                            f"{', '.join(schema)} (check the spelling or remove it)")
    for key, spec in schema.items():
        name = prefix + key
        if isinstance(spec, dict):
            out[key] = _validate_section(values.get(key), spec, name + ".", problems)
            continue
        if key not in values:
            if spec.required:
                problems.append(f"{name}: missing; add it ({spec.expected})")
            else:
                out[key] = copy.deepcopy(spec.default)
            continue
        value = values[key]
        if value is None and spec.nullable:
            out[key] = None
        elif value is None or not spec.check(value):
            hint = "" if spec.required else f", or remove the key to use the default {_show(spec.default)}"
            null = " or null" if spec.nullable else ""
            problems.append(f"{name} = {_show(value)}: expected {spec.expected}{null}{hint}")
            out[key] = copy.deepcopy(spec.default) if not spec.required else value
        else:
            out[key] = copy.deepcopy(value)
    return out


def _cross_field_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    loss_name = config["train"]["loss"]["name"]
    if config["task"] == "single_label" and loss_name not in SINGLE_LABEL_LOSSES:
        problems.append(f"train.loss.name = {_show(loss_name)}: a single_label run needs one of "
                        f"{', '.join(SINGLE_LABEL_LOSSES)} ({SOFTMAX_LOSS} = softmax, bce/asl = sigmoid)")
    if config["task"] != "single_label" and loss_name == SOFTMAX_LOSS:
        problems.append(f"train.loss.name = {SOFTMAX_LOSS}: softmax cross-entropy needs task: single_label; "
                        f"use bce or asl for task {config['task']}")
    dataset = config["dataset"]
    if dataset["unknown_labels"] == "negative" and dataset["unknown_weight"] is None:
        problems.append("dataset.unknown_weight: missing; unknown_labels: negative needs the weight of "
                        "unknown labels as negatives (e.g. 0.1)")
    if dataset["unknown_labels"] == "ignore" and dataset["unknown_weight"] is not None:
        problems.append(f"dataset.unknown_weight = {_show(dataset['unknown_weight'])}: only used with "
                        "unknown_labels: negative; remove it or set unknown_labels: negative")
    return problems


def validate_run_config(raw: Any, source: str = "<run config>") -> dict[str, Any]:
    """Return the config with every default filled in, or raise ConfigError listing all problems.

    `source` names where the config came from (a file path) in the error messages.
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of run settings at the top level, "
                          f"got {type(raw).__name__}")
    config = _validate_section(raw, SCHEMA, "", problems)
    if not problems:
        problems = _cross_field_problems(config)
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
        problems.append(f"train.loss = {_show(config['train']['loss'])}: {error}")
    model = config["model"]
    options = dict(model["head_options"], **({"num_groups": model["num_groups"]} if model["num_groups"] else {}))
    try:
        check_head_options(model["head"], options)
    except ValueError as error:
        problems.append(f"model.head = {model['head']}, model.head_options: {error}")
    # With cached features the backbone never runs: the cache names it, checked when it is opened.
    if config["features"] is None and not _is_timm_model(model["backbone"]):
        problems.append(f"model.backbone = {model['backbone']}: not a timm model; see timm.list_models()")
    if problems:
        raise ConfigError(f"{source}: invalid run config:\n" + "\n".join(f"  {source}: {p}" for p in problems))


def _is_timm_model(name: str) -> bool:
    import timm

    return timm.is_model(name)


def load_run_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a run config YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"run config {path} does not exist; pass the path of a run YAML") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return validate_run_config(raw, source=str(path))


def result_defining(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its execution-only keys: two runs agree on this iff they compute the same."""
    out = copy.deepcopy(dict(config))
    for dotted in EXECUTION_KEYS:
        *parents, last = dotted.split(".")
        section = out
        for part in parents:
            section = section[part]
        section.pop(last, None)
    return out
