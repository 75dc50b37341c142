"""Stanford Cars (Table 14): 196 car models, 8,144 training and 8,041 test images (the test set
validates), single-label, whole images (the devkit's bounding boxes are not used).

Expected layout (the official images and devkit, plus the test labels released afterwards):
```
<root>/cars_train/<fname>   <root>/devkit/cars_meta.mat          (class_names: 1 x 196 cell)
<root>/cars_test/<fname>    <root>/devkit/cars_train_annos.mat   (annotations: struct array
                            <root>/cars_test_annos_withlabels.mat  with fields fname and class,
                                                                   1-based; and bbox_*)
```
Each .mat file is looked for in `<root>` and in `<root>/devkit`. They are MATLAB v5 files,
read with scipy.io.loadmat.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mld.data.adapters.common import FileSplit, ReadDataset, keep_existing_images, one_hot

META_FILE = "cars_meta.mat"
SPLITS = {"train": ("cars_train_annos.mat", "cars_train"), "val": ("cars_test_annos_withlabels.mat", "cars_test")}


def _mat_file(root: Path, name: str) -> Path:
    for folder in (root, root / "devkit"):
        if (folder / name).is_file():
            return folder / name
    hint = "; the test labels are a download of their own, beside the devkit" if "withlabels" in name else ""
    raise FileNotFoundError(f"Stanford Cars file {name} is neither in {root} nor in {root / 'devkit'}{hint}")


def _load_mat(mat_file: Path, variable: str) -> np.ndarray:
    from scipy.io import loadmat  # scipy comes with scikit-learn; import on use

    try:
        content = loadmat(mat_file, squeeze_me=True)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise ValueError(f"{mat_file}: not a readable MATLAB file ({error})") from None
    if variable not in content:
        found = sorted(key for key in content if not key.startswith("__"))
        raise ValueError(f"{mat_file}: variable {variable!r} is missing (found {found}); is this the devkit's file?")
    return np.atleast_1d(content[variable])


def _field(annotations: np.ndarray, field: str, mat_file: Path) -> list[Any]:
    if annotations.dtype.names is None or field not in annotations.dtype.names:
        raise ValueError(f"{mat_file}: annotations lack field {field!r} (found {annotations.dtype.names})")
    return [annotation[field] for annotation in annotations]


def read_split(mat_file: Path, image_dir: Path, num_classes: int) -> FileSplit:
    annotations = _load_mat(mat_file, "annotations")
    classes = np.array([int(value) for value in _field(annotations, "class", mat_file)], dtype=np.int64) - 1
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"{mat_file}: classes must lie in 1..{num_classes} (cars_meta.mat's class_names), found "
                         f"{classes.min() + 1}..{classes.max() + 1}")
    paths = [image_dir / str(name) for name in _field(annotations, "fname", mat_file)]
    return FileSplit(paths, one_hot(classes, num_classes))


def read_stanford_cars(root: str | Path, skip_missing_images: bool = False) -> ReadDataset:
    root = Path(root)
    meta_file = _mat_file(root, META_FILE)
    class_names = [str(name) for name in _load_mat(meta_file, "class_names")]
    splits = {}
    for split, (annotations_name, image_folder) in SPLITS.items():
        mat_file = _mat_file(root, annotations_name)
        splits[split] = keep_existing_images(read_split(mat_file, root / image_folder, len(class_names)),
                                             str(mat_file), skip_missing_images)
    return ReadDataset(name="stanford-cars", source=f"Stanford Cars at {root}", class_names=class_names,
                       splits=splits, task="single_label")
