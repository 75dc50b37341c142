"""`mld fetch-weights`: every pretrained backbone a config needs, into one cache, for offline nodes.
`mld ship-backbones`: the embedded default's freshly pretrained backbones, into its shipped folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from mld.commands import add_config_arguments, workflow_config

PRETRAIN_HERE = "snakemake --cores 2 pretrained_backbones --config 'pretraining={weights: null}'"


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

    ship = subparsers.add_parser(
        "ship-backbones", help="copy the freshly pretrained backbones into a shipped folder with their checksums",
        description="Copy each backbone the config's pretraining jobs wrote (results/backbones/<role>.pt, made by "
                    f"`{PRETRAIN_HERE}`) into --out, with manifest.yaml recording its SHA-256 and the pretraining "
                    "it came from; a config with `pretraining.weights: DIR` then starts from these files. "
                    "`make backbones` runs both steps.")
    add_config_arguments(ship)
    ship.add_argument("--out", required=True, type=Path, metavar="DIR", help="the shipped backbones folder")
    ship.set_defaults(func=_ship)


def _fetch(args: argparse.Namespace) -> int:
    from mld.weights import fetch_weights, pretrained_names

    names = pretrained_names(workflow_config(args, check_weights=True, weights_cache=None, offline=False))
    if not names:
        print("no backbone of this config has `pretrained: true`: nothing to fetch")
        return 0
    fetch_weights(names.values(), args.cache)
    print(f"done; add `weights_cache: {args.cache.resolve()}` to your config (or --config weights_cache=...)")
    return 0


def _ship(args: argparse.Namespace) -> int:
    import torch

    from mld.experiments import build_registry
    from mld.numerics import cpu_model
    from mld.weights import ship_backbones

    registry = build_registry(workflow_config(args, pretraining={"weights": None}))
    if not registry.backbones:
        print("this config pretrains no backbone (mode end_to_end): nothing to ship")
        return 0
    missing = [backbone.weights for backbone in registry.backbones.values() if not Path(backbone.weights).is_file()]
    if missing:
        raise FileNotFoundError(f"not pretrained yet: {', '.join(missing)}; run `{PRETRAIN_HERE}` first")
    manifest = ship_backbones({backbone_id: (backbone.weights, backbone.identity)
                               for backbone_id, backbone in registry.backbones.items()},
                              args.out, made_on=f"{cpu_model()}, torch {torch.__version__}")
    for backbone_id, entry in manifest.items():
        print(f"{backbone_id}: {args.out / entry['file']} (sha256 {entry['sha256'][:12]}..., {entry['bytes']} bytes)")
    return 0
