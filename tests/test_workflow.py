"""The Snakemake workflow: lint, dry runs of the paper config, named targets, clear failures, and
the tiny config end to end, locally and through a real Slurm cluster (.ci/start-slurm.sh)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mld import numerics, paths
from mld.experiments import SCHEMA_PATH, Registry, build_registry, load_config

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "config" / "test.yaml"
# The embedded default's shipped backbones, for runs in another working directory (relative
# config paths are relative to the working directory).
SHIPPED = f"pretraining={{weights: {REPO / 'backbones'}}}"
# The single-node test cluster has one partition, `debug`: every rule the profile places goes there.
SLURM_OVERRIDES = ("--default-resources", "slurm_partition=debug",
                   "--set-resources", "train:slurm_partition=debug", "measure:slurm_partition=debug",
                   "--slurm-no-account",
                   "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")


def snakemake(*args: str | Path, workdir: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile from the repository root (as users do); its log
    and messages are all in `.stdout`."""
    command = [sys.executable, "-m", "snakemake"]
    if workdir is not None:
        command += ["--directory", str(workdir)]
    command += [str(arg) for arg in args]
    return subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a (dry) run."""
    table = output[output.index("job      "):]
    counts = {}
    for line in table.splitlines()[2:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def planned_runs(output: str) -> set[tuple[str, str]]:
    """The (run id, seed) pairs a dry run would train."""
    return set(re.findall(r"output: results/runs/(\S+)/seed(\d+)/metrics\.json", output))


# The named targets (`snakemake <name>`; the README's target table): each with the tables whose
# runs and measurements it makes.
TARGETS = {
    "heads": {"table1_heads"}, "extreme_classification": {"table2_extreme"},
    "query_augmentation": {"table3_query_aug"}, "zsl_groups": {"table4_zsl_groups"}, "coco": {"table5_coco_sota"},
    "zero_shot": {"table6_zsl"}, "query_types": {"table7_query_types"}, "zsl_query_head": {"table8_zsl_query_head"},
    "throughput": {"table9_throughput"}, "resolution": {"resolution"}, "stacked_layers": {"stacked_layers"},
    "module_timing": {"module_timing"}, "voc": {"table11_voc"}, "openimages": {"table12_openimages"},
    "single_label": {"table13_single_label"}, "top1_vs_speed": {"figure6", "figure6_speed"},
    "transfer": {"table14_transfer"}, "map_vs_flops": {"figure5"}, "hsvlt": {"hsvlt_heads", "hsvlt_reported"},
    "hsvlt_ablation": {"hsvlt_ablation"},
}


@dataclass(frozen=True)
class DryRun:
    """One `snakemake --dry-run` of the default target and every named target together: the whole
    DAG of a config, built once for every assertion about it."""

    output: str
    registry: Registry

    def counts(self) -> dict[str, int]:
        return job_counts(self.output)

    def target_inputs(self, target: str) -> set[str]:
        """The files a named target's job waits for (its `input:` line; none where its tables are skipped)."""
        job = re.search(rf"^(?:local)?rule {target}:\n((?:    .*\n)*)", self.output, re.MULTILINE)
        assert job, f"the dry run planned no job for target {target}"
        inputs = re.search(r"^    input: (.*)$", job.group(1), re.MULTILINE)
        return set(inputs.group(1).split(", ")) if inputs else set()


def dry_run_every_target(config_file: Path, workdir: Path, *options: str) -> DryRun:
    """The dry run of `all` and every named target in a fresh working directory."""
    result = snakemake("--dry-run", *options, "--configfile", config_file, "--", "all", *TARGETS, workdir=workdir)
    assert result.returncode == 0, result.stdout[-5000:]
    return DryRun(result.stdout, build_registry(load_config(config_file, root=REPO)))


def assigned_outputs(registry: Registry, tables: set[str]) -> set[str]:
    """What the experiments table assigns to `tables`: the metrics of every seed of each run with a
    row in one of them, and each such measurement (read from the rows, not the Snakefile's lookup)."""
    outputs = {paths.run_metrics(run_id, seed) for run_id, run in registry.runs.items() if tables & set(run.rows)
               for seed in run.seeds}
    return outputs | {measurement.path for measurement in registry.measurements.values()
                      if tables & set(measurement.rows)}


def load_config_dict(config: dict) -> dict:
    """A config given as a mapping, resolved and validated as the Snakefile does."""
    return load_config(config, root=REPO)


def write_raw_release(config: dict, roles: tuple[str, ...] | None = None) -> None:
    """The files and folders each real dataset's adapter reads (mld.paths.ADAPTER_READS), empty."""
    registry = build_registry(config)
    for entry in registry.datasets.values():
        if entry["source"] != "adapter" or (roles is not None and entry["role"] not in roles):
            continue
        Path(entry["root"]).mkdir(parents=True, exist_ok=True)  # CIFAR-100's reads depend on its release
        reads = [Path(entry["root"]) / relative for relative in paths.ADAPTER_READS[entry["adapter"]]]
        reads += [Path(value) for value in entry["options"].values() if str(value).startswith(entry["root"])]
        for path in reads:
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def paper_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user config on top of config/paper.yaml whose datasets exist (empty files in the layouts
    the adapters read)."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "imagenet-prepared").mkdir()
    (root / "imagenet-prepared" / "meta.json").write_text("{}")
    user_config = root / "my.yaml"
    # timm has no TResNet-XL weights: a user gives the official file (here an empty stand-in).
    (root / "tresnet_xl.pth").touch()
    user_config.write_text(yaml.safe_dump({"base": "config/paper.yaml", "data_root": str(root),
                                           "datasets": {"imagenet": {"prepared": str(root / "imagenet-prepared")}},
                                           "backbones": {"xlarge": {"weights": str(root / "tresnet_xl.pth")}}}))
    write_raw_release(load_config(user_config, root=REPO))
    return user_config


@pytest.fixture(scope="session")
def default_dry_run(tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    """The embedded default's whole DAG with every named target."""
    return dry_run_every_target(REPO / "config" / "config.yaml", tmp_path_factory.mktemp("default-dry-run"),
                                "--config", SHIPPED)


@pytest.fixture(scope="session")
def paper_dry_run(paper_data: Path, tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    """The paper config's whole DAG with every named target, planned as users submit it (the slurm
    profile, which names config/paper.yaml; here the user config on top of it whose data exist)."""
    return dry_run_every_target(paper_data, tmp_path_factory.mktemp("paper-dry-run"), "--cores", "8",
                                "--profile", "slurm")


def test_rules_are_snakefmt_formatted() -> None:
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_readme_describes_every_config_key() -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    readme = (REPO / "config" / "README.md").read_text()
    missing = [key for key in schema["properties"] if f"| `{key}" not in readme]
    assert not missing, f"config/README.md lacks {missing}"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_a_fresh_clone_runs_the_whole_workflow(tmp_path: Path) -> None:
    """The committed reference (results/reference/) satisfies no target: a clone plans everything."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    assert (clone / paths.REFERENCE / "tables.md").is_file() and not (clone / paths.TABLES_MD).exists()
    default = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run"], cwd=clone, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    assert default.returncode == 0, default.stdout[-3000:]
    registry = build_registry(load_config(clone / "config" / "config.yaml", root=clone))
    counts = job_counts(default.stdout)
    # Cached features: one job per run trains all its seeds.
    assert counts["train"] == len(registry.runs) and counts["report"] == 1


def test_seeds_and_datasets_are_chosen_on_the_command_line(tmp_path: Path) -> None:
    result = snakemake("--dry-run", "--config", "seeds=[0]", "skip_datasets=[openimages]", SHIPPED, workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    runs = planned_runs(result.stdout)
    assert runs and {seed for _, seed in runs} == {"0"}
    assert not any(run_id.startswith("oi-like") for run_id, _ in runs)


def test_adding_a_file_to_a_raw_release_prepares_nothing_again(paper_data: Path, tmp_path: Path) -> None:
    config = load_config(paper_data, root=REPO)
    coco = build_registry(config).datasets["coco"]
    target = ["--", "results/data/coco"]
    (tmp_path / "results" / "data" / "coco").mkdir(parents=True)  # as if prepared; --touch records it
    first = snakemake("--cores", "1", "--touch", "--configfile", paper_data, *target, workdir=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    (Path(coco["root"]) / "README.txt").write_text("an unrelated file")
    unrelated = snakemake("--dry-run", "--configfile", paper_data, *target, workdir=tmp_path)
    assert "Nothing to be done" in unrelated.stdout, unrelated.stdout[-3000:]
    # Newer than the prepared output by a whole second, whatever the file system's mtime resolution.
    prepared = tmp_path / "results" / "data" / "coco"
    changed_ns = max(path.stat().st_mtime_ns for path in (prepared, *prepared.rglob("*"))) + 1_000_000_000
    os.utime(Path(coco["root"]) / "annotations" / "instances_val2014.json", ns=(changed_ns, changed_ns))
    changed = snakemake("--dry-run", "--configfile", paper_data, *target, workdir=tmp_path)
    assert job_counts(changed.stdout).get("prepare_dataset") == 1, changed.stdout[-3000:]


def test_lint_is_clean() -> None:
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout
    assert "Congratulations, your workflow is in a good condition" in result.stdout


def test_paper_dry_run_lists_every_experiment(paper_dry_run: DryRun) -> None:
    counts, registry = paper_dry_run.counts(), paper_dry_run.registry
    print(f"\npaper config dry run: {counts['total']} jobs: {counts}")
    # End to end: one job per run and seed.
    assert counts["train"] == sum(len(run.seeds) for run in registry.runs.values())
    assert counts["measure"] == len(registry.measurements)
    # COCO, VOC, NUS-WIDE (zero-shot, and its 81 concepts for HSVLT), Open Images, CIFAR-100,
    # Stanford Cars; ImageNet comes prepared.
    assert counts["prepare_dataset"] == 7
    assert "pretrain_backbone" not in counts and "extract_features" not in counts  # end to end
    # Each real dataset decoded once per resolution its end-to-end runs read (6 stores).
    assert counts["prepare_store"] == len(registry.stores) == len(
        {(run.config["dataset"]["path"], run.config["train"]["resolution"]) for run in registry.runs.values()
         if "store" in run.config["dataset"]})
    assert "output: results/stores/coco/448px" in paper_dry_run.output
    assert {run_id for run_id, _ in planned_runs(paper_dry_run.output)} == set(registry.runs)


def test_the_named_targets_are_the_experiments_tables(default_dry_run: DryRun) -> None:
    assert {name: set(tables) for name, tables in default_dry_run.registry.targets.items()} == TARGETS


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_named_target_plans_exactly_its_tables_runs(target: str, default_dry_run: DryRun,
                                                         paper_dry_run: DryRun) -> None:
    """Each named target waits for exactly the runs (every seed) and measurements the experiments
    table assigns its tables, in the paper config (where every table has some) and in the embedded
    default (which skips Table 14)."""
    for name, dry_run in (("config/paper.yaml", paper_dry_run), ("config/config.yaml", default_dry_run)):
        expected, planned = assigned_outputs(dry_run.registry, TARGETS[target]), dry_run.target_inputs(target)
        assert planned == expected, (f"{name}: target {target} plans {sorted(planned - expected)} beyond its "
                                     f"tables' runs and misses {sorted(expected - planned)}")
        assert expected or (name, target) == ("config/config.yaml", "transfer"), f"{name}: {target} makes nothing"


def test_missing_dataset_path_stops_before_any_job(tmp_path: Path) -> None:
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    write_raw_release(load_config_dict({**paper, "data_root": str(tmp_path / "data")}), roles=("openimages",))
    data_root = f"data_root={tmp_path / 'data'}"
    # Only the requested runs' datasets must exist: Table 2 needs Open Images alone.
    needs_open_images = snakemake("--dry-run", "--configfile", REPO / "config" / "paper.yaml",
                                  "--config", data_root, "--", "extreme_classification", workdir=tmp_path)
    assert needs_open_images.returncode == 0, needs_open_images.stdout[-5000:]
    result = snakemake("--dry-run", "--configfile", REPO / "config" / "paper.yaml", "--config", data_root,
                       "--", "heads", workdir=tmp_path)
    assert result.returncode != 0
    assert f"config key datasets.coco.root: {tmp_path / 'data' / 'coco2014'} does not exist" in result.stdout
    assert "--config data_root=DIR" in result.stdout


def test_every_missing_dataset_of_the_targets_is_named_in_one_message(tmp_path: Path) -> None:
    """A fresh clone's dry run of the paper config without its data: every dataset the default target
    reads, each by its config key, in one message without a traceback, before any job."""
    result = snakemake("--dry-run", "--configfile", REPO / "config" / "paper.yaml",
                       "--config", f"data_root={tmp_path / 'data'}", workdir=tmp_path)
    assert result.returncode != 0
    assert "8 dataset(s) of the requested targets missing:" in result.stdout
    for key, folder in [("coco.root", "coco2014"), ("voc.root", "VOCdevkit/VOC2007"), ("nus.root", "nus-wide"),
                        ("nus_concepts.root", "nus-wide"), ("openimages.root", "openimages-v6"),
                        ("cifar100.root", "cifar-100-binary"), ("stanford_cars.root", "stanford_cars")]:
        assert f"config key datasets.{key}: {tmp_path / 'data' / folder} does not exist" in result.stdout
    # ImageNet is given prepared, by its own path (not under data_root).
    assert "config key datasets.imagenet.prepared: /datasets/imagenet-prepared does not exist" in result.stdout
    assert "Traceback" not in result.stdout and "Exception" not in result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("recipe_or_k, message", [
    ("recipes: {voc: {source: x, train: {epochz: 3}}}",
     "run voc-like/large/ml_decoder-k20/fixed_random (trained with recipes.voc over the shared train block): "
     "train.epochz: unknown key"),
    ("experiments: {zero_shot_groups: 500}",
     "run nus-like/ml_decoder-k500/nlp_queries-nlp_head-aug_both: K = 500 groups for 120 classes (table(s) "
     "table4_zsl_groups, table8_zsl_query_head); K must not exceed the class count: lower config key "
     "experiments.zero_shot_groups"),
])
def test_a_bad_recipe_key_or_k_stops_the_dry_run_naming_its_config_key(tmp_path: Path, recipe_or_k: str,
                                                                        message: str) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(f"base: config/test.yaml\n{recipe_or_k}\n")
    result = snakemake("--dry-run", "--configfile", config, workdir=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout
    assert not (tmp_path / "results").exists()


def test_a_backbone_without_its_papers_weights_stops_its_targets_before_any_job(tmp_path: Path) -> None:
    """config/paper.yaml as shipped gives TResNet-XL no weights: the targets that train it stop at
    planning, naming the key and the fix; targets without it plan as usual."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    write_raw_release(load_config_dict({**paper, "data_root": str(tmp_path / "data")}), roles=("coco",))
    data_root = f"data_root={tmp_path / 'data'}"
    heads = snakemake("--dry-run", "--configfile", REPO / "config" / "paper.yaml", "--config", data_root,
                      "--", "heads", workdir=tmp_path)
    assert heads.returncode == 0, heads.stdout[-5000:]
    resolution = snakemake("--dry-run", "--configfile", REPO / "config" / "paper.yaml", "--config", data_root,
                           "--", "resolution", workdir=tmp_path)
    assert resolution.returncode != 0
    assert "config key backbones.xlarge: run coco-640px/xlarge/ml_decoder-k80/fixed_random" in resolution.stdout
    assert "give backbones.xlarge.weights: FILE" in resolution.stdout


def test_bad_config_stops_before_any_job_naming_the_key(tmp_path: Path) -> None:
    result = snakemake("--dry-run", "--config", "seeds=three", workdir=tmp_path)
    assert result.returncode != 0
    assert "config key seeds = three: expected a non-empty list of integers, each >= 0" in result.stdout
    assert not (tmp_path / "results").exists()


def test_named_target_makes_only_its_ablation(tmp_path: Path) -> None:
    result = snakemake("--dry-run", "query_types", "--config", SHIPPED, workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-5000:]
    counts = job_counts(result.stdout)
    # On cached features one job trains all seeds of a run (mld train --seeds): 3 runs, 3 jobs,
    # from the shipped backbone (nothing pretrained).
    assert counts["train"] == 3 and "measure" not in counts and "report" not in counts
    assert {run_id for run_id, _ in planned_runs(result.stdout)} == {
        "coco-like/ml_decoder-k80/learnable", "coco-like/ml_decoder-k80/nlp", "coco-like/ml_decoder-k80/fixed_random"}
    assert counts["extract_features"] == 1 and "pretrain_backbone" not in counts


def test_a_recipe_on_two_gpus_asks_slurm_for_them_and_launches_two_processes(tmp_path: Path) -> None:
    """recipes.<name>.gpu reaches the job: its `gpu` resource (the Slurm executor's --gpus), twice
    the threads and memory, and `mld.launch --gpus 2` (torchrun, one process per GPU)."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.utils import set_gres_string

    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"base": str(TEST_CONFIG), "recipes": {"voc": {"gpu": 2}}}))
    result = snakemake("--dry-run", "--printshellcmds", "--cores", "8", "--configfile", two, "--", "voc",
                       workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-5000:]
    job = result.stdout[result.stdout.index("rule train:"):]
    job = job[:job.index("exit 1")]
    assert "threads: 2\n" in job  # the embedded default's one thread per job, twice
    resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", job).group(1).split(", "))
    assert (resources["gpu"], resources["mem_mb"]) == ("2", "4000")
    assert "python -m mld.launch --gpus 2 --threads 2 " in job
    assert set_gres_string(SimpleNamespace(resources={"gpu": int(resources["gpu"])})).strip() == "--gpus=2"


def test_slurm_profile_selects_the_paper_config_and_the_slurm_executor(paper_dry_run: DryRun) -> None:
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["configfile"] == "config/paper.yaml"
    assert "slurm_partition" in profile["default-resources"] and profile["jobs"] >= 1 and profile["retries"] >= 1
    assert "Using profiles slurm and workflow specific profile" in paper_dry_run.output


# ---------------------------------------------------------------- end to end (minutes)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole tiny config, run locally on 2 cores; its wall time is printed."""
    workdir = tmp_path_factory.mktemp("tiny-local")
    start = time.monotonic()
    result = snakemake("--cores", "2", "--configfile", TEST_CONFIG, workdir=workdir, timeout=1800)
    print(f"\ntiny config, local, 2 cores: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


def check_every_table(workdir: Path) -> set[str]:
    """Every registry table is in tables.md and has a CSV with a finished reproduced row; the figure exists."""
    registry = build_registry(load_config(TEST_CONFIG, root=REPO))
    markdown = (workdir / "results" / "tables.md").read_text()
    csvs = {path.stem for path in (workdir / "results" / "tables").glob("*.csv")}
    for table_id in registry.tables:
        assert table_id in markdown and table_id in csvs, table_id
    assert (workdir / "results" / "figures" / "map_vs_flops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (workdir / "results" / "figures" / "map_vs_flops.svg").read_bytes()[:2000]
    return csvs


@pytest.mark.slow
def test_tiny_config_produces_every_table(tiny_results: Path) -> None:
    check_every_table(tiny_results)
    registry = build_registry(load_config(TEST_CONFIG, root=REPO))
    for run_id, run in registry.runs.items():
        metrics = yaml.safe_load((tiny_results / f"results/runs/{run_id}/seed0/metrics.json").read_text())
        assert metrics["mode"] == "cached_features" or metrics.get("infeasible"), run_id
    infeasible = yaml.safe_load((tiny_results / "results/runs/oi-like/transformer_decoder/seed0/metrics.json").read_text())
    assert infeasible["infeasible"] is True  # over the embedded default's feasibility budget
    report = snakemake("--configfile", TEST_CONFIG, "--report", "report.html", workdir=tiny_results)
    assert report.returncode == 0, report.stdout[-3000:]
    html = (tiny_results / "report.html").read_text()
    assert "map_vs_flops.png;base64" in html and "table1_heads.csv" in html and "tables.md" in html
    assert "filename=claims.png;base64" in html and "environments.csv" in html and "config.yaml" in html
    trained = [table_id for table_id, members in registry.tables.items() if any(m in registry.runs for m in members)]
    for table_id in trained:  # a training-curve figure for every table with trained runs
        assert f"filename={table_id}.png;base64" in html, table_id


COMMITTED_TINY_RESULTS = REPO / "tests" / "data" / "tiny_results" / "runs.csv"
# Run metrics that measure the machine rather than the result.
TIMING_METRICS = {"train_time_s"}


def per_seed_values(runs_csv: Path) -> dict[tuple[str, int, str, str, str], tuple[str, float]]:
    """(run id, seed, selection, section, metric) -> (status, value) of every run row of a long-form
    results file (a run's rows in each of its tables are one)."""
    import pandas as pd  # only this check reads the frame directly

    frame = pd.read_csv(runs_csv, low_memory=False)
    frame = frame[(frame["kind"] == "run") & ~frame["metric"].isin(TIMING_METRICS)]
    return {(row.run_id, int(row.seed), str(row.selection), str(row.section), str(row.metric)): (row.status, row.value)
            for row in frame.itertuples()}


def recorded_cpus(runs_csv: Path) -> set[str]:
    """The CPUs named by the run rows' environments (the `cpu` column)."""
    import pandas as pd

    return set(pd.read_csv(runs_csv, low_memory=False).query("kind == 'run'")["cpu"].dropna())


# Pinned kernels (mld.numerics) give equal digits on every CPU of one kind (name, family, model);
# MKL does not promise that across kinds, and training carries a last-bit difference on: two
# virtual machines that both called their CPU "AMD EPYC" differed in one run by 2e-4 mAP; an
# AMD EPYC and an Intel Xeon gave 32 of 39 runs values at most 0.66% apart (a query-noise run),
# when torch's dropout still drew different masks by CPU vendor (mld.heads.dropout now draws
# the same ones).
CROSS_CPU_TOLERANCE = {"rel_tol": 2e-2, "abs_tol": 1e-3}


@pytest.mark.slow
def test_a_rerun_reproduces_the_committed_per_seed_values(tiny_results: Path) -> None:
    """Bit-reproducibility: the tiny config run again from scratch gives every per-seed value of
    the committed long-form file (tests/data/tiny_results, regenerated with the code that made it),
    exactly on the kind of CPU that made it, to the last few digits on any other."""
    committed = per_seed_values(COMMITTED_TINY_RESULTS)
    rerun = per_seed_values(tiny_results / "results" / "runs.csv")
    assert rerun.keys() == committed.keys()
    same_cpu = recorded_cpus(COMMITTED_TINY_RESULTS) == {numerics.cpu_model()}
    tolerance = {"rel_tol": 0.0, "abs_tol": 0.0} if same_cpu else CROSS_CPU_TOLERANCE

    def same(a: tuple[str, float], b: tuple[str, float]) -> bool:
        both_missing = a[1] != a[1] and b[1] != b[1]  # NaN: no value
        return a[0] == b[0] and (both_missing or math.isclose(a[1], b[1], **tolerance))

    differing = {key: (committed[key], rerun[key]) for key in committed if not same(committed[key], rerun[key])}
    assert not differing, (f"{len(differing)} values differ from the committed ones (same CPU model: {same_cpu}), "
                           f"e.g. {list(differing.items())[:5]}")


@pytest.mark.slow
def test_rerun_redoes_nothing_and_a_change_reruns_only_its_runs(tiny_results: Path, tmp_path: Path) -> None:
    unchanged = snakemake("--dry-run", "--configfile", TEST_CONFIG, workdir=tiny_results)
    assert "Nothing to be done" in unchanged.stdout, unchanged.stdout[-3000:]
    wider = tmp_path / "wider.yaml"
    wider.write_text(yaml.safe_dump({"base": str(TEST_CONFIG), "heads": {"hsvlt": {"embed_dim": 48}}}))
    result = snakemake("--dry-run", "--configfile", wider, workdir=tiny_results)
    counts = job_counts(result.stdout)
    registry = build_registry(load_config(TEST_CONFIG, root=REPO))
    hsvlt_runs = {run_id for run_id, run in registry.runs.items() if run.config["model"]["head"] == "hsvlt"}
    assert {run_id for run_id, _ in planned_runs(result.stdout)} == hsvlt_runs
    assert set(counts) == {"job_config", "train", "report", "all", "total"}


@pytest.mark.slow
def test_an_execution_only_change_plans_no_job(tiny_results: Path, tmp_path: Path) -> None:
    """GPUs, threads, loader workers, device and logging do not define a result: no job but the
    tables reruns."""
    faster = tmp_path / "faster.yaml"
    faster.write_text(yaml.safe_dump({
        "base": str(TEST_CONFIG),
        "train": {"num_workers": 3, "device": "cpu", "log_every_s": 5},
        "resources": {"train": {"gpu": 2, "threads": 2}, "default": {"threads": 2}},
    }))
    result = snakemake("--dry-run", "--configfile", faster, workdir=tiny_results)
    assert result.returncode == 0, result.stdout[-3000:]
    # Only the tables (seconds of CPU) are made again: they record the whole workflow config.
    assert "Nothing to be done" in result.stdout or set(job_counts(result.stdout)) <= {"report", "all", "total"}, \
        result.stdout[-3000:]


@pytest.mark.slow
def test_a_failing_run_names_itself_and_the_fix(tiny_results: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_results, workdir, symlinks=True)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"base": str(TEST_CONFIG), "heads": {"gap": {"no_such_option": 1}}}))
    result = snakemake("--cores", "1", "--configfile", broken, "--", "results/runs/coco-like/gap/seed0/metrics.json",
                       workdir=workdir)
    assert result.returncode != 0
    assert "run coco-like/gap seed 0 failed" in result.stdout
    assert "no_such_option" in result.stdout
    assert "run the same snakemake command again" in result.stdout


# ---------------------------------------------------------------- Slurm


@pytest.mark.slow
@pytest.mark.slurm
def test_a_tiny_target_through_slurm_trains_the_same_runs(slurm_cluster: None, tiny_results: Path,
                                                          tmp_path: Path) -> None:
    """One named target of the tiny config (Table 1: prepare, pretrain, extract, head runs with their
    seeds in one job) through the single-node Slurm cluster gives the local run's metrics exactly."""
    registry = build_registry(load_config(TEST_CONFIG, root=REPO))
    run_ids, _ = registry.table_members("table1_heads")
    start = time.monotonic()
    result = snakemake("heads", "--cores", "2", "--profile", "slurm", "--configfile", TEST_CONFIG, *SLURM_OVERRIDES,
                       workdir=tmp_path, timeout=1200)
    print(f"\ntiny target heads through Slurm: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:]
    assert "Using profiles slurm" in result.stdout and "has been submitted with SLURM jobid" in result.stdout
    for run_id in run_ids:
        for seed in registry.runs[run_id].seeds:
            relative = Path(paths.run_metrics(run_id, seed))
            through_slurm = json.loads((tmp_path / relative).read_text())["final"]
            local = json.loads((tiny_results / relative).read_text())["final"]
            assert through_slurm["mAP"] == local["mAP"], (run_id, seed)


def test_a_changed_shipped_backbone_stops_the_workflow_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    shipped = shutil.copytree(REPO / "backbones", tmp_path / "shipped")
    with open(shipped / "medium.pt", "r+b") as handle:  # one byte changed
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 1]))
    (shipped / "small.pt").unlink()
    result = snakemake("--dry-run", "query_types", "--config", f"pretraining={{weights: {shipped}}}",
                       workdir=tmp_path)
    assert result.returncode != 0
    assert f"{shipped}/medium.pt does not match its SHA-256 in {shipped}/manifest.yaml" in result.stdout
    assert f"{shipped} has no shipped backbone 'small'" in result.stdout
    assert "make backbones" in result.stdout and "Traceback" not in result.stdout
    assert not (tmp_path / "results").exists()
