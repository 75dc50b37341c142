"""Real-dataset adapters, each on tiny files written here in the dataset's own format."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mld.data import validate_prepared
from mld.data.adapters import read_coco, read_nuswide, read_openimages, read_voc, write_read_dataset
from mld.data.adapters.voc import VOC_CLASSES


def _jpeg(path, shade=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (shade, 50, 200)).save(path, "JPEG")


# --- MS-COCO 2014

def _coco(root, drop_annotation_field=None):
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    for split, images in (("train2014", [(5, [1, 18]), (2, [3]), (9, [])]), ("val2014", [(4, [18, 18])])):
        annotations = [{"id": 100 * image_id + n, "image_id": image_id, "category_id": category}
                       for image_id, cats in images for n, category in enumerate(cats)]
        if drop_annotation_field:
            for annotation in annotations:
                annotation.pop(drop_annotation_field)
        data = {"images": [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg"} for i, _ in images],
                "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        for image_id, _ in images:
            _jpeg(root / split / f"COCO_{split}_{image_id:012d}.jpg")


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

def _voc_annotation(objects):
    body = "".join(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult></object>"
                   for name, difficult in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def _voc(root, broken=False):
    images = {"000001": [("dog", False), ("person", True)], "000002": [("person", False), ("person", True)],
              "000003": [("cat", True), ("cat", True)]}
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("000003\n")
    for image_id, objects in images.items():
        text = _voc_annotation(objects) if not broken else "<annotation><object><difficult>0</difficult></object>"
        (root / "Annotations" / f"{image_id}.xml").write_text(text)
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg")


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
    (root / "NUS_WID_Tags").mkdir(parents=True)
    (root / "ConceptsList").mkdir()
    (root / "ImageList").mkdir()
    (root / "Groundtruth" / "TrainTestLabels").mkdir(parents=True)
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(tags) + "\n")
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    splits = {"Train": (["actor\\0001_1.jpg", "beach\\0002_2.jpg", "sky\\0003_3.jpg"],
                        [[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0]], [[0, 1, 0], [0, 0, 0], [1, 0, 0]]),
              "Test": (["zoo\\0004_4.jpg"], [[0, 0, 0, 0, 0]], [[0, 0, 1]])}
    for source, (paths, tag_rows, concept_rows) in splits.items():
        (root / "ImageList" / f"{source}Imagelist.txt").write_text("\r\n".join(paths) + "\r\n")
        (root / "NUS_WID_Tags" / f"{source}_Tags1k.dat").write_text(
            "".join("\t".join(map(str, row)) + "\t\n" for row in tag_rows))
        for column, concept in enumerate(concepts):
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{source}.txt").write_text(
                "".join(f"{row[column]}\n" for row in concept_rows))
        for path in paths:
            _jpeg(root / "Flickr" / path.replace("\\", "/"))


def test_nuswide_zero_shot_classes_and_labels(tmp_path):
    _nuswide(tmp_path / "nus")
    dataset = read_nuswide(tmp_path / "nus")
    assert dataset.class_names == ["sky", "airport", "beach", "dog", "water", "zebra"]
    assert dataset.seen_classes == [0, 1, 2] and dataset.unseen_classes == [3, 4, 5]
    train = dataset.splits["train"]
    assert [path.name for path in train.paths] == ["0001_1.jpg", "0003_3.jpg"]  # the unlabelled image is left out
    assert train.labels.tolist() == [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 0]]
    assert dataset.splits["val"].labels.tolist() == [[0, 0, 0, 0, 0, 1]]
    assert len(read_nuswide(tmp_path / "nus", keep_unlabelled=True).splits["train"].paths) == 3
    with pytest.raises(ValueError, match="zero-shot dataset: pass --word-vectors"):
        write_read_dataset(dataset, tmp_path / "prepared")
    vectors = lambda names: np.arange(len(names) * 4, dtype=np.float32).reshape(len(names), 4)  # noqa: E731
    meta = write_read_dataset(dataset, tmp_path / "prepared", word_vectors=vectors)
    assert validate_prepared(meta.path).unseen_classes == (3, 4, 5)


def test_nuswide_matrix_of_the_wrong_shape_is_named(tmp_path):
    _nuswide(tmp_path / "nus")
    (tmp_path / "nus" / "NUS_WID_Tags" / "Test_Tags1k.dat").write_text("0 1\n")
    with pytest.raises(ValueError, match=r"Test_Tags1k.dat: expected a 1 x 5 matrix of 0/1"):
        read_nuswide(tmp_path / "nus")


# --- Open Images v6

def _openimages(root, header="ImageID,Source,LabelName,Confidence"):
    root.mkdir(parents=True)
    (root / "classes.csv").write_text("LabelName,DisplayName\n/m/01,Cat\n/m/02,Dog\n/m/03,Bird\n/m/04,Cat\n")
    (root / "train.csv").write_text(f"{header}\nb,verification,/m/02,1\na,verification,/m/01,1\n"
                                    "a,verification,/m/02,0\nb,crowdsource-verification,/m/04,1\n")
    (root / "val.csv").write_text(f"{header}\nc,verification,/m/03,1\nc,verification,/m/01,0\n")
    for split, ids in (("train", "ab"), ("val", "c")):
        for image_id in ids:
            _jpeg(root / split / f"{image_id}.jpg")


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
