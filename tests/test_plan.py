"""Planning a campaign before submitting it: `mld plan`, the time estimate, the weights cache and
the job launcher (execution settings divided among a multi-GPU job's processes)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mld import cli, estimate, launch, weights
from mld.atomic import file_sha256
from mld.commands.plan import format_plan, plan, stores_to_write
from mld.experiments import build_registry, load_config, parse_overrides

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
    assert estimate.expected_minutes(train, 70600, 0, speed, gpus=8, efficiency=0.9) == pytest.approx(base / 7.2)
    assert estimate.expected_minutes(train, 70600, 0, speed, gpus=1, efficiency=0.9) == pytest.approx(base)


def test_requests_have_a_margin_and_retries_never_pass_the_cap() -> None:
    assert estimate.requested_minutes(100, margin=1.5, overhead=10, cap=2880) == 160
    assert estimate.requested_minutes(100, margin=1.5, overhead=10, cap=2880, attempt=2) == 320
    assert estimate.requested_minutes(2000, margin=1.5, overhead=10, cap=2880, attempt=3) == 2880


def test_plan_of_the_paper_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no finished runs here
    config = load_config([PAPER], parse_overrides([f"data_root={tmp_path}"]))
    registry = build_registry(config)
    rows = {(target, rule): cost for target, rule, cost in plan(registry, [])}
    total = rows[("all", "train")]
    assert total.jobs == sum(len(run.seeds) for run in registry.runs.values())
    cap_h = config["resources"]["default"]["max_runtime"] / 60
    gpus = {run_id: estimate.run_gpus(config, run) for run_id, run in registry.runs.items()}
    assert 0 < total.requested_gpu_h <= sum(len(run.seeds) * gpus[run_id] * cap_h
                                            for run_id, run in registry.runs.items())
    # ImageNet's A1 and A2 runs train on 8 GPUs (the official A2 command's), every other run on one.
    assert {run_id for run_id, count in gpus.items() if count == 8} == {
        run_id for run_id, run in registry.runs.items() if set(run.recipes.values()) & {"imagenet_a1", "imagenet_a2"}}
    assert set(gpus.values()) == {1, 8} and total.gpus_per_job == {1, 8}
    assert rows[("single_label", "train")].gpus_per_job == {8} and rows[("single_label", "train")].over_cap == 0
    assert rows[("heads", "train")].jobs < total.jobs
    # Table 2's transformer-decoder at 9,605 classes is far over its 16 GB budget: refused at start, its
    # three jobs expected at minutes (the plan once counted them at 95,177 GPU-hours).
    assert rows[("extreme_classification", "train")].refused == total.refused == 3
    assert total.expected_gpu_h < 10_000  # every other run, A1's 600 epochs and Table 14 included
    one_seed = build_registry(load_config([PAPER], parse_overrides([f"data_root={tmp_path}", "seeds=[0]",
                                                                        "skip_datasets=[openimages]"])))
    open_images = {run_id for run_id, run in registry.runs.items() if "openimages" in run.config["dataset"]["path"]}
    one_seed_train = dict(((t, r), c) for t, r, c in plan(one_seed, ["all"]))[("all", "train")]
    assert one_seed_train.jobs == len(registry.runs) - len(open_images) and one_seed_train.refused == 0


def test_plan_leaves_out_skipped_datasets_and_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = parse_overrides([f"data_root={tmp_path}", "skip_datasets=[openimages]"])
    registry = build_registry(load_config([PAPER], overrides))
    assert not plan(registry, ["openimages"])
    heads = plan(registry, ["heads"])[0][2]
    run_id = registry.table_members("table1_heads")[0][0]
    metrics = tmp_path / "results" / "runs" / run_id / "seed0" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("{}")
    assert plan(registry, ["heads"])[0][2].jobs == heads.jobs - 1


def test_plan_counts_the_disk_of_the_image_stores_still_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = build_registry(load_config([PAPER], parse_overrides([f"data_root={tmp_path}"])))
    stores = stores_to_write(registry, [])
    # COCO's 82,081 + 40,137 images (resources.estimate.images) at 448 x 448 x 3 bytes.
    assert stores["results/stores/coco/448px"] == pytest.approx((82081 + 40137) * 448 * 448 * 3 / 1e9)
    assert "results/stores/coco/448px: 73.6 GB" in format_plan([], "paper", stores)
    written = tmp_path / "results" / "stores" / "coco" / "448px" / "store.json"
    written.parent.mkdir(parents=True)
    written.write_text("{}")
    assert "results/stores/coco/448px" not in stores_to_write(registry, [])
    no_stores = build_registry(load_config([PAPER], parse_overrides([f"data_root={tmp_path}", "image_store=false"])))
    assert not no_stores.stores and not stores_to_write(no_stores, [])


def test_plan_command_prints_a_table(tmp_path: Path) -> None:
    def mld_plan(*arguments: str) -> str:
        result = subprocess.run([sys.executable, "-m", "mld", "plan", "heads", "openimages", "--configfile", str(PAPER),
                                 *arguments], capture_output=True, text=True, cwd=tmp_path)  # no finished runs here
        assert result.returncode == 0, result.stderr
        return result.stdout

    # Table 1's four heads, three seeds each; Open Images' runs are a target of their own.
    everything = mld_plan()
    assert "| heads | train | 12 | " in everything and "| openimages | train | " in everything
    overridden = mld_plan("--config", "seeds=[0]", "skip_datasets=[openimages]")
    assert "| heads | train | 4 | " in overridden and "| openimages |" not in overridden


def test_a_recipe_on_two_gpus_halves_the_time_and_doubles_the_job(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """recipes.<name>.gpu: the estimate divides by the GPUs (times the stated efficiency), the job
    asks for that many GPUs and as many times the threads, memory and loader workers."""
    monkeypatch.chdir(tmp_path)
    test_config = REPO / "config" / "test.yaml"
    exact = {"resources": {"estimate": {"scaling_efficiency": 1.0}}}
    one = build_registry(load_config([test_config], exact))
    two = build_registry(load_config([test_config], {**exact, "recipes": {"voc": {"gpu": 2}}}))
    run_id = "voc-like/large/ml_decoder-k20/fixed_random"
    assert two.runs[run_id].recipes == {"table11_voc": "voc"}
    assert estimate.run_minutes(two, run_id, 0)[0] == pytest.approx(estimate.run_minutes(one, run_id, 0)[0] / 2)
    job = estimate.train_job(two.config, two.runs[run_id])
    assert job == estimate.TrainJob(gpus=2, threads=2, mem_mb=4000, num_workers=0)  # the default's 1 thread, 2000 MB
    assert estimate.train_job(one.config, one.runs[run_id]) == estimate.TrainJob(0, 1, 2000, 0)  # CPU
    voc = dict(((t, r), c) for t, r, c in plan(two, ["voc"]))[("voc", "train")]
    assert voc.gpus_per_job == {2} and "| voc | train | 1 | " in format_plan(plan(two, ["voc"]), "two")
    others = [run for run in two.runs.values() if "voc" not in run.recipes.values()]
    assert all(estimate.run_gpus(two.config, run) == 0 for run in others)  # the embedded default's CPU jobs
    # A user config on top of the paper's takes a recipe back to the train rule's GPUs with null.
    from types import SimpleNamespace

    a2 = SimpleNamespace(run_id="a2", recipes={"table13_single_label": "imagenet_a2"},
                         config={"train": {"batch_size": 2048}})
    assert estimate.run_gpus(load_config([PAPER], {}), a2) == 8
    assert estimate.run_gpus(load_config([PAPER], {"recipes": {"imagenet_a2": {"gpu": None}}}), a2) == 1


def test_a_gpu_count_that_does_not_split_the_batch_is_refused_naming_the_key() -> None:
    from mld.experiments import ExperimentConfigError

    test_config = REPO / "config" / "test.yaml"
    registry = build_registry(load_config([test_config], {"recipes": {"voc": {"gpu": 7}}}))
    run = registry.runs["voc-like/large/ml_decoder-k20/fixed_random"]
    with pytest.raises(ExperimentConfigError, match=r"config key recipes\.voc\.gpu = 7: run voc-like/large/"
                                                     r"ml_decoder-k20/fixed_random has train\.batch_size = 64"):
        estimate.run_gpus(registry.config, run)
    with pytest.raises(ExperimentConfigError, match=r"config key recipes\.voc\.gpu = 0: expected an integer >= 1 or null"):
        load_config([test_config], {"recipes": {"voc": {"gpu": 0}}})


# ---------------------------------------------------------------- weights for offline nodes


def paper_with(backbone: dict, **top: object) -> dict:
    config = load_config([PAPER], {})
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
    import torch  # here: the rest of this module needs no torch
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
    flags = launch.setting_flags(["train.num_workers=8", "train.device=cuda"], processes=4)
    assert flags == ["--set", "train.num_workers=2", "--set", "train.device=cuda"]
    assert launch.process_share(16, 3) == 5 and launch.process_share(0, 4) == 0
    with pytest.raises(ValueError, match="train.epochs"):
        launch.setting_flags(["train.epochs=5"], processes=1)
    assert "--nproc-per-node=2" in launch.command(2, ["train"]) and "torch.distributed.run" not in launch.command(1, [])
    # torchrun passes the early stop's SIGUSR1 on to its processes, not only its default signals.
    assert "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in launch.command(2, ["train"])


def test_launcher_stops_a_slurm_job_before_its_limit(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(138))\n"
                      "time.sleep(30)\n")
    status = launch.supervise([sys.executable, str(script)], stop_after_min=0.5 / 60)
    assert status == 138
    assert launch.stop_after(60, 10) == 50 and launch.stop_after(8, 5) == 4  # short limits: halfway


def test_fetch_weights_command_fills_the_cache_jobs_then_read_offline(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`mld fetch-weights` itself, with timm's hub replaced by a model of known weights."""
    import timm
    import torch

    downloaded = []

    def from_the_hub(name: str, pretrained: bool = False, **options: object) -> torch.nn.Module:
        assert pretrained, name
        downloaded.append(name)
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(timm, "create_model", from_the_hub)
    cache = tmp_path / "cache"
    arguments = ["fetch-weights", "--configfile", str(PAPER), "--cache", str(cache)]
    assert cli.main(arguments) == 0
    roles = weights.pretrained_names(load_config([PAPER], {}))
    wanted = set(roles.values())
    assert "tresnet_m.miil_in21k" in wanted and sorted(downloaded) == sorted(wanted)  # each once
    manifest = yaml.safe_load((cache / "manifest.yaml").read_text())
    assert set(manifest) == wanted and weights.verify_cache(cache) == []
    assert f"add `weights_cache: {cache.resolve()}` to your config" in capsys.readouterr().out
    assert cli.main(arguments) == 0 and len(downloaded) == len(wanted)  # kept: checksums match
    offline = load_config([PAPER], {"weights_cache": str(cache), "offline": True})
    # Every pretrained role now loads from the cache with the hub off.
    weights.check_weights({**offline, "backbones": {role: offline["backbones"][role] for role in roles}})
    assert weights.backbone_weights(offline, "medium") == (str(cache / manifest["tresnet_m.miil_in21k"]["file"]),
                                                            False)


def test_a_cached_backbone_loads_into_the_model_the_run_builds(tmp_path: Path) -> None:
    """What a job does with the cache: the file fetch_weights wrote is the run's backbone_weights."""
    import timm
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


def test_a_run_its_budget_will_refuse_is_planned_as_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded default's Table 2 transformer-decoder is over its 0.25 GFLOPs budget: the plan
    counts its job as refused at minutes, not at its training time; the other runs are not refused."""
    monkeypatch.chdir(tmp_path)
    registry = build_registry(load_config([REPO / "config" / "config.yaml"], {}))
    rows = {(target, rule): cost for target, rule, cost in plan(registry, ["extreme_classification", "heads"])}
    extreme, heads = rows[("extreme_classification", "train")], rows[("heads", "train")]
    decoder_seeds = len(registry.runs["oi-like/transformer_decoder"].seeds)
    assert extreme.refused == decoder_seeds and heads.refused == 0
    from mld.commands.plan import REFUSED_MINUTES, expected_refusals

    reasons = expected_refusals(registry, registry.tables["table2_extreme"])
    assert list(reasons) == ["oi-like/transformer_decoder"]
    assert "GFLOPs per image exceed train.feasibility.max_gflops = 0.25" in reasons["oi-like/transformer_decoder"]
    unbudgeted = build_registry(load_config([REPO / "config" / "config.yaml"],
                                                {"experiments": {**registry.config["experiments"],
                                                                 "extreme_feasibility": {"max_gflops": None}}}))
    free = dict(((t, r), c) for t, r, c in plan(unbudgeted, ["extreme_classification"]))[("extreme_classification",
                                                                                           "train")]
    assert free.refused == 0
    # A refused job is expected to cost REFUSED_MINUTES instead of its training time (and is not over its cap).
    from mld.commands.plan import RuleCost

    cost = RuleCost()
    cost.add(requested_min=120, expected_min=50_000, gpus=2, refused=True)
    assert (cost.refused, cost.over_cap, cost.expected_gpu_h, cost.requested_gpu_h) == (1, 0, REFUSED_MINUTES * 2 / 60, 4.0)
