"""Two processes (torchrun, gloo, CPU) train like one process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from mld.engine import train
from test_engine_support import make_dataset, run_config

pytestmark = pytest.mark.slow


def test_two_processes_follow_the_single_process_loss_trajectory(tmp_path):
    dataset = make_dataset(tmp_path, "coco-like", num_train=64, num_val=32)
    # test_resnet has BatchNorm: its statistics must be synchronised over both processes' halves
    # of each batch. Dropout is off because its masks depend on the per-process batch shape.
    config = run_config(dataset, model={"head_options": {"decoder_dim": 16, "num_heads": 2, "ff_dim": 32,
                                                         "dropout": 0.0}},
                        train={"epochs": 3, "batch_size": 16, "eval_every": 0, "device": "cpu"})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(config, tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mld", "train", "--config", str(config_file), "--out", str(tmp_path / "two")]
    finished = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    double = json.loads((tmp_path / "two" / "metrics.json").read_text())

    assert "x 2 processes" in (tmp_path / "two" / "train.log").read_text()
    losses = [[entry["train_loss"] for entry in run["history"]] for run in (single, double)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0][-1] < losses[0][0]
    lrs = [[entry["lr"] for entry in run["history"]] for run in (single, double)]
    assert lrs[0] == lrs[1]
    assert double["final"]["mAP"] == pytest.approx(single["final"]["mAP"], abs=2.0)
