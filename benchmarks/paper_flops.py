"""Benchmark: our FLOPs (G multiply-accumulates) beside every FLOPs cell the papers report.

Reads the reported cells from mld/report/paper_values.yaml (tables with a `flops_g` metric), builds each
row's model with mld.create_model on the meta device (shapes only: no weights are initialised,
no arithmetic runs) and counts it with mld.cost.count_flops. Prints paper, ours, their ratio and
whether they agree within 3%. For transformer-decoder rows it also prints our count without the
decoder's feed-forward layers, which is what the paper's 5000- and 9600-class cells match. Exits
with status 1 when a GAP or ML-Decoder cell (the TResNet-XL row included) disagrees.

    python benchmarks/paper_flops.py [--tolerance 0.03]
"""
from __future__ import annotations

import argparse
import math
from typing import Any

import torch

import mld
from mld import cost
from mld.report import paper


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _build(row: dict[str, Any]) -> torch.nn.Module:
    """The model a reported row describes (timm name, head, classes, queries, layers)."""
    backbone = row["timm_backbone"] if _present(row.get("timm_backbone")) else row["backbone"]
    options: dict[str, Any] = {}
    if _present(row.get("backbone_options")):
        options["backbone_options"] = row["backbone_options"]
    if row["head"] == "ml_decoder" and _present(row.get("queries")):
        options["num_groups"] = int(row["queries"])
    if _present(row.get("layers")):
        options["num_layers"] = int(row["layers"])
    with torch.device("meta"):
        return mld.create_model(backbone, row["head"], int(row["classes"]), **options)


def _without_feed_forward(model: torch.nn.Module, flops: float) -> float:
    """Our count minus every decoder layer's MLP (queries x D x F x 2 per layer)."""
    queries = model.head.num_groups
    for layer in cost.decoder_layers(model):
        flops -= cost.count_flops(layer.mlp, (1, queries, layer.mlp[0].in_features))
    return flops


def _describe(row: dict[str, Any], key: list[str]) -> str:
    parts = [f"{column}={row[column]:g}" if isinstance(row[column], float) else
             f"{column}={row[column]}" for column in key if _present(row[column])]
    return ", ".join(parts) + f" ({row['backbone']}, {int(row['resolution'])} px)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="relative difference counted as agreement (default 0.03)")
    args = parser.parse_args()

    header = f"{'table':18} {'row':62} {'paper':>7} {'ours':>8} {'ratio':>6}  ok   no FFN"
    print(header)
    print("-" * len(header))
    agree = total = 0
    disagreeing = []  # GAP and ML-Decoder cells off by more than the tolerance
    for table_id in paper.table_ids():
        spec = paper.table_spec(table_id)
        if "flops_g" not in spec["metrics"]:
            continue
        for row in paper.paper_table(table_id).to_dict("records"):
            if not _present(row["flops_g"]):
                continue
            model = _build(row)
            ours = cost.count_flops(model, int(row["resolution"]))
            ratio = ours / row["flops_g"]
            ok = abs(ratio - 1) <= args.tolerance
            agree, total = agree + ok, total + 1
            if not ok and row["head"] != "transformer_decoder":
                disagreeing.append(f"{table_id}: {_describe(row, spec['key'])}")
            extra = ""
            if row["head"] == "transformer_decoder":
                extra = f"{_without_feed_forward(model, ours):8.1f}"
            print(f"{table_id:18} {_describe(row, spec['key']):62} {row['flops_g']:7.1f} "
                  f"{ours:8.2f} {ratio:6.3f}  {'yes' if ok else 'NO ':3} {extra}")
    print(f"\n{agree} of {total} reported FLOPs cells agree within {args.tolerance:.0%}")
    for cell in disagreeing:
        print(f"GAP / ML-Decoder cell off by more than {args.tolerance:.0%}: {cell}")
    return 1 if disagreeing else 0


if __name__ == "__main__":
    raise SystemExit(main())
