"""Turn the signals a cluster sends before it kills a job into a polite stop request.

Slurm sends SIGTERM at preemption and at the time limit (and SIGUSR1 when asked with
`--signal=USR1@<seconds>`), to every process of the job, loader workers included; torchrun
forwards SIGTERM to its workers. The main process's handler only records the signal; the
training loop checks it between steps, saves a checkpoint and exits, so the same command resumes
the run later. Loader worker processes ignore these signals (`ignore_in_worker`): killed, they
would take the main process down with them before it could save.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))
TEST_SIGNAL_ENV = "MLD_TEST_SIGNAL"
TEST_SIGNAL_GROUP_ENV = "MLD_TEST_SIGNAL_GROUP"


class RunInterrupted(RuntimeError):
    """A run stopped on a signal after saving its resume point; rerun the same command to resume."""

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class StopRequest:
    """Context manager that records the first stop signal received while it is active."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal_number

    def __enter__(self) -> "StopRequest":
        # Handlers can only be installed from the main thread (e.g. not inside a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


@contextlib.contextmanager
def held_while_forking() -> Iterator[None]:
    """Hold the stop signals back while worker processes are started.

    A child inherits the blocked set, so a signal sent to the whole process group while a worker
    starts stays pending in it until `ignore_in_worker` discards it (a worker would otherwise die
    in the moment before it can ignore signals). Held signals reach this process when it ends.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_on_event(event: str) -> None:
    """Test hook: signal this process's group when `event` contains the text MLD_TEST_SIGNAL names.

    `MLD_TEST_SIGNAL="SIGTERM:epoch 2/4: 3/6 steps"` sends SIGTERM to the process group right after
    the run logs a line containing "epoch 2/4: 3/6 steps". The events are the run's log lines and
    "worker started" (a loader worker, before it ignores the stop signals). Tests stop or kill a
    run at an exact point this way instead of racing it with sleeps; they start it in its own
    session, as a batch job runs. MLD_TEST_SIGNAL_GROUP names another process group to signal
    instead: a job launcher's (mld.launch), whose torchrun starts each process in a session of its
    own. Unset (always, outside tests) it does nothing.
    """
    wanted = os.environ.get(TEST_SIGNAL_ENV)
    if wanted:
        name, _, text = wanted.partition(":")
        if text in event:
            os.killpg(int(os.environ.get(TEST_SIGNAL_GROUP_ENV) or os.getpgrp()), getattr(signal, name))


def ignore_in_worker(worker_id: int) -> None:
    """A DataLoader worker_init_fn: leave the stop signals to the main process."""
    signal_on_event("worker started")
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)  # also discards a signal held since the fork
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
