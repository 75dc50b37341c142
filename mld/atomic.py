"""Atomic file writes: a finished file is either complete or absent, never half-written.

Every output is written to a temporary file in the same directory, flushed to disk, then renamed
over its final name (a rename within a directory is atomic on POSIX). A failure on the way (full
disk, quota, permissions) removes the temporary file and raises an OSError naming the final path,
so a killed or failed job never leaves a truncated `metrics.json` for the workflow to trust.
A SIGKILL gives no chance to remove the temporary file: `remove_stale_temporaries` clears them
from a directory when the job that owns it starts again.

Also the content hashes that tell files and configs apart (a weights file's SHA-256, a config's).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


_TEMPORARY = re.compile(r"\..+\.[0-9]+\.[0-9a-f]{8}\.tmp")  # what temporary_name writes


def temporary_name(final_name: str) -> str:
    """The hidden name a file is written under before it is renamed to `final_name`."""
    return f".{final_name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files that interrupted writes left in `directory`; return them.

    Only for a directory whose writer is not running: a job's own output directory at its start.
    """
    stale = [path for path in directory.glob(".*.tmp") if _TEMPORARY.fullmatch(path.name) and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to fill; on success it replaces `path`, on any failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary_path = path.parent / temporary_name(path.name)
    try:
        # Created like any new file (mode 0666 less the umask), unlike mkstemp's private 0600.
        os.close(os.open(temporary_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield temporary_path
        with open(temporary_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary_path, path)
    except OSError as error:
        temporary_path.unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}; "
                      "free disk space or fix permissions, then rerun the same command") from error
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, produce: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file atomically; `produce(handle)` writes the content into an open binary file."""
    with atomic_path(Path(path)) as temporary, open(temporary, "wb") as handle:
        produce(handle)


def write_text(path: str | Path, content: str) -> None:
    write_bytes(path, lambda handle: handle.write(content.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    write_bytes(path, lambda handle: np.savez_compressed(handle, **arrays))


def write_torch(path: str | Path, obj: Any) -> None:
    import torch  # here, so that torch-free tools (tables, reports) can use this module cheaply

    write_bytes(path, lambda handle: torch.save(obj, handle))


def file_sha256(path: str | Path) -> str:
    """A file's SHA-256, read in 1 MiB blocks (weights files run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(config: Any) -> str:
    """A config as canonical JSON (sorted keys, no spaces): equal texts, equal configs."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Any) -> str:
    """A short hash of a run config (canonical JSON): equal hashes, equal configs."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]
