"""Class word vectors for real datasets: from a file, or from a sentence-transformers model.

Files:
* GloVe / word2vec text (`word v1 ... vd` per line; a word2vec "count dim" header is skipped):
  a class name's vector is the mean of its words' vectors (names are split on spaces,
  underscores, hyphens and other punctuation, lower-cased), as zero-shot work on NUS-WIDE does
  for multi-word tags; words missing from the file are skipped, a class with no known word is
  an error naming it.
* `.npy` [N, d]: one row per class, already in the dataset's class order.
* `.npz` with `names` [M] and `vectors` [M, d] (what `mld prepare convert-pickle` writes):
  looked up by class name; when a name repeats, the later row wins.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

_WORD_SPLIT = re.compile(r"[^0-9a-z']+")


def class_words(name: str) -> list[str]:
    return [word for word in _WORD_SPLIT.split(name.lower()) if word]


def load_word_vectors(path: str | Path, class_names: Sequence[str]) -> np.ndarray:
    """Word vectors [N, d] float32 for `class_names` from a GloVe text, .npy or .npz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word vector file {path} does not exist")
    if path.suffix == ".npy":
        vectors = np.load(path, allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != len(class_names):
            raise ValueError(f"{path}: expected [{len(class_names)}, d] (one row per class, in class order), "
                             f"found {list(vectors.shape)}")
        return _checked(path, vectors)
    if path.suffix == ".npz":
        return _named_vectors(path, class_names)
    return _text_vectors(path, class_names)


def sentence_model_vectors(model_name: str, class_names: Sequence[str]) -> np.ndarray:
    """Embed class names with a sentence-transformers model (a hub name or a local directory)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueError("--sentence-model needs the optional package sentence-transformers "
                         "(pip install sentence-transformers); or pass --word-vectors FILE") from None
    try:
        model = SentenceTransformer(model_name)
    except Exception as error:  # network, missing files, bad name: all end the same way for the user
        raise ValueError(f"cannot load sentence-transformers model {model_name!r}: {error}; pass a local "
                         "model directory, or use --word-vectors FILE") from None
    return model.encode(list(class_names), convert_to_numpy=True).astype(np.float32)


def _checked(path: Path, vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError(f"{path}: word vectors hold non-finite values")
    return vectors


def _named_vectors(path: Path, class_names: Sequence[str]) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        missing_keys = {"names", "vectors"} - set(archive.files)
        if missing_keys:
            raise ValueError(f"{path}: arrays {sorted(missing_keys)} missing; expected `names` and `vectors` "
                             "(as written by `mld prepare convert-pickle`)")
        names, vectors = archive["names"], archive["vectors"]
    row_of = {str(name): row for row, name in enumerate(names)}  # later duplicates win
    missing = [name for name in class_names if name not in row_of]
    if missing:
        raise ValueError(f"{path}: no vector for {len(missing)} classes, e.g. {missing[:5]}")
    return _checked(path, vectors[[row_of[name] for name in class_names]])


def _text_vectors(path: Path, class_names: Sequence[str]) -> np.ndarray:
    wanted = {word for name in class_names for word in class_words(name)}
    found: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if dim is None:
                fields = line.split()
                if line_number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    continue  # word2vec header: "count dim"
                dim = len(fields) - 1
            word, _, values = line.rstrip("\n").partition(" ")
            if word.lower() in wanted and word.lower() not in found:
                vector = np.array(values.split(), dtype=np.float32)
                if len(vector) != dim:
                    raise ValueError(f"{path}, line {line_number}: {len(vector)} values, expected {dim}; "
                                     "is this a GloVe text file?")
                found[word.lower()] = vector
    if dim is None:
        raise ValueError(f"{path}: empty word vector file")
    vectors, unknown = [], []
    for name in class_names:
        known = [found[word] for word in class_words(name) if word in found]
        if not known:
            unknown.append(name)
        vectors.append(np.mean(known, axis=0) if known else np.zeros(dim, np.float32))
    if unknown:
        raise ValueError(f"{path}: none of the words of {len(unknown)} class names are in the file, "
                         f"e.g. {unknown[:5]}; use a larger vocabulary or a .npz with these names")
    return _checked(path, np.stack(vectors))
