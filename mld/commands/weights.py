"""`mld fetch-weights`: every pretrained backbone a config needs, into one cache, for offline nodes."""
from __future__ import annotations

import argparse
from pathlib import Path

from mld.commands import add_config_arguments, workflow_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch-weights", help="download the config's pretrained backbones into a cache (run where the internet is)",
        description="Download timm's pretrained weights of every backbone of the config with `pretrained: true` "
                    "into --cache as local files, with their SHA-256 in manifest.yaml. Then set "
                    "`weights_cache: DIR` in your config: jobs load from it with the hub switched off. "
                    "Files already in the cache with the recorded checksum are kept.")
    add_config_arguments(parser)
    parser.add_argument("--cache", required=True, type=Path, metavar="DIR", help="the weights cache folder")
    parser.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    from mld.weights import fetch_weights, pretrained_names

    names = pretrained_names(workflow_config(args, check_weights=True, weights_cache=None, offline=False))
    if not names:
        print("no backbone of this config has `pretrained: true`: nothing to fetch")
        return 0
    fetch_weights(names.values(), args.cache)
    print(f"done; add `weights_cache: {args.cache.resolve()}` to your config (or --config weights_cache=...)")
    return 0
