"""A run killed at any point and resumed ends exactly like an uninterrupted one (real processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mld.engine import train
from mld.engine.checkpoint import load_checkpoint
from test_engine_support import make_dataset, run_config, without_timing

pytestmark = pytest.mark.slow


def start(config_file: Path, out: Path) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mld", "train", "--config", str(config_file), "--out", str(out)],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_new_resume_point(process: subprocess.Popen, path: Path, after: float, timeout: float = 120) -> None:
    """Wait until `path` is (re)written after time `after` while the process still trains."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_mtime > after):
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {path} was written:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} was not written within {timeout} s")
        time.sleep(0.01)


def test_sigterm_then_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    dataset = make_dataset(tmp_path, "coco-like", num_train=96, num_val=32)
    # Every source of randomness is on: augmentation, head dropout, EMA.
    config = run_config(dataset, train={"epochs": 3, "batch_size": 16})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "interrupted"
    resume_point = out / "last.pt"

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): same arithmetic
    try:
        uninterrupted = train(config, tmp_path / "uninterrupted")
    finally:
        torch.set_num_threads(threads)

    process = start(config_file, out)
    wait_for_new_resume_point(process, resume_point, after=0.0)
    process.send_signal(signal.SIGTERM)  # preemption: a checkpoint at the next step, then exit
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "rerun the same command to resume" in output
    assert not (out / "metrics.json").exists()
    assert load_checkpoint(resume_point)["progress"]["epoch"] >= 1

    saved_at = resume_point.stat().st_mtime
    process = start(config_file, out)
    wait_for_new_resume_point(process, resume_point, after=saved_at)
    time.sleep(0.05)
    process.kill()  # SIGKILL: no chance to save anything
    process.communicate(timeout=60)
    assert not (out / "metrics.json").exists()

    process = start(config_file, out)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert "resuming from" in (out / "train.log").read_text()
    assert not resume_point.exists()
    resumed = json.loads((out / "metrics.json").read_text())
    assert without_timing(resumed) == without_timing(uninterrupted)
