"""Open Images v6 image-level labels: human-verified labels only, everything else unknown.

Each image's verified labels (Confidence 1: present, 0: absent) become 1 / 0; every other class
of the image is -1 (unknown). The paper treats those as negatives with a reduced weight; the run
config's `dataset.unknown_labels` chooses that or ignoring them.

Inputs (the official CSV files):
* class descriptions: `LabelName,DisplayName` (oidv6-class-descriptions.csv; header optional);
* human-verified labels per split: `ImageID,Source,LabelName,Confidence`
  (oidv6-train-annotations-human-imagelabels.csv, validation-/test-annotations-...);
* image directories holding `<ImageID>.jpg`;
* optionally a class list (one LabelName per line, e.g. oidv6-classes-trainable.txt); without it
  the classes are those with at least one verified positive training label, in description order.
  The paper trains "9,600" classes: the official trainable list, whose 9,605 classes are the
  official model's outputs;
* optionally the class count the experiment expects (`num_classes`, the workflow config's
  `datasets.<name>.num_classes`): a dataset with another count is refused before it is written.
The class names are the display names (duplicated display names get their LabelName appended).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from mld.data.adapters.common import FileSplit, ReadDataset, SparseLabels, keep_existing_images

LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")


def _read_csv(csv_file: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_file, dtype=str, keep_default_na=False, **options)
    except FileNotFoundError:
        raise FileNotFoundError(f"Open Images file {csv_file} does not exist") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_file}: not a readable CSV file ({error})") from None


def read_class_descriptions(csv_file: Path) -> dict[str, str]:
    """LabelName -> display name, in file order."""
    table = _read_csv(csv_file, header=None)
    if table.shape[1] < 2:
        raise ValueError(f"{csv_file}: expected two columns LabelName,DisplayName")
    if tuple(table.iloc[0, :2]) == ("LabelName", "DisplayName"):
        table = table.iloc[1:]
    return dict(zip(table.iloc[:, 0], table.iloc[:, 1]))


def read_verified_labels(csv_file: Path) -> pd.DataFrame:
    table = _read_csv(csv_file, usecols=lambda column: column in LABEL_COLUMNS)
    missing = [column for column in LABEL_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{csv_file}: column(s) {missing} missing; expected the human-verified image "
                         "labels CSV with header ImageID,Source,LabelName,Confidence")
    return table


def _split(table: pd.DataFrame, column_of: dict[str, int], num_classes: int, image_dir: Path) -> FileSplit:
    image_ids = np.array(sorted(set(table["ImageID"])))
    known = table[table["LabelName"].isin(column_of.keys())]
    rows = np.searchsorted(image_ids, known["ImageID"].to_numpy())
    columns = known["LabelName"].map(column_of).to_numpy()
    values = (known["Confidence"].astype(float).to_numpy() >= 0.5).astype(np.int8)
    labels = SparseLabels((len(image_ids), num_classes), rows, columns, values)
    return FileSplit([image_dir / f"{image_id}.jpg" for image_id in image_ids], labels)


def read_openimages(class_descriptions: str | Path, train_labels: str | Path, val_labels: str | Path,
                    train_images: str | Path, val_images: str | Path, classes: str | Path | None = None,
                    skip_missing_images: bool = False, num_classes: int | None = None) -> ReadDataset:
    descriptions = read_class_descriptions(Path(class_descriptions))
    tables = {"train": read_verified_labels(Path(train_labels)), "val": read_verified_labels(Path(val_labels))}
    if classes is not None:
        label_names = [line.strip() for line in Path(classes).read_text(encoding="utf-8").splitlines() if line.strip()]
        unknown = [name for name in label_names if name not in descriptions]
        if unknown:
            raise ValueError(f"{classes}: {len(unknown)} classes have no description in {class_descriptions}, "
                             f"e.g. {unknown[:3]}")
    else:
        train = tables["train"]
        positive = set(train.loc[train["Confidence"].astype(float) >= 0.5, "LabelName"])
        label_names = [name for name in descriptions if name in positive]
    if num_classes is not None:
        check_class_count(len(label_names), num_classes, classes, train_labels)
    column_of = {name: column for column, name in enumerate(label_names)}
    display = [descriptions[name] for name in label_names]
    repeated = {name for name, count in Counter(display).items() if count > 1}
    class_names = [f"{shown} ({name})" if shown in repeated else shown for shown, name in zip(display, label_names)]
    splits = {}
    for split, image_dir, labels_file in (("train", train_images, train_labels), ("val", val_images, val_labels)):
        content = _split(tables[split], column_of, len(label_names), Path(image_dir))
        splits[split] = keep_existing_images(content, str(labels_file), skip_missing_images)
    return ReadDataset(name="openimages-v6", source=f"Open Images v6 human-verified labels ({train_labels})",
                       class_names=class_names, splits=splits)


def check_class_count(found: int, expected: int, classes: str | Path | None, train_labels: str | Path) -> None:
    """Refuse a class set of another size than the experiment's num_classes, saying where it came from."""
    if found == expected:
        return
    if classes is not None:
        source = f"the class list {classes} names {found} classes"
        fix = f"give the class list the experiment was designed for, or set num_classes to {found}"
    else:
        source = (f"without a class list, the {found} classes with a verified positive label in "
                  f"{train_labels} were kept")
        fix = ("give the official trainable-class list (oidv6-classes-trainable.txt, 9,605 classes) as the "
               f"classes option (mld prepare openimages --classes), or set num_classes to {found}")
    raise ValueError(f"Open Images: {source}, but num_classes (--num-classes) is {expected}; {fix}")
