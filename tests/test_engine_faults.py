"""Bad input and faults of a run: broken files named in one line, kills and stop signals survived."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mld.cli import main
from mld.data.adapters.common import FileSplit, ReadDataset, write_read_dataset
from mld.data.prepared import PreparedDatasetError, open_prepared
from mld.engine import RunInterrupted, train
from mld.engine import outputs
from mld.engine.evaluation import Evaluator
from mld.engine.checkpoint import load_checkpoint
from mld.signals import TEST_SIGNAL_ENV
from test_engine_support import TIMES, make_dataset, one_thread, run_config, without_timing


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two steps per epoch: the cheapest run that trains, evaluates and resumes."""
    return make_dataset(tmp_path_factory.mktemp("data"), "coco-like", num_train=32, num_val=16)


def jpeg_dataset(root: Path, count: int = 8) -> tuple[Path, list[Path]]:
    """A prepared dataset of JPEG files, as the COCO adapter writes one."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = root / "images" / f"{index:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    labels = np.eye(count, 2, dtype=np.int8)
    labels[:, 1] = 1
    dataset = ReadDataset("jpegs", "test", ["a", "b"],
                          {"train": FileSplit(paths, labels), "val": FileSplit(paths[:4], labels[:4])})
    # The validation images are training images on purpose (few files to break): overlap allowed.
    return write_read_dataset(dataset, root / "prepared", allow_overlap=True).path, paths


# ---- bad input: one line naming the file

@pytest.mark.parametrize("fault", ["truncated", "missing"])
def test_a_broken_jpeg_read_in_a_loader_worker_ends_with_one_line_naming_it(fault, tmp_path, capsys):
    dataset, paths = jpeg_dataset(tmp_path)
    broken = paths[5]
    if fault == "truncated":
        broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    else:
        broken.unlink()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(
        dataset, model={"head": "gap", "head_options": {}},
        train={"batch_size": 4, "num_workers": 2, "augment": {"cutout": 0.0, "randaugment": False}})))
    assert main(["train", "--run-config", str(config), "--out", str(tmp_path / "run")]) != 0
    error = capsys.readouterr().err
    assert "Traceback" not in error and "worker" not in error, error
    last = error.strip().splitlines()[-1]
    what = "image file is truncated" if fault == "truncated" else "does not exist"
    assert last.startswith("mld train: error: ") and str(broken) in last and what in last, error
    assert "prepare it again" in last.lower() or "prepare the dataset again" in last
    assert multiprocessing.active_children() == []  # its workers stopped (they would block the exit)


def test_a_wrong_shaped_word_vectors_file_is_named_with_both_shapes(small, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(small, dataset)
    num_classes = open_prepared(dataset).num_classes
    np.save(dataset / "word_vectors.npy", np.zeros((num_classes - 1, 7), np.float32))
    with pytest.raises(PreparedDatasetError) as raised:
        train(run_config(dataset), tmp_path / "run")
    message = str(raised.value)
    assert str(dataset / "word_vectors.npy") in message
    assert f"found [{num_classes - 1}, 7]" in message and f"expected [{num_classes}, d]" in message


# ---- kills: temporary files and the log

def interrupted_write(path: Path) -> None:
    """Die by SIGKILL in the middle of an atomic write of `path`, as a killed job does."""
    script = ("import os, signal, sys; from mld.atomic import write_bytes; "
              "write_bytes(sys.argv[1], lambda h: (h.write(b'x' * 4096), h.flush(), "
              "os.kill(os.getpid(), signal.SIGKILL)))")
    assert subprocess.run([sys.executable, "-c", script, str(path)]).returncode == -signal.SIGKILL


def test_temporaries_of_interrupted_writes_are_removed_when_the_run_starts_again(small, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "checkpoint.pt", "metrics.json"):
        interrupted_write(out / name)
    left = sorted(path.name for path in out.iterdir())
    assert len(left) == 3 and all(name.endswith(".tmp") for name in left)
    (out / "notes.tmp").write_text("not written by mld")
    train(run_config(small, train={"epochs": 1}), out)
    assert {path.name for path in out.iterdir()} == {
        "metrics.json", "predictions.npz", "cost.json", "train.log", "checkpoint.pt", "notes.tmp"}


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_the_log_survives_a_kill_between_publishing_it_and_writing_metrics(small, tmp_path, monkeypatch):
    config, out = run_config(small, train={"epochs": 1}), tmp_path / "run"

    def killed(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(outputs, "write_metrics", killed)
    with pytest.raises(Killed):
        train(config, out)
    first = (out / "train.log").read_text()
    assert "finished:" in first and not (out / "metrics.json").exists()
    monkeypatch.undo()
    train(config, out)
    log = (out / "train.log").read_text()
    assert log.startswith(first) and "resuming from" in log[len(first):]


def test_a_published_and_a_partial_log_are_joined_in_order(tmp_path):
    (tmp_path / outputs.LOG).write_text("first run\n")
    (tmp_path / outputs.PARTIAL_LOG).write_text("second run\n")
    outputs.reopen_run_dir(tmp_path)
    assert not (tmp_path / outputs.LOG).exists()
    assert (tmp_path / outputs.PARTIAL_LOG).read_text() == "first run\nsecond run\n"


def test_a_stop_during_an_epochs_evaluation_keeps_its_timing(small, tmp_path, monkeypatch):
    config, out = run_config(small, train={"epochs": 2, "eval_every": 1}), tmp_path / "run"
    quick = Evaluator.quick

    def signalled(self, candidates):
        os.kill(os.getpid(), signal.SIGUSR1)  # arrives during the evaluation's first batch
        return quick(self, candidates)

    monkeypatch.setattr(Evaluator, "quick", signalled)
    with pytest.raises(RunInterrupted, match="stopped by signal"):
        train(config, out)
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 2  # the epoch's training was done
    monkeypatch.undo()
    history = train(config, out)["history"]
    assert all(set(TIMES) <= set(entry) for entry in history), history
    assert history[0]["compute_s"] > 0 and history[0]["time_s"] >= history[0]["compute_s"]


# ---- stop signals to the whole process group, with loader workers (as Slurm sends them)

def start(config_file: Path, out: Path, signal_at: str | None = None) -> subprocess.Popen:
    """`mld train` as a batch job: its own process group, which the signals are sent to; with
    `signal_at`, the run signals its group itself at that event (mld.signals.signal_on_event)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    if signal_at is not None:
        environment[TEST_SIGNAL_ENV] = signal_at
    return subprocess.Popen([sys.executable, "-m", "mld", "train", "--run-config", str(config_file), "--out", str(out)],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_stop_signals_to_the_process_group_with_workers_save_and_resume_exactly(tmp_path):
    dataset = make_dataset(tmp_path, "coco-like", num_train=96, num_val=32)
    # A progress line after every step (any step takes far longer than 1 us): events mid-epoch.
    config = run_config(dataset, train={"epochs": 4, "batch_size": 16, "num_workers": 2, "eval_every": 1,
                                        "log_every_s": 1e-6})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    uninterrupted = train(config, tmp_path / "uninterrupted")
    out, resume_point = tmp_path / "interrupted", tmp_path / "interrupted" / "last.pt"

    # The moments: while the run sets up, as a worker starts (its signals still held), in the
    # middle of an epoch, right after a resume.
    moments = [
        (signal.SIGTERM, "steps/epoch", (0, 0)),
        (signal.SIGUSR1, "worker started", (0, 1)),
        (signal.SIGTERM, "epoch 2/4: 3/6 steps", (1, 4)),
        (signal.SIGUSR1, "resuming from", (1, 4)),
    ]
    for attempt, (number, event, stopped_at) in enumerate(moments):
        process = start(config_file, out, f"{signal.Signals(number).name}:{event}")
        output = process.communicate(timeout=180)[0]
        assert process.returncode == 128 + number, f"moment {attempt}:\n{output}"
        assert "Traceback" not in output and "killed by signal" not in output, output
        assert "rerun the same command to resume" in output
        assert resume_point.exists() and not (out / "metrics.json").exists()
        progress = load_checkpoint(resume_point)["progress"]
        assert (progress["epoch"], progress["step"]) == stopped_at, f"moment {attempt}"

    process = start(config_file, out)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    log = (out / "train.log").read_text()
    assert log.count("stopped by signal") == len(moments) and log.count("resuming from") == len(moments)
    resumed = json.loads((out / "metrics.json").read_text())
    assert without_timing(resumed) == without_timing(uninterrupted)
    assert all(set(TIMES) <= set(entry) for entry in resumed["history"])
