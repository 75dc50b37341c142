"""A run killed at any point and resumed ends exactly like an uninterrupted one (real processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mld.engine.checkpoint import load_checkpoint
from mld.signals import TEST_SIGNAL_ENV
from test_engine_support import make_dataset, run_config, train_on_one_thread, without_timing

pytestmark = pytest.mark.slow


def run(config_file: Path, out: Path, signal_at: str | None = None) -> subprocess.CompletedProcess:
    """`mld train` in its own session, signalling itself at the event `signal_at` names
    (MLD_TEST_SIGNAL, see mld.signals.signal_on_event)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    if signal_at is not None:
        environment[TEST_SIGNAL_ENV] = signal_at
    return subprocess.run([sys.executable, "-m", "mld", "train", "--run-config", str(config_file), "--out", str(out)],
                          env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True, timeout=300)


def test_sigterm_then_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    dataset = make_dataset(tmp_path, "coco-like", num_train=96, num_val=32)
    # Every source of randomness is on: augmentation, head dropout, EMA.
    # A progress line after every step (any step takes far longer than 1 us): events mid-epoch.
    config = run_config(dataset, train={"epochs": 3, "batch_size": 16, "log_every_s": 1e-6})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "interrupted"
    resume_point = out / "last.pt"

    uninterrupted = train_on_one_thread(config, tmp_path / "uninterrupted")

    # Preemption right after epoch 1's resume point: a checkpoint at the next step, then exit.
    result = run(config_file, out, "SIGTERM:epoch 1/3: train_loss")
    assert result.returncode == 128 + signal.SIGTERM, result.stdout
    assert "rerun the same command to resume" in result.stdout
    assert not (out / "metrics.json").exists()
    progress = load_checkpoint(resume_point)["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 1)  # epoch 2's first step was done

    # SIGKILL two steps into epoch 3, after the resumed run saved epoch 2: no chance to save anything.
    result = run(config_file, out, "SIGKILL:epoch 3/3: 2/6 steps")
    assert result.returncode == -signal.SIGKILL, result.stdout
    assert "epoch 2/3: train_loss" in result.stdout and not (out / "metrics.json").exists()
    assert load_checkpoint(resume_point)["progress"]["epoch"] == 2

    result = run(config_file, out)
    assert result.returncode == 0, result.stdout
    assert "resuming from" in (out / "train.log").read_text()
    assert not resume_point.exists()
    resumed = json.loads((out / "metrics.json").read_text())
    assert without_timing(resumed) == without_timing(uninterrupted)
