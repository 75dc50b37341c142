"""Explicit, one-off conversion of pickled word-vector files into plain NumPy files.

Unpickling runs code from the file, so nothing in mld unpickles implicitly: the standard
releases that ship pickles (LESA / BiAM's NUS-WIDE GloVe vectors
`NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300`, a pickled pair of [1000, 300] tag vectors
and [81, 300] concept vectors; ML-Decoder's `wordvec_array.pth`) are converted once, by a
person who trusts the file, with `mld prepare convert-pickle`. The result is read without pickle.

Accepted contents: an array or tensor (-> .npy), a dict {name: vector} (-> .npz with `names`
and `vectors`), or a sequence of 2-D arrays, one per `names` file (-> .npz; the names files
list one class per line, in row order).
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _unpickle(source: Path) -> Any:
    if zipfile.is_zipfile(source):  # a torch.save file
        import torch

        return torch.load(source, map_location="cpu", weights_only=False)
    with open(source, "rb") as handle:
        return pickle.load(handle, encoding="latin1")  # latin1: reads Python 2 pickles too


def _as_array(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{where}: expected numbers, found {array.dtype}")
    return array.astype(np.float32)


def convert_pickle(source: str | Path, destination: str | Path,
                   names_files: Sequence[str | Path] = ()) -> Path:
    """Unpickle `source` (trusted!) and save its arrays to `destination` (.npy or .npz); return it."""
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise FileNotFoundError(f"pickle file {source} does not exist")
    content = _unpickle(source)
    if isinstance(content, dict):
        names = [str(name) for name in content]
        vectors = np.stack([_as_array(vector, f"{source}[{name!r}]").ravel() for name, vector in content.items()])
        return _save_named(destination, names, vectors)
    if isinstance(content, (list, tuple)) and names_files:
        if len(content) != len(names_files):
            raise ValueError(f"{source} holds {len(content)} arrays but {len(names_files)} names files were given")
        names, blocks = [], []
        for index, (block, names_file) in enumerate(zip(content, names_files)):
            block = _as_array(block, f"{source}[{index}]")
            block_names = [line.strip() for line in Path(names_file).read_text(encoding="utf-8").splitlines()
                           if line.strip()]
            if block.ndim != 2 or len(block) != len(block_names):
                raise ValueError(f"{source}[{index}] has shape {list(block.shape)} but {names_file} "
                                 f"lists {len(block_names)} names")
            names += block_names
            blocks.append(block)
        return _save_named(destination, names, np.concatenate(blocks))
    if isinstance(content, (list, tuple)):
        raise ValueError(f"{source} holds a sequence of {len(content)} items; pass one --names file per "
                         "item (one class name per line, in row order)")
    if destination.suffix != ".npy":
        raise ValueError(f"{source} holds a single array; write it to a .npy file, not {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    np.save(destination, _as_array(content, str(source)))
    return destination


def _save_named(destination: Path, names: list[str], vectors: np.ndarray) -> Path:
    if destination.suffix != ".npz":
        raise ValueError(f"named vectors are written to a .npz file, not {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    np.savez(destination, names=np.array(names), vectors=vectors.astype(np.float32))
    return destination
