"""Planning a campaign before submitting it: `mld plan`, the time estimate, the weights cache and
the job launcher (execution settings divided among a multi-GPU job's processes)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mld import estimate, launch, weights
from mld.atomic import file_sha256
from mld.commands.plan import format_plan, parse_overrides, plan, stores_to_write, workflow_config
from mld.experiments import build_registry

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"


def test_estimate_scales_with_epochs_images_and_resolution() -> None:
    speed = estimate.paper_speed("gap", 80)
    assert speed.train == 706 and speed.resolution == 224  # Table 9's GAP row at 100 classes
    train = {"epochs": 10, "resolution": 224, "eval_every": 0}
    base = estimate.expected_minutes(train, 70600, 0, speed)
    assert base == pytest.approx(10 * 70600 / 706 / 60)
    assert estimate.expected_minutes({**train, "epochs": 20}, 70600, 0, speed) == pytest.approx(2 * base)
    assert estimate.expected_minutes({**train, "resolution": 448}, 70600, 0, speed) == pytest.approx(4 * base)
    assert estimate.expected_minutes(train, 70600, 0, speed, gpus=2) == pytest.approx(base / 2)


def test_requests_have_a_margin_and_retries_never_pass_the_cap() -> None:
    assert estimate.requested_minutes(100, margin=1.5, overhead=10, cap=2880) == 160
    assert estimate.requested_minutes(100, margin=1.5, overhead=10, cap=2880, attempt=2) == 320
    assert estimate.requested_minutes(2000, margin=1.5, overhead=10, cap=2880, attempt=3) == 2880


def test_plan_of_the_paper_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no finished runs here
    config = workflow_config([PAPER], parse_overrides([f"data_root={tmp_path}"]))
    registry = build_registry(config)
    rows = {(target, rule): cost for target, rule, cost in plan(registry, [])}
    total = rows[("all", "train")]
    assert total.jobs == sum(len(run.seeds) for run in registry.runs.values())
    cap_h = config["resources"]["default"]["max_runtime"] / 60
    assert 0 < total.requested_gpu_h <= total.jobs * cap_h
    assert rows[("heads", "train")].jobs < total.jobs
    one_seed = build_registry(workflow_config([PAPER], parse_overrides([f"data_root={tmp_path}", "seeds=[0]"])))
    assert dict(((t, r), c) for t, r, c in plan(one_seed, ["all"]))[("all", "train")].jobs == len(registry.runs)


def test_plan_leaves_out_skipped_datasets_and_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = parse_overrides([f"data_root={tmp_path}", "skip_datasets=[openimages]"])
    registry = build_registry(workflow_config([PAPER], overrides))
    assert not plan(registry, ["openimages"])
    heads = plan(registry, ["heads"])[0][2]
    run_id = registry.table_members("table1_heads")[0][0]
    metrics = tmp_path / "results" / "runs" / run_id / "seed0" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("{}")
    assert plan(registry, ["heads"])[0][2].jobs == heads.jobs - 1


def test_plan_counts_the_disk_of_the_image_stores_still_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = build_registry(workflow_config([PAPER], parse_overrides([f"data_root={tmp_path}"])))
    stores = stores_to_write(registry, [])
    # COCO's 82,081 + 40,137 images (resources.estimate.images) at 448 x 448 x 3 bytes.
    assert stores["results/stores/coco/448px"] == pytest.approx((82081 + 40137) * 448 * 448 * 3 / 1e9)
    assert "results/stores/coco/448px: 73.6 GB" in format_plan([], "paper", stores)
    written = tmp_path / "results" / "stores" / "coco" / "448px" / "store.json"
    written.parent.mkdir(parents=True)
    written.write_text("{}")
    assert "results/stores/coco/448px" not in stores_to_write(registry, [])
    no_stores = build_registry(workflow_config([PAPER], parse_overrides([f"data_root={tmp_path}", "image_store=false"])))
    assert not no_stores.stores and not stores_to_write(no_stores, [])


def test_plan_command_prints_a_table() -> None:
    result = subprocess.run([sys.executable, "-m", "mld", "plan", "heads", "--configfile", str(PAPER)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "| heads | train | " in result.stdout


# ---------------------------------------------------------------- weights for offline nodes


def paper_with(backbone: dict, **top: object) -> dict:
    config = workflow_config([PAPER], {})
    config["backbones"] = {**config["backbones"], "medium": backbone}
    return {**config, **top}


def test_a_weights_file_alone_is_used_and_checked(tmp_path: Path) -> None:
    file = tmp_path / "m.pth"
    config = paper_with({"name": "tresnet_m", "weights": str(file)})
    with pytest.raises(weights.WeightsConfigError, match=r"backbones\.medium\.weights: .*m\.pth does not exist"):
        weights.check_weights({**config, "backbones": {"medium": config["backbones"]["medium"]}})
    file.write_bytes(b"x")
    weights.check_weights({**config, "backbones": {"medium": config["backbones"]["medium"]}})
    assert weights.backbone_weights(config, "medium") == (str(file), False)
    # On top of config/paper.yaml the role inherits `pretrained: true`: the file still wins.
    both = paper_with({"name": "tresnet_m", "weights": str(file), "pretrained": True})
    weights.check_weights({**both, "backbones": {"medium": both["backbones"]["medium"]}})
    assert weights.backbone_weights(both, "medium") == (str(file), False)


def test_pretrained_while_offline_needs_the_cache() -> None:
    config = paper_with({"name": "tresnet_m", "pretrained": True}, offline=True)
    with pytest.raises(weights.WeightsConfigError, match=r"backbones\.medium\.pretrained: .*offline"):
        weights.check_weights({**config, "backbones": {"medium": config["backbones"]["medium"]}})


def test_fetch_fills_the_cache_with_checksums_and_jobs_load_from_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    calls = []

    def fake_download(name: str) -> dict:
        calls.append(name)
        return {"weight": torch.full((2, 2), float(len(calls)))}

    cache = tmp_path / "cache"
    config = paper_with({"name": "tresnet_m.miil_in21k", "pretrained": True}, weights_cache=str(cache))
    single = {**config, "backbones": {"medium": config["backbones"]["medium"]}}
    with pytest.raises(weights.WeightsConfigError, match="weights_cache: .* does not exist"):
        weights.check_weights(single)
    manifest = weights.fetch_weights(weights.pretrained_names(single).values(), cache, download=fake_download,
                                     log=lambda line: None)
    entry = manifest["tresnet_m.miil_in21k"]
    assert entry["sha256"] == file_sha256(cache / entry["file"]) and len(entry["sha256"]) == 64
    assert yaml.safe_load((cache / "manifest.yaml").read_text()) == manifest
    weights.check_weights(single)
    assert weights.backbone_weights(single, "medium") == (str(cache / entry["file"]), False)
    weights.fetch_weights(["tresnet_m.miil_in21k"], cache, download=fake_download, log=lambda line: None)
    assert calls == ["tresnet_m.miil_in21k"]  # kept: the file matches its checksum
    (cache / entry["file"]).write_bytes(b"corrupt")
    assert weights.verify_cache(cache) == ["tresnet_m.miil_in21k"]


# ---------------------------------------------------------------- the launcher


def test_launcher_divides_workers_among_processes_and_refuses_result_keys() -> None:
    config = {"train": {"epochs": 3, "num_workers": 1}}
    settings = [launch.parse_setting("train.num_workers=8"), launch.parse_setting("train.device=cuda")]
    out = launch.execution_config(config, settings, processes=4)
    assert out["train"] == {"epochs": 3, "num_workers": 2, "device": "cuda"}
    assert launch.process_share(16, 3) == 5 and launch.process_share(0, 4) == 0
    with pytest.raises(ValueError, match="train.epochs"):
        launch.parse_setting("train.epochs=5")
    assert "--nproc-per-node=2" in launch.command(2, ["train"]) and "torch.distributed.run" not in launch.command(1, [])


def test_launcher_stops_a_slurm_job_before_its_limit(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(138))\n"
                      "time.sleep(30)\n")
    status = launch.supervise([sys.executable, str(script)], stop_after_min=0.5 / 60)
    assert status == 138
    assert launch.stop_after(60, 10) == 50 and launch.stop_after(8, 5) == 4  # short limits: halfway


def test_a_cached_backbone_loads_into_the_model_the_run_builds(tmp_path: Path) -> None:
    """What a job does with the cache: the file fetch_weights wrote is the run's backbone_weights."""
    timm = pytest.importorskip("timm")
    from mld.models import create_model

    reference = timm.create_model("test_resnet", num_classes=7)  # random weights stand in for the hub's
    weights.fetch_weights(["test_resnet"], tmp_path, download=lambda name: reference.state_dict(),
                          log=lambda line: None)
    config = {"backbones": {"medium": {"name": "test_resnet", "pretrained": True}}, "weights_cache": str(tmp_path)}
    file, pretrained = weights.backbone_weights(config, "medium")
    model = create_model("test_resnet", "gap", num_classes=3, pretrained=pretrained, backbone_weights=file)
    loaded = model.backbone.state_dict()
    shared = [key for key in reference.state_dict() if key in loaded]
    assert len(shared) >= len(loaded) - 2  # every backbone tensor (the classifier is not part of it)
    assert all(loaded[key].equal(reference.state_dict()[key]) for key in shared)
