"""Fixtures shared by several test modules.

`import mld` comes first: it pins the CPU kernels (mld.numerics) before any test imports torch, so
a run in the test process computes as the `python -m mld` processes the tests start.
"""
import os
import subprocess

import pytest

import mld  # noqa: F401
from toy_paper import toy_paper  # noqa: F401  (the paper config at toy scale, session-scoped)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A Slurm cluster that answers `sinfo`. Without one a test using this fixture is skipped on a
    workstation and fails under CI (`CI` set, where .ci/run starts the cluster), so a broken cluster
    cannot pass silently. Name it first among a test's fixtures: it is checked before the costly ones."""
    try:
        up = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        up = False
    if not up:
        message = "Slurm does not answer (sinfo); .ci/run starts it with .ci/start-slurm.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
