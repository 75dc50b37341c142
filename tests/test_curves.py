"""Training curves: the per-epoch history collected generically into runs.history.csv, read back
and merged, and drawn per table (loss above, validation metrics below, seeds overlaid)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mld import paths
from mld.report import curves, history, tables
from mld.report import results as long_form
from mld.experiments import Registry, Run

HISTORY = [  # what the engine writes: the selection metric of model and EMA on evaluated epochs
    {"epoch": 1, "train_loss": 40.0, "lr": 1e-4, "data_s": 0.5, "compute_s": 2.0, "time_s": 2.6, "mAP_model": 50.0},
    {"epoch": 2, "train_loss": 30.0, "lr": 2e-4, "data_s": 0.5, "compute_s": 2.0, "time_s": 2.6, "mAP_model": 55.0,
     "mAP_ema": 52.5, "note": "not a number", "flag": True},
]


def test_history_rows_take_every_numeric_per_epoch_key():
    rows = history.rows("coco-like/gap", 1, HISTORY)
    assert [(r["epoch"], r["quantity"], r["value"]) for r in rows if r["epoch"] == 2] == [
        (2, "train_loss", 30.0), (2, "lr", 2e-4), (2, "data_s", 0.5), (2, "compute_s", 2.0), (2, "time_s", 2.6),
        (2, "mAP_model", 55.0), (2, "mAP_ema", 52.5)]
    assert {r["seed"] for r in rows} == {1} and len(rows) == 13
    assert history.rows("coco-like/gap", 0, None) == []


def test_collect_writes_the_history_beside_runs_csv_and_reads_it_back(tmp_path):
    registry = Registry(config={})
    registry.runs["coco-like/gap"] = Run("coco-like/gap", {}, [0, 1],
                                         {"table1_heads": {"head": "gap", "queries": None}})
    registry.tables["table1_heads"] = ["coco-like/gap"]
    results = tmp_path / "results"
    seed_dir = Path(paths.run_dir("coco-like/gap", 0, str(results)))
    seed_dir.mkdir(parents=True)
    (seed_dir / "metrics.json").write_text(json.dumps({"final": {"mAP": 55.0}, "history": HISTORY}))
    collected = long_form.collect(registry, results, long_form.Header("unit test"))
    long_form.write(collected, tmp_path / "runs.csv")
    text = (tmp_path / "runs.history.csv").read_text().splitlines()
    assert text[0] == "run_id,seed,epoch,quantity,value" and "coco-like/gap,0,2,mAP_ema,52.5" in text
    back = long_form.read(tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(back.history, collected.history)
    assert long_form.configs(back.frame) == {"coco-like/gap": {}}


def test_a_bad_history_file_names_itself(tmp_path):
    path = tmp_path / "runs.history.csv"
    path.write_text("run,epoch\nx,1\n")
    with pytest.raises(ValueError,
                       match=r"runs.history.csv lacks the column\(s\) \['run_id', 'seed', 'quantity', 'value'\]"):
        history.read(path)


def table_with(runs: list[str]) -> tables.TableResult:
    observations = [tables.Observation(run, {"head": run, "queries": None}, ["seed0"], finished=["seed0"])
                    for run in runs]
    return tables.build_table(tables.unreported_spec("t", [o.key for o in observations]), observations)


def test_one_column_per_run_with_loss_above_and_metrics_below_seeds_overlaid():
    frame = history.frame(history.rows("a", 0, HISTORY) + history.rows("a", 1, HISTORY)
                          + history.rows("b", 0, [{"epoch": 1, "train_loss": 3.0, "top1_model": 70.0}]))
    figure = curves.curves_figure(table_with(["a", "b", "no-history"]), frame)
    loss_a, metric_a, loss_b, metric_b = figure.axes
    assert loss_a.get_title() == "a" and loss_b.get_title() == "b"
    assert len(loss_a.get_lines()) == 2 and loss_a.get_yscale() == "linear"     # train_loss x 2 seeds, 40 -> 30
    assert len(metric_a.get_lines()) == 4                                       # mAP_model, mAP_ema x 2 seeds
    assert [list(line.get_ydata()) for line in metric_b.get_lines()] == [[70.0]]  # any metric key is drawn
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["seed 0", "seed 1", "loss: train_loss", "validation: mAP_ema", "validation: mAP_model",
                      "validation: top1_model"]


def test_a_loss_spanning_a_decade_is_drawn_on_a_log_scale():
    falling = [{"epoch": epoch, "train_loss": 500.0 / epoch ** 2} for epoch in (1, 2, 3, 4)]
    figure = curves.curves_figure(table_with(["a"]), history.frame(history.rows("a", 0, falling)))
    assert figure.axes[0].get_yscale() == "log"


def test_tables_without_a_history_get_no_figure():
    assert curves.curve_figures([table_with(["a"])], history.empty()) == {}
