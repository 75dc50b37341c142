"""`mld runs`: the listing of a config's runs, and config/paper.yaml against the paper's settings,
table by table (the appendices' recipes as in ../shared/notes/paper-numbers.md)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from mld.cli import main

REPO = Path(__file__).resolve().parents[1]
PAPER = str(REPO / "config" / "paper.yaml")
REQUIRED_COLUMNS = ("run_id", "table", "dataset", "backbone", "head", "queries", "resolution", "epochs",
                    "batch_size", "optimizer", "lr", "weight_decay", "loss", "gamma_neg", "gamma_pos", "mean", "std",
                    "max_memory_gb", "weights", "compared", "accumulation", "selection", "mode")

# What the paper states for each table: dataset, backbone (timm names: the paper's TResNet-L is
# timm's tresnet_v2_l, its TResNet-XL tresnet_v2_l with stages 3-8-34-5), px, epochs, loss and
# gamma_neg, and the K of each ML-Decoder row ("" for full decoding's N and other heads: see queries).
COCO = {"dataset": "coco", "resolution": "448", "epochs": "40", "loss": "asl", "gamma_neg": "4", "gamma_pos": "0",
        "optimizer": "adam", "lr": "0.0002", "weight_decay": "0.0001", "batch_size": "56"}
OPEN_IMAGES = {"dataset": "openimages", "resolution": "224", "epochs": "25", "loss": "asl", "gamma_neg": "7",
               "gamma_pos": "0", "unknown_labels": "negative"}
NUS_ZSL = {"dataset": "nus-wide", "resolution": "224", "epochs": "40", "loss": "bce"}  # "CE"
TRESNET_M, TRESNET_L = "tresnet_m.miil_in21k", "tresnet_v2_l.miil_in21k"
PAPER_SETTINGS = {
    "table1_heads": ({**COCO, "backbone": TRESNET_M}, {("gap", ""), ("transformer_decoder", "80"),
                                                       ("ml_decoder", "20"), ("ml_decoder", "80")}),
    "table2_extreme": ({**OPEN_IMAGES, "backbone": "tresnet_m.miil_in21k"},
                       {("gap", ""), ("transformer_decoder", "9605"), ("ml_decoder", "100"), ("ml_decoder", "200"),
                        ("ml_decoder", "400")}),
    "table3_query_aug": ({**NUS_ZSL, "backbone": TRESNET_M}, {("ml_decoder", "1006")}),
    "table4_zsl_groups": ({**NUS_ZSL, "backbone": TRESNET_M}, {("ml_decoder", "1006"), ("ml_decoder", "100")}),
    "table5_coco_sota": ({**COCO}, {("ml_decoder", "80")}),
    "table6_zsl": ({**NUS_ZSL, "backbone": TRESNET_M}, {("ml_decoder", "1006")}),
    "table7_query_types": ({**COCO, "backbone": TRESNET_M}, {("ml_decoder", "80")}),
    "table8_zsl_query_head": ({**NUS_ZSL, "backbone": TRESNET_M}, {("ml_decoder", "100")}),
    "table11_voc": ({**COCO, "dataset": "voc2007", "backbone": TRESNET_L}, {("ml_decoder", "20")}),
    "table12_openimages": ({**OPEN_IMAGES, "backbone": TRESNET_M}, {("gap", ""), ("ml_decoder", "200")}),
    "table13_single_label": ({"dataset": "imagenet", "backbone": "resnet50", "resolution": "224",
                              "batch_size": "2048", "optimizer": "lamb", "schedule": "cosine", "warmup_epochs": "5",
                              "ema_decay": "", "weights": "random init", "compared": "True",
                              "mean": "0.485 0.456 0.406", "std": "0.229 0.224 0.225"},
                             {("gap", ""), ("ml_decoder", "100")}),
    "figure6": ({"dataset": "imagenet", "resolution": "224", "epochs": "300", "lr": "0.004", "optimizer": "lamb",
                 "loss": "bce", "weights": "random init", "compared": "True", "recipe": "imagenet_a2",
                 "crop": "random_resized", "eval_crop_pct": "0.95", "repeats": "3", "mixup_alpha": "0.1",
                 "cutmix_alpha": "1.0", "target_threshold": "0.2", "randaugment": "rand-m7-mstd0.5-inc1"},
                {("gap", ""), ("ml_decoder", "100")}),
    "table14_transfer": ({"epochs": "40", "optimizer": "adam", "loss": "bce", "mode": "end_to_end"},
                         {("ml_decoder", "100"), ("ml_decoder", "196")}),
    "stacked_layers": ({**COCO, "backbone": TRESNET_M}, {("gap", ""), ("transformer_decoder", "80")}),
    "figure5": ({**COCO}, {("gap", ""), ("ml_decoder", "80")}),
    "resolution": ({key: value for key, value in COCO.items() if key != "resolution"}, {("ml_decoder", "80")}),
}


def listing(capsys: pytest.CaptureFixture[str], *arguments: str) -> list[dict[str, str]]:
    assert main(["runs", *arguments, "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


@pytest.fixture(scope="module")
def paper_rows() -> list[dict[str, str]]:
    from mld import experiments
    from mld.commands.runs import render_csv, run_rows

    registry = experiments.build_registry(experiments.load_config(PAPER))
    return list(csv.DictReader(io.StringIO(render_csv(run_rows(registry)))))


@pytest.mark.parametrize("table", sorted(PAPER_SETTINGS))
def test_the_paper_config_trains_each_table_as_the_paper(paper_rows: list[dict[str, str]], table: str) -> None:
    expected, heads = PAPER_SETTINGS[table]
    rows = [row for row in paper_rows if row["table"] == table]
    assert rows, f"no runs for {table}"
    for row in rows:
        for column, value in expected.items():
            assert row[column] == value, (table, row["run_id"], column)
        assert row["mode"] == "end_to_end"
    assert {(row["head"], row["queries"]) for row in rows} == heads


def test_recipes_the_paper_states_per_table(paper_rows: list[dict[str, str]]) -> None:
    by_table = lambda table: [row for row in paper_rows if row["table"] == table]  # noqa: E731
    # Table 13: sigmoid rows use BCE, softmax rows CE; ResNet50 from scratch, 100 groups.
    losses = {row["row"].split("activation=")[1].split(",")[0]: row["loss"] for row in by_table("table13_single_label")}
    assert losses == {"sigmoid": "bce", "softmax": "softmax_ce"}
    # A2 (the official command's lr 4e-3) for the four rows, A1 (600 epochs) for the text's row.
    recipes = {(row["row"].split(",")[0], row["recipe"], row["epochs"], row["lr"], row["weight_decay"])
               for row in by_table("table13_single_label")}
    assert recipes == {("recipe=a2", "imagenet_a2", "300", "0.004", "0.02"),
                       ("recipe=a1", "imagenet_a1", "600", "0.005", "0.01")}
    # Table 14: each dataset at its backbone's resolution.
    assert {(row["dataset"], row["backbone"], row["resolution"]) for row in by_table("table14_transfer")} == {
        ("cifar100", "swin_large_patch4_window12_384.ms_in22k", "384"), ("stanford-cars", TRESNET_L, "224")}
    # The resolution table: TResNet-L (v2) at 224 / 448 / 640 and the paper's TResNet-XL at 640.
    cells = {(row["backbone"], row["backbone_options"], row["resolution"]) for row in by_table("resolution")}
    assert cells == {(TRESNET_L, "", "224"), (TRESNET_L, "", "448"), (TRESNET_L, "", "640"),
                     ("tresnet_v2_l", '{"layers":[3,8,34,5]}', "640")}
    # Table 5 and Figure 5: the backbones the paper names.
    assert {row["backbone"] for row in by_table("table5_coco_sota")} == {TRESNET_L, "resnet101.a1h_in1k"}
    assert {row["backbone"] for row in by_table("figure5")} == {TRESNET_M, TRESNET_L, "tresnet_v2_l"}
    # Zero-shot baseline: full decoding (N = 1006 queries) in Tables 3 and 6.
    assert all(row["queries"] == "1006" for row in by_table("table6_zsl") + by_table("table3_query_aug"))


def test_listing_covers_every_run_with_the_required_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from mld import experiments

    rows = listing(capsys)  # the default config: config/config.yaml
    assert set(REQUIRED_COLUMNS) <= set(rows[0])
    registry = experiments.build_registry(experiments.load_config(REPO / "config" / "config.yaml"))
    assert {row["run_id"] for row in rows} == set(registry.runs)
    assert len(rows) == sum(len(run.rows) for run in registry.runs.values())
    assert all(row["mode"] == "cached_features" and row["weights"].startswith("backbones/") for row in rows)
    assert all(row["queries"] == "" for row in rows if row["head"] == "gap")


def test_table_filter_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    rows = listing(capsys, "--configfile", PAPER, "--table", "table11_voc")
    assert [row["table"] for row in rows] == ["table11_voc"]
    assert main(["runs", "--configfile", PAPER, "--table", "table6_zsl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run_id | table |") and len(lines) == 3


def test_an_unknown_table_lists_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--table", "table99"]) == 2
    error = capsys.readouterr().err
    assert "unknown table 'table99'" in error and "table1_heads" in error and "table13_single_label" in error


def test_the_listing_shows_what_decides_each_paper_run(paper_rows: list[dict[str, str]]) -> None:
    """Input mean/std per backbone, the one feasibility budget (Table 2's transformer-decoder on a
    16 GB V100), the weights' source and whether a run is compared, accumulation and selection."""
    budgets = {(row["table"], row["head"]): row["max_memory_gb"] for row in paper_rows if row["max_memory_gb"]}
    assert budgets == {("table2_extreme", "transformer_decoder"): "16"}
    by_backbone = {row["backbone"]: (row["mean"], row["std"]) for row in paper_rows}
    assert by_backbone["tresnet_m.miil_in21k"] == ("0 0 0", "1 1 1")
    assert by_backbone["convnext_small.fb_in22k"] == ("0.485 0.456 0.406", "0.229 0.224 0.225")
    assert by_backbone["resnet101.a1h_in1k"] == ("0.485 0.456 0.406", "0.229 0.224 0.225")
    xl = [row for row in paper_rows if row["backbone_options"] == '{"layers":[3,8,34,5]}']
    assert xl and all((row["weights"], row["compared"]) == ("random init", "False") for row in xl)
    assert {row["weights"] for row in paper_rows if row["table"] == "table1_heads"} == {"timm:tresnet_m.miil_in21k"}
    assert {row["accumulation"] for row in paper_rows} == {"auto"}
    assert {row["selection"] for row in paper_rows} == {"final; best over epochs (official)"}
