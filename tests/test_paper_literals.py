"""The paper's recipes and reported numbers, typed in from the papers (ML-Decoder's tables and
appendices, HSVLT's summary and released config), checked against what the suite uses:
config/paper.yaml's resolved run configs and mld/report/paper_values.yaml read through mld.report.paper.

The code under test is never the source of an expected value here. A mismatch names the recipe
and key, or the table, row and cell.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mld.report import paper
from mld.experiments import build_registry, load_config
from mld.experiments.records import Run

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- recipes

COCO_LOSS = {"name": "asl", "gamma_neg": 4, "gamma_pos": 0, "clip": 0.05}
COCO = {  # ML-Decoder appendix C (MS-COCO); the base of the other datasets' recipes
    "epochs": 40,
    "optimizer": "adam",
    "lr": 2.0e-4,               # the max lr of the 1-cycle schedule
    "weight_decay": 1.0e-4,     # "true weight decay"
    "schedule": "onecycle",
    "loss": COCO_LOSS,          # gamma_neg 4, gamma_pos 0 (appendix C); clip 0.05 (official code)
    "augment": {"cutout": 0.5, "randaugment": True},  # "auto-augment": the official code's RandAugment
    # Not in the paper's text: the official train.py's values, which the config states it uses.
    "batch_size": 56,
    "pct_start": 0.2,
    "ema_decay": 0.9997,
    "eval_every": 1,  # the official train.py scores the model and its EMA every epoch
}
RECIPES: dict[str, dict[str, Any]] = {
    "coco": COCO,
    "voc": COCO,  # appendix G: ASL and the rest as MS-COCO
    # Appendix F says "CE, to be compatible with previous works"; for multi-label training the
    # config states that this is the per-label binary cross-entropy (see config/paper.yaml).
    "nus_zsl": {**COCO, "loss": {"name": "bce"}},
    "openimages": {**COCO, "epochs": 25, "loss": {**COCO_LOSS, "gamma_neg": 7}},  # appendix H
    # Appendix I: "ResNet strikes back" procedure A2 (Wightman et al. 2021): its BCE is averaged
    # over batch and classes; its lr is 5e-3, the official ML-Decoder A2 command's 4e-3.
    # Its augmentation (RSB Table 1, the official command's timm flags): random-resized crop, flip,
    # RandAugment m7 mstd 0.5, bicubic, repeated augmentation x3, Mixup 0.1 / CutMix 1.0, BCE
    # target threshold 0.2, test crop 0.95.
    "imagenet_a2": {"epochs": 300, "batch_size": 2048, "optimizer": "lamb", "lr": 4.0e-3,
                    "weight_decay": 0.02, "schedule": "cosine", "warmup_epochs": 5, "ema_decay": None,
                    "loss": {"name": "bce", "reduction": "mean", "target_threshold": 0.2},
                    "augment": {"cutout": 0.0, "randaugment": "rand-m7-mstd0.5-inc1", "crop": "random_resized",
                                "hflip": 0.5, "interpolation": "bicubic", "eval_crop_pct": 0.95, "repeats": 3},
                    "mix": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0}},
    # Section 4.3: 600 epochs ("ResNet strikes back" A1: lr 5e-3, weight decay 0.01, mean BCE,
    # Mixup 0.2 / CutMix 1.0, label smoothing 0.1, the rest as A2).
    "imagenet_a1": {"epochs": 600, "batch_size": 2048, "optimizer": "lamb", "lr": 5.0e-3,
                    "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 5, "ema_decay": None,
                    "loss": {"name": "bce", "reduction": "mean", "target_threshold": 0.2},
                    "augment": {"cutout": 0.0, "randaugment": "rand-m7-mstd0.5-inc1", "crop": "random_resized",
                                "hflip": 0.5, "interpolation": "bicubic", "eval_crop_pct": 0.95, "repeats": 3},
                    "mix": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing": 0.1}},
    # HSVLT's NUS-WIDE (81 concepts): GAP and ML-Decoder beside it with the MS-COCO recipe.
    "nus_concepts": COCO,
    # Appendix J (Table 14) gives no recipe: the config states MS-COCO's with sigmoid BCE.
    "cifar100": {**COCO, "loss": {"name": "bce"}},
    "stanford_cars": {**COCO, "loss": {"name": "bce"}},
    # HSVLT's released COCO config. Its ReduceLROnPlateau cannot be encoded: the config states
    # a constant lr instead.
    "hsvlt": {"epochs": 100, "batch_size": 4, "optimizer": "adamw", "lr": 1.0e-5, "weight_decay": 1.0e-4,
              "schedule": "constant", "ema_decay": None, "loss": {"name": "bce"}},
}
WHY = {("nus_zsl", "loss"): "paper CE = per-label BCE",
       ("imagenet_a2", "lr"): "the official A2 command's; RSB gives 5e-3",
       ("cifar100", "loss"): "no recipe in the paper: the config's reading",
       ("nus_concepts", "loss"): "no recipe in HSVLT's summary: MS-COCO's",
       ("stanford_cars", "loss"): "no recipe in the paper: the config's reading",
       ("hsvlt", "schedule"): "ReduceLROnPlateau not encodable"}

# Input resolution of each table's runs, in px (the resolution table's rows name their own).
RESOLUTION = {
    "table1_heads": 448, "table5_coco_sota": 448, "table7_query_types": 448, "stacked_layers": 448,
    "figure5": 448, "table11_voc": 448, "table2_extreme": 224, "table12_openimages": 224,
    "table3_query_aug": 224, "table4_zsl_groups": 224, "table6_zsl": 224, "table8_zsl_query_head": 224,
    "table13_single_label": 224, "hsvlt_heads": 448, "hsvlt_reported": 448, "hsvlt_ablation": 448,
    "figure6": 224,
}
# Table 14: each dataset at the resolution its backbone's ImageNet-21K weights were made for.
TRANSFER_RESOLUTION = {"cifar100": 384, "stanford_cars": 224}


@pytest.fixture(scope="module")
def paper_runs() -> dict[str, Run]:
    return build_registry(load_config(REPO / "config" / "paper.yaml", root=REPO)).runs


def expected_train(run: Run, table: str) -> dict[str, Any]:
    expected = dict(RECIPES[run.recipes[table]])
    if table == "table13_single_label" and run.rows[table]["activation"] == "softmax":
        expected["loss"] = {"name": "softmax_ce"}  # Table 13's softmax rows: CE over the classes
    return expected


@pytest.mark.parametrize("recipe, key", [(recipe, key) for recipe, keys in RECIPES.items() for key in keys],
                         ids=[f"{recipe}.{key}" + (f" ({WHY[recipe, key]})" if (recipe, key) in WHY else "")
                              for recipe, keys in RECIPES.items() for key in keys])
def test_each_recipe_value_is_the_papers(paper_runs, recipe, key):
    checked = 0
    for run in paper_runs.values():
        for table, name in run.recipes.items():
            if name == recipe:
                actual, expected = run.config["train"].get(key), expected_train(run, table)[key]
                assert actual == expected, (f"config/paper.yaml recipe {recipe}: train.{key} is {actual!r} "
                                            f"in run {run.run_id} ({table}); the paper's is {expected!r}")
                checked += 1
    assert checked, f"no run of config/paper.yaml trains with recipe {recipe}"


def test_the_recipes_from_random_weights_are_the_papers():
    """ImageNet's A2 and A1 ("ResNet strikes back") train the ResNet from scratch; every other
    recipe fine-tunes pretrained weights."""
    recipes = load_config(REPO / "config" / "paper.yaml", root=REPO)["recipes"]
    from_scratch = {name for name, recipe in recipes.items() if recipe.get("from_scratch")}
    assert from_scratch == {"imagenet_a2", "imagenet_a1"}, (
        f"config/paper.yaml recipes.<name>.from_scratch is true for {sorted(from_scratch)}; the papers': A2 and A1")


def test_every_recipe_of_the_paper_config_is_typed_here(paper_runs):
    used = {name for run in paper_runs.values() for name in run.recipes.values()}
    assert used == set(RECIPES)


def test_each_tables_runs_train_at_the_papers_resolution(paper_runs):
    for run in paper_runs.values():
        for table in run.recipes:
            if table == "resolution":
                expected = run.rows[table]["resolution"]
            elif table == "table14_transfer":
                expected = TRANSFER_RESOLUTION[run.rows[table]["dataset"]]
            else:
                expected = RESOLUTION[table]
            assert run.config["train"]["resolution"] == expected, (
                f"run {run.run_id} ({table}) trains at {run.config['train']['resolution']} px; "
                f"the paper's {table} is at {expected} px")


def test_the_resolution_tables_runs_are_the_papers_four(paper_runs):
    rows = sorted((run.rows["resolution"]["backbone"], run.rows["resolution"]["resolution"])
                  for run in paper_runs.values() if "resolution" in run.rows)
    assert rows == [("tresnet_v2_l", 224), ("tresnet_v2_l", 448), ("tresnet_v2_l", 640), ("tresnet_xl", 640)]


# ---------------------------------------------------------------- reported values

M, TD, G = "ml_decoder", "transformer_decoder", "gap"
REPORTED: dict[str, dict[tuple, dict[str, float | None]]] = {
    "table1_heads": {  # [head, queries]: FLOPs, mAP
        (G, None): {"flops_g": 23.0, "mAP": 87.0}, (TD, 80): {"flops_g": 24.1, "mAP": 88.1},
        (M, 20): {"flops_g": 23.6, "mAP": 88.0}, (M, 80): {"flops_g": 23.9, "mAP": 88.1},
    },
    "table2_extreme": {  # the transformer-decoder ran out of memory: no mAP
        (G, None): {"flops_g": 5.8, "mAP": 86.0}, (TD, 9600): {"flops_g": 178.6, "mAP": None},
        (M, 100): {"flops_g": 6.3, "mAP": 86.7}, (M, 200): {"flops_g": 6.7, "mAP": 86.8},
        (M, 400): {"flops_g": 7.6, "mAP": 86.8},
    },
    "table3_query_aug": {  # seen-class mAP is in the text only ("unchanged"), not per row
        ("none",): {"mAP": 29.9, "mAP_seen": None}, ("additive_noise",): {"mAP": 30.6, "mAP_seen": None},
        ("random_query",): {"mAP": 30.7, "mAP_seen": None}, ("both",): {"mAP": 31.1, "mAP_seen": None},
    },
    "table4_zsl_groups": {(M, 1006): {"mAP": 31.1}, (M, 100): {"mAP": 28.7}},
    "table5_coco_sota": {  # [method, backbone]
        ("ml_gcn", "resnet101"): {"mAP": 83.0}, ("kssnet", "resnet101"): {"mAP": 83.7},
        ("ssgrl", "resnet101"): {"mAP": 83.8}, ("ms_cma", "resnet101"): {"mAP": 83.8},
        ("asl", "resnet101"): {"mAP": 85.0}, ("asl", "tresnet_l"): {"mAP": 88.4},
        ("q2l", "tresnet_l"): {"mAP": 89.2}, (M, "resnet101"): {"mAP": 87.1}, (M, "tresnet_l"): {"mAP": 90.0},
    },
    "table6_zsl": {  # [method, task]: mAP, F1@3, F1@5
        (method, task): dict(zip(("mAP", "F1@3", "F1@5"), values))
        for method, zsl, gzsl in [
            ("conse", (9.4, 21.6, 20.2), (2.1, 7.0, 8.1)),
            ("fast0tag", (15.1, 27.8, 26.4), (3.7, 11.5, 13.5)),
            ("attention_per_label", (10.4, 25.8, 23.6), (3.7, 10.9, 13.2)),
            ("attention_per_cluster", (12.9, 24.6, 22.9), (2.6, 6.4, 7.7)),
            ("lesa", (19.4, 31.6, 28.7), (5.6, 14.4, 16.8)),
            ("biam", (26.3, 33.1, 30.7), (9.3, 16.1, 19.0)),
            ("sdl", (25.9, 30.5, 27.8), (12.1, 18.5, 21.0)),
            (M, (31.1, 34.1, 30.8), (19.9, 23.3, 26.1)),
        ] for task, values in (("zsl", zsl), ("gzsl", gzsl))
    },
    "table7_query_types": {("learnable",): {"mAP": 88.1}, ("nlp",): {"mAP": 88.1}, ("fixed_random",): {"mAP": 88.1}},
    "table8_zsl_query_head": {  # [query type, head type]; the earlier OCR's "234" is 23.4
        ("nlp", "learnable"): {"mAP": 2.4}, ("nlp", "learnable_shared"): {"mAP": 2.6},
        ("learnable", "nlp"): {"mAP": 23.4}, ("nlp", "nlp"): {"mAP": 28.7},
    },
    "table9_throughput": {  # [head, classes]: train, inference (images/s), max train batch, FLOPs
        (head, classes): dict(zip(("train_images_per_s", "inference_images_per_s", "max_train_batch", "flops_g"),
                                  values))
        for head, classes, values in [
            (G, 100, (706, 2915, 520, 5.7)), (G, 1000, (703, 2910, 512, 5.7)), (G, 5000, (698, 2846, 504, 5.8)),
            (TD, 100, (556, 2496, 424, 6.6)), (TD, 1000, (44, 916, 112, 14.2)), (TD, 5000, (2, 17, 4, 61.1)),
            (M, 100, (575, 2588, 464, 6.3)), (M, 1000, (568, 2563, 456, 6.3)), (M, 5000, (562, 2512, 448, 6.4)),
        ]
    },
    "resolution": {  # Table 10: TResNet-L (v2) by resolution, and the official TResNet-XL
        ("tresnet_v2_l", 224): {"flops_g": 9.3, "mAP": 85.5}, ("tresnet_v2_l", 448): {"flops_g": 36.2, "mAP": 90.0},
        ("tresnet_v2_l", 640): {"flops_g": 73.5, "mAP": 91.1}, ("tresnet_xl", 640): {"flops_g": 103.8, "mAP": 91.4},
    },
    "stacked_layers": {  # earlier version's Table 10: [head, layers]
        (G, None): {"mAP": 87.02, "flops_g": 23.0}, (TD, 1): {"mAP": 88.09, "flops_g": 24.1},
        (TD, 2): {"mAP": 88.16, "flops_g": 25.0}, (TD, 3): {"mAP": 88.21, "flops_g": 25.9},
    },
    "module_timing": {  # earlier version's Table 11, ms; ML-Decoder has no self-attention
        (head, classes, module): {"time_ms": value}
        for head, classes, times in [
            (M, 100, (None, 1.4, 1.8)), (TD, 100, (1.5, 1.4, 1.8)),
            (M, 4000, (None, 1.4, 1.8)), (TD, 4000, (612.8, 38.8, 85.3)),
        ] for module, value in zip(("self_attention", "cross_attention", "mlp"), times)
    },
    "table11_voc": {(method,): {"mAP": value} for method, value in [
        ("rnn", 91.9), ("fev_lv", 92.0), ("ml_gcn", 94.0), ("ssgrl", 95.0), ("bmml", 95.0), ("asl", 95.8),
        ("q2l", 96.1), (M, 96.6)]},
    "table12_openimages": {(method,): {"mAP": value} for method, value in [
        ("ce", 84.8), ("focal_loss", 84.9), ("asl", 86.3), (M, 86.8)]},
    "table13_single_label": {  # [recipe, activation, head]; A1 (600 epochs) from the text
        ("a2", "sigmoid", G): {"top1": 79.7}, ("a2", "sigmoid", M): {"top1": 80.3},
        ("a2", "softmax", G): {"top1": 79.3}, ("a2", "softmax", M): {"top1": 80.1},
        ("a1", "sigmoid", M): {"top1": 80.7},
    },
    "table14_transfer": {(dataset, method): {"top1": value} for dataset, method, value in [
        ("cifar100", "cvt_w24", 94.05), ("cifar100", "vit_h", 94.55), ("cifar100", "effnet_l2_sam", 96.08),
        ("cifar100", "swin_l_ml_decoder", 95.1), ("stanford_cars", "effnet_l2_sam", 95.95),
        ("stanford_cars", "align", 96.13), ("stanford_cars", "dat", 96.2),
        ("stanford_cars", "tresnet_l_ml_decoder", 96.41)]},
    "figure6": {  # only the ResNet50 points are numbers (Table 13's sigmoid rows)
        ("resnet50", G): {"top1": 79.7}, ("resnet50", M): {"top1": 80.3},
    },
    "figure6_speed": {  # the speeds are given only graphically
        ("resnet50", G): {"inference_images_per_s": None}, ("resnet50", M): {"inference_images_per_s": None},
    },
    "figure5": {  # only the TResNet-M points are numbers (Table 1's)
        ("tresnet_m", G): {"flops_g": 23.0, "mAP": 87.0}, ("tresnet_m", M): {"flops_g": 23.9, "mAP": 88.1},
    },
    "hsvlt_reported": {  # HSVLT's summary; parameters from its released training log
        ("voc2007",): {"mAP": 97.5, "params_m": None}, ("ms_coco",): {"mAP": 91.6, "params_m": 154.409466},
        ("nus_wide",): {"mAP": 72.1, "params_m": None},
    },
}
# How each reported number was obtained (the rows' context columns): every number of each, over the
# table's rows (Table 5's resolution per row: test_table5_resolutions_are_the_papers).
CONTEXT: dict[str, dict[str, set[float]]] = {
    "table1_heads": {"resolution": {448}, "classes": {80}}, "table2_extreme": {"resolution": {224}, "classes": {9600}},
    "table3_query_aug": {"resolution": {224}}, "table4_zsl_groups": {"classes": {1006}},
    "table5_coco_sota": {"resolution": {448, 576}}, "table7_query_types": {"queries": {80}, "classes": {80}},
    "table9_throughput": {"queries": {100, 1000, 5000}, "resolution": {224}},
    "resolution": {"queries": {80}, "classes": {80}},
    "stacked_layers": {"queries": {80}, "resolution": {448}, "classes": {80}},
    "table11_voc": {"resolution": {448}, "queries": {20}},
    "table12_openimages": {"resolution": {224}, "queries": {200}},
    "table13_single_label": {"queries": {100}}, "figure6": {"queries": {100}, "resolution": {224}},
    "figure6_speed": {"queries": {100}, "resolution": {224}},
    "figure5": {"queries": {80}, "resolution": {448}, "classes": {80}}, "hsvlt_reported": {"resolution": {448}},
}
CELLS = [(table, key, metric, value) for table, rows in REPORTED.items()
         for key, cells in rows.items() for metric, value in cells.items()]


def plain(value: Any) -> Any:
    """A frame's cell as the literals above write it: NaN is None."""
    return None if isinstance(value, float) and math.isnan(value) else value


def reported_rows(table_id: str) -> dict[tuple, dict[str, Any]]:
    frame = paper.paper_table(table_id)
    key, metrics = frame.attrs["key"], frame.attrs["metrics"]
    return {tuple(plain(row[column]) for column in key): {metric: plain(row[metric]) for metric in metrics}
            for _, row in frame.iterrows()}


@pytest.mark.parametrize("table_id, key, metric, expected", CELLS,
                         ids=[f"{table}[{', '.join(map(str, key))}].{metric}" for table, key, metric, _ in CELLS])
def test_each_reported_cell_is_the_papers(table_id, key, metric, expected):
    rows = reported_rows(table_id)
    assert key in rows, f"mld/report/paper_values.yaml table {table_id} has no row {key}"
    actual = rows[key][metric]
    assert actual == expected, (f"mld/report/paper_values.yaml table {table_id}, row {key}, {metric}: "
                                f"{actual!r}; the paper reports {expected!r}")


@pytest.mark.parametrize("table_id", list(REPORTED))
def test_every_reported_row_and_metric_has_a_literal_here(table_id):
    rows = reported_rows(table_id)
    assert set(rows) == set(REPORTED[table_id]), f"{table_id}: rows differ from the paper's"
    for key, cells in rows.items():
        assert set(cells) == set(REPORTED[table_id][key]), f"{table_id} row {key}: metrics differ"


@pytest.mark.parametrize("table_id", list(REPORTED))
def test_each_reported_rows_context_numbers_are_the_papers(table_id):
    frame, spec = paper.paper_table(table_id), paper.table_spec(table_id)
    numbers = {}
    for column in frame.columns.drop(spec["key"] + spec["metrics"]):
        values = [plain(value) for value in frame[column] if not isinstance(value, (dict, list))]
        if any(values) and all(isinstance(value, (int, float)) and not isinstance(value, bool)
                               for value in values if value is not None):
            numbers[column] = set(values) - {None}
    assert numbers == CONTEXT.get(table_id, {}), (f"mld/report/paper_values.yaml table {table_id}: context numbers "
                                                  f"{numbers}; the paper's {CONTEXT.get(table_id, {})}")


def test_every_reported_table_is_typed_here():
    assert set(paper.table_ids()) == set(REPORTED)


def test_table5_resolutions_are_the_papers():
    frame = paper.paper_table("table5_coco_sota")
    resolutions = {(row["method"], row["backbone"]): row["resolution"] for _, row in frame.iterrows()}
    assert resolutions == {**dict.fromkeys(REPORTED["table5_coco_sota"], 448), ("ssgrl", "resnet101"): 576}


# ---------------------------------------------------------------- runs paired with reported rows

# Rows config/paper.yaml reproduces that the papers give no number for: HSVLT's summary reports
# neither the heads trained beside it nor its ablation; Figures 5 and 6 give only the TResNet-M
# and ResNet50 points as numbers (the other backbones are drawn).
WITHOUT_REPORTED_ROW = {"hsvlt_heads": None, "hsvlt_ablation": None,
                        "figure5": {"tresnet_l", "tresnet_xl"}, "figure6": {"resnet18", "resnet101"},
                        "figure6_speed": {"resnet18", "resnet101"}}


def reported_keys(table_id: str, row: dict[str, Any]) -> list[tuple]:
    """The paper's rows (REPORTED keys) a reproduced row fills: those equal on every key column the
    row states (Table 6's run states its method and fills both tasks' rows)."""
    if table_id not in REPORTED:
        return []
    columns = paper.table_spec(table_id)["key"]
    return [key for key in REPORTED[table_id]
            if all(row[column] == value for column, value in zip(columns, key) if column in row)]


def reports_row(table_id: str, row: dict[str, Any]) -> bool:
    """Whether the papers give a number for a reproduced row: every row but WITHOUT_REPORTED_ROW's."""
    without = WITHOUT_REPORTED_ROW.get(table_id, set())
    return not (table_id in WITHOUT_REPORTED_ROW and (without is None or row["backbone"] in without))


def test_every_run_of_the_paper_config_fills_a_reported_row():
    registry = build_registry(load_config(REPO / "config" / "paper.yaml", root=REPO))
    filled = [(run_id, table_id, row) for run_id, run in registry.runs.items() for table_id, row in run.rows.items()]
    filled += [(measurement_id, table_id, row) for measurement_id, measurement in registry.measurements.items()
               for table_id, row in measurement.rows.items()]
    for member, table_id, row in filled:
        keys = reported_keys(table_id, row)
        assert bool(keys) == reports_row(table_id, row), (
            f"config/paper.yaml: {member} fills {table_id} row {row}, which "
            + ("the paper does not report" if not keys else f"the paper reports: {keys}"))
