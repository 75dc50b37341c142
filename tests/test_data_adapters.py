"""Real-dataset adapters, each on tiny files written here in the dataset's own format."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mld.data import validate_prepared
from mld.data.adapters import read_coco, read_nuswide, read_openimages, read_voc, write_read_dataset
from mld.data.adapters.voc import VOC_CLASSES
from mld.data.prepared import images_with_positive
from toy_paper import (
    OPENIMAGES_HEADER, write_coco, write_jpeg, write_nuswide, write_openimages_descriptions, write_openimages_labels,
    write_voc,
)


# --- MS-COCO 2014 (the release-format writers are shared with the toy paper setup, tests/toy_paper.py)

def _coco(root, drop_annotation_field=None):
    write_coco(root, [(18, "dog"), (1, "person"), (3, "car")],
               {"train2014": [(5, [1, 18]), (2, [3]), (9, [])], "val2014": [(4, [18, 18])]})
    if drop_annotation_field:
        for annotation_file in (root / "annotations").glob("*.json"):
            data = json.loads(annotation_file.read_text())
            for annotation in data["annotations"]:
                annotation.pop(drop_annotation_field)
            annotation_file.write_text(json.dumps(data))


def test_coco_keeps_annotated_images_with_categories_in_id_order(tmp_path):
    _coco(tmp_path / "coco")
    dataset = read_coco(tmp_path / "coco")
    assert dataset.class_names == ["person", "car", "dog"]
    train = dataset.splits["train"]
    assert [path.name for path in train.paths] == ["COCO_train2014_000000000002.jpg",
                                                   "COCO_train2014_000000000005.jpg"]  # image 9: no annotation
    assert train.labels.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert dataset.splits["val"].labels.tolist() == [[0, 0, 1]]
    meta = write_read_dataset(dataset, tmp_path / "prepared")
    assert validate_prepared(meta.path).image_storage == "files"
    assert meta.image_paths("train")[0] == (tmp_path / "coco" / "train2014" / train.paths[0].name).resolve()


def test_coco_annotation_without_a_field_names_file_and_field(tmp_path):
    _coco(tmp_path / "coco", drop_annotation_field="category_id")
    with pytest.raises(ValueError, match=r"instances_train2014.json: annotation 0 lacks field 'category_id'"):
        read_coco(tmp_path / "coco")


def test_missing_images_are_refused_or_skipped(tmp_path):
    _coco(tmp_path / "coco")
    (tmp_path / "coco" / "train2014" / "COCO_train2014_000000000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images listed by .*instances_train2014.json are missing"):
        read_coco(tmp_path / "coco")
    dataset = read_coco(tmp_path / "coco", skip_missing_images=True)
    assert dataset.splits["train"].labels.tolist() == [[0, 1, 0]]


# --- Pascal VOC 2007

def _voc(root, broken=False):
    images = {"000001": [("dog", False), ("person", True)], "000002": [("person", False), ("person", True)],
              "000003": [("cat", True), ("cat", True)]}
    write_voc(root, images, {"trainval": ["000001", "000002"], "test": ["000003"]})
    if broken:
        for annotation_file in (root / "Annotations").glob("*.xml"):
            annotation_file.write_text("<annotation><object><difficult>0</difficult></object>")


def test_voc_difficult_only_classes_are_unknown(tmp_path):
    _voc(tmp_path / "VOCdevkit" / "VOC2007")
    dataset = read_voc(tmp_path / "VOCdevkit")  # the VOCdevkit directory is accepted too
    column = {name: index for index, name in enumerate(VOC_CLASSES)}
    train = dataset.splits["train"].labels
    assert train[0, column["dog"]] == 1 and train[0, column["person"]] == -1
    assert train[1, column["person"]] == 1  # one non-difficult person is enough
    assert dataset.splits["val"].labels[0, column["cat"]] == -1
    assert (train[:, column["car"]] == 0).all()
    validate_prepared(write_read_dataset(dataset, tmp_path / "prepared").path)


def test_voc_malformed_annotation_names_the_file(tmp_path):
    _voc(tmp_path / "VOC2007", broken=True)
    with pytest.raises(ValueError, match=r"000001.xml: not valid XML"):
        read_voc(tmp_path / "VOC2007")


# --- NUS-WIDE (zero-shot split)

def _nuswide(root):
    tags = ["sky", "dog", "airport", "water", "beach"]  # "dog" and "water" are also concepts
    concepts = ["dog", "water", "zebra"]
    write_nuswide(root, tags, concepts, {
        "Train": (["actor\\0001_1.jpg", "beach\\0002_2.jpg", "sky\\0003_3.jpg", "dog\\0005_5.jpg"],
                  [[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 0, 1, 0]],
                  [[0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]]),
        "Test": (["zoo\\0004_4.jpg", "sea\\0006_6.jpg", "park\\0007_7.jpg"],
                 [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], [[0, 0, 1], [0, 0, 0], [0, 0, 0]])})


def test_nuswide_zero_shot_classes_and_labels(tmp_path):
    _nuswide(tmp_path / "nus")
    dataset = read_nuswide(tmp_path / "nus")
    assert dataset.class_names == ["sky", "airport", "beach", "dog", "water", "zebra"]
    assert dataset.seen_classes == [0, 1, 2] and dataset.unseen_classes == [3, 4, 5]
    train = dataset.splits["train"]
    # Training keeps the 2 images with a seen positive: not the unlabelled one, nor 0005, whose tags
    # ("dog", "water") and concepts are all unseen classes.
    assert [path.name for path in train.paths] == ["0001_1.jpg", "0003_3.jpg"]
    assert train.labels.tolist() == [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 0]]
    # Evaluation keeps the 2 images with any positive (the GZSL set); ZSL scores 1 of them (0004,
    # the only one with an unseen positive).
    val = dataset.splits["val"]
    assert [path.name for path in val.paths] == ["0004_4.jpg", "0006_6.jpg"]
    assert val.labels.tolist() == [[0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]]
    assert images_with_positive(val.labels[:, dataset.unseen_classes]).tolist() == [True, False]
    unfiltered = read_nuswide(tmp_path / "nus", keep_unlabelled=True)
    assert [len(unfiltered.splits[split].paths) for split in ("train", "val")] == [4, 3]
    with pytest.raises(ValueError, match="zero-shot dataset: pass --word-vectors"):
        write_read_dataset(dataset, tmp_path / "prepared")
    vectors = lambda names: np.arange(len(names) * 4, dtype=np.float32).reshape(len(names), 4)  # noqa: E731
    meta = write_read_dataset(dataset, tmp_path / "prepared", word_vectors=vectors)
    assert validate_prepared(meta.path).unseen_classes == (3, 4, 5)
    assert meta.splits == {"train": 2, "val": 2}


def test_nuswide_concepts_only_is_the_81_concept_multi_label_benchmark(tmp_path):
    """--concepts-only: the concepts as the classes (no seen/unseen split), each split keeping the
    images with a concept positive (HSVLT's NUS-WIDE)."""
    _nuswide(tmp_path / "nus")
    dataset = read_nuswide(tmp_path / "nus", concepts_only=True)
    assert dataset.class_names == ["dog", "water", "zebra"] and not dataset.seen_classes and not dataset.unseen_classes
    train, val = dataset.splits["train"], dataset.splits["val"]
    assert [path.name for path in train.paths] == ["0001_1.jpg", "0003_3.jpg", "0005_5.jpg"]
    assert train.labels.tolist() == [[0, 1, 0], [1, 0, 0], [1, 1, 0]]
    assert [path.name for path in val.paths] == ["0004_4.jpg"] and val.labels.tolist() == [[0, 0, 1]]
    meta = write_read_dataset(dataset, tmp_path / "prepared")
    assert meta.splits == {"train": 3, "val": 1} and meta.task == "multilabel" and not meta.zero_shot
    everything = read_nuswide(tmp_path / "nus", concepts_only=True, keep_unlabelled=True)
    assert [len(everything.splits[split].paths) for split in ("train", "val")] == [4, 3]


def test_nuswide_matrix_of_the_wrong_shape_is_named(tmp_path):
    _nuswide(tmp_path / "nus")
    (tmp_path / "nus" / "NUS_WID_Tags" / "Test_Tags1k.dat").write_text("0 1\n")
    with pytest.raises(ValueError, match=r"Test_Tags1k.dat: expected a 3 x 5 matrix of 0/1"):
        read_nuswide(tmp_path / "nus")


# --- Open Images v6

def _openimages(root, header=OPENIMAGES_HEADER):
    write_openimages_descriptions(root / "classes.csv", [("/m/01", "Cat"), ("/m/02", "Dog"), ("/m/03", "Bird"),
                                                         ("/m/04", "Cat")])
    write_openimages_labels(root / "train.csv", [("b", "verification", "/m/02", 1), ("a", "verification", "/m/01", 1),
                                                 ("a", "verification", "/m/02", 0),
                                                 ("b", "crowdsource-verification", "/m/04", 1)], header)
    write_openimages_labels(root / "val.csv", [("c", "verification", "/m/03", 1), ("c", "verification", "/m/01", 0)],
                            header)
    for split, ids in (("train", "ab"), ("val", "c")):
        for image_id in ids:
            write_jpeg(root / split / f"{image_id}.jpg", seed=ord(image_id))


def test_openimages_unverified_labels_are_unknown(tmp_path):
    root = tmp_path / "oi"
    _openimages(root)
    dataset = read_openimages(root / "classes.csv", root / "train.csv", root / "val.csv", root / "train", root / "val")
    # Classes with a verified positive training label, in description order; repeated names disambiguated.
    assert dataset.class_names == ["Cat (/m/01)", "Dog", "Cat (/m/04)"]
    meta = write_read_dataset(dataset, tmp_path / "prepared")
    validate_prepared(meta.path)
    assert meta.labels("train").tolist() == [[1, 0, -1], [-1, 1, 1]]  # images a, b
    assert meta.labels("val").tolist() == [[0, -1, -1]]  # the bird is no class: no verified train positive


def test_openimages_class_list_selects_and_orders_classes(tmp_path):
    root = tmp_path / "oi"
    _openimages(root)
    (root / "trainable.txt").write_text("/m/03\n/m/02\n")
    dataset = read_openimages(root / "classes.csv", root / "train.csv", root / "val.csv", root / "train",
                              root / "val", classes=root / "trainable.txt")
    assert dataset.class_names == ["Bird", "Dog"]
    meta = write_read_dataset(dataset, tmp_path / "prepared")
    assert meta.labels("val").tolist() == [[1, -1]]


def test_openimages_labels_file_without_confidence_names_the_column(tmp_path):
    root = tmp_path / "oi"
    _openimages(root, header="ImageID,Source,LabelName,Score")
    with pytest.raises(ValueError, match=r"train.csv: column\(s\) \['Confidence'\] missing"):
        read_openimages(root / "classes.csv", root / "train.csv", root / "val.csv", root / "train", root / "val")


@pytest.mark.parametrize("with_list", [True, False])
def test_openimages_class_count_is_checked_against_num_classes(tmp_path, with_list):
    root = tmp_path / "oi"
    _openimages(root)
    (root / "trainable.txt").write_text("/m/03\n/m/02\n")
    classes = root / "trainable.txt" if with_list else None
    files = (root / "classes.csv", root / "train.csv", root / "val.csv", root / "train", root / "val")
    found = 2 if with_list else 3
    assert len(read_openimages(*files, classes=classes, num_classes=found).class_names) == found
    named = "trainable.txt names 2 classes" if with_list else "the 3 classes with a verified positive label in .*train.csv were kept"
    fix = "set num_classes to 2" if with_list else r"oidv6-classes-trainable.txt.*--classes"
    with pytest.raises(ValueError, match=rf"{named}, but num_classes \(--num-classes\) is 9600; .*{fix}"):
        read_openimages(*files, classes=classes, num_classes=9600)


def test_mld_prepare_openimages_checks_num_classes(tmp_path, capsys):
    from mld.cli import main

    root = tmp_path / "oi"
    _openimages(root)
    arguments = ["prepare", "openimages", "--class-descriptions", str(root / "classes.csv"),
                 "--train-labels", str(root / "train.csv"), "--val-labels", str(root / "val.csv"),
                 "--train-images", str(root / "train"), "--val-images", str(root / "val")]
    assert main([*arguments, "--num-classes", "4", "--out", str(tmp_path / "refused")]) != 0
    assert "num_classes (--num-classes) is 4" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main([*arguments, "--num-classes", "3", "--out", str(tmp_path / "prepared")]) == 0
