"""The long-form results frame: what `collect` reads from a results tree, and the file round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mld import paths
from mld.report import stats
from mld.report import results as long_form
from mld.experiments import Registry, Run

SEEDS = [0, 1]


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def tree(tmp_path: Path) -> tuple[Registry, Path]:
    """Two runs on one synthetic dataset (one with a missing seed) and a module-timing measurement."""
    results = tmp_path / "results"
    registry = Registry(config={"backbones": {"medium": {"name": "test_resnet"}, "resnet101": "medium"}})
    registry.datasets["coco-like"] = {"name": "coco-like", "role": "coco", "source": "synthetic", "preset": "coco-like",
                                      "image_size": 64, "num_train": 10, "path": "results/data/coco-like"}
    rng = np.random.default_rng(0)
    targets = (rng.random((12, 3)) < 0.4).astype(np.int8)
    for run_id, seeds in (("coco-like/gap", SEEDS), ("coco-like/ml_decoder", SEEDS[:1])):
        registry.runs[run_id] = Run(run_id, {"dataset": {"path": "results/data/coco-like"}, "task": "multilabel",
                                             "model": {"backbone": "test_resnet"}}, list(SEEDS),
                                    {"table1_heads": {"head": run_id.split("/")[1], "queries": None}},
                                    dataset="coco-like", backbone_role="medium")
        registry.tables.setdefault("table1_heads", []).append(run_id)
        for seed in seeds:
            seed_dir = Path(paths.run_dir(run_id, seed, str(results)))
            write_json(seed_dir / "metrics.json", {"mode": "cached_features", "versions": {"torch": "2.x"},
                                                   "final": {"mAP": 50.0 + seed, "selected": "model"}})
            write_json(seed_dir / "cost.json", {"flops_g": 0.02, "params_m": 0.4, "resolution": 64})
            np.savez(seed_dir / "predictions.npz", scores=rng.random((12, 3)).astype(np.float32), targets=targets,
                     class_names=np.array(["a", "b", "c"]))
    registry.measurements["module_timing/td-n10"] = {
        "kind": "module_timing", "config": {"model": {"backbone": "test_resnet"}},
        "rows": {"module_timing": {"head": "transformer_decoder", "classes": 10}}}
    registry.tables["module_timing"] = ["module_timing/td-n10"]
    write_json(Path(paths.measurement_path("module_timing/td-n10", str(results))),
               {"device": "cpu", "time_ms": {"self_attention": 2.0, "mlp": 1.0}, "repeats": 10})
    return registry, results


def test_one_row_per_run_seed_and_metric(tmp_path):
    registry, results = tree(tmp_path)
    frame = long_form.collect(registry, results, long_form.Header("x")).frame
    assert list(frame.columns) == [*long_form.COLUMNS, "row_classes", "row_head", "row_queries"]
    gap = frame[(frame["run_id"] == "coco-like/gap") & (frame["seed"] == 1)].set_index("metric")
    assert gap.loc["mAP", "value"] == 51.0 and gap.loc["flops_g", "value"] == 0.02
    assert "selected" not in gap.index and "resolution" not in gap.index, "bookkeeping is not a metric"
    assert gap.loc["mAP", "dataset"] == "coco-like" and gap.loc["mAP", "backbone_role"] == "medium"
    assert gap.loc["mAP", "dataset_stands_for"].startswith("coco-like, synthetic") and \
        gap.loc["mAP", "dataset_stands_for"].endswith("standing for MS-COCO")
    assert gap.loc["mAP", "table_id"] == "table1_heads"
    assert long_form.row_key(gap.loc["mAP"]) == {"head": "gap", "queries": None}
    assert gap.loc["mAP", "config_hash"] == long_form.config_hash(registry.runs["coco-like/gap"].config_for_seed(1))
    missing = frame[(frame["run_id"] == "coco-like/ml_decoder") & (frame["seed"] == 1)]
    assert len(missing) == 1 and missing["status"].item() == "missing" and missing["metric"].item() is None
    timing = frame[frame["kind"] == "measurement"].set_index(["metric", "part"])
    assert timing.loc[("time_ms", "self_attention"), "value"] == 2.0 and "repeats" not in timing.index
    assert set(frame["kind"]) - {"run", "measurement", "config"} == {"report", "dataset", "backbone"}


def test_the_file_round_trip_keeps_every_value(tmp_path):
    registry, results = tree(tmp_path)
    collected = long_form.collect(registry, results, long_form.Header("x"))
    path = tmp_path / "runs.csv"
    long_form.write(collected, path)
    back = long_form.read(path)
    pd.testing.assert_frame_equal(back.frame, collected.frame)
    assert back.replicates.keys() == collected.replicates.keys()
    for key, (replicates, digest) in collected.replicates.items():
        assert np.array_equal(back.replicates[key][0], replicates) and back.replicates[key][1] == digest


def test_both_selections_are_keyed_by_the_selection_column(tmp_path):
    registry, results = tree(tmp_path)
    seed_dir = Path(paths.run_dir("coco-like/gap", 0, str(results)))
    write_json(seed_dir / "metrics.json", {
        "mode": "cached_features", "final": {"mAP": 50.0, "mAP_model": 50.0, "mAP_ema": 49.0, "selected": "model"},
        "best_epoch": {"epoch": 3, "mAP": 52.0, "mAP_model": 51.0, "mAP_ema": 52.0, "selected": "ema",
                       "selected_by": "mAP"}, "train_time_s": 9.0})
    collected = long_form.collect(registry, results, long_form.Header("x"))
    frame = collected.frame
    gap = frame[(frame["run_id"] == "coco-like/gap") & (frame["seed"] == 0)]
    by_key = {(row.selection, row.metric): row.value for row in gap.itertuples()}
    assert by_key == {("final", "mAP"): 50.0, ("final", "mAP_model"): 50.0, ("final", "mAP_ema"): 49.0,
                      ("best_epoch", "epoch"): 3.0, ("best_epoch", "mAP"): 52.0, ("best_epoch", "mAP_model"): 51.0,
                      ("best_epoch", "mAP_ema"): 52.0, (None, "flops_g"): 0.02, (None, "params_m"): 0.4,
                      (None, "train_time_s"): 9.0}
    other = frame[(frame["run_id"] == "coco-like/gap") & (frame["seed"] == 1)]  # metrics.json without best_epoch
    assert set(other["selection"]) == {"final", None}
    path = tmp_path / "runs.csv"
    long_form.write(collected, path)
    pd.testing.assert_frame_equal(long_form.read(path).frame, frame)
    older = tmp_path / "older.csv"  # a runs.csv from before the column
    pd.read_csv(path).drop(columns="selection").to_csv(older, index=False)
    with pytest.raises(ValueError, match=r"older.csv lacks the column\(s\) \['selection'\]"):
        long_form.read(older)


def test_keys_are_columns_and_read_back_with_their_types(tmp_path):
    """Row keys of any scalar type, versions and booleans survive the file; an older runs.csv (keys
    inside cells) is refused with the command that rebuilds it."""
    registry, results = tree(tmp_path)
    registry.runs["coco-like/gap"].rows["table1_heads"] = {"head": "gap", "queries": None}
    registry.runs["coco-like/ml_decoder"].rows["table1_heads"] = {"head": "4", "queries": 4}
    registry.tables["hsvlt_ablation"] = ["coco-like/gap", "coco-like/ml_decoder"]
    registry.runs["coco-like/gap"].rows["hsvlt_ablation"] = {"ablation": "hamburger", "value": False}
    registry.runs["coco-like/ml_decoder"].rows["hsvlt_ablation"] = {"ablation": "num_scales", "value": 4}
    path = tmp_path / "runs.csv"
    long_form.write(long_form.collect(registry, results, long_form.Header("x", seeds=[0, 1])), path)
    frame = long_form.read(path).frame
    runs = frame[(frame["kind"] == "run") & (frame["metric"] == "mAP") & (frame["seed"] == 0)]
    assert [(t, long_form.row_key(row)) for t, row in zip(runs["table_id"], runs.to_dict("records"))] == [
        ("table1_heads", {"head": "gap", "queries": None}),
        ("hsvlt_ablation", {"ablation": "hamburger", "value": False}),
        ("table1_heads", {"head": "4", "queries": 4}),
        ("hsvlt_ablation", {"ablation": "num_scales", "value": 4})]
    assert runs["torch_version"].tolist() == ["2.x"] * 4 and runs["compared"].tolist() == [True] * 4
    assert frame.loc[frame["kind"] == "seed", "seed"].tolist() == [0, 1]
    from mld.engine.outputs import software_versions  # every version the engine records has its column

    assert set(software_versions()) | {"cuda", "gpu"} == set(long_form.VERSION_COLUMNS)
    text = path.read_text()
    assert "{" not in text.replace("{}", "") and ";" not in text, "no mapping or joined list in a cell"
    older = tmp_path / "older.csv"
    older.write_text("kind,run_id,seed,table_ids,metric,value,rows,versions\n")
    with pytest.raises(ValueError, match=r"older.csv was written by an older mld .* rebuild it from the run "
                                         r"outputs with `mld report --configfile CONFIG --results DIR`"):
        long_form.read(older)


def test_replicates_pair_runs_scored_on_the_same_images(tmp_path):
    registry, results = tree(tmp_path)
    replicates = long_form.collect(registry, results, long_form.Header("x")).replicates
    (gap, gap_digest), (decoder, decoder_digest) = (replicates[(r, 0, "mAP")]
                                                    for r in ("coco-like/gap", "coco-like/ml_decoder"))
    assert gap_digest == decoder_digest, "the same validation targets"
    assert gap.shape == (stats.BOOTSTRAP_REPLICATES,)
    # The replicates are the metric on the shared resamples of the 12 images.
    prediction = np.load(Path(paths.run_dir("coco-like/gap", 0, str(results))) / "predictions.npz")
    expected = stats.weighted_average_precision(prediction["scores"], prediction["targets"],
                                                stats.resample_weights(12))
    assert np.allclose(gap, expected.astype(np.float32))


def test_zsl_replicates_resample_the_images_zsl_scores(tmp_path):
    """The ZSL bootstrap uses the images the ZSL metric scores: those with an unseen positive."""
    zsl_scores = np.arange(12, dtype=np.float32).reshape(6, 2)
    zsl_targets = np.array([[1, 0], [0, 0], [0, 1], [-1, 0], [1, 1], [0, -1]], np.int8)
    np.savez(tmp_path / "predictions.npz", scores=np.zeros((6, 5), np.float32), targets=np.zeros((6, 5), np.int8),
             zsl_scores=zsl_scores, zsl_targets=zsl_targets)
    scores, targets = long_form._metric_arrays(tmp_path / "predictions.npz", "zero_shot", None)
    assert scores.tolist() == zsl_scores[[0, 2, 4]].tolist() and targets.tolist() == zsl_targets[[0, 2, 4]].tolist()


def test_reading_a_file_that_is_not_a_runs_csv_names_it(tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv lacks the column"):
        long_form.read(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        long_form.read(tmp_path / "nowhere.csv")
