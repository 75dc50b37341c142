"""Benchmark: are the embedded default's heads trained to convergence?

Runs the named targets (default: the head, query-type and zero-shot tables) twice from a clean
directory each: with the config's head epochs, then with --factor times as many, and prints every
accuracy cell's change with its 95% noise margin (`mld compare`), then every effect's (a row
minus its baseline row). Converged: no change beyond noise. The second directory starts from
hard links of the first one's datasets, pretrained backbones and feature caches (timestamps
kept), so only the heads train twice.

    python benchmarks/convergence.py [--configfile config/config.yaml] [--work /tmp/convergence]
        [--factor 2] [--cores 2] [--targets heads query_types query_augmentation zsl_groups zsl_query_head]
        [--first DIR]

Writes WORK/epochs<E>/ and WORK/epochs<2E>/ (each a workflow directory with results/runs.csv)
and WORK/convergence.md (every accuracy cell's change, then every effect's: a row minus its
baseline row, the quantity the claims are about); prints the wall time of each pass. `--first DIR` takes the first pass
from a finished workflow directory of the same config (e.g. a whole `snakemake` run) instead.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mld.report import comparison  # noqa: E402
from mld.experiments import TARGETS, load_config  # noqa: E402

DEFAULT_TARGETS = ("heads", "query_types", "query_augmentation", "zsl_groups", "zsl_query_head")
# What both passes share: data, backbones, feature caches and the job configs that made them.
SHARED = ("results/data", "results/backbones", "results/features", "results/configs/backbones",
          "results/configs/features")


def run_pass(directory: Path, configfile: Path, targets: list[str], cores: int) -> float:
    """snakemake the targets in `directory`, then collect runs.csv there; seconds taken."""
    started = time.monotonic()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(directory),
                    "--configfile", str(configfile), "--cores", str(cores), *targets],
                   check=True, env=env)
    subprocess.run([sys.executable, "-m", "mld", "report", "--configfile", str(configfile), "--results",
                    str(directory / "results"), "--out", str(directory / "results")],
                   check=True, env=env, cwd=directory)
    return time.monotonic() - started


def share(source: Path, target: Path) -> None:
    """Hard-link the first pass's shared outputs into the second's directory, timestamps kept."""
    for relative in SHARED:
        if (source / relative).exists():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source / relative, target / relative, copy_function=os.link, dirs_exist_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/convergence"))
    parser.add_argument("--factor", type=int, default=2, help="epochs of the second pass / the first's")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS), choices=sorted(TARGETS))
    parser.add_argument("--first", type=Path, metavar="DIR",
                        help="a finished workflow directory of --configfile: its results/runs.csv is the first pass")
    args = parser.parse_args()

    configfile = args.configfile.resolve()
    epochs = load_config(configfile)["train"]["epochs"]
    longer = epochs * args.factor
    args.work.mkdir(parents=True, exist_ok=True)
    longer_config = args.work / f"epochs{longer}.yaml"
    longer_config.write_text(yaml.safe_dump({"base": str(configfile), "train": {"epochs": longer}}))
    first = args.first.resolve() if args.first else args.work / f"epochs{epochs}"
    second = args.work / f"epochs{longer}"
    tables = [table for target in args.targets for table in TARGETS[target]]

    if args.first:
        if not (first / "results" / "runs.csv").is_file():
            parser.error(f"--first {args.first}: no results/runs.csv there; run the workflow in it first")
        seconds_first = 0.0
    else:
        seconds_first = run_pass(first, configfile, args.targets, args.cores)
    share(first, second)
    seconds_second = run_pass(second, longer_config.resolve(), args.targets, args.cores)

    changes, effects = comparison.compare_all(first / "results" / "runs.csv", second / "results" / "runs.csv",
                                              tables)
    report = comparison.render_markdown(changes, f"{epochs} head epochs", f"{longer} head epochs", effects)
    (args.work / "convergence.md").write_text(report)
    print(report)
    moved = sum(change.beyond_noise is True for change in changes)
    effects_moved = sum(change.beyond_noise is True for change in effects)
    first_pass = f"taken from {first}" if args.first else f"{seconds_first:.0f} s (with data, backbones and features)"
    print(f"{epochs} epochs: {first_pass}; {longer} epochs: "
          f"{seconds_second:.0f} s; {moved} of {len(changes)} cells and {effects_moved} of {len(effects)} effects "
          "changed beyond noise; "
          f"report in {args.work / 'convergence.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
