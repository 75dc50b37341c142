"""`mld tables`: the results tables, the claim checks and the mAP-vs-FLOPs figure.

Reads a results tree (run outputs and cost measurements, see docs/architecture.md), the run
registry of a workflow config and the papers' reported values, and writes tables.md, one CSV per
table plus claims.csv, and map_vs_flops.{png,svg}. Every file is written atomically. Only pandas
and matplotlib are imported: no torch, so the command takes seconds.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from mld.atomic import write_bytes, write_text

FIGURE_TABLE = "figure5"
FIGURE_NAME = "map_vs_flops"
CSV_FLOAT_FORMAT = "%.10g"  # drops float noise (0.10000000000000002) and keeps every reported digit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tables", help="write the results tables, claim checks and the mAP-vs-FLOPs figure",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="CONFIG.yaml",
                        help="the workflow config whose registry names the runs (e.g. config/config.yaml)")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="the results tree: DIR/runs/<run id>/seed<k>/ and DIR/cost/ (default: results)")
    parser.add_argument("--out-md", default="results/tables.md", metavar="FILE",
                        help="the markdown report (default: results/tables.md)")
    parser.add_argument("--out-csv", default="results/tables", metavar="DIR",
                        help="folder for <table id>.csv and claims.csv (default: results/tables)")
    parser.add_argument("--out-fig", default="results/figures", metavar="DIR",
                        help=f"folder for {FIGURE_NAME}.png and .svg (default: results/figures)")
    parser.add_argument("--label", default=None,
                        help="what produced the results, for the header and the figure "
                             "(default: the config's `label`)")
    parser.set_defaults(func=write_report)


def describe_dataset(entry: Mapping[str, Any]) -> str:
    """One line per prepared dataset of the registry: where its images come from."""
    name, role = entry.get("name"), entry.get("role")
    source = entry.get("source")
    if source == "synthetic":
        sizes = [f"{entry[k]} {k.removeprefix('num_')}" for k in ("num_train", "num_val") if entry.get(k)]
        text = f"synthetic preset {entry.get('preset')}, {entry.get('image_size')} px" + (
            f", {' / '.join(sizes)} images" if sizes else "")
    elif source == "adapter":
        text = f"{entry.get('adapter')} release at {entry.get('root')}"
    else:
        text = f"prepared dataset at {entry.get('path')}"
    return f"`{name}` (stands for {role}): {text}"


def write_report(args: argparse.Namespace) -> int:
    """Build every table, check every claim, draw the figure, write them all."""
    from mld import experiments, paper
    from mld.claims import evaluate_claims
    from mld.figures import figure_bytes, map_vs_flops
    from mld.tables import ReportHeader, TableValues, build_tables, render_markdown

    config = experiments.load_config(args.config)
    registry = experiments.build_registry(config)
    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder {results} does not exist; run the workflow first "
                                "(snakemake --cores N) or pass --results DIR")
    label = args.label or config.get("label") or Path(args.config).stem
    tables = build_tables(registry, results, paper.table_ids())
    claims = evaluate_claims(paper.claims(), TableValues(tables, "paper"), TableValues(tables, "reproduced"))
    datasets = sorted(registry.datasets.values(), key=lambda entry: str(entry.get("name")))
    header = ReportHeader(config=args.config, label=label, mode=config["mode"], seeds=config["seeds"],
                          datasets=[describe_dataset(entry) for entry in datasets],
                          synthetic=any(entry.get("source") == "synthetic" for entry in datasets))

    write_text(args.out_md, render_markdown(tables, claims, header))
    csv_dir = Path(args.out_csv)
    for table in tables:
        csv = table.frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)
        write_text(csv_dir / f"{table.spec.table_id}.csv", csv)
    write_text(csv_dir / "claims.csv", claims.to_csv(index=False))
    figure_table = next(table for table in tables if table.spec.table_id == FIGURE_TABLE)
    figure = map_vs_flops(figure_table, label)
    for file_format in ("png", "svg"):
        write_bytes(Path(args.out_fig) / f"{FIGURE_NAME}.{file_format}", lambda handle: handle.write(figure_bytes(figure, file_format)))

    verdicts = claims["reproduced verdict"].value_counts().to_dict()
    print(f"wrote {args.out_md}, {len(tables) + 1} CSV files in {csv_dir}, {FIGURE_NAME}.png/.svg in "
          f"{args.out_fig}; claims on the reproduced values: {verdicts}")
    return 0
