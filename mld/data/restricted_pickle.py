"""Reading data pickles without running code from them (CIFAR-100's python version).

Unpickling calls whatever callables a file names, so an ordinary `pickle.load` of a downloaded
file runs code its author chose. The loader here resolves no name a file gives except the three
NumPy needs to rebuild a plain array (`_reconstruct`, `ndarray`, `dtype`, under NumPy 1's
`numpy.core` and NumPy 2's `numpy._core` module names); any other global (os.system, a class,
even a builtin) refuses the file before anything is called. Plain containers, numbers, strings
and bytes need no global. Arrays of Python objects are refused too: they are not data.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # NumPy 2 moved the implementation to numpy._core; the pickles of both name either module.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class PickleRefused(ValueError):
    """A pickle that names a global outside ALLOWED_GLOBALS or holds an array of Python objects."""


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, handle: io.BufferedReader, source: Path) -> None:
        # encoding="bytes": Python 2 `str` values (CIFAR's keys and names) stay bytes, as released.
        super().__init__(handle, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PickleRefused(
                f"{self.source}: refused, the pickle names {module}.{name}, which could run code; only plain "
                "arrays, lists, dicts, numbers, strings and bytes are read. Use the dataset's binary "
                "version, or check the file's origin") from None


def load_data_pickle(source: str | Path) -> Any:
    """The content of a data pickle: dicts, lists, numbers, strings, bytes and numeric arrays only."""
    source = Path(source)
    try:
        with open(source, "rb") as handle:
            content = _DataUnpickler(handle, source).load()
    except FileNotFoundError:
        raise FileNotFoundError(f"pickle file {source} does not exist") from None
    except PickleRefused:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError, ValueError) as error:
        raise PickleRefused(f"{source}: not a readable pickle ({error})") from None
    _refuse_object_arrays(content, source)
    return content


def _refuse_object_arrays(value: Any, source: Path) -> None:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise PickleRefused(f"{source}: holds an array of Python objects; only numeric arrays are read")
    if isinstance(value, dict):
        for inner in value.values():
            _refuse_object_arrays(inner, source)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _refuse_object_arrays(inner, source)
