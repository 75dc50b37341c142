"""Real-dataset adapters, each on tiny files written here in the dataset's own format."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from mld.data import validate_prepared
from mld.data.adapters import (
    read_cifar100, read_coco, read_nuswide, read_openimages, read_stanford_cars, read_voc, write_read_dataset,
)
from mld.data.adapters.voc import VOC_CLASSES
from mld.data.prepared import images_with_positive
from mld.data.restricted_pickle import PickleRefused, load_data_pickle
from toy_paper import (
    OPENIMAGES_HEADER, cifar_pixels, python2_pickle, write_cifar100_binary, write_cifar100_python, write_coco,
    write_jpeg, write_nuswide, write_openimages_descriptions, write_openimages_labels, write_stanford_cars, write_voc,
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


# --- CIFAR-100 (Table 14): the binary and the python version

CIFAR_NAMES = [f"class_{n:02d}" for n in range(100)]


def _cifar_splits():
    return {"train": (cifar_pixels(3, seed=0), [7, 99, 0]), "test": (cifar_pixels(2, seed=1), [42, 7])}


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar100_reads_either_release_into_one_image_array(tmp_path, version):
    splits = _cifar_splits()
    if version == "binary":
        write_cifar100_binary(tmp_path / "cifar-100-binary", CIFAR_NAMES, splits)
    else:
        write_cifar100_python(tmp_path / "cifar-100-python", CIFAR_NAMES, splits)
    dataset = read_cifar100(tmp_path)  # the folder above the release is accepted
    assert dataset.class_names == CIFAR_NAMES and dataset.task == "single_label"
    assert dataset.source.startswith(f"CIFAR-100 ({version} version)")
    train = dataset.splits["train"]
    assert np.flatnonzero(train.labels[1]).tolist() == [99] and train.labels.sum(axis=1).tolist() == [1, 1, 1]
    assert [int(np.argmax(row)) for row in dataset.splits["val"].labels] == [42, 7]
    # Pixel rows are 1024 red, 1024 green, 1024 blue bytes, each plane row by row.
    pixels = splits["train"][0][2]
    assert train.images.shape == (3, 32, 32, 3)
    assert train.images[2, 0, 1].tolist() == [pixels[1], pixels[1024 + 1], pixels[2048 + 1]]
    assert train.images[2, 1, 0, 2] == pixels[2048 + 32]
    meta = validate_prepared(write_read_dataset(dataset, tmp_path / "prepared").path)
    assert (meta.task, meta.image_storage, meta.image_size, meta.splits) == \
        ("single_label", "array", 32, {"train": 3, "val": 2})
    assert np.array_equal(meta.images("val"), dataset.splits["val"].images)


def test_cifar100_python_pickle_names_numpy_1_or_2_modules(tmp_path):
    """The release's pickles name numpy.core (NumPy 1); a copy re-pickled under NumPy 2 names numpy._core."""
    content = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"fine_labels": [1, 2]}
    (tmp_path / "v1").write_bytes(python2_pickle(content))
    (tmp_path / "v2").write_bytes(pickle.dumps(content, protocol=4))
    assert b"numpy.core.multiarray" in (tmp_path / "v1").read_bytes()
    for name in ("v1", "v2"):
        loaded = load_data_pickle(tmp_path / name)
        assert loaded[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]] and loaded[b"fine_labels"] == [1, 2]


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("dumps", [python2_pickle, lambda content: pickle.dumps(content, protocol=4)],
                         ids=["python2", "protocol4"])
def test_a_crafted_cifar_pickle_is_refused_without_running(tmp_path, dumps):
    write_cifar100_python(tmp_path, CIFAR_NAMES, _cifar_splits())
    witness = tmp_path / "the-pickle-ran"
    (tmp_path / "train").write_bytes(dumps({b"data": _RunsACommand(f"touch {witness}"), b"fine_labels": [0]}))
    with pytest.raises(PickleRefused, match=rf"{tmp_path / 'train'}: refused, the pickle names (posix|os)\.system"):
        read_cifar100(tmp_path)
    assert not witness.exists()


def test_a_cifar_pickle_of_python_objects_is_refused(tmp_path):
    (tmp_path / "objects").write_bytes(pickle.dumps({b"data": np.array([{"a": 1}], dtype=object)}, protocol=2))
    with pytest.raises(PickleRefused, match=r"objects: refused, the pickle names _codecs\.encode"):
        load_data_pickle(tmp_path / "objects")  # protocol 2 from Python 3 names _codecs: refused as well
    (tmp_path / "objects").write_bytes(pickle.dumps({b"data": np.array([{"a": 1}], dtype=object)}, protocol=4))
    with pytest.raises(PickleRefused, match=r"objects: holds an array of Python objects"):
        load_data_pickle(tmp_path / "objects")


def test_cifar100_binary_records_of_the_wrong_size_name_the_file(tmp_path):
    write_cifar100_binary(tmp_path, CIFAR_NAMES, _cifar_splits())
    (tmp_path / "test.bin").write_bytes(b"\0" * 3075)
    with pytest.raises(ValueError, match=r"test.bin: 3075 bytes are not whole records of 3074 bytes"):
        read_cifar100(tmp_path)


def test_cifar100_missing_release_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-100 release at .*train.bin .*train / test / meta"):
        read_cifar100(tmp_path)


# --- Stanford Cars (Table 14): the devkit's .mat files

CARS_NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def _cars(root):
    write_stanford_cars(root, CARS_NAMES, {"train": [("00001.jpg", 3), ("00002.jpg", 1), ("00003.jpg", 3)],
                                           "test": [("00001.jpg", 2)]})


def test_stanford_cars_reads_the_devkit_classes_one_based(tmp_path):
    _cars(tmp_path / "cars")
    dataset = read_stanford_cars(tmp_path / "cars")
    assert dataset.class_names == CARS_NAMES and dataset.task == "single_label"
    train = dataset.splits["train"]
    assert [path.relative_to(tmp_path / "cars").as_posix() for path in train.paths] == \
        ["cars_train/00001.jpg", "cars_train/00002.jpg", "cars_train/00003.jpg"]
    assert train.labels.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1]]
    assert dataset.splits["val"].labels.tolist() == [[0, 1, 0]]
    assert dataset.splits["val"].paths[0] == tmp_path / "cars" / "cars_test" / "00001.jpg"
    meta = validate_prepared(write_read_dataset(dataset, tmp_path / "prepared").path)
    assert (meta.task, meta.image_storage, meta.splits) == ("single_label", "files", {"train": 3, "val": 1})


def test_stanford_cars_without_test_labels_names_the_file(tmp_path):
    _cars(tmp_path / "cars")
    (tmp_path / "cars" / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"cars_test_annos_withlabels.mat is neither in .*download of their own"):
        read_stanford_cars(tmp_path / "cars")


def test_stanford_cars_class_beyond_the_meta_names_the_file(tmp_path):
    write_stanford_cars(tmp_path, CARS_NAMES, {"train": [("00001.jpg", 4)], "test": [("00001.jpg", 1)]})
    with pytest.raises(ValueError, match=r"cars_train_annos.mat: classes must lie in 1..3 .*found 4..4"):
        read_stanford_cars(tmp_path)


def test_mld_prepare_cifar100_and_stanford_cars(tmp_path, capsys):
    from mld.cli import main

    write_cifar100_binary(tmp_path / "cifar", CIFAR_NAMES, _cifar_splits())
    _cars(tmp_path / "cars")
    assert main(["prepare", "cifar100", "--root", str(tmp_path / "cifar"), "--out", str(tmp_path / "c")]) == 0
    assert main(["prepare", "stanford_cars", "--root", str(tmp_path / "cars"), "--out", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert "cifar100, 100 classes, single_label; train 3, val 2 images (array, 32 px)" in printed
    assert "stanford-cars, 3 classes, single_label; train 3, val 1 images (image files)" in printed
