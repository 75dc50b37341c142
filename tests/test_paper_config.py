"""config/paper.yaml at toy scale, the way a user runs it: tiny datasets in the real release formats,
the paper's timm architectures loaded from local weight files, and a user config that is
`base: config/paper.yaml` plus overrides only (tests/toy_paper.py). Runs that together take every
end-to-end path the paper config takes are trained on CPU through Snakemake: every dataset
(single-label ImageNet, Open Images, Pascal VOC, ...), every backbone from its weights file, every
recipe, loss and head (GAP, transformer-decoder, ML-Decoder, HSVLT), both kinds of cost
measurement, and Table 2's transformer-decoder (the one run with a budget,
`experiments.extreme_feasibility`) ending "infeasible" over its budget; each table row beside the
paper's value for it. Head options (query and head types, query augmentations, Hamburger and
HSVLT's ablations, stacked layers) train here only where the tiny config, which trains them all on
cached features, lacks them. tests/test_workflow.py plans the whole paper DAG.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from mld.report import paper
from mld.data.adapters import read_cifar100, read_coco, read_nuswide, read_openimages, read_stanford_cars, read_voc
from mld.data.adapters.common import ArraySplit
from mld.data.overlap import check_no_shared_images
from mld.engine.costing import MEMORY_KEY  # cost.json: the memory estimate's result
from mld.experiments import Registry, build_registry, load_config
from test_paper_literals import REPORTED, reported_keys, reports_row
from test_workflow import SLURM_OVERRIDES, snakemake
from toy_paper import REPO, ToyPaper, cached_feature_head_paths, covering_measurements, end_to_end_runs, head_paths


def registry_of(config_file: Path) -> Registry:
    return build_registry(load_config(config_file, root=REPO))


def test_toy_config_is_the_paper_config_plus_overrides(toy_paper: ToyPaper) -> None:
    raw = yaml.safe_load(toy_paper.config_file.read_text())
    assert raw["base"] == str(REPO / "config" / "paper.yaml")
    config = load_config(toy_paper.config_file, root=REPO)
    assert config["mode"] == "end_to_end" and config["train"]["epochs"] == 1
    for role, spec in config["backbones"].items():
        if isinstance(spec, dict):
            assert Path(spec["weights"]).is_file() and "pretrained" not in raw["backbones"][role], role
    # `weights:` alone replaces the paper's hub weights in every run (no network on the nodes).
    for run_id, run in build_registry(config).runs.items():
        model = run.config["model"]
        assert Path(model["backbone_weights"]).is_file() and model["pretrained"] is False, run_id


def test_toy_datasets_read_with_the_configured_class_counts(toy_paper: ToyPaper) -> None:
    """The adapters read the toy files (the real formats) and find the class counts the config states;
    no evaluation image is a training image (`mld prepare` would refuse it)."""
    config = load_config(toy_paper.config_file, root=REPO)
    entries = {entry["role"]: entry for entry in build_registry(config).datasets.values()}
    readers = {"coco": lambda e: read_coco(e["root"]), "voc": lambda e: read_voc(e["root"]),
               "nuswide": lambda e: read_nuswide(e["root"], concepts_only=e["options"].get("concepts_only", False)),
               "cifar100": lambda e: read_cifar100(e["root"]),
               "stanford_cars": lambda e: read_stanford_cars(e["root"]),
               "openimages": lambda e: read_openimages(
                   **{key: e["options"][key] for key in ("class_descriptions", "train_labels", "val_labels",
                                                         "train_images", "val_images")},
                   classes=e["options"].get("classes"))}
    for role, entry in entries.items():
        if entry["source"] != "adapter":
            continue
        dataset = readers[entry["adapter"]](entry)
        assert len(dataset.class_names) == config["datasets"][role]["num_classes"], role
        assert all(split.labels.shape[0] > 0 for split in dataset.splits.values()), role
        check_no_shared_images({split: content.images if isinstance(content, ArraySplit) else content.paths
                                for split, content in dataset.splits.items()}, role)


def test_every_head_option_of_the_paper_trains_on_cached_features_or_from_images(toy_paper: ToyPaper) -> None:
    """Head options switch the same code whether the head is fed images or cached features: the
    tiny config (tests/test_workflow.py runs it whole) trains them on cached features, the toy
    paper config from images only the ones it lacks. Together they take every option the paper
    config asks for: a change that drops one fails here."""
    registry = registry_of(toy_paper.config_file)
    trained = cached_feature_head_paths() | {path for run_id in end_to_end_runs(registry)
                                             for path in head_paths(registry, registry.runs[run_id])}
    assert {path for run in registry.runs.values() for path in head_paths(registry, run)} <= trained
    for path in ("multilabel/gap", "multilabel/transformer_decoder", "multilabel/transformer_decoder/stacked_layers",
                 "multilabel/hsvlt/hamburger=True", "multilabel/hsvlt/hamburger=False",
                 "multilabel/hsvlt/interaction=cross_attention", "multilabel/hsvlt/fewer_scales",
                 "single_label/gap", "single_label/ml_decoder/full", "single_label/ml_decoder/group",
                 "zero_shot/ml_decoder/full/query_noise=True", "zero_shot/ml_decoder/full/random_queries=True",
                 "zero_shot/ml_decoder/full/query_noise=False", "zero_shot/ml_decoder/full/random_queries=False"):
        assert path in trained, path
    for query_type in ("learnable", "nlp", "fixed_random"):
        assert f"multilabel/ml_decoder/full/query_type={query_type}" in trained, query_type
    for head_type in ("learnable", "shared", "nlp"):
        assert f"zero_shot/ml_decoder/group/head_type={head_type}" in trained, head_type


# ---------------------------------------------------------------- end to end (minutes)


def write_tables(workdir: Path, config_file: Path) -> None:
    """`mld report` over the results there (the workflow's report rule would first train every run)."""
    command = [sys.executable, "-m", "mld", "report", "--configfile", str(config_file), "--results", "results",
               "--out", "results"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def paper_results(toy_paper: ToyPaper, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The toy paper config through Snakemake on 2 cores, for runs that together take every
    end-to-end path of the paper DAG (each dataset, backbone weights, recipe, loss, resolution and
    head) and the head options the tiny config does not train on cached features
    (toy_paper.end_to_end_runs: 14 of its 53 runs), and one measurement of each kind; then the
    tables. Checkpoints are removed at the end (gigabytes)."""
    workdir = tmp_path_factory.mktemp("toy-paper-local")
    registry = registry_of(toy_paper.config_file)
    targets = [f"results/runs/{run_id}/seed{seed}/metrics.json" for run_id in end_to_end_runs(registry)
               for seed in registry.runs[run_id].seeds]
    targets += [registry.measurements[m]["path"] for m in covering_measurements(registry)]
    start = time.monotonic()
    result = snakemake("--cores", "2", "--keep-going", *targets, "--configfile", toy_paper.config_file,
                       workdir=workdir, timeout=1800)
    print(f"\ntoy paper config, {len(targets)} targets, local, 2 cores: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-8000:]
    write_tables(workdir, toy_paper.config_file)
    yield workdir
    for checkpoint in (workdir / "results" / "runs").rglob("*.pt"):
        checkpoint.unlink()


def table_rows(workdir: Path, table_id: str) -> list[dict[str, str]]:
    with open(workdir / "results" / "tables" / f"{table_id}.csv", newline="") as table:
        return list(csv.DictReader(table))


def extreme_transformer_decoder(registry: Registry) -> str:
    (run_id,) = [run_id for run_id in registry.tables["table2_extreme"]
                 if run_id in registry.runs and registry.runs[run_id].config["model"]["head"] == "transformer_decoder"]
    return run_id


@pytest.mark.slow
def test_every_end_to_end_path_of_the_paper_trains_with_the_memory_estimate(toy_paper: ToyPaper,
                                                                             paper_results: Path) -> None:
    registry = registry_of(toy_paper.config_file)
    heads, tasks, backbones = set(), set(), set()
    for run_id in end_to_end_runs(registry):
        run = registry.runs[run_id]
        for seed in run.seeds:
            folder = paper_results / "results" / "runs" / run_id / f"seed{seed}"
            metrics = json.loads((folder / "metrics.json").read_text())
            assert metrics["mode"] == "end_to_end" and not metrics.get("infeasible"), run_id
            assert json.loads((folder / "cost.json").read_text())[MEMORY_KEY] > 0, run_id
        heads.add(run.config["model"]["head"])
        tasks.add(run.config["task"])
        backbones.add(run.config["model"]["backbone_weights"])
    # What the paper config asks for, so what just ran: a change that drops a path fails here.
    assert heads == {"gap", "transformer_decoder", "ml_decoder", "hsvlt"}
    assert tasks == {"multilabel", "zero_shot", "single_label"}
    assert backbones == {str(path) for path in (toy_paper.config_file.parent / "weights").glob("*.pt")}
    for measurement_id in covering_measurements(registry):
        assert json.loads((paper_results / registry.measurements[measurement_id]["path"]).read_text())


def check_paper_cells(table_id: str, row: dict[str, str]) -> None:
    """A reproduced row of a table CSV beside the paper's: the paper's values (REPORTED, typed in
    from the papers) where it is a reported row (its key columns are the paper's), none elsewhere."""
    cells = {column.removesuffix(" paper"): value for column, value in row.items() if column.endswith(" paper")}
    expected: dict[str, float | None] = {}
    if table_id in REPORTED:
        typed = {tuple("" if value is None else str(value) for value in key): values
                 for key, values in REPORTED[table_id].items()}
        expected = typed.get(tuple(row[column] for column in paper.table_spec(table_id)["key"]), {})
    where = f"{table_id} row of run {row['run']}"
    assert row["reported"] == str(bool(expected)), f"{where}: reported {row['reported']}; the paper's: {expected}"
    for metric, value in cells.items():
        reported = expected.get(metric)
        assert (value == "") if reported is None else (float(value) == reported), (
            f"{where}, cell {metric}: paper column {value!r}; the paper reports {reported!r}")


@pytest.mark.slow
def test_every_table_is_produced(toy_paper: ToyPaper, paper_results: Path) -> None:
    """Each run trained fills its rows of every table it belongs to, finished ("ok") and beside
    the paper's value for that row, if the paper reports one."""
    registry = registry_of(toy_paper.config_file)
    markdown = (paper_results / "results" / "tables.md").read_text()
    for run_id in end_to_end_runs(registry):
        for table_id, run_row in registry.runs[run_id].rows.items():
            assert table_id in markdown, table_id
            rows = [row for row in table_rows(paper_results, table_id) if row["run"] == run_id]
            assert rows and all(row["status"] == "ok" for row in rows), (table_id, run_id, rows)
            for row in rows:
                check_paper_cells(table_id, row)
            # A row with the paper's key pairs with it; one the papers give no number for pairs with
            # none; one with a toy size (K, the resolution) may pair by rank ("run row" names it).
            paired = bool(reported_keys(table_id, run_row))
            if paired or not reports_row(table_id, run_row):
                assert all(row["reported"] == str(paired) for row in rows), (
                    f"{table_id}: run {run_id} (row {run_row}) should {'' if paired else 'not '}pair with a "
                    f"reported row: {[(row['reported'], row['run row']) for row in rows]}")


@pytest.mark.slow
def test_a_run_over_its_memory_budget_is_an_infeasible_row(toy_paper: ToyPaper, paper_results: Path) -> None:
    """Table 2's transformer-decoder under a budget no model meets: the run ends "infeasible" with
    the measured memory (no failed job), and the table says so."""
    registry = registry_of(toy_paper.config_file)
    run_id = extreme_transformer_decoder(registry)
    tight = toy_paper.variant("tight-memory", {"experiments": {"extreme_feasibility": {"max_memory_gb": 1.0e-4}}})
    target = f"results/runs/{run_id}/seed0/metrics.json"
    result = snakemake("--cores", "1", target, "--configfile", tight, workdir=paper_results, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    metrics = json.loads((paper_results / target).read_text())
    assert metrics["infeasible"] is True and "max_memory_gb" in metrics["reason"], metrics
    assert metrics["cost"][MEMORY_KEY] > 1.0e-4
    write_tables(paper_results, toy_paper.config_file)
    (row,) = [row for row in table_rows(paper_results, "table2_extreme") if row["run"] == run_id]
    assert row["status"].startswith("infeasible") and "max_memory_gb" in row["status"], row


# ---------------------------------------------------------------- Slurm


@pytest.mark.slow
@pytest.mark.slurm
def test_a_paper_target_through_slurm(slurm_cluster: None, toy_paper: ToyPaper, tmp_path: Path) -> None:
    """One named target of the toy paper config (Table 11: prepare VOC, train TResNet-L) through
    the single-node Slurm cluster with the repository's slurm profile."""
    registry = registry_of(toy_paper.config_file)
    run_ids, _ = registry.table_members("table11_voc")
    start = time.monotonic()
    result = snakemake("voc", "--cores", "2", "--profile", "slurm", "--configfile", toy_paper.config_file,
                       *SLURM_OVERRIDES, workdir=tmp_path, timeout=1200)
    print(f"\ntoy paper target voc through Slurm: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:]
    assert "has been submitted with SLURM jobid" in result.stdout
    for run_id in run_ids:
        metrics = json.loads((tmp_path / "results" / "runs" / run_id / "seed0" / "metrics.json").read_text())
        assert metrics["mode"] == "end_to_end" and 0 <= metrics["final"]["mAP"] <= 100, run_id
