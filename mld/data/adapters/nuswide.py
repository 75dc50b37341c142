"""NUS-WIDE in the multi-label zero-shot setup of LESA and BiAM (used by ML-Decoder).

Seen classes: the 925 Flickr tags of the 1,000-tag list that are not among the 81
human-annotated concepts; unseen classes: the 81 concepts. Classes are ordered seen (tag-list
order) then unseen (concept-list order), 1,006 in all. Training images come from the standard
train list, validation images from the test list; every split keeps the labels of all 1,006
classes (seen from the tag matrices, unseen from the concept ground truth) and the engine trains
on the seen columns only.

Which images, as the official code (`DatasetFromList.get_relevant_samples`: a sample counts for
a class set if it has a positive among it): training keeps the images with a positive among the
seen classes; validation keeps those with a positive among all 1,006 (the GZSL set), and ZSL is
scored on those of them with a positive among the unseen classes (mld.metrics.
zero_shot_evaluation applies the same rule, mld.data.prepared.images_with_positive).
`keep_unlabelled` keeps every listed image instead.

`concepts_only` reads the multi-label benchmark instead (HSVLT's NUS-WIDE and most multi-label
papers): the 81 human-annotated concepts, the same train and test lists, each split keeping the
images with a concept positive.

Expected layout (the official NUS-WIDE release, unpacked):
```
<root>/Flickr/<folder>/<file>.jpg
<root>/ImageList/TrainImagelist.txt, TestImagelist.txt      (Windows-style relative paths)
<root>/NUS_WID_Tags/TagList1k.txt, Train_Tags1k.dat, Test_Tags1k.dat
<root>/ConceptsList/Concepts81.txt
<root>/Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, Labels_<concept>_Test.txt
```
Word vectors are required (300-d GloVe in the papers): LESA's pickled vectors convert with
`mld prepare convert-pickle <root>/wiki_contexts/NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300
--names <root>/NUS_WID_Tags/TagList1k.txt <root>/ConceptsList/Concepts81.txt --out nus.npz`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mld.data.adapters.common import FileSplit, ReadDataset, keep_existing_images
from mld.data.prepared import images_with_positive

SPLIT_SOURCES = {"train": "Train", "val": "Test"}


def _names(list_file: Path) -> list[str]:
    try:
        return [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"NUS-WIDE list {list_file} does not exist; is the dataset root right?") from None


def _zero_one_matrix(matrix_file: Path, rows: int, columns: int) -> np.ndarray:
    """A whitespace-separated 0/1 matrix file, checked against the expected shape."""
    try:
        matrix = pd.read_csv(matrix_file, sep=r"\s+", header=None, dtype=np.int8).to_numpy()
    except FileNotFoundError:
        raise FileNotFoundError(f"NUS-WIDE label file {matrix_file} does not exist") from None
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"{matrix_file}: not a whitespace-separated 0/1 matrix ({error})") from None
    if matrix.shape != (rows, columns) or not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"{matrix_file}: expected a {rows} x {columns} matrix of 0/1 (one row per listed "
                         f"image), found {matrix.shape[0]} x {matrix.shape[1] if matrix.ndim == 2 else 1}")
    return matrix


def read_nuswide(root: str | Path, skip_missing_images: bool = False,
                 keep_unlabelled: bool = False, concepts_only: bool = False) -> ReadDataset:
    root = Path(root)
    tags = _names(root / "NUS_WID_Tags" / "TagList1k.txt")
    concepts = _names(root / "ConceptsList" / "Concepts81.txt")
    concept_set = set(concepts)
    seen_tag_columns = [index for index, tag in enumerate(tags) if tag not in concept_set]
    class_names = [tags[index] for index in seen_tag_columns] + concepts
    splits = {}
    for split, source in SPLIT_SOURCES.items():
        list_file = root / "ImageList" / f"{source}Imagelist.txt"
        relative = [line.strip().replace("\\", "/") for line in _names(list_file)]
        tag_matrix = _zero_one_matrix(root / "NUS_WID_Tags" / f"{source}_Tags1k.dat", len(relative), len(tags))
        concept_columns = [
            _zero_one_matrix(root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{source}.txt",
                             len(relative), 1)[:, 0]
            for concept in concepts
        ]
        labels = np.concatenate([tag_matrix[:, seen_tag_columns], np.stack(concept_columns, axis=1)], axis=1)
        if concepts_only:
            labels = labels[:, len(seen_tag_columns):]
        content = FileSplit([root / "Flickr" / path for path in relative], labels.astype(np.int8))
        if concepts_only and not keep_unlabelled:
            content = content.select(images_with_positive(labels))
        elif not keep_unlabelled:
            content = content.select(images_with_positive(labels[:, :len(seen_tag_columns)] if split == "train"
                                                          else labels))
        splits[split] = keep_existing_images(content, str(list_file), skip_missing_images)
    if concepts_only:
        return ReadDataset(name="nuswide-81", source=f"NUS-WIDE (81 concepts, multi-label) at {root}",
                           class_names=concepts, splits=splits)
    return ReadDataset(
        name="nuswide-zsl", source=f"NUS-WIDE (LESA/BiAM zero-shot split) at {root}", class_names=class_names,
        splits=splits, seen_classes=list(range(len(seen_tag_columns))),
        unseen_classes=list(range(len(seen_tag_columns), len(class_names))), word_vectors_required=True,
    )
