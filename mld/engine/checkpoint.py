"""Checkpoints that hold only tensors and plain data, and the random-number state of a process.

Checkpoints are loaded with `torch.load(weights_only=True)`: a file that needs arbitrary pickled
objects (which could run code on load) is refused. Everything saved here is therefore reduced to
tensors, numbers, strings, lists and dicts, including the Python and NumPy generator states.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mld.atomic import write_torch


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unsafe content, corrupt, or from a different run."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a kill during the write leaves the previous one intact)."""
    write_torch(path, state)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU, refusing any file that holds arbitrary Python objects."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds arbitrary pickled Python objects, which can run code "
            f"when loaded; only checkpoints of tensors and plain data are accepted "
            f"(weights_only). Re-save its state_dict with torch.save. Detail: {str(error).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}; it is corrupt or truncated, "
                              "delete it and rerun") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def capture_rng_state() -> dict[str, Any]:
    """The state of every generator a training step may draw from, as weights_only-safe data."""
    numpy_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "python": _python_state_to_data(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    random.setstate(_python_state_from_data(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_data(state: tuple) -> dict[str, Any]:
    version, internal, gauss_next = state
    return {"version": version, "internal": list(internal), "gauss_next": gauss_next}


def _python_state_from_data(data: dict[str, Any]) -> tuple:
    return data["version"], tuple(data["internal"]), data["gauss_next"]
