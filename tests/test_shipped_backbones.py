"""The embedded default's shipped backbones: the registry starts from them, `mld ship-backbones`
writes them with a manifest, and a missing, changed or differently pretrained file is refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mld.atomic import file_sha256
from mld.experiments import build_registry, deep_merge, load_config
from mld.weights import WeightsConfigError, check_shipped_backbones

REPO = Path(__file__).resolve().parents[1]


def registry_for(name: str, **overrides):
    return build_registry(deep_merge(load_config(REPO / "config" / f"{name}.yaml", root=REPO), overrides))


def test_the_default_starts_every_backbone_from_its_checked_shipped_file(monkeypatch):
    monkeypatch.chdir(REPO)
    registry = registry_for("config")
    manifest = yaml.safe_load((REPO / "backbones" / "manifest.yaml").read_text())
    assert set(registry.backbones) == set(manifest) == {"small", "medium", "large", "xlarge", "convnext"}
    for backbone_id, backbone in registry.backbones.items():
        assert backbone.shipped and backbone.weights == f"backbones/{backbone_id}.pt"
        assert manifest[backbone_id]["pretraining"] == backbone.identity
    check_shipped_backbones(registry.config, registry.backbones)
    feature_weights = {cache.config["model"]["backbone_weights"] for cache in registry.features.values()}
    assert feature_weights == {f"backbones/{backbone_id}.pt" for backbone_id in manifest}


def test_another_pretraining_is_refused_naming_the_key_and_the_fix(monkeypatch):
    monkeypatch.chdir(REPO)
    registry = registry_for("config", pretraining={"train": {"epochs": 9}})
    with pytest.raises(WeightsConfigError) as error:
        check_shipped_backbones(registry.config, registry.backbones)
    assert "config key pretraining.weights: backbones/medium.pt was pretrained with another backbone or " \
           "`pretraining:` than this config's" in str(error.value)
    assert "make backbones" in str(error.value)


def test_the_pretraining_identity_ignores_where_the_results_lie_but_not_the_pretraining_set():
    default = registry_for("config").backbones["medium"].identity
    assert registry_for("config", label="elsewhere").backbones["medium"].identity == default
    larger_set = registry_for("config", datasets={"pretrain": {"synthetic": {"num_train": 3001}}})
    assert larger_set.backbones["medium"].identity != default


def test_ship_backbones_writes_the_files_and_a_manifest_the_check_accepts(tmp_path: Path):
    # The test config pretrains its backbones; stand-in files where its pretraining jobs write them.
    registry = registry_for("test")
    for backbone_id, backbone in registry.backbones.items():
        path = tmp_path / backbone.weights
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"weights of {backbone_id}".encode())
    finished = subprocess.run([sys.executable, "-m", "mld", "ship-backbones", "--configfile",
                               str(REPO / "config" / "test.yaml"), "--out", "shipped"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    manifest = yaml.safe_load((tmp_path / "shipped" / "manifest.yaml").read_text())
    assert set(manifest) == set(registry.backbones)
    for backbone_id, entry in manifest.items():
        shipped = tmp_path / "shipped" / f"{backbone_id}.pt"
        assert shipped.read_bytes() == f"weights of {backbone_id}".encode()
        assert entry["sha256"] == file_sha256(shipped) and entry["pretraining"] == registry.backbones[backbone_id].identity
    uses_them = registry_for("test", pretraining={"weights": str(tmp_path / "shipped")})
    check_shipped_backbones(uses_them.config, uses_them.backbones)
    assert {b.weights for b in uses_them.backbones.values()} == {str(tmp_path / "shipped" / f"{b}.pt")
                                                                 for b in manifest}


def test_ship_backbones_names_what_is_not_pretrained_yet(tmp_path: Path):
    finished = subprocess.run([sys.executable, "-m", "mld", "ship-backbones", "--configfile",
                               str(REPO / "config" / "test.yaml"), "--out", "shipped"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode != 0
    assert "not pretrained yet: results/backbones/" in finished.stderr
    assert "pretrained_backbones --config 'pretraining={weights: null}'" in finished.stderr
