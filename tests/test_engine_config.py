"""Run config validation: defaults, every problem reported with file, key, value and a fix."""
from __future__ import annotations

import pytest
import yaml

from mld.engine.config import (
    PAPER_LOSS, SCHEMA, ConfigError, check_components, load_run_config, result_defining, validate_run_config,
)

MINIMAL = {"run_id": "r", "dataset": {"path": "data/x"}, "model": {"backbone": "test_resnet", "head": "gap"}}


def test_minimal_config_gets_the_paper_recipe():
    config = validate_run_config(MINIMAL)
    train = config["train"]
    assert (train["optimizer"], train["lr"], train["weight_decay"]) == ("adam", 2.0e-4, 1.0e-4)
    assert (train["schedule"], train["pct_start"], train["epochs"]) == ("onecycle", 0.2, 40)
    assert train["ema_decay"] == 0.9997 and train["loss"] == PAPER_LOSS
    # ASL as appendix C (gamma_neg 4, gamma_pos 0) with the official code's clip 0.05.
    assert PAPER_LOSS == {"name": "asl", "gamma_neg": 4, "gamma_pos": 0, "clip": 0.05}, "train.loss's default"
    # The paper's transforms: square resize, Cutout 0.5, RandAugment; no flip, crop or mixing.
    assert train["augment"] == {"cutout": 0.5, "randaugment": True, "crop": "resize", "crop_scale": [0.08, 1.0],
                                "crop_ratio": [0.75, 4 / 3], "hflip": 0.0, "interpolation": "bilinear",
                                "eval_crop_pct": None, "repeats": 1}
    assert train["mix"] == {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5,
                            "label_smoothing": 0.0}
    assert config["task"] == "multilabel" and config["features"] is None and config["seed"] == 0


def test_defaults_are_not_shared_between_configs():
    first = validate_run_config(MINIMAL)
    first["train"]["loss"]["gamma_neg"] = 99
    assert validate_run_config(MINIMAL)["train"]["loss"]["gamma_neg"] == PAPER_LOSS["gamma_neg"]


def test_every_problem_is_reported_with_source_key_value_and_fix():
    raw = {**MINIMAL, "extra": 1, "dataset": {"path": "d", "unkown": 1},
           "train": {"lr": -1, "epochs": "ten", "augment": {"cutout": 2}}}
    with pytest.raises(ConfigError) as caught:
        validate_run_config(raw, source="runs/a.yaml")
    message = str(caught.value)
    lines = message.splitlines()[1:]
    assert len(lines) == 5 and all(line.strip().startswith("runs/a.yaml: ") for line in lines)
    assert "extra: unknown key" in message and "dataset.unkown: unknown key" in message
    assert "train.lr = -1: expected a number > 0.0, or remove the key to use the default 0.0002" in message
    assert "train.epochs = ten: expected an integer >= 1" in message
    assert "train.augment.cutout = 2: expected a number >= 0.0 and <= 1.0" in message


def test_missing_required_keys_are_named():
    with pytest.raises(ConfigError, match=r"model.head: missing; add it"):
        validate_run_config({"run_id": "r", "dataset": {"path": "d"}, "model": {"backbone": "b"}})


@pytest.mark.parametrize("change, expected", [
    ({"task": "single_label", "train": {"loss": {"name": "focal"}}}, "a single_label run needs one of"),
    ({"train": {"loss": {"name": "softmax_ce"}}}, "softmax cross-entropy needs task: single_label"),
    ({"dataset": {"path": "d", "unknown_labels": "negative"}}, "dataset.unknown_weight: missing"),
    ({"dataset": {"path": "d", "unknown_weight": 0.1}}, "only used with unknown_labels: negative"),
    ({"train": {"loss": {"gamma_neg": 4}}}, "train.loss = {gamma_neg: 4}: expected a mapping with a 'name'"),
    ({"train": {"amp": "fp8"}}, "train.amp = fp8: expected one of auto, bf16, fp16, off"),
    ({"train": {"ema_decay": 1.0}}, "train.ema_decay = 1.0: expected a number >= 0.0 and < 1.0 or null"),
    ({"train": True}, "train = true: expected a mapping of keys"),
    ({"train": {"warmup_epochs": 2}}, "the onecycle schedule warms up by itself (train.pct_start)"),
    ({"train": {"schedule": "cosine", "epochs": 5, "warmup_epochs": 5}}, "must end before the run's train.epochs"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer = sgd: expected one of adam, adamw, lamb"),
])
def test_bad_values_and_combinations_are_refused(change, expected):
    with pytest.raises(ConfigError) as caught:
        validate_run_config({**MINIMAL, **change})
    assert expected in str(caught.value)


def test_booleans_are_not_numbers():
    with pytest.raises(ConfigError, match="train.epochs = true"):
        validate_run_config({**MINIMAL, "train": {"epochs": True}})


def test_load_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "seed": -1}))
    with pytest.raises(ConfigError, match=f"{path}: seed = -1"):
        load_run_config(path)
    path.write_text("run_id: [unclosed")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        load_run_config(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")


def test_execution_keys_do_not_define_the_result():
    base = validate_run_config(MINIMAL)
    more_workers = validate_run_config({**MINIMAL, "train": {"num_workers": 2, "log_every_s": 5.0}})
    other_lr = validate_run_config({**MINIMAL, "train": {"lr": 1.0e-3}})
    assert result_defining(base) == result_defining(more_workers)
    assert result_defining(base) != result_defining(other_lr)


def test_components_are_checked_before_any_work():
    raw = {**MINIMAL, "model": {"backbone": "no_such_net", "head": "ml_decoder", "head_options": {"dim": 8}},
           "train": {"loss": {"name": "asl", "gama_neg": 4}}}
    with pytest.raises(ConfigError) as caught:
        check_components(validate_run_config(raw), source="run.yaml")
    message = str(caught.value)
    assert "run.yaml: train.loss = {name: asl, gama_neg: 4}: bad options for loss 'asl'" in message
    assert "model.head_options: head 'ml_decoder' has no option(s) 'dim'" in message
    assert "run.yaml: model.backbone = no_such_net: not a timm model" in message
    check_components(validate_run_config(MINIMAL))


def _sections(schema, prefix=""):
    yield prefix, schema
    for key, spec in schema["properties"].items():
        if spec.get("additionalProperties") is False:
            yield from _sections(spec, f"{prefix}{key}.")


def test_the_run_config_schema_gives_every_key_a_default_or_requires_it():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for prefix, section in _sections(SCHEMA):
        for key, spec in section["properties"].items():
            is_section = spec.get("additionalProperties") is False
            assert is_section or "default" in spec or key in section.get("required", []), f"{prefix}{key}"
    # The defaults themselves pass the schema, so every error names a value the user wrote.
    jsonschema.validate(validate_run_config(MINIMAL), SCHEMA)


def test_a_key_of_the_schema_is_a_key_of_the_config():
    train = validate_run_config(MINIMAL)["train"]
    assert set(train) == set(SCHEMA["properties"]["train"]["properties"])
    assert train["feasibility"] == {"max_gflops": None, "max_memory_gb": None}


def test_a_jobs_execution_settings_replace_the_files_and_nothing_else_may(tmp_path, capsys):
    """The workflow writes a job's config once; the command line gives how it runs (`--set`)."""
    from mld.cli import main
    from mld.engine.config import parse_execution_setting

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "train": {"num_workers": 1, "epochs": 3}}))
    config = load_run_config(path, dict([parse_execution_setting("train.num_workers=6"),
                                         parse_execution_setting("train.device=cpu")]))
    assert (config["train"]["num_workers"], config["train"]["device"], config["train"]["epochs"]) == (6, "cpu", 3)
    assert result_defining(config) == result_defining(load_run_config(path))
    assert yaml.safe_load(path.read_text())["train"] == {"num_workers": 1, "epochs": 3}  # read, never rewritten
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--run-config", str(path), "--out", str(tmp_path / "run"), "--set", "train.epochs=5"])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()
    assert "--set 'train.epochs=5': give KEY=VALUE with KEY one of train.num_workers" in capsys.readouterr().err
