"""Pascal VOC 2007: trainval for training, test for validation, the 20 classes in their standard
(alphabetical) order.

A class is positive (1) in an image with at least one non-difficult object of it; a class whose
objects in the image are all marked difficult is unknown (-1) for that image - the standard
VOC evaluation ignores it; otherwise negative (0).

Expected layout (trainval and test tarballs unpacked into the same VOCdevkit):
```
<root>/Annotations/<id>.xml   <root>/JPEGImages/<id>.jpg
<root>/ImageSets/Main/trainval.txt, test.txt
```
`<root>` is `VOCdevkit/VOC2007` (a `VOCdevkit` directory holding `VOC2007` is accepted too).
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from mld.data.adapters.common import FileSplit, ReadDataset, keep_existing_images

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
SPLIT_LISTS = {"train": "trainval", "val": "test"}


def image_labels(annotation_file: Path) -> np.ndarray:
    """Labels [20] int8 of one image from its annotation XML."""
    try:
        objects = ElementTree.parse(annotation_file).getroot().findall("object")
    except FileNotFoundError:
        raise FileNotFoundError(f"VOC annotation file {annotation_file} does not exist") from None
    except ElementTree.ParseError as error:
        raise ValueError(f"{annotation_file}: not valid XML ({error})") from None
    easy, difficult = np.zeros(len(VOC_CLASSES), bool), np.zeros(len(VOC_CLASSES), bool)
    for number, element in enumerate(objects):
        name = element.findtext("name")
        if name is None:
            raise ValueError(f"{annotation_file}: <object> {number} lacks field <name>")
        if name.strip() not in VOC_CLASSES:
            raise ValueError(f"{annotation_file}: <object> {number} has unknown class {name!r}")
        column = VOC_CLASSES.index(name.strip())
        if (element.findtext("difficult") or "0").strip() == "1":
            difficult[column] = True
        else:
            easy[column] = True
    return np.where(easy, 1, np.where(difficult, -1, 0)).astype(np.int8)


def read_voc(root: str | Path, skip_missing_images: bool = False) -> ReadDataset:
    root = Path(root)
    if not (root / "Annotations").is_dir() and (root / "VOC2007" / "Annotations").is_dir():
        root = root / "VOC2007"
    splits = {}
    for split, list_name in SPLIT_LISTS.items():
        list_file = root / "ImageSets" / "Main" / f"{list_name}.txt"
        try:
            ids = [line.split()[0] for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            raise FileNotFoundError(f"VOC image list {list_file} does not exist; is {root} VOCdevkit/VOC2007 "
                                    "with the trainval and test sets unpacked?") from None
        labels = np.stack([image_labels(root / "Annotations" / f"{i}.xml") for i in ids]) if ids else \
            np.zeros((0, len(VOC_CLASSES)), np.int8)
        content = FileSplit([root / "JPEGImages" / f"{i}.jpg" for i in ids], labels)
        splits[split] = keep_existing_images(content, str(list_file), skip_missing_images)
    return ReadDataset(name="voc2007", source=f"Pascal VOC 2007 at {root}", class_names=list(VOC_CLASSES),
                       splits=splits)
