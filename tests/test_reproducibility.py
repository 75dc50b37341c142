"""Bit-reproducibility: the same run config gives the same per-seed values in separate processes,
whatever Python's hash seed (mld.numerics pins the CPU kernels; every random draw is seeded)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mld.numerics import PINNED_ENVIRONMENT, cpu_model, has_avx2
from test_engine_support import TINY_HEAD, make_dataset, run_config

REPO = Path(__file__).resolve().parent.parent


def train_in_process(config_file: Path, out: Path, hash_seed: str) -> dict:
    """`python -m mld train` in a fresh process with its own PYTHONHASHSEED and one thread."""
    environment = {key: value for key, value in os.environ.items() if key not in PINNED_ENVIRONMENT}
    environment.update(PYTHONHASHSEED=hash_seed, OMP_NUM_THREADS="1")
    finished = subprocess.run([sys.executable, "-m", "mld", "train", "--run-config", str(config_file), "--out", str(out)],
                              cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_zero_shot_run_with_query_noise_repeats_exactly(tmp_path):
    """The noisiest target of the reference (ZSL with both query augmentations), twice."""
    data = make_dataset(tmp_path, "nus-like")
    head = {"head": "ml_decoder", "num_groups": None,
            "head_options": {**TINY_HEAD, "query_type": "nlp", "head_type": "shared", "random_queries": 2,
                             "query_noise": 0.1}}
    config = run_config(data, task="zero_shot", model=head, train={"ema_decay": None})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    first, second = (train_in_process(config_file, tmp_path / f"run{seed}", seed) for seed in ("1", "4242"))
    assert first["final"] == second["final"], "per-seed metrics differ between two identical runs"
    for name in ("scores", "targets"):
        a, b = (np.load(tmp_path / f"run{seed}" / "predictions.npz")[name] for seed in ("1", "4242"))
        assert np.array_equal(a, b), f"predictions.npz {name} differ"


@pytest.mark.skipif(not has_avx2(), reason="only x86-64 CPUs with AVX2 are pinned")
@pytest.mark.parametrize("module", ["mld", "mld.cli"])
def test_importing_mld_pins_the_cpu_kernels_before_torch_loads(module: str):
    """The library and the command line alike; the test process too (tests/conftest.py)."""
    script = (f"import os, sys; import {module}; assert 'torch' not in sys.modules; "
              "print({k: os.environ[k] for k in " + repr(sorted(PINNED_ENVIRONMENT)) + "})")
    environment = {key: value for key, value in os.environ.items() if key not in PINNED_ENVIRONMENT}
    environment["ATEN_CPU_CAPABILITY"] = "default"  # a user's own choice wins
    printed = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True,
                             text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    pinned = eval(printed.stdout)  # a dict literal printed by the child
    assert pinned == {**PINNED_ENVIRONMENT, "ATEN_CPU_CAPABILITY": "default"}


@pytest.mark.parametrize(("machine", "flags", "pinned"), [
    ("x86_64", "fpu sse2 avx avx2 fma bmi2", True),
    ("AMD64", "fpu sse2 avx avx2 fma", True),
    ("x86_64", "fpu sse2 avx", False),          # PyTorch would run avx2 kernels on it anyway: SIGILL
    ("aarch64", "fp asimd sve", False),         # PyTorch knows no avx2 there: a warning per process
    ("ppc64le", "", False),
])
def test_only_cpus_with_avx2_are_pinned(machine: str, flags: str, pinned: bool, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert has_avx2(machine, cpuinfo) is pinned
    assert has_avx2(machine, tmp_path / "absent") is (machine.lower() in ("x86_64", "amd64"))


def test_the_recorded_cpu_tells_apart_generations_that_share_a_name(tmp_path: Path) -> None:
    """Two virtual machines both named "AMD EPYC" ran different kernels: the family and model are
    what tells them apart, and the "model name" line must not be read as the "model" field."""
    def cpuinfo(model: str) -> Path:
        path = tmp_path / f"cpuinfo-{model}"
        path.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel name\t: AMD   EPYC\n"
                        f"model\t\t: {model}\nstepping\t: 1\n")
        return path

    assert cpu_model(cpuinfo("1")) == "AMD EPYC [family 25 model 1 stepping 1]"
    assert cpu_model(cpuinfo("17")) != cpu_model(cpuinfo("1"))
    (tmp_path / "bare").write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_model(tmp_path / "bare") == "Some CPU"
