"""The experiment registry: every paper table gets its runs, run configs are valid engine configs,
rows join the paper's rows, identical cells are one run, and bad workflow configs fail clearly."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mld import experiments, paths
from mld.experiments import ExperimentConfigError, build_registry, load_config, resolve_base, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {name: load_config(REPO / "config" / f"{name}.yaml", root=REPO) for name in ("config", "paper", "test")}


@pytest.fixture(scope="module")
def default_registry() -> experiments.Registry:
    return build_registry(CONFIGS["config"])


@pytest.fixture(scope="module")
def paper_registry() -> experiments.Registry:
    return build_registry(CONFIGS["paper"])


def changed(config: dict, **updates: dict) -> dict:
    """A copy of `config` with nested `updates` merged in (as a user's config file would)."""
    return experiments.deep_merge(copy.deepcopy(config), updates)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_table_of_the_paper_gets_runs_or_measurements(name: str) -> None:
    registry = build_registry(CONFIGS[name])
    from mld.report import paper

    assert set(paper.table_ids()) <= set(registry.tables)
    skipped = set(CONFIGS[name].get("skip_tables", []))
    assert {table_id for table_id, members in registry.tables.items() if not members} == skipped
    for table_id, members in registry.tables.items():
        for member in members:
            assert member in registry.runs or member in registry.measurements
    assert {t for tables in registry.targets.values() for t in tables} == set(registry.tables)


def test_embedded_default_size_fits_the_cpu_budget(default_registry: experiments.Registry) -> None:
    jobs = sum(len(run.seeds) for run in default_registry.runs.values())
    assert 120 <= jobs <= 160, "the embedded default is sized for about 50 runs x 3 seeds"
    assert all(run.seeds == [0, 1, 2] for run in default_registry.runs.values())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_configs_are_valid_engine_configs_and_head_options_exist(name: str) -> None:
    from mld.engine.config import validate_run_config
    from mld.heads import check_head_options

    registry = build_registry(CONFIGS[name])
    configs = [run.config_for_seed(run.seeds[0]) for run in registry.runs.values()]
    configs += [entry["config"] for entry in (*registry.backbones.values(), *registry.features.values())]
    for config in configs:
        validated = validate_run_config(config, source=config["run_id"])
        check_head_options(validated["model"]["head"], validated["model"]["head_options"])


PLOTTED_ONLY = {"figure5", "figure6", "figure6_speed"}


def test_rows_use_the_key_columns_of_the_papers_tables(paper_registry: experiments.Registry) -> None:
    from mld.report import paper

    for table_id in set(paper.table_ids()) & set(paper_registry.tables):
        key = set(paper.table_spec(table_id)["key"])
        reported = paper.paper_table(table_id)
        runs, measurements = paper_registry.table_members(table_id)
        rows = [paper_registry.runs[r].rows[table_id] for r in runs]
        rows += [paper_registry.measurements[m]["rows"][table_id] for m in measurements]
        for row in rows:
            # Table 6 adds its zsl/gzsl column and module timing its module column from the outputs.
            assert set(row) - {"queries"} <= key, (table_id, row)
            for column, value in row.items():
                # Figures 5 and 6 plot their other backbones' points, not given as numbers: no reported row.
                if column in reported and isinstance(value, str) and table_id not in PLOTTED_ONLY:
                    assert value in set(reported[column]), f"{table_id}: {column}={value!r} is no paper value"


def test_the_paper_config_reproduces_the_papers_cells(paper_registry: experiments.Registry) -> None:
    rows = {t: [paper_registry.runs[r].rows[t] for r in paper_registry.table_members(t)[0]]
            for t in paper_registry.tables}
    assert {"head": "ml_decoder", "queries": 20} in rows["table1_heads"]
    assert [r["queries"] for r in rows["table2_extreme"] if r["head"] == "ml_decoder"] == [100, 200, 400]
    # The transformer-decoder has one query per class: the configured Open Images class count (the
    # official 9,605), under the paper's row key "9600".
    classes = CONFIGS["paper"]["datasets"]["openimages"]["num_classes"]
    decoder = next(r for r in paper_registry.table_members("table2_extreme")[0] if "transformer_decoder" in r)
    assert paper_registry.runs[decoder].settings["queries"] == classes == 9605
    assert {"head": "transformer_decoder", "queries": 9600} in rows["table2_extreme"]
    assert {"backbone": "tresnet_xl", "resolution": 640} in rows["resolution"]
    assert {"head": "ml_decoder", "queries": 1006} in rows["table4_zsl_groups"]
    extreme = paper_registry.runs["openimages-224px/ml_decoder-k100/fixed_random"].config
    assert extreme["train"]["resolution"] == 224 and extreme["dataset"]["unknown_labels"] == "negative"
    # Table 12: GAP with ASL is Table 2's GAP run; ML-Decoder is the official model's K = 200 (Table 2's 86.8).
    assert set(paper_registry.tables["table12_openimages"]) == {
        "openimages-224px/gap", "openimages-224px/ml_decoder-k200/fixed_random"}
    assert paper_registry.runs["openimages-224px/gap"].rows["table12_openimages"] == {"method": "asl"}


def test_one_cell_of_several_tables_is_one_run(default_registry: experiments.Registry) -> None:
    run = default_registry.runs["coco-like/ml_decoder-k80/fixed_random"]
    # Table 5's ResNet101 row: `resnet101` is an alias of `medium` in the embedded default.
    assert set(run.rows) == {"table1_heads", "table7_query_types", "figure5", "table5_coco_sota"}
    # No two runs compute the same thing under different ids.
    configs = [yaml.safe_dump(run.config, sort_keys=True) for run in default_registry.runs.values()]
    assert len(set(configs)) == len(configs)


def test_run_ids_say_what_differs(default_registry: experiments.Registry) -> None:
    ids = set(default_registry.runs)
    assert {"coco-like/gap", "coco-like/transformer_decoder", "coco-like/ml_decoder-k20/fixed_random",
            "coco-like-96px/xlarge/ml_decoder-k80/fixed_random", "voc-like/convnext/hsvlt-no_hamburger",
            "imagenet-like/ml_decoder-k25/softmax"} <= ids
    for run_id, run in default_registry.runs.items():
        assert " " not in run_id and not run_id.startswith("/") and "//" not in run_id
        assert paths.run_dir(run_id, 0) == f"results/runs/{run_id}/seed0"


def test_a_run_carries_its_dataset_and_backbone_role_and_its_jobs_configs(
        paper_registry: experiments.Registry) -> None:
    """What the workflow needs of a run is on its record, and a job's config is found by the name
    the record gave its file (a run id may itself hold "/" and "seed")."""
    run = paper_registry.runs["coco/ml_decoder-k20/fixed_random"]
    assert (run.dataset, run.backbone_role) == ("coco", "medium")
    assert paper_registry.run_dataset(run.run_id).path == run.config["dataset"]["path"] == "results/data/coco"
    resnet = paper_registry.runs["coco/resnet101/ml_decoder-k80/fixed_random"]
    assert resnet.backbone_role == "resnet101" and resnet.config["model"]["backbone"] == "resnet101.a1h_in1k"
    for run in paper_registry.runs.values():
        assert run.config["dataset"]["path"] == paper_registry.datasets[run.dataset].path
        for seed in run.seeds:
            assert paper_registry.job_config("runs", paths.run_job_name(run.run_id, seed)) == run.config_for_seed(seed)
    measurement_id, measurement = next(iter(paper_registry.measurements.items()))
    assert paper_registry.job_config("measurements", measurement_id) == measurement.config
    with pytest.raises(KeyError):
        paper_registry.job_config("runs", "coco/ml_decoder-k20/fixed_random")  # a run, not a seed's job


def test_embedded_default_trains_heads_on_cached_features(default_registry: experiments.Registry) -> None:
    for run in default_registry.runs.values():
        model = run.config["model"]
        cache = run.config["features"]
        assert cache.startswith("results/features/") and model["pretrained"] is False
        assert model["backbone_weights"] in {b["weights"] for b in default_registry.backbones.values()}
        assert cache.endswith("-multiscale") == (model["head"] == "hsvlt")
        assert cache in {f["path"] for f in default_registry.features.values()}
    # Each resolution of a synthetic set is its own rendered dataset, and its own feature cache.
    assert {"coco-like-48px", "coco-like", "coco-like-96px"} <= set(default_registry.datasets)
    assert default_registry.datasets["coco-like-96px"]["image_size"] == 96


def test_paper_config_trains_end_to_end_from_pretrained_backbones(paper_registry: experiments.Registry) -> None:
    assert not paper_registry.backbones and not paper_registry.features
    for run in paper_registry.runs.values():
        model = run.config["model"]
        assert run.config["features"] is None
        # Table 13 and Figure 6 train ResNets from scratch (A2); the paper's TResNet-XL has no timm
        # weights (the official file goes in backbones.xlarge.weights).
        from_scratch = run.settings["backbone"] in {"resnet18", "resnet50", "resnet101_a2", "xlarge"}
        assert model["pretrained"] is not from_scratch, run.run_id
    xl = paper_registry.runs["coco-640px/xlarge/ml_decoder-k80/fixed_random"].config["model"]
    assert (xl["backbone"], xl["backbone_options"]) == ("tresnet_v2_l", {"layers": [3, 8, 34, 5]})
    low, high = (paper_registry.runs[f"coco-{r}px/large/ml_decoder-k80/fixed_random"].config for r in (224, 640))
    assert low["dataset"]["path"] == high["dataset"]["path"] and (low["train"]["resolution"], high["train"]["resolution"]) == (224, 640)
    # One dataset, decoded once per resolution its runs read (mld.data.store).
    assert (low["dataset"]["store"], high["dataset"]["store"]) == ("results/stores/coco/224px", "results/stores/coco/640px")
    assert paper_registry.datasets["coco"]["root"] == "/datasets/coco2014"


def test_a_hyperparameter_change_affects_only_the_runs_that_use_it() -> None:
    base = CONFIGS["config"]
    before = build_registry(base)
    after = build_registry(changed(base, heads={"hsvlt": {"embed_dim": 48}}))
    differing = {r for r in before.runs if before.runs[r].config != after.runs[r].config}
    assert differing == {r for r, run in before.runs.items() if run.config["model"]["head"] == "hsvlt"}
    # Neither the training recipe nor a head's options are part of a feature cache.
    caches = {f: c["config"] for f, c in before.features.items()}
    assert {f: c["config"] for f, c in after.features.items()} == caches
    retrained = build_registry(changed(base, train={"epochs": 3}, heads={"gap": {"dropout": 0.5}}))
    assert {f: c["config"] for f, c in retrained.features.items()} == caches


def test_zero_shot_runs_switch_the_augmentations_and_head_types(default_registry: experiments.Registry) -> None:
    options = {run.rows["table3_query_aug"]["augmentation"]: run.config["model"]["head_options"]
               for run in default_registry.runs.values() if "table3_query_aug" in run.rows}
    assert (options["none"]["query_noise"], options["none"]["random_queries"]) == (0.0, 0)
    assert options["both"]["query_noise"] > 0 and options["both"]["random_queries"] > 0
    assert options["additive_noise"]["random_queries"] == 0 and options["random_query"]["query_noise"] == 0
    head_types = {run.config["model"]["head_options"]["head_type"]
                  for run in default_registry.runs.values() if "table8_zsl_query_head" in run.rows}
    assert head_types == {"learnable", "shared", "nlp"}
    # The paper's ZSL baseline: full decoding (K = N, NLP queries) with a shared projection.
    full_decoding = [run for run in default_registry.runs.values()
                     if "table3_query_aug" in run.rows or "table4_zsl_groups" in run.rows]
    assert {(run.config["model"].get("num_groups"), run.config["model"]["head_options"]["query_type"],
             run.config["model"]["head_options"]["head_type"]) for run in full_decoding} == {
        (None, "nlp", "shared"), (default_registry.config["experiments"]["zero_shot_groups"], "nlp", "nlp")}
    assert all(run.config["task"] == "zero_shot" for run in default_registry.runs.values()
               if run.config["dataset"]["path"].endswith("nus-like"))


def test_measurements_cover_the_class_counts(default_registry: experiments.Registry) -> None:
    throughput = [default_registry.measurements[m] for m in default_registry.tables["table9_throughput"]]
    classes = CONFIGS["config"]["measurements"]["throughput_classes"]
    assert {(m["rows"]["table9_throughput"]["head"], m["num_classes"]) for m in throughput} == {
        (head, n) for head in ("gap", "transformer_decoder", "ml_decoder") for n in classes}
    assert all(m["config"]["model"]["backbone_weights"] is None for m in throughput)
    assert all(m["path"] == f"results/measurements/{i}.json" for i, m in default_registry.measurements.items())


def test_base_configs_merge_and_cycles_fail(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\nseeds: [4]\n")
    (tmp_path / "b.yaml").write_text("seeds: [1]\nlabel: b\nresources: {default: {threads: 1}}\n")
    assert resolve_base({"base": "a.yaml", "resources": {"train": {"gpu": 1}}}, root=tmp_path) == {
        "seeds": [4], "label": "b", "resources": {"default": {"threads": 1}, "train": {"gpu": 1}}}
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ExperimentConfigError, match="extends itself"):
        resolve_base({"base": "a.yaml"}, root=tmp_path)
    with pytest.raises(ExperimentConfigError, match="missing.yaml does not exist"):
        resolve_base({"base": "missing.yaml"}, root=tmp_path)


def test_one_loader_merges_files_then_typed_overrides_from_any_directory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Snakefile and every `mld` command resolve: files in order, `--config` overrides typed
    as YAML (Snakemake's list items arrive as strings), and `base:` found beside the checkout of the
    file that names it when the working directory is elsewhere."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("label: mine\nseeds: [5]\n")
    config = load_config([REPO / "config" / "test.yaml", tmp_path / "mine.yaml"], ["seeds=[0, 1]"])
    assert (config["label"], config["seeds"]) == ("mine", [0, 1])
    assert config == load_config([REPO / "config" / "test.yaml", tmp_path / "mine.yaml"], {"seeds": ["0", "1"]})
    assert experiments.parse_overrides({"seeds": ["0"], "image_store": "false", "label": "x"}) == {
        "seeds": [0], "image_store": False, "label": "x"}
    with pytest.raises(ExperimentConfigError, match=r"--config 'seeds': give KEY=VALUE"):
        load_config(REPO / "config" / "test.yaml", ["seeds"])
    with pytest.raises(ExperimentConfigError, match=r"the embedded default config/config.yaml is not in the "
                                                    r"working directory .*give the config file by path"):
        load_config()


@pytest.mark.parametrize("updates, message", [
    ({"seeds": "0"}, r"config key seeds = '0': expected a non-empty list of integers, each >= 0"),
    ({"mode": "fast"}, r"config key mode = fast: expected one of cached_features, end_to_end"),
    ({"datasets": {"coco": {"synthetic": {"preset": "coco-like", "size": 3}}}}, r"config key datasets.coco:"),
    ({"train_epochs": 3}, r"config key train_epochs: unknown key; the keys allowed here are base, label"),
    # One formatter (mld.schema) for every schema: the form meant (a mapping, not a role's name) and
    # its misspelt key; a list of numbers is one value, reported whole.
    ({"backbones": {"small": {"nam": "x"}}}, r"config key backbones.small: matches none of the allowed forms \(a "
                                             r"string, a mapping of keys \(name, .*\)\); closest: backbones.small.nam: "
                                             r"unknown key; the keys allowed here are name, label"),
    ({"measurements": {"throughput_classes": [0, "a"]}},
     r"config key measurements.throughput_classes = \[0, a\]: expected a non-empty list of integers, each >= 1$"),
])
def test_schema_errors_name_the_key(updates: dict, message: str) -> None:
    with pytest.raises(ExperimentConfigError, match=message):
        validate_config(changed(CONFIGS["config"], **updates))


def test_renamed_keys_still_read_with_a_warning_naming_the_new_key(tmp_path: Path) -> None:
    """A user's config with an old spelling (resources.tables, measurements.groups) means what it
    meant, and is told the new name; giving both spellings is refused."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"base": "config/test.yaml", "resources": {"tables": {"threads": 3}},
                                    "measurements": {"groups": 7}}))
    with pytest.warns(FutureWarning) as warned:
        config = load_config(mine, root=REPO)
    assert [str(warning.message) for warning in warned] == [
        "config key resources.tables is now called resources.report; rename it in your config",
        "config key measurements.groups is now called measurements.num_groups; rename it in your config"]
    assert config["resources"]["report"] == {"threads": 3} and "tables" not in config["resources"]
    assert config["measurements"]["num_groups"] == 7 and "groups" not in config["measurements"]
    mine.write_text(yaml.safe_dump({"base": "config/test.yaml", "measurements": {"groups": 7, "num_groups": 8}}))
    with pytest.raises(ExperimentConfigError, match=r"config key measurements.groups: renamed to "
                                                    r"measurements.num_groups, which is also given; remove "
                                                    r"measurements.groups"):
        load_config(mine, root=REPO)


def test_semantic_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(ExperimentConfigError, match=r"backbones.resnet50: 'tiny' must name a role"):
        build_registry(changed(CONFIGS["config"], backbones={"resnet50": "tiny"}))
    without_small = copy.deepcopy(CONFIGS["config"])
    del without_small["backbones"]["small"], without_small["backbones"]["resnet18"]  # resnet18: an alias of small
    with pytest.raises(ExperimentConfigError, match=r"backbones.small: missing"):
        build_registry(without_small)
    no_pretraining = copy.deepcopy(CONFIGS["config"])
    del no_pretraining["pretraining"]
    with pytest.raises(ExperimentConfigError, match="mode cached_features pretrains every backbone"):
        build_registry(no_pretraining)


def test_missing_real_data_names_the_config_key_and_path(paper_registry: experiments.Registry,
                                                         tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match=r"datasets.coco.root: /datasets/coco2014 does not exist"):
        experiments.check_dataset_source(paper_registry.datasets["coco"])
    with pytest.raises(ExperimentConfigError, match=r"datasets.imagenet.prepared: .* is not a prepared dataset"):
        experiments.check_dataset_source({**paper_registry.datasets["imagenet"], "path": str(tmp_path)})
    experiments.check_dataset_source({**paper_registry.datasets["coco"], "root": str(tmp_path)})


@pytest.mark.parametrize("offset", [0, 1])
def test_open_images_is_prepared_against_the_configs_class_count(offset: int, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The workflow's `mld prepare` arguments carry datasets.openimages.num_classes: a class list of
    another size is refused when the dataset is prepared, naming the key."""
    from mld.cli import main
    from toy_paper import write_toy_openimages

    spec = CONFIGS["paper"]["datasets"]["openimages"]
    written = write_toy_openimages(tmp_path, spec)
    config = changed(CONFIGS["paper"], data_root=str(tmp_path),
                     datasets={"openimages": {"num_classes": written + offset}},
                     experiments={"extreme_groups": [2, 5], "openimages_groups": 5})  # K within the toy classes
    entry = build_registry(config).datasets["openimages"]
    arguments = [str(a) for a in experiments.dataset_prepare_arguments(entry)]
    assert arguments[arguments.index("--num-classes") + 1] == str(written + offset)
    out = tmp_path / "prepared"
    assert main(["prepare", *arguments, "--out", str(out)]) == (2 if offset else 0)
    if offset:
        assert f"num_classes (--num-classes) is {written + 1}" in capsys.readouterr().err
        assert not out.exists()
    else:
        assert json.loads((out / "meta.json").read_text())["num_classes"] == written


def test_only_adapters_that_check_the_class_count_get_it(paper_registry: experiments.Registry) -> None:
    for entry in paper_registry.datasets.values():
        if entry.source == "adapter":
            arguments = experiments.dataset_prepare_arguments(entry)
            assert ("--num-classes" in arguments) == (entry.adapter in experiments.ADAPTERS_CHECKING_CLASS_COUNT)
    with pytest.raises(ExperimentConfigError, match="already prepared"):
        experiments.dataset_prepare_arguments(paper_registry.datasets["imagenet"])


def test_every_run_of_the_tiny_config_builds_and_steps_its_head() -> None:
    """Each run's head, built as the engine builds it on cached features, trains for one step, in
    which every parameter takes part."""
    import timm
    import torch

    from mld.data import preset_num_classes
    from mld.engine.modeling import build_model

    registry = build_registry(CONFIGS["test"])
    channels: dict[str, list[int]] = {}
    for run_id, run in registry.runs.items():
        model_config = run.config["model"]
        key = yaml.safe_dump([model_config["backbone"], model_config["backbone_options"]])
        if key not in channels:
            backbone = timm.create_model(model_config["backbone"], features_only=True,
                                         **model_config["backbone_options"])
            channels[key] = backbone.feature_info.channels()
        stages = channels[key][-4:] if model_config["head"] == "hsvlt" else channels[key][-1]
        dataset = next(d for d in registry.datasets.values() if d["path"] == run.config["dataset"]["path"])
        num_classes = preset_num_classes(dataset["preset"])
        model = build_model(model_config, num_classes, torch.randn(num_classes, 16), stages).train()
        features = [torch.randn(2, c, 4, 4) for c in stages] if isinstance(stages, list) else torch.randn(2, stages, 2, 2)
        logits = model(features)
        assert logits.shape[0] == 2 and logits.shape[1] >= num_classes, run_id
        logits.sum().backward()
        # DistributedDataParallel (find_unused_parameters=False) needs every parameter in the graph.
        unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"{run_id}: parameters without gradient {unused}"


def test_grids_of_the_table_follow_the_config() -> None:
    """`k: $extreme_groups` makes one run per K; a config with other Ks gets other runs."""
    base = CONFIGS["config"]
    ks = lambda registry: sorted(registry.runs[r].config["model"]["num_groups"]  # noqa: E731
                                 for r in registry.tables["table2_extreme"]
                                 if registry.runs[r].config["model"]["head"] == "ml_decoder")
    assert ks(build_registry(base)) == sorted(base["experiments"]["extreme_groups"])
    smaller = build_registry(changed(base, experiments={"extreme_groups": [10, 40]}))
    assert ks(smaller) == [10, 40]
    # Table 12's ML-Decoder has the config's experiments.openimages_groups (the paper: the official model's 200).
    (table12_ml,) = [r for r in smaller.tables["table12_openimages"] if "ml_decoder" in r]
    assert smaller.runs[table12_ml].config["model"]["num_groups"] == base["experiments"]["openimages_groups"] == 50


def test_a_recipe_trains_only_the_runs_that_name_it() -> None:
    base = CONFIGS["config"]
    before = build_registry(base)
    after = build_registry(changed(base, recipes={"openimages": {"resolution": 48, "train": {"epochs": 2}}}))
    openimages = {r for r, run in before.runs.items() if run.recipes.keys() & {"table2_extreme", "table12_openimages"}}
    assert openimages and all(run.settings["dataset"] == "openimages" for r, run in before.runs.items() if r in openimages)
    moved = {r for r, run in after.runs.items() if run.config["train"]["epochs"] == 2}
    assert {after.runs[r].settings["dataset"] for r in moved} == {"openimages"} and len(moved) == len(openimages)
    assert all(after.runs[r].config["train"]["resolution"] == 48 and "-48px/" in r for r in moved)
    assert set(after.runs) - moved == set(before.runs) - openimages


def test_unknown_recipe_names_the_config_key() -> None:
    config = copy.deepcopy(CONFIGS["config"])
    del config["recipes"]["nus_zsl"]
    with pytest.raises(ExperimentConfigError, match=r"config key recipes.nus_zsl: missing; table table3_query_aug"):
        build_registry(config)


def test_a_bad_experiments_table_names_the_entry_and_key(tmp_path: Path) -> None:
    from mld.experiments import read_table

    table = yaml.safe_load(experiments.TABLE_PATH.read_text())
    table["experiments"][0]["heads"] = "gap"  # a typo of `head`
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    with pytest.raises(ExperimentConfigError, match=r"table.yaml key experiments.0.heads: unknown key; the keys "
                                                    r"allowed here are table, row"):
        read_table(path)
    del table["experiments"][0]["heads"]
    table["experiments"][0]["row"] = {"head": "{head_kind}"}
    with pytest.raises(ExperimentConfigError, match=r"experiments.0 \(table table1_heads\): template '\{head_kind\}'"):
        experiments.expand(CONFIGS["config"], lambda role: 80, table)


def test_registry_entries_are_frozen_records_read_as_mappings(default_registry: experiments.Registry) -> None:
    import dataclasses

    entry = default_registry.datasets["coco-like"]
    assert isinstance(entry, experiments.DatasetEntry) and entry["path"] == entry.path == "results/data/coco-like"
    assert {**entry}["num_classes"] == 80 and entry.get("missing") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.path = "elsewhere"  # type: ignore[misc]
    measurement = next(iter(default_registry.measurements.values()))
    assert isinstance(measurement, experiments.Measurement) and measurement["kind"] == measurement.kind


def test_the_paper_tresnet_xl_is_the_reported_architecture() -> None:
    """config/paper.yaml's `xlarge` is the network whose FLOPs the paper reports for TResNet-XL."""
    from mld.report import paper

    reported = paper.paper_table("resolution").to_dict("records")
    (xl,) = [row for row in reported if row["backbone"] == "tresnet_xl"]
    spec = CONFIGS["paper"]["backbones"]["xlarge"]
    assert (spec["name"], spec["options"]) == (xl["timm_backbone"], xl["backbone_options"])
    assert "XL" in spec["label"]


def test_a_backbone_that_would_start_from_random_weights_unasked_is_refused() -> None:
    """Paper config as shipped: TResNet-XL has no weights file (timm has none), so its runs are
    refused naming backbones.xlarge and the fix; A2's ResNet50 trains from scratch as the paper's
    does; `from_scratch: true` lets XL train, its rows marked as not compared with the paper."""
    paper = build_registry(CONFIGS["paper"])
    xl_runs = [run for run in paper.runs.values() if run.config["model"]["backbone_options"].get("layers")]
    assert xl_runs and all(run.weights == "random init" and not run.compared for run in xl_runs)
    for run in xl_runs:
        assert run.refusal.startswith(f"config key backbones.xlarge: run {run.run_id} ")
        assert "give backbones.xlarge.weights: FILE" in run.refusal and "from_scratch: true" in run.refusal
    a2 = [paper.runs[r] for r in paper.tables["table13_single_label"]]
    assert a2 and all(run.weights == "random init" and run.compared and run.refusal is None for run in a2)
    pretrained = paper.runs["coco/gap"]
    assert (pretrained.weights, pretrained.compared, pretrained.refusal) == ("timm:tresnet_m.miil_in21k", True, None)
    backbones = {**CONFIGS["paper"]["backbones"], "xlarge": {**CONFIGS["paper"]["backbones"]["xlarge"],
                                                             "from_scratch": True}}
    allowed = build_registry(changed(CONFIGS["paper"], backbones=backbones))
    xl_allowed = [allowed.runs[run.run_id] for run in xl_runs]
    assert all(run.refusal is None and not run.compared for run in xl_allowed)
    # The embedded default pretrains its own backbones: every run starts from that file.
    default = build_registry(CONFIGS["config"])
    assert all(run.compared and run.refusal is None for run in default.runs.values())


def test_a_bad_recipe_key_or_an_impossible_k_is_named_when_the_registry_is_built() -> None:
    """The registry checks every run config as the engine will: a misspelt key in a recipe's train
    block and a K above the class count are named (with the recipe and the run) before any job."""
    typo = changed(CONFIGS["paper"], recipes={"voc": {"train": {"epochz": 40}}})
    with pytest.raises(ExperimentConfigError) as error:
        build_registry(typo)
    message = str(error.value)
    assert "run voc2007/large/ml_decoder-k20/fixed_random (trained with recipes.voc over the shared train block): " \
           "train.epochz: unknown key" in message
    too_many = changed(CONFIGS["paper"], experiments={"openimages_groups": 20000})
    with pytest.raises(ExperimentConfigError, match=r"run openimages-224px/ml_decoder-k20000/fixed_random: K = 20000 "
                                                    r"groups for 9605 classes \(table\(s\) table12_openimages\)"):
        build_registry(too_many)
def test_skipped_tables_plan_nothing_and_need_no_roles() -> None:
    """The embedded default leaves Table 14 out: its dataset and backbone roles are not defined there."""
    assert CONFIGS["config"]["skip_tables"] == ["table14_transfer"]
    assert not {"cifar100", "stanford_cars"} & set(CONFIGS["config"]["datasets"])
    registry = build_registry(changed(CONFIGS["config"], skip_tables=["table14_transfer", "figure6", "figure6_speed"]))
    assert registry.tables["figure6"] == registry.tables["figure6_speed"] == registry.tables["table14_transfer"] == []
    assert not [run_id for run_id in registry.runs if "/small/" in run_id and run_id.startswith("imagenet-like")]
    # Without skip_tables, Table 14 needs its roles, and says which one is missing.
    with pytest.raises(ExperimentConfigError, match=r"config key datasets.cifar100: missing"):
        build_registry({**CONFIGS["config"], "skip_tables": []})


def test_figure6_measures_each_resnet_with_each_head(paper_registry: experiments.Registry,
                                                     default_registry: experiments.Registry) -> None:
    speed = paper_registry.tables["figure6_speed"]
    assert speed == [f"throughput/{role}/{head}" for role in ("resnet18", "resnet50", "resnet101_a2")
                     for head in ("gap-n1000", "ml_decoder-n1000-k100")]
    measured = paper_registry.measurements["throughput/resnet101_a2/ml_decoder-n1000-k100"]
    assert measured["config"]["model"]["backbone"] == "resnet101" and measured["config"]["model"]["num_groups"] == 100
    assert measured["rows"] == {"figure6_speed": {"backbone": "resnet101", "head": "ml_decoder"}}
    # Each Figure 6 point has its trained run (top-1) beside its measurement (speed), on the same row key.
    runs = [paper_registry.runs[run_id].rows["figure6"] for run_id in paper_registry.tables["figure6"]]
    assert runs == [paper_registry.measurements[m]["rows"]["figure6_speed"] for m in speed]
    # In the embedded default `resnet50` is the measurement backbone (medium): its GAP point at the
    # imagenet-like set's 100 classes is Table 9's GAP measurement at 100 classes, one measurement.
    shared = default_registry.measurements["throughput/gap-n100"]
    assert set(shared["rows"]) == {"table9_throughput", "figure6_speed"}
    assert default_registry.tables["figure6_speed"][2] == "throughput/gap-n100"


def test_table14_and_the_a1_row_in_the_paper_config(paper_registry: experiments.Registry) -> None:
    cifar, cars = (paper_registry.runs[run_id] for run_id in paper_registry.tables["table14_transfer"])
    assert (cifar.config["model"]["backbone"], cifar.config["train"]["resolution"], cifar.config["task"]) == \
        ("swin_large_patch4_window12_384.ms_in22k", 384, "single_label")
    cars_model = cars.config["model"]
    assert (cars_model["backbone"], cars.config["train"]["resolution"], cars_model["num_groups"]) == \
        ("tresnet_v2_l.miil_in21k", 224, 196)
    assert cifar.rows == {"table14_transfer": {"dataset": "cifar100", "method": "swin_l_ml_decoder"}}
    assert paper_registry.datasets["stanford-cars"]["adapter"] == "stanford_cars"
    a1 = paper_registry.runs["imagenet-224px/resnet50/ml_decoder-k100/a1"]
    assert a1.rows == {"table13_single_label": {"recipe": "a1", "activation": "sigmoid", "head": "ml_decoder"}}
    assert {key: a1.config["train"][key] for key in ("epochs", "lr", "weight_decay", "loss")} == \
        {"epochs": 600, "lr": 5.0e-3, "weight_decay": 0.01,
         "loss": {"name": "bce", "reduction": "mean", "target_threshold": 0.2}}


def test_a2_and_a1_average_their_bce_over_batch_and_classes(paper_registry: experiments.Registry) -> None:
    """As timm's BCE: a sum over a batch of 2048 x 1000 classes would make every gradient exceed
    LAMB's clipping norm of 1, so every step would be clipped."""
    import torch
    import torch.nn.functional as F

    from mld.losses import create_loss

    logits = torch.linspace(-3, 3, 24).reshape(4, 6)
    targets = torch.zeros(4, 6)
    targets[torch.arange(4), torch.tensor([0, 2, 5, 1])] = 1
    for run_id in ("imagenet-224px/resnet50/ml_decoder-k100/sigmoid", "imagenet-224px/resnet50/ml_decoder-k100/a1",
                   "imagenet-224px/resnet18/gap/sigmoid"):
        loss = create_loss(**paper_registry.runs[run_id].config["train"]["loss"])
        assert loss(logits, targets).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())
