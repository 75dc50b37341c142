"""Mutation check of the literal tests (not run by the suite; a few seconds per mutation).

Changes one value at a time, in a copy of mld/, config/, workflow/ and tests/, and runs the tests that type
the papers' values in (tests/test_paper_literals.py, test_engine_config.py, test_losses.py): each
recipe value of config/paper.yaml (its shared `train:` block and every recipe), each number of
mld/report/paper_values.yaml's rows, and the ASL clip (the run config's default and AsymmetricLoss's).
Prints, per mutation, the first failing test and its message, or SURVIVED.

    .venv/bin/python tests/mutate_paper.py                    # every mutation (minutes)
    .venv/bin/python tests/mutate_paper.py --sample 5 --seed 1  # 5 of each kind, at random
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_paper_literals.py", "tests/test_engine_config.py", "tests/test_losses.py"]
# Keys of the shared train block that say how a run executes, not what it computes.
EXECUTION_KEYS = {"num_workers", "device", "log_every_s", "amp", "accumulation", "evaluation_batch_size"}


@dataclass(frozen=True)
class Mutation:
    """One changed value: the file, where in it (a key path, or a line for text edits), old -> new."""

    file: str
    where: str
    old: Any
    new: Any


def changed(value: Any) -> Any:
    """A different value of the same kind: booleans flipped, numbers moved by 10% (ints by one)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return round(value * 1.1, 6) if value else 0.5


def leaves(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, value) of every number or boolean under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, path + (index,))
    elif isinstance(node, (bool, int, float)):
        yield path, node


def config_mutations() -> list[tuple[tuple, Any]]:
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    found = [(("train",) + path, value) for path, value in leaves(paper["train"]) if path[0] not in EXECUTION_KEYS]
    return found + [(("recipes",) + path, value) for path, value in leaves(paper["recipes"])]


def paper_value_mutations() -> list[tuple[tuple, Any]]:
    values = yaml.safe_load((REPO / "mld" / "paper_values.yaml").read_text())
    return [(("tables", table, "rows") + path, value) for table, spec in values["tables"].items()
            for path, value in leaves(spec["rows"])]


def set_at(node: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def first_failure(copy: Path) -> str:
    """The first failing test of the copy and its message, or SURVIVED."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "--tb=line", "-p", "no:cacheprovider",
                             *TESTS], cwd=copy, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(copy)})
    if result.returncode == 0:
        return "SURVIVED"
    failed = re.search(r"^FAILED (.*?)(?: - |$)", result.stdout, re.MULTILINE)
    message = re.search(r"^E?\s*(?:AssertionError|assert|\S+Error): (.*)$|^/.*:\d+: (.*)$", result.stdout,
                        re.MULTILINE)
    text = next((group for group in message.groups() if group), "") if message else result.stdout[-300:]
    return f"{failed.group(1) if failed else '?'}: {text[:300]}"


def run(mutations: list[tuple[Mutation, Any]], copy: Path) -> int:
    survived = 0
    for mutation, apply in mutations:
        original = {name: (copy / name).read_text() for name in ("config/paper.yaml", "mld/report/paper_values.yaml",
                                                                 "mld/engine/run_config.schema.yaml", "mld/losses.py")}
        apply(copy)
        outcome = first_failure(copy)
        survived += outcome == "SURVIVED"
        print(f"{mutation.file} {mutation.where}: {mutation.old!r} -> {mutation.new!r}\n    {outcome}", flush=True)
        for name, text in original.items():
            (copy / name).write_text(text)
    return survived


def yaml_mutation(file: str, path: tuple, old: Any) -> tuple[Mutation, Any]:
    new = changed(old)

    def apply(copy: Path) -> None:
        data = yaml.safe_load((copy / file).read_text())
        set_at(data, path, new)
        (copy / file).write_text(yaml.safe_dump(data, sort_keys=False))
    return Mutation(file, ".".join(map(str, path)), old, new), apply


def text_mutation(file: str, old: str, new: str) -> tuple[Mutation, Any]:
    def apply(copy: Path) -> None:
        text = (copy / file).read_text()
        assert text.count(old) == 1, f"{file}: {old!r} is not there once"
        (copy / file).write_text(text.replace(old, new))
    return Mutation(file, "text", old, new), apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, help="this many mutations of each file, at random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = [yaml_mutation("config/paper.yaml", path, value) for path, value in config_mutations()]
    values = [yaml_mutation("mld/report/paper_values.yaml", path, value) for path, value in paper_value_mutations()]
    if args.sample:
        rng = random.Random(args.seed)
        config, values = rng.sample(config, args.sample), rng.sample(values, args.sample)
    clip = [text_mutation("mld/engine/run_config.schema.yaml", "clip: 0.05}", "clip: 0.1}"),
            text_mutation("mld/losses.py", "clip: float = 0.05", "clip: float = 0.1")]
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory)
        for name in ("mld", "config", "tests", "workflow"):
            shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
        control = first_failure(copy)
        assert control == "SURVIVED", f"the unchanged copy fails: {control}"
        survived = run(config + values + clip, copy)
    print(f"{len(config) + len(values) + len(clip)} mutations, {survived} survived")


if __name__ == "__main__":
    main()
