"""The prepared format: metadata, and refusal of inconsistent datasets naming the file at fault."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mld.data import PreparedDatasetError, open_prepared, prepare_synthetic, validate_prepared
from mld.data.prepared import FORMAT


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_synthetic("nus-like", tmp_path_factory.mktemp("data") / "nus", image_size=24,
                             num_train=12, num_val=6).path


@pytest.fixture
def copy(prepared, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(prepared, target)
    return target


def _edit_meta(directory, **changes):
    meta_file = directory / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta.update(changes)
    meta_file.write_text(json.dumps(meta))


def test_meta_describes_the_dataset(prepared):
    meta = open_prepared(prepared)
    raw = json.loads((prepared / "meta.json").read_text())
    assert raw["format"] == FORMAT and raw["image_storage"] == "array" and raw["image_size"] == 24
    assert meta.splits == {"train": 12, "val": 6} and meta.zero_shot
    assert sorted(meta.seen_classes + meta.unseen_classes) == list(range(meta.num_classes))
    assert meta.labels("val").shape == (6, meta.num_classes) and meta.labels("val").dtype == np.int8
    assert validate_prepared(prepared) == meta


def test_missing_meta_names_the_file(tmp_path):
    with pytest.raises(PreparedDatasetError, match=r"meta.json: missing; .* is not a prepared dataset"):
        open_prepared(tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"format": "other/2"}, "format is 'other/2'"),
    ({"num_classes": 3}, "class_names must hold num_classes = 3"),
    ({"task": "detection"}, "task 'detection' is not one of"),
    ({"splits": {"train": -1}}, "splits must map split names to image counts"),
    ({"seen_classes": [0, 1], "unseen_classes": [1, 2]}, "overlap"),
    ({"unseen_classes": [999]}, r"unseen_classes must be a non-empty list of class indices"),
])
def test_inconsistent_meta_is_refused(copy, changes, message):
    _edit_meta(copy, **changes)
    with pytest.raises(PreparedDatasetError, match=message):
        validate_prepared(copy)


def test_a_missing_key_is_named(copy):
    meta = json.loads((copy / "meta.json").read_text())
    del meta["class_names"]
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PreparedDatasetError, match="key 'class_names' is missing"):
        open_prepared(copy)


def test_labels_that_disagree_with_the_image_count_are_refused(copy):
    labels = np.load(copy / "train" / "labels.npy")
    np.save(copy / "train" / "labels.npy", labels[:-1])
    with pytest.raises(PreparedDatasetError, match=r"train/labels.npy: expected \[12, 120\] int8"):
        validate_prepared(copy)


def test_label_values_outside_the_three_states_are_refused(copy):
    labels = np.load(copy / "val" / "labels.npy")
    labels[0, 0] = 2
    np.save(copy / "val" / "labels.npy", labels)
    with pytest.raises(PreparedDatasetError, match="val/labels.npy: values must be 1, 0 or -1"):
        validate_prepared(copy)


def test_word_vectors_that_disagree_with_the_class_count_are_refused(copy):
    np.save(copy / "word_vectors.npy", np.zeros((7, 300), np.float32))
    with pytest.raises(PreparedDatasetError, match=r"word_vectors.npy: expected \[120, d\] float32"):
        validate_prepared(copy)


def test_a_zero_shot_set_without_word_vectors_is_refused(copy):
    (copy / "word_vectors.npy").unlink()
    with pytest.raises(PreparedDatasetError, match="word_vectors.npy: missing"):
        validate_prepared(copy)
    with pytest.raises(PreparedDatasetError, match="--word-vectors FILE"):
        open_prepared(copy).word_vectors()


def test_a_missing_image_array_is_named(copy):
    (copy / "val" / "images.npy").unlink()
    with pytest.raises(PreparedDatasetError, match="val/images.npy: missing"):
        validate_prepared(copy)


def test_images_of_the_wrong_size_are_refused(copy):
    np.save(copy / "train" / "images.npy", np.zeros((12, 20, 20, 3), np.uint8))
    with pytest.raises(PreparedDatasetError, match=r"train/images.npy: expected \[12, 24, 24, 3\] uint8"):
        validate_prepared(copy)


def test_an_unknown_split_is_named(prepared):
    with pytest.raises(PreparedDatasetError, match="no split 'test'"):
        open_prepared(prepared).labels("test")
