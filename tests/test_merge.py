"""`mld merge`: results from several sites in one runs.csv, byte-for-byte tables from a split
reference, and the refusals (differing values, configs, modes) naming what differs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mld.report import history, merge
from mld.report import results as long_form

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "results" / "reference"
CONFIG = {"model": {"backbone": "test_resnet", "head": "gap"}, "train": {"epochs": 12, "lr": 0.001}}


def row(**values) -> dict:
    return {**{column: None for column in long_form.COLUMNS}, **values}


def write_site(path: Path, seeds: dict[int, float | None], config: dict = CONFIG, mode: str = "cached_features",
               commit: str = "abc") -> Path:
    """A runs.csv with one run (`coco-like/gap`: per seed its mAP, None = missing), its config and
    a header; with bootstrap replicates and a two-epoch history per finished seed."""
    rows, replicates, epochs = [], {}, []
    for seed, value in seeds.items():
        common = dict(kind="run", table_id="table1_heads", run_id="coco-like/gap", seed=seed, git_commit=commit,
                      row_head="gap", row_queries="null")
        if value is None:
            rows.append(row(**common, status="missing", reason="no metrics.json"))
            continue
        rows += [row(**common, metric="mAP", value=value, status="ok", mode=mode),
                 row(**common, metric="flops_g", value=0.5, status="ok", mode=mode)]
        replicates[("coco-like/gap", seed, "mAP")] = (np.full(4, value, dtype=np.float32), "digest")
        epochs += history.rows("coco-like/gap", seed, [{"epoch": 1, "train_loss": 2.0},
                                                       {"epoch": 2, "train_loss": 1.0}])
    rows += [row(kind="report", mode=mode, git_commit=commit)]
    rows += [row(kind="seed", seed=seed, git_commit=commit) for seed in seeds]
    rows += [row(kind="config", run_id="coco-like/gap", config_key=f"{block}.{key}",
                 config_value=long_form.scalar_text(value), git_commit=commit)
             for block, values in config.items() for key, value in values.items()]
    frame = long_form.normalise(pd.DataFrame(rows, dtype=object))
    long_form.write(long_form.Collected(frame, replicates, history.frame(epochs)), path)
    return path


def sites(tmp_path: Path, **seeds_per_site) -> list[merge.Source]:
    return [merge.Source(name, write_site(tmp_path / name / "runs.csv", seeds))
            for name, seeds in seeds_per_site.items()]


def test_split_by_seed_and_merged_rebuilds_the_reference_tables_byte_for_byte(tmp_path):
    reference = long_form.read(REFERENCE / "runs.csv")
    frame = reference.frame
    # Runs split by seed; the timings (their rounds numbered in `seed`) were all taken at cluster A.
    measured = frame["kind"] == long_form.KIND_MEASUREMENT
    for name, seeds in (("clusterA", [0]), ("clusterB", [1, 2])):
        keep = (~measured & (frame["seed"].isna() | frame["seed"].isin(seeds))) | (measured & (name == "clusterA"))
        part = frame[keep].reset_index(drop=True)
        long_form.write(long_form.Collected(part, {key: value for key, value in reference.replicates.items()
                                                   if key[1] in seeds}), tmp_path / name / "runs.csv")
    merged = tmp_path / "merged.csv"
    command = [sys.executable, "-m", "mld", "merge", str(tmp_path / "clusterA" / "runs.csv"), "--site",
               f"clusterB={tmp_path / 'clusterB' / 'runs.csv'}", "--out", str(merged)]
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    runs = frame.loc[frame["kind"] == long_form.KIND_RUN, "run_id"].nunique()  # each with seeds 0, 1, 2
    assert f"clusterA {runs}, clusterB {2 * runs}" in finished.stdout
    back = long_form.read(merged)
    assert set(back.frame["site"]) == {"clusterA", "clusterB"}
    assert set(back.replicates) == set(reference.replicates)
    rebuilt = subprocess.run([sys.executable, "-m", "mld", "report", "--from", str(merged), "--out",
                              str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (tmp_path / "out" / "tables.md").read_text() == (REFERENCE / "tables.md").read_text()
    assert (tmp_path / "out" / "tables" / "claims.csv").read_text() == (REFERENCE / "tables" / "claims.csv").read_text()


def test_equal_copies_are_kept_once_and_missing_seeds_yield_to_sites_that_ran_them(tmp_path):
    merged = merge.merge(sites(tmp_path, a={0: 60.0, 1: None}, b={0: 60.0, 1: 61.5, 2: 62.0}))
    runs = merged.frame[merged.frame["kind"] == "run"]
    assert list(zip(runs["seed"], runs["metric"], runs["site"])) == [
        (0, "mAP", "a"), (0, "flops_g", "a"), (1, "mAP", "b"), (1, "flops_g", "b"), (2, "mAP", "b"),
        (2, "flops_g", "b")]
    assert sorted(merged.replicates) == [("coco-like/gap", 0, "mAP"), ("coco-like/gap", 1, "mAP"),
                                         ("coco-like/gap", 2, "mAP")]
    assert sorted(set(zip(merged.history["seed"], merged.history["epoch"]))) == [(s, e) for s in (0, 1, 2)
                                                                                 for e in (1, 2)]
    assert len(merged.history) == 6, "seed 0's history kept once"
    assert merged.frame.loc[merged.frame["kind"] == "seed", "seed"].tolist() == [0, 1, 2]


def test_differing_values_stop_the_merge_naming_run_seed_and_metric_unless_a_site_is_preferred(tmp_path):
    inputs = sites(tmp_path, a={0: 60.0}, b={0: 60.25})
    with pytest.raises(merge.MergeConflict, match=r"run coco-like/gap seed 0 differs between a and b: "
                                                  r"mAP: 60 \(a\) vs 60.25 \(b\); pass --prefer SITE"):
        merge.merge(inputs)
    kept = merge.merge(inputs, prefer="b").frame
    assert kept.loc[(kept["kind"] == "run") & (kept["metric"] == "mAP"), "value"].tolist() == [60.25]
    with pytest.raises(ValueError, match=r"--prefer 'c' is not one of the sites \['a', 'b'\]"):
        merge.merge(inputs, prefer="c")


def test_a_run_id_with_different_configs_is_refused_naming_the_keys(tmp_path):
    other = {"model": {"backbone": "test_resnet", "head": "gap"}, "train": {"epochs": 24, "lr": 0.001,
                                                                           "warmup_epochs": 1}}
    inputs = [merge.Source("a", write_site(tmp_path / "a.csv", {0: 60.0})),
              merge.Source("b", write_site(tmp_path / "b.csv", {1: 61.0}, config=other))]
    with pytest.raises(merge.MergeConflict, match=r"run coco-like/gap has different configs at a and b: "
                                                  r"train.epochs: 12 \(a\) vs 24 \(b\); "
                                                  r"train.warmup_epochs: 'absent' \(a\) vs 1 \(b\)"):
        merge.merge(inputs)


def test_results_of_different_modes_are_refused(tmp_path):
    inputs = [merge.Source("a", write_site(tmp_path / "a.csv", {0: 60.0})),
              merge.Source("b", write_site(tmp_path / "b.csv", {1: 61.0}, mode="end_to_end"))]
    with pytest.raises(merge.MergeConflict, match=r"different modes: cached_features \(a\) vs end_to_end \(b\)"):
        merge.merge(inputs)


def test_site_names_come_from_the_file_or_its_folder_and_must_differ(tmp_path):
    assert [s.site for s in merge.sources(["x/clusterA/runs.csv", "y/june.csv"])] == ["clusterA", "june"]
    assert merge.sources(["a/runs.csv"], ["b=a/runs.csv"])[1] == merge.Source("b", Path("a/runs.csv"))
    with pytest.raises(ValueError, match=r"site name\(s\) \['results'\] given to more than one input"):
        merge.sources(["one/results/runs.csv", "two/results/runs.csv"])
    with pytest.raises(ValueError, match=r"--site 'clusterA': expected NAME=PATH"):
        merge.sources(["a/runs.csv"], ["clusterA"])


def test_the_command_prints_a_conflict_without_a_traceback(tmp_path):
    inputs = sites(tmp_path, a={0: 60.0}, b={0: 59.0})
    finished = subprocess.run([sys.executable, "-m", "mld", "merge", str(inputs[0].path), str(inputs[1].path),
                               "--out", str(tmp_path / "merged.csv")], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stderr.startswith("mld merge: error: run coco-like/gap seed 0 differs between a and b: mAP: 60 (a)")
    assert not (tmp_path / "merged.csv").exists()
