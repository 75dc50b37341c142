"""The results tables: summaries over seeds, pairing with the paper's rows, missing and infeasible
runs, measurements, effects on synthetic data, claim verdicts, markdown/CSV output and the
`mld report` command (from a results tree, and from a runs.csv alone, byte for byte)."""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mld import experiments, paths
from mld.report import claims, paper, tables
from mld.report import markdown as md
from mld.report import results as long_form
from mld.experiments import Registry, Run

REPO = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 2]
# Per run: its rows, then per seed its mAP (None: no outputs for that seed).
TABLE1_RUNS = {
    "coco-like/gap": ({"head": "gap", "queries": None}, [60.0, 61.0, 62.5]),
    "coco-like/transformer_decoder": ({"head": "transformer_decoder", "queries": 20}, [70.0, 71.0, 70.5]),
    "coco-like/ml_decoder-k5": ({"head": "ml_decoder", "queries": 5}, [None, None, None]),
    "coco-like/ml_decoder-k20": ({"head": "ml_decoder", "queries": 20}, [70.2, 70.9, None]),
}
FLOPS = {"gap": 1.0, "transformer_decoder": 1.4, "ml_decoder": 1.2}
INFEASIBLE_REASON = "needs 61.2 GFLOPs at batch 1, over train.feasibility.max_gflops 10"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_seed(results: Path, run_id: str, seed: int, final: dict, flops: float) -> None:
    seed_dir = Path(paths.run_dir(run_id, seed, str(results)))
    write_json(seed_dir / "metrics.json", {"run_id": run_id, "seed": seed, "mode": "cached_features",
                                           "versions": {"torch": "2.14.1", "platform": "test-machine"},
                                           "final": final})
    write_json(seed_dir / "cost.json", {"flops_g": flops, "params_m": 0.5})


def make_results(results: Path, table1_runs: dict = TABLE1_RUNS) -> Registry:
    """A results tree and its registry: Table 1 (a missing and a partial run), Table 2 (an
    infeasible run), Table 6 (one zero-shot run, two rows) and the module timing measurements."""
    registry = Registry(config={})

    def add_run(run_id: str, table_id: str, row: dict) -> None:
        registry.runs[run_id] = Run(run_id, {}, list(SEEDS), {table_id: row})
        registry.tables.setdefault(table_id, []).append(run_id)

    for run_id, (row, maps) in table1_runs.items():
        add_run(run_id, "table1_heads", row)
        for seed, value in zip(SEEDS, maps):
            if value is not None:
                write_seed(results, run_id, seed, {"mAP": value}, FLOPS[row["head"]])

    add_run("oi-like/gap", "table2_extreme", {"head": "gap", "queries": None})
    add_run("oi-like/transformer_decoder", "table2_extreme", {"head": "transformer_decoder", "queries": 500})
    for seed in SEEDS:
        write_seed(results, "oi-like/gap", seed, {"mAP": 50.0 + seed}, 1.0)
        write_json(Path(paths.run_dir("oi-like/transformer_decoder", seed, str(results))) / "metrics.json",
                   {"infeasible": True, "reason": INFEASIBLE_REASON, "cost": {"flops_g": 61.2}})

    add_run("nus-like/ml_decoder", "table6_zsl", {"method": "ml_decoder"})
    for seed in SEEDS:
        sections = {task: {"mAP": 20.0 + seed + offset, "F1@3": 30.0, "F1@5": 25.0}
                    for task, offset in (("zsl", 0.0), ("gzsl", -10.0))}
        write_seed(results, "nus-like/ml_decoder", seed, {"mAP": 20.0 + seed, **sections}, 1.0)

    for classes, scale in ((10, 1.0), (400, 50.0)):
        measurement_id = f"module_timing/transformer_decoder-n{classes}"
        registry.measurements[measurement_id] = {
            "kind": "module_timing", "rows": {"module_timing": {"head": "transformer_decoder", "classes": classes}}}
        registry.tables.setdefault("module_timing", []).append(measurement_id)
        write_json(Path(paths.measurement_path(measurement_id, str(results))),
                   {"device": "cpu", "amp": False,
                    "time_ms": {"self_attention": 2.0 * scale, "cross_attention": 1.0 * scale, "mlp": 1.5}})
    return registry


REPORTED = ["table1_heads", "table2_extreme", "table6_zsl", "module_timing", "table14_transfer"]
HEADER = md.header_fields("config/x.yaml", "unit-test label", "cached_features", SEEDS)


def build(registry: Registry, results: Path) -> list[tables.TableResult]:
    return tables.build_tables(long_form.collect(registry, results, HEADER), REPORTED)


@pytest.fixture
def built(tmp_path: Path) -> dict[str, tables.TableResult]:
    registry = make_results(tmp_path)
    return {t.spec.table_id: t for t in build(registry, tmp_path)}


def row_of(table: tables.TableResult, run_id: str) -> pd.Series:
    matches = table.frame[table.frame["run"] == run_id]
    assert len(matches) == 1, matches
    return matches.iloc[0]


def values(results) -> tuple[tables.TableValues, tables.TableValues]:
    results = list(results)
    return tables.TableValues(results, "paper"), tables.TableValues(results, "reproduced")


def test_mean_std_n_and_difference_over_seeds(built):
    table = built["table1_heads"]
    gap = row_of(table, "coco-like/gap")
    maps = TABLE1_RUNS["coco-like/gap"][1]
    reported = paper.paper_table("table1_heads").set_index("head").loc["gap", "mAP"]
    assert gap["mAP mean"] == pytest.approx(statistics.mean(maps))
    assert gap["mAP std"] == pytest.approx(statistics.stdev(maps))
    assert gap["mAP n"] == len(maps)
    assert gap["mAP paper"] == reported
    assert gap["mAP diff"] == pytest.approx(statistics.mean(maps) - reported)
    assert gap["flops_g mean"] == pytest.approx(FLOPS["gap"]) and gap["flops_g std"] == 0


def test_counts_are_paired_by_rank_with_the_papers_rows(built):
    frame = built["table1_heads"].frame
    reported_queries = sorted(paper.paper_table("table1_heads").query("head == 'ml_decoder'")["queries"])
    decoders = frame[frame["head"] == "ml_decoder"].set_index("run")
    # The smallest K of the run sits beside the paper's smallest K, the largest beside the largest.
    assert decoders.loc["coco-like/ml_decoder-k5", "queries"] == reported_queries[0]
    assert decoders.loc["coco-like/ml_decoder-k20", "queries"] == reported_queries[-1]
    assert decoders.loc["coco-like/ml_decoder-k20", "run row"] == "queries=20"
    assert frame["reported"].all(), "every run found its reported row"


def test_exact_key_match_when_the_counts_of_rows_differ():
    spec = tables.TableSpec("t", "t", "s", ("head", "queries"), ("mAP",),
                            pd.DataFrame([{"head": "a", "queries": 1, "mAP": 1.0},
                                          {"head": "a", "queries": 2, "mAP": 2.0}]))
    only = tables.Observation("run-2", {"head": "a", "queries": 2}, ["seed0"])
    other = tables.Observation("run-7", {"head": "a", "queries": 7}, ["seed0"])
    pairs = tables.pair_rows(spec, [only])
    assert [(row["queries"], obs and obs.origin) for row, obs in pairs] == [(1, None), (2, "run-2")]
    pairs = tables.pair_rows(spec, [only, tables.Observation("run-1", {"head": "a", "queries": 1}, []), other])
    assert pairs[-1] == (None, other), "a run matching no reported row is kept as its own row"


def test_two_runs_with_one_row_is_an_error():
    spec = tables.TableSpec("t", "t", "s", ("head",), ("mAP",), pd.DataFrame(columns=["head", "mAP"]))
    runs = [tables.Observation(name, {"head": "gap"}, []) for name in ("run-a", "run-b")]
    with pytest.raises(ValueError, match="run-a and run-b"):
        tables.pair_rows(spec, runs)


def test_missing_and_partial_runs_are_reported(built):
    table = built["table1_heads"]
    missing = row_of(table, "coco-like/ml_decoder-k5")
    assert missing["status"].startswith(tables.STATUS_MISSING) and missing["mAP n"] == 0
    assert math.isnan(missing["mAP mean"])
    partial = row_of(table, "coco-like/ml_decoder-k20")
    assert partial["status"] == "partial: seed2 missing" and partial["mAP n"] == 2
    section = md.render_section(table, claims.evaluate_claims([], *values(built.values())))
    assert "Missing runs: `coco-like/ml_decoder-k5`" in section
    assert "Runs with missing seeds: `coco-like/ml_decoder-k20` (seed2 missing)" in section


def test_infeasible_run_shows_its_measured_cost(built):
    table = built["table2_extreme"]
    decoder = row_of(table, "oi-like/transformer_decoder")
    assert decoder["status"].startswith(tables.STATUS_INFEASIBLE) and INFEASIBLE_REASON in decoder["status"]
    assert decoder["flops_g mean"] == pytest.approx(61.2) and decoder["mAP n"] == 0
    markdown = md.render_table(table)
    line = next(line for line in markdown.splitlines() if "oi-like/transformer_decoder" in line)
    assert "| infeasible |" in line and "flops_g=61.20" in line
    assert tables.TableValues([table], "reproduced").infeasible("table2_extreme", head="transformer_decoder")
    assert not tables.TableValues([table], "reproduced").infeasible("table2_extreme", head="gap")


def test_the_official_selection_is_shown_beside_the_papers_value_and_the_final_one(tmp_path):
    registry = make_results(tmp_path)
    best_maps = [61.0, 62.0, 63.5]  # the gap run's best evaluated epochs, above its final values
    for seed, (final, best) in enumerate(zip(TABLE1_RUNS["coco-like/gap"][1], best_maps)):
        metrics_path = Path(paths.run_dir("coco-like/gap", seed, str(tmp_path))) / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        metrics["best_epoch"] = {"epoch": 2, "mAP": best, "mAP_model": best, "selected": "model", "selected_by": "mAP"}
        write_json(metrics_path, metrics)
    built = {t.spec.table_id: t for t in build(registry, tmp_path)}
    table = built["table1_heads"]
    gap = row_of(table, "coco-like/gap")
    assert gap["mAP best epoch mean"] == pytest.approx(statistics.mean(best_maps)) and gap["mAP best epoch n"] == 3
    assert gap["mAP mean"] == pytest.approx(statistics.mean(TABLE1_RUNS["coco-like/gap"][1]))  # final: as before
    assert gap["mAP diff"] == pytest.approx(gap["mAP mean"] - gap["mAP paper"])
    assert row_of(table, "coco-like/transformer_decoder")["mAP best epoch n"] == 0
    lines = md.render_table(table).splitlines()
    assert "| mAP paper | mAP best epoch | mAP reproduced | mAP diff |" in lines[0]
    assert "flops_g best epoch" not in lines[0]  # costs do not depend on the selection
    cells = next(line for line in lines if "`coco-like/gap`" in line).split(" | ")
    best_cell = f"{statistics.mean(best_maps):.2f} ± {statistics.stdev(best_maps):.2f} (n=3)"
    assert cells[cells.index(best_cell) - 1] == f"{gap['mAP paper']:g}"  # beside the paper's value
    assert cells[cells.index(best_cell) + 1].startswith(f"{gap['mAP mean']:.2f} ± ")  # the final one beside it
    assert "| mAP best epoch |" not in md.render_table(built["table2_extreme"])  # no run recorded one
    section = md.render_section(table, claims.evaluate_claims([], *values(built.values())))
    assert md.BEST_EPOCH_TEXT in section


def test_zero_shot_run_gives_a_zsl_and_a_gzsl_row(built):
    frame = built["table6_zsl"].frame
    ours = frame[frame["run"] == "nus-like/ml_decoder"].set_index("task")
    assert set(ours.index) == {"zsl", "gzsl"}
    assert ours.loc["zsl", "mAP mean"] == pytest.approx(21.0)
    assert ours.loc["gzsl", "mAP mean"] == pytest.approx(11.0)
    reported = paper.paper_table("table6_zsl").set_index(["method", "task"]).loc[("ml_decoder", "gzsl"), "mAP"]
    assert ours.loc["gzsl", "mAP diff"] == pytest.approx(11.0 - reported)


def test_module_timing_measurement_gives_one_row_per_module(built):
    frame = built["module_timing"].frame
    measured = frame[frame["run"].notna()]
    assert len(measured) == 6 and set(measured["module"]) == {"self_attention", "cross_attention", "mlp"}
    largest = measured[(measured["run"] == "module_timing/transformer_decoder-n400")].set_index("module")
    assert largest.loc["self_attention", "time_ms mean"] == pytest.approx(100.0)
    # 10 and 400 classes pair with the paper's smallest and largest class counts.
    assert largest["classes"].nunique() == 1 and largest["classes"].iloc[0] == paper.paper_table(
        "module_timing")["classes"].max()
    assert built["module_timing"].environments == ["device cpu, amp False"]


@pytest.mark.parametrize("gap_maps, verdict", [([60.0, 61.0, 62.5], claims.HOLDS),
                                                ([69.8, 70.6, 70.1], claims.FAILS)])
def test_claim_verdicts_follow_the_reproduced_values(tmp_path, gap_maps, verdict):
    runs = {**TABLE1_RUNS, "coco-like/gap": ({"head": "gap", "queries": None}, gap_maps)}
    built = build(make_results(tmp_path, runs), tmp_path)
    frame = claims.evaluate_claims(paper.claims(), *values(built)).set_index("claim")
    beat = frame.loc["attention_heads_beat_gap"]
    # +9.5 +- 1.5 is a gain of more than 1; +0.25 +- 0.1 (2 common seeds) excludes the paper's +1.1.
    assert beat["reproduced verdict"] == verdict
    assert "ML-Decoder K=20" in beat["reproduced evidence"], "evidence names the run's own K, not the paper's"
    assert "paper's effect +1.10" in beat["reproduced evidence"]
    assert beat["reproduced margin"] > 0
    assert beat["paper verdict"] == claims.HOLDS, "the paper's own numbers support its claim"
    # transformer-decoder vs ML-Decoder K=20 on seeds 0 and 1: -0.05 +- 0.29, inside the bound 0.4.
    assert frame.loc["self_attention_redundant", "reproduced verdict"] == claims.HOLDS
    assert frame.loc["group_decoding_small_cost", "reproduced verdict"] == claims.UNDETERMINED
    assert "missing" in frame.loc["group_decoding_small_cost", "reproduced evidence"]
    assert frame.loc["extreme_classification_scales", "reproduced verdict"] == claims.UNDETERMINED


def test_a_claim_without_a_check_is_not_checked(built):
    claim = {"id": "no_such_check", "table": "table1_heads", "text": "something"}
    frame = claims.evaluate_claims([claim], *values(built.values()))
    assert list(frame["reproduced verdict"]) == [claims.NOT_CHECKED]
    assert list(frame["paper verdict"]) == [claims.NOT_CHECKED]
    assert set(claims.checked_claim_ids()) >= {c["id"] for c in paper.claims()}, "every paper claim has a check"


def test_markdown_and_csv(built, tmp_path):
    results = list(built.values())
    claim_frame = claims.evaluate_claims(paper.claims(), *values(results))
    header = md.ReportHeader(config="config/x.yaml", label="unit-test label", mode="cached_features",
                                 seeds=SEEDS, datasets=["coco-like, synthetic, standing for MS-COCO"],
                                 backbones=["`medium`: test_resnet"], synthetic=True)
    markdown = md.render_markdown(results, claim_frame, header)
    assert markdown.startswith("# Reproduced results: unit-test label")
    assert "`config/x.yaml`" in markdown and "synthetic stand-ins" in markdown
    assert "cached features" in markdown and "torch 2.14.1, platform test-machine" in markdown
    assert claims.NOISE_DEFINITION in markdown
    gap = row_of(built["table1_heads"], "coco-like/gap")
    cell = f"{gap['mAP mean']:.2f} ± {gap['mAP std']:.2f} (n=3)"
    assert cell in markdown and f"{gap['mAP diff']:+.2f}" in markdown
    for claim in paper.claims():
        assert f"`{claim['id']}`" in markdown, "every claim is listed, checked or not"

    path = tmp_path / "table1.csv"
    path.write_text(built["table1_heads"].frame.to_csv(index=False))
    back = pd.read_csv(path)
    assert list(back.columns) == list(built["table1_heads"].frame.columns)
    assert back.loc[back["run"] == "coco-like/gap", "mAP n"].item() == 3


def test_bad_json_names_the_file(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        long_form.read_json(bad)


def test_command_writes_every_output_without_torch(tmp_path):
    """`mld report` on the tiny test config, with a few runs finished: every file, no torch import."""
    registry = experiments.build_registry(experiments.load_config(REPO / "config/test.yaml", root=REPO))
    results = tmp_path / "results"
    run_ids, _ = registry.table_members("figure5")
    for index, run_id in enumerate(run_ids):
        for seed in registry.runs[run_id].seeds:
            write_seed(results, run_id, seed, {"mAP": 50.0 + index}, 0.1 * (index + 1))
    out = tmp_path / "out"
    script = ("import sys, argparse; from mld.commands import report; p = argparse.ArgumentParser(); "
              "report.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); code = a.func(a); "
              "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    command = [sys.executable, "-c", script, "report", "--configfile", "config/test.yaml", "--results", str(results),
               "--out-md", str(out / "tables.md"), "--out-csv", str(out / "tables"), "--out-fig", str(out / "figures")]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    markdown = (out / "tables.md").read_text()
    assert "tiny test config" in markdown
    assert {p.stem for p in (out / "tables").glob("*.csv")} >= set(paper.table_ids()) | {"claims"}
    assert (out / "figures" / "map_vs_flops.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (out / "figures" / "map_vs_flops.svg").read_text().lstrip().startswith("<?xml")
    assert not list(out.rglob(".*.tmp")), "no temporary files left behind"
    # runs.csv beside tables.md, and from it alone the same files, byte for byte.
    assert (out / "runs.csv").is_file() and (out / "runs.bootstrap.npz").is_file()
    again = tmp_path / "again"
    rebuilt = subprocess.run([sys.executable, "-c", script, "report", "--from", str(out / "runs.csv"), "--out",
                              str(again)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (again / "tables.md").read_bytes() == (out / "tables.md").read_bytes()
    for csv in (out / "tables").glob("*.csv"):
        assert (again / "tables" / csv.name).read_bytes() == csv.read_bytes(), csv.name
    for figure in ("map_vs_flops.svg", "claims.svg"):
        assert (again / "figures" / figure).read_bytes() == (out / "figures" / figure).read_bytes(), figure


FIXTURE = REPO / "tests" / "data" / "tiny_results"
REFERENCE = REPO / "results" / "reference"


@pytest.mark.parametrize("folder", [FIXTURE, REFERENCE], ids=["tiny fixture", "committed reference"])
def test_from_a_committed_runs_csv_rebuilds_its_tables_md_byte_for_byte(folder, tmp_path):
    """The committed tables.md is a view of the committed runs.csv (regenerate both together:
    `mld report --configfile ... --results ... --out FOLDER`)."""
    assert (folder / "runs.csv").is_file(), f"{folder} has no runs.csv: regenerate it with its tables.md"
    finished = subprocess.run([sys.executable, "-m", "mld", "report", "--from", str(folder / "runs.csv"), "--out",
                               str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "tables.md").read_text() == (folder / "tables.md").read_text()


def on_synthetic_data(registry: Registry) -> Registry:
    """The registry with its Table 1 runs on a synthetic dataset: Table 1 then shows effects."""
    registry.datasets["coco-like"] = {"name": "coco-like", "role": "coco", "source": "synthetic",
                                      "preset": "coco-like", "image_size": 64, "path": "results/data/coco-like"}
    for run_id in TABLE1_RUNS:
        registry.runs[run_id].config = {"dataset": {"path": "results/data/coco-like"}, "task": "multilabel",
                                        "model": {"backbone": "test_resnet"}}
        registry.runs[run_id].dataset = "coco-like"
    return registry


def synthetic_registry(tmp_path: Path) -> Registry:
    """make_results with its COCO-like runs on a synthetic dataset."""
    return on_synthetic_data(make_results(tmp_path))


def test_synthetic_tables_show_effects_against_the_baseline_beside_the_papers(tmp_path):
    built = {t.spec.table_id: t for t in build(synthetic_registry(tmp_path), tmp_path)}
    table = built["table1_heads"]
    assert table.layout == tables.LAYOUT_EFFECTS
    decoder = row_of(table, "coco-like/transformer_decoder")
    gap_maps, decoder_maps = TABLE1_RUNS["coco-like/gap"][1], TABLE1_RUNS["coco-like/transformer_decoder"][1]
    differences = [d - g for d, g in zip(decoder_maps, gap_maps)]
    assert decoder["mAP effect"] == pytest.approx(statistics.mean(differences))
    assert decoder["mAP effect margin"] == pytest.approx(1.959964 * statistics.stdev(differences) / math.sqrt(3),
                                                         rel=1e-5)
    reported = paper.paper_table("table1_heads").set_index("head")
    assert decoder["mAP paper effect"] == pytest.approx(reported.loc["transformer_decoder", "mAP"]
                                                        - reported.loc["gap", "mAP"])
    assert decoder["flops_g effect"] == pytest.approx(FLOPS["transformer_decoder"] / FLOPS["gap"])
    assert math.isnan(decoder["mAP diff"]), "no difference against the paper's absolute value on synthetic data"
    markdown = md.render_table(table)
    assert "mAP paper effect" in markdown and "mAP diff" not in markdown
    line = next(line for line in markdown.splitlines() if "coco-like/transformer_decoder" in line)
    assert f"{decoder['mAP effect']:+.2f} ± {decoder['mAP effect margin']:.2f}" in line and "×1.4" in line
    assert "| baseline |" in next(line for line in markdown.splitlines() if "`coco-like/gap`" in line)
    section = md.render_section(table, claims.evaluate_claims([], *values(built.values())))
    assert "coco-like" in section and "effect against the baseline row (head gap)" in section
    # Real data (Table 2's runs name no synthetic dataset) keeps the absolute comparison.
    assert built["table2_extreme"].layout == tables.LAYOUT_ABSOLUTE


def test_a_table_the_suite_cannot_produce_says_so():
    spec = dataclasses.replace(tables.reported_spec("table14_transfer"), not_reproduced="no adapter reads its data")
    table = tables.build_table(spec, [])
    assert set(table.frame["status"]) == {tables.STATUS_NOT_REPRODUCED}
    section = md.render_section(table, pd.DataFrame(columns=["table"]))
    assert "Not reproduced: no adapter reads its data." in section
    assert "no outputs yet" not in section


def test_float_noise_is_no_spread():
    mean, std, n = tables.summarise([0.021, 0.021 + 4e-18, 0.021])
    assert (mean, std, n) == (pytest.approx(0.021), 0.0, 3)
    assert tables.summarise([1.0, 2.0])[1] == pytest.approx(math.sqrt(0.5))


def test_a_run_in_several_tables_says_so(tmp_path):
    registry = make_results(tmp_path)
    registry.runs["coco-like/gap"].rows["figure5"] = {"backbone": "tresnet_m", "head": "gap"}
    registry.tables.setdefault("figure5", []).append("coco-like/gap")
    built = {t.spec.table_id: t for t in tables.build_tables(
        long_form.collect(registry, tmp_path, HEADER), [*REPORTED, "figure5"])}
    line = next(line for line in md.render_table(built["table1_heads"]).splitlines() if "`coco-like/gap`" in line)
    assert "the same run is in figure5" in line


def test_the_paper_configs_open_images_rows_join_the_papers_9600(tmp_path):
    """config/paper.yaml trains Open Images' 9,605 trainable classes, the paper's "9600": Table 2's
    transformer-decoder row has the paper's key on both sides, and the data note says why."""
    registry = experiments.build_registry(experiments.load_config(REPO / "config" / "paper.yaml", root=REPO))
    decoder_id = next(r for r in registry.table_members("table2_extreme")[0] if "transformer_decoder" in r)
    assert registry.runs[decoder_id].settings["queries"] == 9605  # it trains one query per class of the data
    for run_id in registry.table_members("table2_extreme")[0]:
        for seed in registry.runs[run_id].seeds:
            if run_id == decoder_id:
                write_json(Path(paths.run_dir(run_id, seed, str(tmp_path))) / "metrics.json",
                           {"infeasible": True, "reason": INFEASIBLE_REASON, "cost": {"flops_g": 178.0}})
            else:
                write_seed(tmp_path, run_id, seed, {"mAP": 86.0 + seed}, 6.0)
    table = {t.spec.table_id: t for t in tables.build_tables(
        long_form.collect(registry, tmp_path, HEADER), ["table2_extreme"])}["table2_extreme"]
    decoder = row_of(table, decoder_id)
    assert decoder["queries"] == 9600 and decoder["reported"]
    assert pd.isna(decoder["run row"]), "the run's key is the paper's: nothing differs"
    paper_side, reproduced = values([table])
    assert reproduced.infeasible("table2_extreme", head="transformer_decoder", queries=9600)
    assert paper_side.infeasible("table2_extreme", head="transformer_decoder", queries=9600)
    assert any("9605 classes: the paper's \"9600\" classes are the 9,605 outputs of the official model"
               in line for line in table.datasets)


def test_a_run_from_random_weights_where_the_paper_was_pretrained_is_marked_and_not_checked(tmp_path):
    """A run whose backbone started from random weights while the paper's started pretrained
    (Run.compared False): its row says so, the section lists it, and claims that need it are
    undetermined instead of deciding on it."""
    runs = {**TABLE1_RUNS, "coco-like/gap": ({"head": "gap", "queries": None}, [60.0, 61.0, 62.5])}
    registry = make_results(tmp_path, runs)
    registry.runs["coco-like/gap"].compared = False
    registry.runs["coco-like/gap"].weights = "random init"
    collected = long_form.collect(registry, tmp_path, HEADER)
    gap_rows = collected.frame.query("run_id == 'coco-like/gap' and kind == 'run'")
    assert set(gap_rows["weights"]) == {"random init"} and set(gap_rows["compared"]) == {False}
    built = tables.build_tables(collected, REPORTED)
    gap = row_of(next(t for t in built if t.spec.table_id == "table1_heads"), "coco-like/gap")
    assert gap["status"] == f"{tables.STATUS_NOT_COMPARED}: {tables.NOT_COMPARED_REASON}"
    assert gap["mAP n"] == 3  # the values are still shown
    frame = claims.evaluate_claims(paper.claims(), *values(built)).set_index("claim")
    beat = frame.loc["attention_heads_beat_gap"]
    assert beat["reproduced verdict"] == claims.UNDETERMINED and tables.STATUS_NOT_COMPARED in beat["reproduced evidence"]
    table1 = next(t for t in built if t.spec.table_id == "table1_heads")
    assert "Not compared with the paper: `coco-like/gap`" in md.render_section(table1, frame.reset_index())
    # Written and read back, the marks survive.
    path = tmp_path / "runs.csv"
    long_form.write(collected, path)
    assert set(long_form.read(path).frame.query("run_id == 'coco-like/gap' and kind == 'run'")["compared"]) == {False}
def test_a_table_the_config_skips_says_so():
    """A config's skip_tables reaches tables.md through runs.csv's header rows."""
    fields = md.header_fields("config/config.yaml", "x", "cached_features", [0], ["table14_transfer"])
    assert fields.skipped_tables == ("table14_transfer",)
    assert md.header_fields("config/x.yaml", "x", "cached_features", [0]).skipped_tables == ()
    transfer = tables.build_table(tables.reported_spec("table14_transfer"), [])
    text = md.render_section(transfer, pd.DataFrame(columns=["table"]), skipped=True)
    assert "Not planned by this config (`skip_tables`): the paper's values only." in text
    assert "| cifar100 | swin_l_ml_decoder | 95.1 |" in text
