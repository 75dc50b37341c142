"""Shared helpers of the engine tests: tiny datasets, run configs and the one-thread fixture (no tests here)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mld.data.synthetic.generate import prepare_synthetic

IMAGE_SIZE = 32
TINY_HEAD = {"decoder_dim": 16, "num_heads": 2, "ff_dim": 32}
TIMES = ("time_s", "data_s", "compute_s")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and much faster than two on a busy machine; a test
    module that imports this fixture runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_dataset(root: Path, preset: str = "coco-like", num_train: int = 96, num_val: int = 48) -> Path:
    """A synthetic prepared dataset at 32 px (the real format, written by mld.data)."""
    path = root / f"{preset}-{num_train}"
    if not path.exists():
        prepare_synthetic(preset, path, image_size=IMAGE_SIZE, num_train=num_train, num_val=num_val)
    return path


def run_config(dataset: Path, **sections: Any) -> dict[str, Any]:
    """A tiny end-to-end run config (test_resnet, small ML-Decoder); `sections` update it by key.

    `train=` and `model=` are merged into the defaults rather than replacing them.
    """
    config: dict[str, Any] = {
        "run_id": "test/run",
        "seed": 0,
        "dataset": {"path": str(dataset)},
        "model": {"backbone": "test_resnet", "head": "ml_decoder", "head_options": dict(TINY_HEAD)},
        "train": {"epochs": 2, "batch_size": 16, "resolution": IMAGE_SIZE, "num_workers": 0,
                  "ema_decay": 0.9, "lr": 1.0e-3, "log_every_s": 1000.0,
                  "augment": {"cutout": 0.5, "randaugment": True}},
    }
    for key, value in sections.items():
        if key in ("train", "model") and isinstance(value, dict):
            config[key] = {**config[key], **copy.deepcopy(value)}
        else:
            config[key] = copy.deepcopy(value)
    return config


def without_timing(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json without what differs between identical runs (wall-clock times, versions)."""
    kept = {key: value for key, value in metrics.items() if key not in ("train_time_s", "versions")}
    kept["history"] = [{k: v for k, v in entry.items() if k not in TIMES} for entry in metrics.get("history", [])]
    return kept


def train_on_one_thread(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """`mld.engine.train` in this process on one thread, as the `mld train` subprocesses run
    (OMP_NUM_THREADS=1): the same arithmetic, so their results can be compared exactly."""
    from mld.engine import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config, out)
    finally:
        torch.set_num_threads(threads)


def train_under_torchrun(config_file: Path, out: Path, processes: int = 2) -> dict[str, Any]:
    """`mld train` as `processes` DDP processes on the CPU (torchrun, gloo, one thread each); its metrics.json."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "mld", "train", "--run-config", str(config_file), "--out", str(out)]
    finished = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return json.loads((out / "metrics.json").read_text())
