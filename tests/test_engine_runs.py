"""Whole runs in-process on tiny synthetic data: outputs, tasks, modes, and how runs fail."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import mld
from mld import metrics
from mld.data.prepared import open_prepared
from mld.engine import (
    CheckpointError, NonFiniteLossError, evaluate, export_backbone, extract_features, train, train_seeds,
)
from mld.engine.checkpoint import load_checkpoint
from mld.engine.costing import COST_KEY, MEMORY_KEY
from test_engine_support import TINY_HEAD, make_dataset, one_thread, run_config, without_timing

OUTPUTS = {"metrics.json", "predictions.npz", "cost.json", "train.log", "checkpoint.pt"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def coco(data_root):
    return make_dataset(data_root, "coco-like")


@pytest.fixture(scope="module")
def finished_run(coco, tmp_path_factory):
    """An end-to-end run (augmentation, EMA) that every output test reads."""
    out = tmp_path_factory.mktemp("runs") / "e2e"
    config = run_config(coco)
    return config, out, train(config, out)


@pytest.fixture(scope="module")
def backbone_weights(finished_run, tmp_path_factory):
    _, out, _ = finished_run
    path = tmp_path_factory.mktemp("backbones") / "test_resnet.pt"
    export_backbone(out, path)
    return path


@pytest.fixture(scope="module")
def feature_caches(data_root, backbone_weights, tmp_path_factory):
    """Feature caches of a multi-label, a zero-shot and a single-label dataset under one backbone."""
    root = tmp_path_factory.mktemp("features")
    caches = {}
    for preset, task in (("coco-like", "multilabel"), ("nus-like", "zero_shot"), ("imagenet-like", "single_label")):
        dataset = make_dataset(data_root, preset)
        config = run_config(dataset, task=task, model={"head": "gap", "head_options": {},
                                                       "backbone_weights": str(backbone_weights)})
        extract_features(config, root / preset)
        caches[task] = (dataset, root / preset)
    return caches


def cached_config(feature_caches, backbone_weights, task, **sections):
    dataset, features = feature_caches[task]
    model = {"backbone_weights": str(backbone_weights), **sections.pop("model", {})}
    features = sections.pop("features", str(features))
    return run_config(dataset, task=task, features=features, model=model, **sections)


# ---- outputs

def test_a_run_writes_every_output(finished_run):
    config, out, returned = finished_run
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no last.pt, no partial log, no temporaries
    written = json.loads((out / "metrics.json").read_text())
    assert written == returned
    assert written["run_id"] == "test/run" and written["mode"] == "end_to_end" and written["task"] == "multilabel"
    assert written["config"]["train"]["optimizer"] == "adam"  # the validated config, defaults filled in
    assert {"torch", "timm", "mld", "python"} <= set(written["versions"])
    final = written["final"]
    assert set(final["candidates"]) == {"model", "ema"} and final["selected_by"] == "mAP"
    chosen = max(("model", "ema"), key=lambda name: (final[f"mAP_{name}"], name == "model"))
    assert final["selected"] == chosen and final["mAP"] == final[f"mAP_{chosen}"]
    assert {"CP", "CR", "CF1", "OP", "OR", "OF1"} <= set(final)
    assert [entry["epoch"] for entry in written["history"]] == [1, 2]
    assert all(np.isfinite(entry["train_loss"]) and "mAP_model" in entry for entry in written["history"])


def test_a_run_records_both_selections(finished_run):
    """"final": the last epoch's better of model and EMA; "best_epoch": the official train.py's
    highest over evaluated epochs (here every epoch: eval_every 1) of the better of the two."""
    _, out, _ = finished_run
    written = json.loads((out / "metrics.json").read_text())
    history, final, best = written["history"], written["final"], written["best_epoch"]
    assert all({"mAP_model", "mAP_ema"} <= set(entry) for entry in history)  # the final epoch's too
    assert {key: history[-1][key] for key in ("mAP_model", "mAP_ema")} == {
        key: final[key] for key in ("mAP_model", "mAP_ema")}
    per_epoch = [max(entry["mAP_model"], entry["mAP_ema"]) for entry in history]
    assert best["mAP"] == max(per_epoch) and best["epoch"] == 1 + per_epoch.index(max(per_epoch))
    entry = history[best["epoch"] - 1]
    assert best["selected"] in ("model", "ema") and best["mAP"] == entry[f"mAP_{best['selected']}"]
    assert best["mAP"] >= final["mAP"] and best["selected_by"] == "mAP"


def test_predictions_recompute_the_reported_metrics(finished_run, coco):
    _, out, returned = finished_run
    predictions = np.load(out / "predictions.npz")
    scores, targets = predictions["scores"], predictions["targets"]
    assert scores.dtype == np.float32 and targets.dtype == np.int8
    assert np.array_equal(targets, open_prepared(coco).labels("val"))
    assert list(predictions["class_names"]) == list(open_prepared(coco).class_names)
    assert metrics.mean_average_precision(scores, targets) == pytest.approx(returned["final"]["mAP"], abs=1e-9)


def test_cost_and_checkpoint(finished_run):
    config, out, _ = finished_run
    cost = json.loads((out / "cost.json").read_text())
    assert set(cost) == {"flops_g", "params_m", "head_flops_g", "head_params_m", "resolution", COST_KEY}
    assert 0 < cost["head_flops_g"] < cost["flops_g"] and cost["resolution"] == 32
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    model = mld.create_model("test_resnet", "ml_decoder", 80, head_options=config["model"]["head_options"])
    model.load_state_dict(checkpoint[checkpoint["selected"]])
    assert cost["params_m"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)


def test_a_finished_run_is_not_retrained_and_its_directory_is_guarded(finished_run):
    config, out, returned = finished_run
    assert train(config, out) == returned
    changed = run_config(config["dataset"]["path"], train={"lr": 5e-3})
    with pytest.raises(ValueError, match=r"different config \(differs in: train.lr\)"):
        train(changed, out)


def test_evaluate_scores_a_checkpoint_like_the_run(finished_run, tmp_path):
    config, out, returned = finished_run
    evaluated = evaluate(config, out / "checkpoint.pt", tmp_path / "eval")
    for key in ("mAP", "mAP_model", "mAP_ema", "selected", "CF1"):
        assert evaluated["final"][key] == pytest.approx(returned["final"][key], abs=1e-9)
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {"metrics.json", "predictions.npz"}
    with pytest.raises(ValueError, match="holds a training run"):
        evaluate(config, out / "checkpoint.pt", out)


# ---- reproducibility

def test_loader_workers_do_not_change_results(coco, tmp_path):
    config = run_config(coco, train={"epochs": 1, "ema_decay": None})
    in_process = train(config, tmp_path / "workers0")
    in_workers = train(run_config(coco, train={"epochs": 1, "ema_decay": None, "num_workers": 2}),
                       tmp_path / "workers2")
    assert without_timing(in_process)["history"] == without_timing(in_workers)["history"]
    assert in_process["final"] == in_workers["final"]


# ---- cached features

def test_exported_backbone_loads_into_a_new_model(finished_run, backbone_weights):
    _, out, _ = finished_run
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    model = mld.create_model("test_resnet", "gap", 5, backbone_weights=str(backbone_weights))
    expected = checkpoint[checkpoint["selected"]]
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, expected[f"backbone.{key}"])
    with pytest.raises(FileNotFoundError, match="holds no finished run"):
        export_backbone(out.parent, backbone_weights.parent / "none.pt")


def test_a_run_with_micro_batches_trains_the_whole_batchs_weights(feature_caches, backbone_weights, tmp_path):
    """train.accumulation: 2 (no dropout, no BatchNorm in the head) ends where one step per whole
    batch ends, within float tolerance, and metrics.json records the micro-batches used."""
    head = {"head": "ml_decoder", "head_options": {**TINY_HEAD, "dropout": 0.0}}
    whole = train(cached_config(feature_caches, backbone_weights, "multilabel", model=head), tmp_path / "whole")
    split = train(cached_config(feature_caches, backbone_weights, "multilabel", model=head,
                                train={"accumulation": 2}), tmp_path / "split")
    assert (whole["accumulation"], split["accumulation"]) == (1, 2)
    assert split["final"]["mAP"] == pytest.approx(whole["final"]["mAP"], rel=1e-4)
    assert [e["train_loss"] for e in split["history"]] == pytest.approx([e["train_loss"] for e in whole["history"]],
                                                                        rel=1e-4)
    weights = [load_checkpoint(tmp_path / name / "checkpoint.pt")["model"] for name in ("whole", "split")]
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=1e-4, atol=1e-5, msg=key)


def test_heads_train_on_cached_features(feature_caches, backbone_weights, tmp_path):
    config = cached_config(feature_caches, backbone_weights, "multilabel", train={"epochs": 3})
    result = train(config, tmp_path / "cached")
    assert result["mode"] == "cached_features"
    assert len(result["history"]) == 3 and result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    cost = json.loads((tmp_path / "cached" / "cost.json").read_text())
    meta = json.loads((feature_caches["multilabel"][1] / "meta.json").read_text())
    assert meta["resolution"] == 32 and meta["feature_kind"] == "single" and meta["weights_sha256"]
    assert cost["flops_g"] > cost["head_flops_g"] > 0  # the whole network's cost, not the head's alone
    # The cache's recorded backbone cost plus the head's equals the cost of the whole network built
    # again (what a cache without that record gets).
    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(feature_caches["multilabel"][1], unrecorded)
    (unrecorded / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "backbone_cost"}))
    train(cached_config(feature_caches, backbone_weights, "multilabel", features=str(unrecorded),
                        train={"epochs": 1}), tmp_path / "rebuilt")
    rebuilt = json.loads((tmp_path / "rebuilt" / "cost.json").read_text())
    assert rebuilt.pop(COST_KEY) != cost.pop(COST_KEY)  # measured for another cache
    assert rebuilt == pytest.approx(cost)


def test_a_head_only_run_does_not_import_timm(feature_caches, backbone_weights, tmp_path):
    """Importing timm (and torchvision) costs seconds per job; a head on cached features needs neither."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cached_config(feature_caches, backbone_weights, "multilabel",
                                                   train={"epochs": 1})))
    script = ("import sys; from mld.cli import main; code = main(['train', '--run-config', sys.argv[1], '--out', "
              "sys.argv[2]]); print('timm imported' if 'timm' in sys.modules else 'no timm'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, str(config), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("no timm")


def test_seeds_in_one_process_equal_a_process_per_seed(feature_caches, backbone_weights, tmp_path):
    """`mld train --seeds` pays start-up once; each seed, also the second, writes what its own process
    would (predictions and checkpoint byte for byte), and a rerun trains no finished seed again."""
    config = cached_config(feature_caches, backbone_weights, "multilabel", model={"head": "ml_decoder"},
                           train={"epochs": 2})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))

    def mld_train(*arguments):
        result = subprocess.run([sys.executable, "-m", "mld", "train", "--run-config", str(config_file), *arguments],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    mld_train("--out", str(tmp_path / "together"), "--seeds", "0", "1")
    config_file.write_text(yaml.safe_dump({**config, "seed": 1}))
    mld_train("--out", str(tmp_path / "alone" / "seed1"))
    together, alone = tmp_path / "together" / "seed1", tmp_path / "alone" / "seed1"
    for name in ("predictions.npz", "checkpoint.pt", "cost.json"):
        assert (together / name).read_bytes() == (alone / name).read_bytes(), name
    metrics = json.loads((together / "metrics.json").read_text())
    assert without_timing(metrics) == without_timing(json.loads((alone / "metrics.json").read_text()))
    assert metrics["seed"] == 1
    first = json.loads((tmp_path / "together" / "seed0" / "metrics.json").read_text())
    assert first["seed"] == 0 and first["final"]["mAP"] != metrics["final"]["mAP"]

    def written() -> dict[int, tuple[int, int]]:
        """Each seed's metrics.json as (inode, mtime): an atomic rewrite gives a new inode, whatever
        the file system's mtime resolution."""
        files = {seed: (tmp_path / "together" / f"seed{seed}" / "metrics.json").stat() for seed in (0, 1)}
        return {seed: (stat.st_ino, stat.st_mtime_ns) for seed, stat in files.items()}

    finished = written()
    again = train_seeds(config, tmp_path / "together", [1, 0])
    assert [run["seed"] for run in again] == [1, 0] and again[0] == metrics
    assert written() == finished
    with pytest.raises(ValueError, match="lists a seed twice"):
        train_seeds(config, tmp_path / "twice", [0, 0])


def test_multiscale_heads_train_on_per_stage_caches(coco, tmp_path):
    model = {"backbone": "test_convnext", "head": "hsvlt",
             "head_options": {"embed_dim": 16, "num_heads": 2, "num_scales": 4}}
    meta = extract_features(run_config(coco, model=model), tmp_path / "features")
    assert meta["feature_kind"] == "multiscale" and len(meta["shapes"]) == 4
    assert sorted(p.name for p in (tmp_path / "features").glob("val.*")) == [f"val.stage{i}.npy" for i in range(4)]
    result = train(run_config(coco, model=model, features=str(tmp_path / "features"), train={"epochs": 1}),
                   tmp_path / "run")
    assert result["mode"] == "cached_features"
    predictions = np.load(tmp_path / "run" / "predictions.npz")
    assert result["final"]["mAP"] == pytest.approx(
        metrics.mean_average_precision(predictions["scores"], predictions["targets"]), abs=1e-9)


def test_seeds_change_the_result(feature_caches, backbone_weights, tmp_path):
    runs = [train(cached_config(feature_caches, backbone_weights, "multilabel", seed=seed), tmp_path / str(seed))
            for seed in (0, 1)]
    assert runs[0]["final"]["mAP"] != runs[1]["final"]["mAP"]


def test_a_cache_from_another_resolution_is_refused(feature_caches, backbone_weights, tmp_path):
    config = cached_config(feature_caches, backbone_weights, "multilabel", train={"resolution": 64})
    with pytest.raises(ValueError, match="resolution is 32 but .* needs 64"):
        train(config, tmp_path / "run")


def test_zero_shot_trains_on_seen_classes_and_reports_zsl_and_gzsl(feature_caches, backbone_weights, tmp_path):
    head = {"head_options": {"decoder_dim": 16, "num_heads": 2, "ff_dim": 32, "query_type": "nlp",
                             "head_type": "nlp", "random_queries": 2, "query_noise": 0.1}}
    result = train(cached_config(feature_caches, backbone_weights, "zero_shot", model=head), tmp_path / "zsl")
    final = result["final"]
    assert set(final["zsl"]) == set(final["gzsl"]) == {"mAP", "F1@3", "F1@5"}
    assert final["mAP"] == final["zsl"]["mAP"] and "mAP_seen" in final
    meta = open_prepared(feature_caches["zero_shot"][0])
    checkpoint = load_checkpoint(tmp_path / "zsl" / "checkpoint.pt")
    assert checkpoint["model"]["head.word_vectors"].shape[0] == len(meta.seen_classes)
    scores = np.load(tmp_path / "zsl" / "predictions.npz")["scores"]
    assert scores.shape == (meta.splits["val"], meta.num_classes)


def test_single_label_runs_select_by_top1(feature_caches, backbone_weights, tmp_path):
    config = cached_config(feature_caches, backbone_weights, "single_label", train={"loss": {"name": "softmax_ce"}})
    final = train(config, tmp_path / "single")["final"]
    assert final["selected_by"] == "top1" and "mAP" in final
    predictions = np.load(tmp_path / "single" / "predictions.npz")
    scores, targets = predictions["scores"], predictions["targets"]
    assert final["top1"] == pytest.approx(100 * np.mean(scores.argmax(axis=1) == targets.argmax(axis=1)), abs=1e-9)
    assert final["mAP"] == pytest.approx(metrics.mean_average_precision(scores, targets), abs=1e-9)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # softmax


# ---- infeasible runs and failures

def test_a_run_over_budget_is_recorded_as_infeasible(feature_caches, backbone_weights, tmp_path):
    config = cached_config(feature_caches, backbone_weights, "multilabel",
                           train={"feasibility": {"max_gflops": 1e-6, "max_memory_gb": 1e-6}})
    result = train(config, tmp_path / "over")
    assert result["infeasible"] is True and "final" not in result
    assert "exceed train.feasibility.max_gflops" in result["reason"] and "max_memory_gb" in result["reason"]
    params_bytes = sum(p.numel() for p in mld.create_model(
        "test_resnet", "ml_decoder", 80, head_options=config["model"]["head_options"]).head.parameters()) * 4
    assert result["cost"][MEMORY_KEY] * 1e9 >= 3 * params_bytes  # weights, gradients, Adam's two moments
    assert {p.name for p in (tmp_path / "over").iterdir()} == {"metrics.json", "cost.json", "train.log"}


def test_a_nan_loss_stops_the_run_naming_epoch_and_step(feature_caches, backbone_weights, tmp_path):
    dataset, features = feature_caches["multilabel"]
    broken = tmp_path / "features"
    shutil.copytree(features, broken)
    train_maps = np.load(broken / "train.npy", mmap_mode="r+")
    train_maps[:] = np.nan
    train_maps.flush()
    config = cached_config(feature_caches, backbone_weights, "multilabel", features=str(broken))
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 1"):
        train(config, tmp_path / "nan")
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_an_unreadable_image_fails_with_its_path(tmp_path):
    dataset = tmp_path / "files-dataset"
    for split, count in (("train", 4), ("val", 2)):
        (dataset / split).mkdir(parents=True)
        names = []
        for index in range(count):
            name = f"{split}/{index}.png"
            Image.fromarray(np.full((8, 8, 3), 40 * index, np.uint8)).save(dataset / name)
            names.append(name)
        (dataset / split / "images.txt").write_text("\n".join(names) + "\n")
        np.save(dataset / split / "labels.npy", np.eye(count, 2, dtype=np.int8))
    (dataset / "train" / "2.png").write_bytes(b"not a png")
    (dataset / "meta.json").write_text(json.dumps({
        "format": "mld-prepared/1", "name": "files", "source": "test", "num_classes": 2,
        "class_names": ["a", "b"], "task": "multilabel", "splits": {"train": 4, "val": 2},
        "image_storage": "files"}))
    config = run_config(dataset, model={"head": "gap", "head_options": {}},
                        train={"batch_size": 4, "augment": {"cutout": 0.0, "randaugment": False}})
    with pytest.raises(ValueError, match=f"cannot read image file {dataset / 'train' / '2.png'}"):
        train(config, tmp_path / "run")


def test_a_resume_point_of_another_run_is_refused(finished_run, tmp_path):
    config, out, _ = finished_run
    shutil.copy(out / "checkpoint.pt", tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not an mld resume checkpoint"):
        train(config, tmp_path)


# ---- the commands

def test_commands_extract_export_and_evaluate(finished_run, coco, tmp_path, capsys):
    from mld.cli import main

    config, out, returned = finished_run
    weights = tmp_path / "backbone.pt"
    assert main(["export-backbone", "--run", str(out), "--out", str(weights), "--weights", "model"]) == 0
    assert "backbone tensors (model weights" in capsys.readouterr().out
    assert main(["extract-features", "--backbone", "test_resnet", "--weights", str(weights),
                 "--dataset", str(coco), "--resolution", "32", "--out", str(tmp_path / "features")]) == 0
    meta = json.loads((tmp_path / "features" / "meta.json").read_text())
    assert meta["shapes"] == [[96, 1, 1]] and meta["splits"] == {"train": 96, "val": 48}
    assert main(["extract-features", "--run-config", "x.yaml", "--backbone", "b", "--out", "o"]) == 2
    assert "give either --run-config or" in capsys.readouterr().err
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    assert main(["evaluate", "--run-config", str(config_file), "--checkpoint", str(out / "checkpoint.pt"),
                 "--out", str(tmp_path / "eval")]) == 0
    assert f"mAP {returned['final']['mAP']:.2f}" in capsys.readouterr().out
