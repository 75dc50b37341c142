"""Command groups of the `mld` CLI; each module exposes `register(subparsers)`.

The commands that read a workflow config take it as `snakemake` does (`add_config_arguments`) and
resolve it with the one loader, mld.experiments.load_config (`workflow_config`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--configfile and --config, as snakemake takes them."""
    parser.add_argument("--configfile", action="append", type=Path, default=[], metavar="FILE",
                        help="workflow config (default: config/config.yaml in the working directory; e.g. "
                             "config/paper.yaml); later files override earlier ones")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="top-level overrides, values read as YAML (seeds=[0])")


def workflow_config(args: argparse.Namespace, check_weights: bool = False, **overrides: Any) -> dict[str, Any]:
    """The workflow config of `add_config_arguments`' options (`overrides` last), resolved by the one
    loader; `check_weights` as for mld.experiments.load_config."""
    from mld.experiments import load_config, parse_overrides

    return load_config(args.configfile, {**parse_overrides(args.config), **overrides}, check_weights=check_weights)
