"""`mld report`: the long-form results file, the results tables, the claim checks and the figure.

Two ways in, one way out:
* `mld report --configfile CONFIG --results DIR` (the workflow's): collect the run outputs and cost
  measurements of the config's registry into the long-form `runs.csv` (and its bootstrap and
  history companions, see mld.report.results), written beside tables.md; then render from that file;
* `mld report --from runs.csv --out DIR`: render from a runs.csv alone (no run directories, no
  config): DIR/tables.md, DIR/environments.csv (software and hardware of every run),
  DIR/tables/<table>.csv, DIR/tables/claims.csv, DIR/figures/ (the mAP-vs-FLOPs figure, the
  claims figure, and DIR/figures/curves/<table>.png, the training curves of every table whose
  runs kept a history).

Both render from the file as written, so the second rebuilds the first byte for byte. Every file
is written atomically. Only pandas and matplotlib are imported: no torch, so the command takes
seconds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mld import paths
from mld.atomic import write_bytes, write_text

FIGURE_TABLE = "figure5"
FIGURE_NAME = Path(paths.FIGURE).stem.removesuffix(".{ext}")
CLAIMS_FIGURE_NAME = Path(paths.CLAIMS_FIGURE).stem.removesuffix(".{ext}")
CURVES_FOLDER = Path(paths.CURVES).name  # DIR/figures/curves/<table id>.png: the training curves of each table
SPEED_FIGURE_TABLES = ("figure6", "figure6_speed")  # top-1 and measured speed of Figure 6's points
SPEED_FIGURE_NAME = Path(paths.SPEED_FIGURE).stem.removesuffix(".{ext}")
RUNS_CSV = Path(paths.RUNS_CSV).name
ENVIRONMENTS_CSV = Path(paths.ENVIRONMENTS).name


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write runs.csv, the results tables, claim checks and the mAP-vs-FLOPs figure",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--configfile", metavar="CONFIG.yaml",
                        help="the workflow config whose registry names the runs (e.g. config/config.yaml; "
                             "as `--configfile` of snakemake, mld runs and mld plan)")
    source.add_argument("--from", dest="from_csv", metavar="RUNS.csv",
                        help="render from a long-form runs.csv alone (e.g. results/reference/runs.csv)")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="with --configfile: the results tree, DIR/runs/<run id>/seed<k>/ and DIR/measurements/ "
                             "(default: results)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/tables.md, DIR/environments.csv, DIR/tables/, DIR/figures/ (and, with "
                             "--configfile, DIR/runs.csv and its companions); the --out-* options override single paths")
    parser.add_argument("--out-md", default=None, metavar="FILE", help="the markdown report (default: OUT/tables.md)")
    parser.add_argument("--out-csv", default=None, metavar="DIR",
                        help="folder for <table id>.csv and claims.csv (default: OUT/tables)")
    parser.add_argument("--out-fig", default=None, metavar="DIR",
                        help=f"folder for {FIGURE_NAME} and {SPEED_FIGURE_NAME} .png and .svg (default: OUT/figures)")
    parser.add_argument("--out-runs", default=None, metavar="FILE",
                        help="with --configfile: the long-form file (default: runs.csv beside the markdown report)")
    parser.add_argument("--out-environments", default=None, metavar="FILE",
                        help="software and hardware of every run (default: environments.csv beside the markdown "
                             "report)")
    parser.add_argument("--label", default=None,
                        help="with --configfile: what produced the results, for the header and the figure "
                             "(default: the config's `label`)")
    parser.set_defaults(func=write_report)


def _collect(args: argparse.Namespace, runs_csv: Path) -> None:
    """Collect the results tree of the config's registry into runs_csv (and its companion)."""
    from mld import experiments
    from mld.report import results as long_form
    from mld.report.markdown import header_fields

    config = experiments.load_config(args.configfile)
    registry = experiments.build_registry(config)
    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder {results} does not exist; run the workflow first "
                                "(snakemake --cores N) or pass --results DIR")
    label = args.label or config.get("label") or Path(args.configfile).stem
    header = header_fields(args.configfile, label, config["mode"], config["seeds"], config.get("skip_tables", []))
    long_form.write(long_form.collect(registry, results, header), runs_csv)


def write_report(args: argparse.Namespace) -> int:
    """Collect (with --configfile), then build every table, check every claim, draw the figure, write them all."""
    from mld.report import paper
    from mld.report import results as long_form
    from mld.report.claims import evaluate_claims
    from mld.report.claims_figure import claims_figure
    from mld.report.curves import curve_figures
    from mld.report.figures import figure_bytes, map_vs_flops, top1_vs_speed
    from mld.report.markdown import read_header, render_markdown
    from mld.report.tables import TableValues, build_tables

    out = Path(args.out) if args.out else Path(args.results if args.configfile else ".")
    out_md = Path(args.out_md) if args.out_md else out / "tables.md"
    csv_dir = Path(args.out_csv) if args.out_csv else out / "tables"
    fig_dir = Path(args.out_fig) if args.out_fig else out / "figures"
    if args.configfile:
        runs_csv = Path(args.out_runs) if args.out_runs else out_md.with_name(RUNS_CSV)
        _collect(args, runs_csv)
    else:
        runs_csv = Path(args.from_csv)

    collected = long_form.read(runs_csv)
    header = read_header(collected.frame)
    tables = build_tables(collected, paper.table_ids())
    reproduced = TableValues(tables, "reproduced")
    claims = evaluate_claims(paper.claims(), TableValues(tables, "paper"), reproduced)

    write_text(out_md, render_markdown(tables, claims, header))
    out_environments = Path(args.out_environments) if args.out_environments else out_md.with_name(ENVIRONMENTS_CSV)
    write_text(out_environments, long_form.environments(collected.frame).to_csv(index=False))
    for table in tables:
        write_text(csv_dir / f"{table.spec.table_id}.csv",
                   table.frame.to_csv(index=False, float_format=long_form.CSV_FLOAT_FORMAT))
    write_text(csv_dir / "claims.csv", claims.to_csv(index=False, float_format=long_form.CSV_FLOAT_FORMAT))
    by_id = {table.spec.table_id: table for table in tables}
    titles = {table.spec.table_id: table.spec.title for table in tables}
    figures = {FIGURE_NAME: map_vs_flops(by_id[FIGURE_TABLE], header.label),
               SPEED_FIGURE_NAME: top1_vs_speed(*(by_id[t] for t in SPEED_FIGURE_TABLES), header.label),
               CLAIMS_FIGURE_NAME: claims_figure(paper.claims(), reproduced, titles, header.label)}
    for name, figure in figures.items():
        for file_format in ("png", "svg"):
            write_bytes(fig_dir / f"{name}.{file_format}",
                        lambda handle: handle.write(figure_bytes(figure, file_format)))
    curves_dir = fig_dir / CURVES_FOLDER
    curves_dir.mkdir(parents=True, exist_ok=True)  # a workflow output even before any run kept a history
    curves = curve_figures(tables, collected.history)
    for table_id, figure in curves.items():
        write_bytes(curves_dir / f"{table_id}.png", lambda handle: handle.write(figure_bytes(figure, "png")))

    verdicts = claims["reproduced verdict"].value_counts().to_dict()
    print(f"wrote {out_md} and {out_environments} from {runs_csv}, {len(tables) + 1} CSV files in {csv_dir}, "
          f"{' and '.join(figures)} (.png/.svg) in {fig_dir}, training curves of {len(curves)} tables in "
          f"{curves_dir}; claims on the reproduced values: {verdicts}")
    return 0
