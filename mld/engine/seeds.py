"""Every seed of one run, one after the other, in one process.

A head trained on cached features takes seconds; started as its own process, each seed pays the
interpreter's start-up and the imports of torch, timm and mld again, which cost as much as its
training (docs/workflow.md, "Where a head job's time goes"). `train_seeds` trains the seeds in
turn through `mld.engine.run.train` with the config's `seed` replaced, so each seed is seeded
exactly as a process of its own would be and writes the same outputs to `<out>/seed<seed>`
(mld.paths.SEED_DIR, the layout the workflow's run directories use). Resuming works per seed: a
seed whose metrics.json exists is not trained again, an interrupted one resumes from its last.pt.
"""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Mapping, Sequence

from mld import paths
from mld.engine.run import as_run_config, train


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """Where seed `seed` of a run trained by `train_seeds(config, out_dir, ...)` writes its outputs."""
    return Path(out_dir) / paths.SEED_DIR.format(seed=seed)


def train_seeds(config: Mapping[str, Any] | str | Path, out_dir: str | Path, seeds: Sequence[int],
                log_stream: IO[str] | None = None,
                execution: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train (or resume, or read back) `config` once per seed; return each seed's metrics.json.

    The config's own `seed` is replaced; a stop signal ends the seed in training with its resume
    point saved (RunInterrupted) and leaves the later seeds for the rerun.
    """
    if not seeds:
        raise ValueError("train_seeds needs at least one seed (e.g. --seeds 0 1 2)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {list(seeds)}")
    validated, _ = as_run_config(config, execution)
    return [train({**validated, "seed": int(seed)}, seed_dir(out_dir, seed), log_stream) for seed in seeds]
