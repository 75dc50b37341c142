"""Two processes (torchrun, gloo, CPU) train like one process with the same global batch, also
when the job launcher starts them, stops them and resumes them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mld.engine import outputs, train
from mld.signals import TEST_SIGNAL_ENV, TEST_SIGNAL_GROUP_ENV
from test_engine_support import (  # noqa: F401 (one_thread: one thread, autouse)
    make_dataset, one_thread, run_config, train_on_one_thread, train_under_torchrun)

pytestmark = pytest.mark.slow


def two_process_run(tmp_path: Path, **train: Any) -> tuple[dict[str, Any], Path]:
    """A run config for one or two processes (batch 16 of 64 images) and its file. test_resnet has
    BatchNorm: its statistics must be synchronised over both processes' halves of each batch.
    Dropout is off because its masks depend on the per-process batch shape."""
    dataset = make_dataset(tmp_path, "coco-like", num_train=64, num_val=32)
    config = run_config(dataset, model={"head_options": {"decoder_dim": 16, "num_heads": 2, "ff_dim": 32,
                                                         "dropout": 0.0}},
                        train={"epochs": 3, "batch_size": 16, "device": "cpu", **train})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return config, config_file


def test_two_processes_follow_the_single_process_loss_trajectory(tmp_path):
    config, config_file = two_process_run(tmp_path, eval_every=0)

    single = train_on_one_thread(config, tmp_path / "one")
    double = train_under_torchrun(config_file, tmp_path / "two")

    assert "x 2 processes" in (tmp_path / "two" / "train.log").read_text()
    losses = [[entry["train_loss"] for entry in run["history"]] for run in (single, double)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0][-1] < losses[0][0]
    lrs = [[entry["lr"] for entry in run["history"]] for run in (single, double)]
    assert lrs[0] == lrs[1]
    assert double["final"]["mAP"] == pytest.approx(single["final"]["mAP"], abs=2.0)


# ---- a two-GPU job as the workflow starts it: mld.launch --gpus 2 runs torchrun (here on CPU, gloo)

def processes_with(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment holds `marker`: a job's launcher, torchrun,
    its ranks and their loader workers all inherit it, whatever session torchrun starts them in."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended meanwhile, or another user's
            continue
        if marker.encode() in environment and state != "Z":
            found.append(int(entry.name))
    return found


def launch_job(config_file: Path, out: Path, marker: str, signal_at: str | None = None,
               at_launcher: bool = True) -> subprocess.CompletedProcess:
    """`python -m mld.launch --gpus 2 ... -- train` in its own session, as a batch job runs; with
    `signal_at`, rank 0 signals the launcher's group at that event (as Slurm signals the job), or
    with `at_launcher=False` its own group (as the kernel kills one process)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MLD_TEST_JOB": marker}
    if signal_at is not None:
        environment[TEST_SIGNAL_ENV] = signal_at
    # The shell becomes the launcher (exec): its pid is the group rank 0 signals.
    group = f"export {TEST_SIGNAL_GROUP_ENV}=$$; " if at_launcher else ""
    command = ["sh", "-c", f'{group}exec "$@"', "sh",
               sys.executable, "-m", "mld.launch", "--gpus", "2", "--threads", "2", "--set", "train.num_workers=2",
               "--", "train", "--run-config", str(config_file), "--out", str(out)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300,
                          start_new_session=True)


def test_a_two_gpu_job_stops_on_the_launchers_signal_leaves_no_rank_and_resumes_as_one_process(tmp_path):
    config, config_file = two_process_run(tmp_path, eval_every=1)
    single = train(config, tmp_path / "one")
    out, marker = tmp_path / "two", f"mld-test-{uuid.uuid4()}"

    # SIGUSR1 (the early stop before a time limit) reaches the launcher as the ranks start training:
    # torchrun passes it on, both ranks save the resume point together and end, and so does the job.
    stopped = launch_job(config_file, out, marker, signal_at="SIGUSR1:steps/epoch")
    assert stopped.returncode == 128 + signal.SIGUSR1, stopped.stdout + stopped.stderr
    assert processes_with(marker) == []
    assert (out / "last.pt").exists() and not (out / "metrics.json").exists()
    assert "stopped by signal" in (out / outputs.PARTIAL_LOG).read_text()

    finished = launch_job(config_file, out, marker)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert processes_with(marker) == []
    log = (out / "train.log").read_text()
    assert "x 2 processes" in log and "resuming from" in log
    double = json.loads((out / "metrics.json").read_text())
    losses = [[entry["train_loss"] for entry in run["history"]] for run in (single, double)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_a_rank_killed_in_a_two_gpu_job_takes_every_rank_and_worker_down(tmp_path):
    _, config_file = two_process_run(tmp_path, epochs=2)
    marker = f"mld-test-{uuid.uuid4()}"
    # Rank 0 dies at once, as when the kernel's OOM killer ends it.
    result = launch_job(config_file, tmp_path / "run", marker, signal_at="SIGKILL:steps/epoch", at_launcher=False)
    assert result.returncode != 0 and not (tmp_path / "run" / "metrics.json").exists()
    assert processes_with(marker) == []
