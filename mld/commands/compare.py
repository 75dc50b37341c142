"""`mld compare`: what changed between two results files, cell by cell and effect by effect, against the noise."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="each reproduced cell's change between two runs.csv files, with its noise margin",
        description="Pair the rows that two long-form results files both reproduce (same table, same run) "
                    "and print, per accuracy metric, the change (--to minus --from, seed means) with its "
                    "95%% margin: the seed spread of the per-seed changes plus the paired bootstrap over the "
                    "validation images (each file's runs.bootstrap.npz beside it); then the same for every "
                    "effect the tables show (a row minus its baseline row, on synthetic stand-ins). Exits 1 "
                    "with --fail-beyond-noise when some change's interval excludes 0.")
    parser.add_argument("--from", dest="before", required=True, type=Path, metavar="RUNS.csv",
                        help="the earlier results, e.g. results/reference/runs.csv")
    parser.add_argument("--to", dest="after", required=True, type=Path, metavar="RUNS.csv",
                        help="the later results, e.g. results/runs.csv")
    parser.add_argument("--table", action="append", dest="tables", metavar="TABLE",
                        help="only this table (repeatable; default: every table both reproduce)")
    parser.add_argument("--out-md", type=Path, metavar="FILE", help="also write the markdown to FILE")
    parser.add_argument("--out-csv", type=Path, metavar="FILE", help="write the changes as CSV to FILE")
    parser.add_argument("--out-effects-csv", type=Path, metavar="FILE",
                        help="write the effects' changes (each row minus its baseline row) as CSV to FILE")
    parser.add_argument("--fail-beyond-noise", action="store_true",
                        help="exit 1 when a cell or an effect changed beyond noise (a convergence gate)")
    parser.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from mld.report import comparison
    from mld.report import results as long_form
    from mld.atomic import write_text

    for path in (args.before, args.after):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; give the runs.csv that `snakemake` or "
                                    "`mld report --configfile` wrote")
    changes, effects = comparison.compare_all(args.before, args.after, args.tables)
    if args.tables and not changes:
        raise ValueError(f"no accuracy cell of {', '.join(args.tables)} is reproduced in both files; "
                         "check the table ids (mld runs lists them)")
    markdown = comparison.render_markdown(changes, str(args.before), str(args.after), effects)
    print(markdown, end="")
    if args.out_md:
        write_text(args.out_md, markdown)
    if args.out_csv:
        write_text(args.out_csv, comparison.frame(changes).to_csv(index=False, float_format=long_form.CSV_FLOAT_FORMAT))
    if args.out_effects_csv:
        write_text(args.out_effects_csv,
                   comparison.effects_frame(effects).to_csv(index=False, float_format=long_form.CSV_FLOAT_FORMAT))
    return 1 if args.fail_beyond_noise and any(c.beyond_noise for c in [*changes, *effects]) else 0
