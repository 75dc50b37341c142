"""mld.report.paper: the reported values load, keep their structure, and match the checked notes."""
from __future__ import annotations

import math

import pytest
import yaml

from mld.report import paper

BRIEFED_TABLES = {
    "table1_heads", "table2_extreme", "table3_query_aug", "table4_zsl_groups", "table5_coco_sota",
    "table6_zsl", "table7_query_types", "table8_zsl_query_head", "table9_throughput", "resolution",
    "stacked_layers", "module_timing", "table11_voc", "table12_openimages",
    "table13_single_label", "table14_transfer", "figure5", "hsvlt_reported",
}


def raw_values() -> dict:
    return yaml.safe_load(paper.VALUES_FILE.read_text(encoding="utf-8"))


def reported(table_id: str, metric: str, **key) -> float:
    frame = paper.paper_table(table_id)
    match = frame
    for column, value in key.items():
        match = match[match[column].isna()] if value is None else match[match[column] == value]
    assert len(match) == 1, f"{table_id} {key}: {len(match)} rows"
    return match.iloc[0][metric]


def test_every_briefed_table_is_present():
    assert BRIEFED_TABLES <= set(paper.table_ids())


def test_every_row_has_its_key_and_metric_columns():
    for table_id, table in raw_values()["tables"].items():
        for row in table["rows"]:
            assert set(table["key"] + table["metrics"]) <= set(row), (table_id, row)
        frame = paper.paper_table(table_id)
        assert list(frame.columns[:len(table["key"])]) == table["key"]
        assert list(frame.columns[-len(table["metrics"]):]) == table["metrics"]
        assert frame.attrs["source"] and frame.attrs["title"]


@pytest.mark.parametrize("table_id, metric, key, value", [
    ("table1_heads", "mAP", {"head": "ml_decoder", "queries": 20}, 88.0),
    ("table1_heads", "flops_g", {"head": "gap", "queries": None}, 23.0),
    ("table2_extreme", "flops_g", {"head": "transformer_decoder", "queries": 9600}, 178.6),
    ("table2_extreme", "mAP", {"head": "ml_decoder", "queries": 400}, 86.8),
    ("table3_query_aug", "mAP", {"augmentation": "both"}, 31.1),
    ("table6_zsl", "F1@5", {"method": "ml_decoder", "task": "gzsl"}, 26.1),
    ("table8_zsl_query_head", "mAP", {"query_type": "learnable", "head_type": "nlp"}, 23.4),
    ("table9_throughput", "inference_images_per_s",
     {"head": "transformer_decoder", "classes": 5000}, 17),
    ("table9_throughput", "max_train_batch", {"head": "ml_decoder", "classes": 1000}, 456),
    ("resolution", "flops_g", {"backbone": "tresnet_xl", "resolution": 640}, 103.8),
    ("stacked_layers", "mAP", {"head": "transformer_decoder", "layers": 3}, 88.21),
    ("module_timing", "time_ms",
     {"head": "ml_decoder", "classes": 4000, "module": "cross_attention"}, 1.4),
    ("module_timing", "time_ms",
     {"head": "transformer_decoder", "classes": 4000, "module": "self_attention"}, 612.8),
    ("table13_single_label", "top1", {"recipe": "a2", "activation": "softmax",
                                      "head": "ml_decoder"}, 80.1),
    ("table14_transfer", "top1", {"dataset": "stanford_cars", "method": "tresnet_l_ml_decoder"},
     96.41),
    ("hsvlt_reported", "mAP", {"dataset": "ms_coco"}, 91.6),
])
def test_numbers_match_the_checked_notes(table_id, metric, key, value):
    assert reported(table_id, metric, **key) == pytest.approx(value)


def test_unreported_cells_are_missing_not_zero():
    assert math.isnan(reported("table2_extreme", "mAP", head="transformer_decoder"))
    assert math.isnan(reported("module_timing", "time_ms", head="ml_decoder", classes=100,
                               module="self_attention"))


def test_claims_cover_both_papers_and_name_existing_tables():
    claims = paper.claims()
    ids = [claim["id"] for claim in claims]
    assert len(ids) == len(set(ids))
    assert len([i for i in ids if not i.startswith("hsvlt_")]) == 13
    assert len([i for i in ids if i.startswith("hsvlt_")]) == 3
    assert {claim["table"] for claim in claims} <= set(paper.table_ids())
    assert all(claim["text"].strip() for claim in claims)


def test_returned_values_are_copies():
    frame = paper.paper_table("table1_heads")
    frame.loc[0, "mAP"] = -1.0
    paper.claims()[0]["text"] = "changed"
    assert reported("table1_heads", "mAP", head="gap", queries=None) == 87.0
    assert paper.claims()[0]["text"] != "changed"


def test_unknown_table_lists_the_known_ones():
    with pytest.raises(KeyError, match="table1_heads"):
        paper.paper_table("table99")


@pytest.mark.parametrize("edit, message", [
    (lambda v: v["tables"]["table1_heads"]["rows"][0].pop("queries"), "lacks column"),
    (lambda v: v["tables"]["table1_heads"]["rows"][0].update(mAP="high"), "number or null"),
    (lambda v: v["tables"]["table1_heads"]["rows"].append(
        dict(v["tables"]["table1_heads"]["rows"][0])), "repeats key"),
    (lambda v: v["tables"]["table1_heads"].pop("source"), "missing field"),
    (lambda v: v["claims"][0].update(table="table99"), "unknown table"),
    (lambda v: v["claims"].append(dict(v["claims"][0])), "repeats id"),
])
def test_structure_errors_name_the_place(tmp_path, monkeypatch, edit, message):
    values = raw_values()
    edit(values)
    broken = tmp_path / "paper_values.yaml"
    broken.write_text(yaml.safe_dump(values), encoding="utf-8")
    monkeypatch.setattr(paper, "VALUES_FILE", broken)
    paper._load.cache_clear()
    try:
        with pytest.raises(ValueError, match=message):
            paper.table_ids()
    finally:
        paper._load.cache_clear()
