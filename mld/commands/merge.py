"""`mld merge`: several sites' runs.csv files (and their companions) in one, each row with its site."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge", help="combine runs.csv files from several clusters or people into one",
        description="Merge long-form results files (each with its runs.bootstrap.npz and runs.history.csv "
                    "beside it) into one, adding the column `site` (where each row came from). A run's seed "
                    "present twice is kept once when its values agree; when they differ the merge stops, "
                    "naming the run, seed and metrics, unless --prefer names the site to keep. A run id whose "
                    "config differs between sites is refused, naming the keys. Then "
                    "`mld report --from MERGED.csv --out DIR` builds the tables and claims from it.")
    parser.add_argument("inputs", nargs="*", type=Path, metavar="RUNS.csv",
                        help="a runs.csv; its site is its file name, or its folder's name for a runs.csv")
    parser.add_argument("--site", action="append", default=[], metavar="NAME=PATH",
                        help="a runs.csv with its site name, e.g. --site clusterA=a/results/runs.csv (repeatable)")
    parser.add_argument("--prefer", metavar="SITE",
                        help="where two sites measured different values for the same run and seed, keep this site's")
    parser.add_argument("--out", required=True, type=Path, metavar="MERGED.csv",
                        help="the merged file; its companions are written beside it")
    parser.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from mld.report import merge

    inputs = merge.sources(args.inputs, args.site)
    merged = merge.merge_files(inputs, args.out, args.prefer)
    counts = merged.frame.loc[merged.frame["kind"] == "run"].drop_duplicates(["run_id", "seed"])[merge.SITE]
    per_site = ", ".join(f"{site} {count}" for site, count in counts.value_counts().sort_index().items())
    print(f"wrote {args.out} from {len(inputs)} files: run seeds kept per site: {per_site or 'none'}")
    return 0
