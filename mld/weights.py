"""Pretrained backbone weights for compute nodes without internet: one cache, checked up front.

`mld fetch-weights --configfile FILE --cache DIR`, run where the internet is, downloads every
pretrained backbone the config names (timm's hub weights) into DIR as local state dict files and
records their SHA-256 in DIR/manifest.yaml. A config with `weights_cache: DIR` then trains every
`pretrained: true` backbone from those files (the hub is switched off for the jobs), so nothing
reaches for the network on a node.

Which weights a backbone role uses, in order: its own `weights: FILE`; with `pretrained: true`,
the cache's file when `weights_cache` is set, else timm's hub (refused when `offline: true`).
`check_weights` finds every mistake in this when the config is validated, before any job starts,
naming the config key. Light: no torch unless fetching.

The embedded default's own pretrained backbones are shipped the same way: `pretraining.weights:
DIR` holds one `<role>.pt` per backbone and a manifest.yaml with each file's SHA-256, the
backbone it is and the hash of the pretraining run config that made it (`check_shipped_backbones`
checks all three when the workflow starts); `make backbones` pretrains them again and
`ship_backbones` writes the directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from mld.atomic import config_hash, file_sha256

MANIFEST = "manifest.yaml"
FETCH_HINT = "mld fetch-weights --configfile YOUR_CONFIG --cache DIR"
SHIP_HINT = "`make backbones` (pretrains them here and rewrites the directory)"


class WeightsConfigError(ValueError):
    """A backbone's weights cannot be found as configured; the message names the config key."""


def cache_file(cache: str | Path, name: str) -> Path:
    """The file of one timm model's pretrained weights inside a cache."""
    return Path(cache) / (re.sub(r"[^A-Za-z0-9_.-]+", "--", name) + ".pt")


def is_offline(config: Mapping[str, Any]) -> bool:
    """The jobs cannot reach the hub: `offline: true`, or HF_HUB_OFFLINE set where Snakemake runs."""
    return bool(config.get("offline")) or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def pretrained_names(config: Mapping[str, Any]) -> dict[str, str]:
    """{role: timm name} of every backbone role (not alias) that asks for timm's pretrained weights."""
    return {role: spec["name"] for role, spec in config["backbones"].items()
            if isinstance(spec, Mapping) and spec.get("pretrained") and not spec.get("weights")}


def backbone_weights(config: Mapping[str, Any], role: str) -> tuple[str | None, bool]:
    """(weights file, pretrained) of a backbone role: a given file wins, then the cache, then the hub."""
    spec = config["backbones"][role]
    if spec.get("weights"):
        return str(spec["weights"]), False
    if spec.get("pretrained") and config.get("weights_cache"):
        return str(cache_file(config["weights_cache"], spec["name"])), False
    return None, bool(spec.get("pretrained", False))


def read_manifest(cache: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(cache) / MANIFEST
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def check_weights(config: Mapping[str, Any]) -> None:
    """Every backbone's weights are where the config says, or the error names the key and the fix."""
    problems = []
    cache = config.get("weights_cache")
    manifest = read_manifest(cache) if cache else {}
    if cache and not Path(cache).is_dir():
        problems.append(f"config key weights_cache: {cache} does not exist; fill it with `{FETCH_HINT}` "
                        "where the internet is")
    for role, spec in config["backbones"].items():
        if not isinstance(spec, Mapping):
            continue
        if spec.get("weights"):
            # The file wins over `pretrained` (backbone_weights): a user config on top of
            # config/paper.yaml sets `weights` alone and inherits `pretrained: true`.
            if not Path(spec["weights"]).is_file():
                problems.append(f"config key backbones.{role}.weights: {spec['weights']} does not exist; give the "
                                "path of a state dict file (relative paths are relative to the working directory)")
        elif spec.get("pretrained") and cache and Path(cache).is_dir():
            entry = manifest.get(spec["name"])
            path = cache_file(cache, spec["name"])
            if entry is None or not path.is_file() or path.stat().st_size != entry.get("bytes"):
                problems.append(f"config key backbones.{role}: {spec['name']} is not in weights_cache {cache}; "
                                f"run `{FETCH_HINT}` where the internet is")
        elif spec.get("pretrained") and is_offline(config):
            problems.append(f"config key backbones.{role}.pretrained: {spec['name']} needs timm's hub, and the "
                            f"jobs are offline; set weights_cache (filled by `{FETCH_HINT}`) or "
                            f"backbones.{role}.weights: FILE")
    if problems:
        raise WeightsConfigError("backbone weights:\n  " + "\n  ".join(problems))


def download_timm(name: str) -> Mapping[str, Any]:
    """timm's pretrained weights of a model, as the state dict mld loads as backbone weights."""
    import timm

    return timm.create_model(name, pretrained=True).state_dict()


def fetch_weights(names: Iterable[str], cache: str | Path,
                  download: Callable[[str], Mapping[str, Any]] = download_timm,
                  log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Download each model's weights into the cache unless its recorded file is there; return the manifest."""
    import torch

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(cache)
    for name in sorted(set(names)):
        path = cache_file(cache, name)
        entry = manifest.get(name)
        if entry and path.is_file() and file_sha256(path) == entry["sha256"]:
            log(f"{name}: in the cache ({path})")
            continue
        log(f"{name}: downloading")
        partial = path.with_name(path.name + ".partial")
        torch.save(dict(download(name)), partial)
        partial.replace(path)
        manifest[name] = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                          "source": f"timm.create_model({name!r}, pretrained=True)"}
        (cache / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=True))
        log(f"{name}: {path} (sha256 {manifest[name]['sha256'][:12]}...)")
    return manifest


def verify_cache(cache: str | Path) -> list[str]:
    """The names whose file in the cache no longer matches its recorded checksum."""
    manifest = read_manifest(cache)
    return sorted(name for name, entry in manifest.items()
                  if not cache_file(cache, name).is_file() or file_sha256(cache_file(cache, name)) != entry["sha256"])


# ---- shipped pretrained backbones (the embedded default) --------------------------------------

def pretraining_identity(run_config: Mapping[str, Any], dataset_arguments: list[Any]) -> str:
    """What makes a pretrained backbone what it is: its pretraining run config and how its
    pretraining set is made (`mld prepare` arguments), file paths left out."""
    identity = {key: value for key, value in run_config.items() if key not in ("run_id", "dataset")}
    identity["dataset"] = {**{k: v for k, v in run_config["dataset"].items() if k != "path"},
                           "made_by": [str(argument) for argument in dataset_arguments]}
    return config_hash(identity)


def shipped_file(directory: str | Path, backbone_id: str) -> str:
    """Where a shipped backbone's weights lie (relative paths: to the working directory, as every path)."""
    return str(Path(directory) / f"{backbone_id}.pt")


def check_shipped_backbones(config: Mapping[str, Any], backbones: Mapping[str, Any]) -> None:
    """Every shipped backbone the runs start from is there, intact (SHA-256) and pretrained by this
    config's own `pretraining:` (the manifest's identity), or the error names each problem and the fix.
    `backbones`: the registry's PretrainedBackbone records by role."""
    directory = (config.get("pretraining") or {}).get("weights")
    if not directory:
        return
    manifest = read_manifest(directory)
    key, problems = "config key pretraining.weights", []
    for backbone_id, backbone in sorted(backbones.items()):
        path, entry = Path(backbone.weights), manifest.get(backbone_id)
        if entry is None or not path.is_file():
            problems.append(f"{key}: {directory} has no shipped backbone {backbone_id!r} ({path} and its {MANIFEST} "
                            f"entry; a relative path is read from the working directory: give the folder's "
                            f"absolute path when running elsewhere); set pretraining.weights: null to pretrain it "
                            f"here, or run {SHIP_HINT}")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{key}: {path} does not match its SHA-256 in {Path(directory) / MANIFEST} (changed or "
                            f"corrupt); restore it (`git checkout {path}`) or run {SHIP_HINT}")
        elif entry["pretraining"] != backbone.identity:
            problems.append(f"{key}: {path} was pretrained with another backbone or `pretraining:` than this "
                            f"config's (backbones.{backbone_id}, pretraining, datasets.pretrain, resolution); set "
                            f"pretraining.weights: null to pretrain here, or run {SHIP_HINT}")
    if problems:
        raise WeightsConfigError("shipped backbones:\n  " + "\n  ".join(problems))


def ship_backbones(trained: Mapping[str, tuple[str | Path, str]], directory: str | Path,
                   made_on: str) -> dict[str, dict[str, Any]]:
    """Copy freshly pretrained backbones ({role: (weights file, pretraining_identity)}) into
    `directory` with a manifest recording what `shipped_backbone` checks; return the manifest."""
    import shutil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for backbone_id, (source, identity) in sorted(trained.items()):
        path = directory / f"{backbone_id}.pt"
        shutil.copyfile(source, path)
        manifest[backbone_id] = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                                 "pretraining": identity, "made_on": made_on}
    (directory / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=True))
    return manifest
