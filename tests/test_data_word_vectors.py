"""Class word vectors from files, the optional sentence-transformers path, explicit pickle conversion."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from mld.data.pickle_conversion import convert_pickle
from mld.data.word_vectors import load_word_vectors, sentence_model_vectors


def _glove(path, header=False):
    lines = ["3 2"] if header else []
    lines += ["traffic 1.0 0.0", "light 0.0 1.0", "dog 2.0 2.0", "the 9 9"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [False, True])
def test_glove_text_averages_the_words_of_a_class_name(tmp_path, header):
    vectors = load_word_vectors(_glove(tmp_path / "glove.txt", header), ["traffic light", "Dog", "hot_dog"])
    assert vectors.dtype == np.float32
    assert vectors.tolist() == [[0.5, 0.5], [2.0, 2.0], [2.0, 2.0]]  # "hot" is unknown and skipped


def test_glove_class_without_any_known_word_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"glove.txt: none of the words of 1 class names .*'zebra crossing'"):
        load_word_vectors(_glove(tmp_path / "glove.txt"), ["dog", "zebra crossing"])


def test_npy_rows_must_match_the_classes(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((3, 5)))
    assert load_word_vectors(tmp_path / "v.npy", ["a", "b", "c"]).shape == (3, 5)
    with pytest.raises(ValueError, match=r"v.npy: expected \[2, d\]"):
        load_word_vectors(tmp_path / "v.npy", ["a", "b"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt does not exist"):
        load_word_vectors(tmp_path / "nothing.txt", ["a"])


def test_sentence_model_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(ValueError, match="pip install sentence-transformers"):
        sentence_model_vectors("all-MiniLM-L6-v2", ["dog"])


def test_pickled_pair_of_arrays_converts_with_names_and_loads_by_name(tmp_path):
    # The LESA / BiAM layout: (tag vectors, concept vectors); "dog" is in both, the later wins.
    tags, concepts = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[5.0, 5.0]])
    with open(tmp_path / "vectors.pkl", "wb") as handle:
        pickle.dump((tags, concepts), handle)
    (tmp_path / "tags.txt").write_text("sky\ndog\n")
    (tmp_path / "concepts.txt").write_text("dog\n")
    out = convert_pickle(tmp_path / "vectors.pkl", tmp_path / "nus.npz", [tmp_path / "tags.txt",
                                                                           tmp_path / "concepts.txt"])
    assert load_word_vectors(out, ["dog", "sky"]).tolist() == [[5.0, 5.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match=r"nus.npz: no vector for 1 classes, e.g. \['cat'\]"):
        load_word_vectors(out, ["cat"])


def test_pickled_dict_and_array_convert(tmp_path):
    with open(tmp_path / "d.pkl", "wb") as handle:
        pickle.dump({"cat": [1, 2], "dog": [3, 4]}, handle)
    assert load_word_vectors(convert_pickle(tmp_path / "d.pkl", tmp_path / "d.npz"), ["dog"]).tolist() == [[3, 4]]
    with open(tmp_path / "a.pkl", "wb") as handle:
        pickle.dump(np.eye(2), handle)
    assert np.load(convert_pickle(tmp_path / "a.pkl", tmp_path / "a.npy")).tolist() == [[1, 0], [0, 1]]


def test_pickled_sequence_without_names_is_refused(tmp_path):
    with open(tmp_path / "s.pkl", "wb") as handle:
        pickle.dump([np.eye(2), np.eye(2)], handle)
    with pytest.raises(ValueError, match="pass one --names file per item"):
        convert_pickle(tmp_path / "s.pkl", tmp_path / "s.npz")
