"""What a run tells the person watching it: a progress bar on a terminal, plain lines in batch logs.

Every message goes to the run's log file and to stderr. Step progress is a tqdm bar when stderr is
a terminal; in a batch job (Slurm output file, Snakemake log) a bar would be thousands of
carriage returns, so it becomes one plain line every `every_s` seconds instead.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Iterable, Iterator, TypeVar

from tqdm import tqdm

from mld.signals import signal_on_event

T = TypeVar("T")


class RunLog:
    """Timestamped lines to a log file (appended, so a resumed run continues it) and to stderr."""

    def __init__(self, path: Path | None, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._file: IO[str] | None = None
        if enabled and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1)

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError as error:
                raise OSError(error.errno, f"cannot write {self.path}: {error.strerror or error}; free disk "
                              "space, then rerun the same command to resume") from error
        tqdm.write(line, file=self.stream)
        signal_on_event(message)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def track(items: Iterable[T], total: int, description: str, log: RunLog, every_s: float) -> Iterator[T]:
    """Iterate `items` showing progress: a bar on a terminal, else a log line every `every_s` s."""
    if not log.enabled:
        yield from items
        return
    if log.stream.isatty():
        yield from tqdm(items, total=total, desc=description, file=log.stream, dynamic_ncols=True,
                        leave=False)
        return
    started = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s and done < total:
            rate = done / (now - started)
            log(f"{description}: {done}/{total} steps, {rate:.2f} steps/s, "
                f"about {(total - done) / rate:.0f} s left in this phase")
            last = now
