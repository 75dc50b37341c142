"""MS-COCO 2014 as the paper uses it: 80 categories (in category-id order), images with at least
one annotation, train2014 for training and val2014 for validation.

Expected layout (the official download, unpacked):
```
<root>/annotations/instances_train2014.json   <root>/train2014/*.jpg
<root>/annotations/instances_val2014.json     <root>/val2014/*.jpg
```
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mld.data.adapters.common import FileSplit, ReadDataset, keep_existing_images

SPLIT_SOURCES = {"train": "train2014", "val": "val2014"}


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    try:
        return record[key]
    except (KeyError, TypeError):
        raise ValueError(f"{where} lacks field {key!r}; is this a COCO instances_*.json file?") from None


def read_instances(annotation_file: Path, image_dir: Path) -> tuple[list[str], FileSplit]:
    """Category names and the split (images with >= 1 annotation, in image-id order)."""
    try:
        data = json.loads(annotation_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO annotation file {annotation_file} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotation_file}: not valid JSON ({error})") from None
    categories = sorted(_field(data, "categories", str(annotation_file)),
                        key=lambda category: _field(category, "id", f"{annotation_file}: a category"))
    column = {category["id"]: index for index, category in enumerate(categories)}
    names = [_field(category, "name", f"{annotation_file}: category {category['id']}") for category in categories]
    file_of_image = {_field(image, "id", f"{annotation_file}: an image"):
                     _field(image, "file_name", f"{annotation_file}: image {image.get('id')}")
                     for image in _field(data, "images", str(annotation_file))}
    positives: dict[int, set[int]] = {}
    for number, annotation in enumerate(_field(data, "annotations", str(annotation_file))):
        where = f"{annotation_file}: annotation {number}"
        image_id, category_id = _field(annotation, "image_id", where), _field(annotation, "category_id", where)
        if category_id not in column or image_id not in file_of_image:
            raise ValueError(f"{where} refers to an unknown category {category_id} or image {image_id}")
        positives.setdefault(image_id, set()).add(column[category_id])
    image_ids = sorted(positives)
    labels = np.zeros((len(image_ids), len(names)), dtype=np.int8)
    for row, image_id in enumerate(image_ids):
        labels[row, sorted(positives[image_id])] = 1
    return names, FileSplit([image_dir / file_of_image[i] for i in image_ids], labels)


def read_coco(root: str | Path, skip_missing_images: bool = False) -> ReadDataset:
    root = Path(root)
    splits, class_names = {}, None
    for split, name in SPLIT_SOURCES.items():
        annotation_file = root / "annotations" / f"instances_{name}.json"
        names, content = read_instances(annotation_file, root / name)
        if class_names is not None and names != class_names:
            raise ValueError(f"{annotation_file}: its categories differ from the training file's")
        class_names = names
        splits[split] = keep_existing_images(content, str(annotation_file), skip_missing_images)
    return ReadDataset(name="coco2014", source=f"MS-COCO 2014 at {root}", class_names=class_names or [],
                       splits=splits)
