"""The paper config at toy scale: tiny datasets in the real release formats, the paper's timm
architectures from local random-init weight files, and a user config (`base:` this checkout's
config/paper.yaml by absolute path, plus overrides only) that shrinks every size to seconds on a CPU.

The writers take their file names from config/paper.yaml (dataset roots and `options:`), so the toy
data stays where the paper config looks, whatever it names its files. The dataset writers are also
the tests' general tool for tiny real-format files (tests/test_data_adapters.py uses them).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pytest
import yaml
from PIL import Image

from mld.data.adapters.voc import VOC_CLASSES
from mld.data.prepared import PreparedMeta
from mld.data.word_vectors import class_words
from mld.data.writing import write_image_list, write_labels, write_meta
from mld.experiments import build_registry, deep_merge, load_config, resolve_base

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "paper.yaml"
TINY_CONFIG = REPO / "config" / "test.yaml"

IMAGES_PER_SPLIT = 8
WORD_VECTOR_DIM = 300  # GloVe 840B's width
TOY_RESOLUTION = 64
TOY_RESOLUTIONS = [64, 96]  # the resolution table: two cells, `xlarge` at the larger
# Keys whose every occurrence in the paper config takes the toy value (the shared `train:` block,
# any per-recipe block and the heads): one rule instead of one override per block.
TOY_VALUES: dict[str, Any] = {
    "epochs": 1, "warmup_epochs": 0.5, "batch_size": 4, "num_workers": 0, "device": "cpu", "amp": "off", "log_every_s": 5.0,
    "resolution": TOY_RESOLUTION,
    "decoder_dim": 32, "ff_dim": 64, "embed_dim": 32,
    "num_blocks": 1,  # HSVLT: one interaction block per stage (the paper config's [3, 3, 27, 3] is size, not a path)
}

# Toy class lists (real class names of each dataset, so the GloVe-like file covers real words).
COCO_CATEGORIES = [(1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
                   (7, "train"), (9, "boat")]  # COCO's ids skip numbers: 8 (truck) left out on purpose
NUS_TAGS = ["sky", "clouds", "dog", "sunset", "airport", "water", "beach", "tree", "flowers", "city"]
# At least 5 unseen concepts: the zero-shot metrics include F1@5 over the unseen classes alone.
NUS_CONCEPTS = ["dog", "water", "zebra", "train", "snow", "sand"]  # "dog", "water": tags too, unseen
# Open Images: (LabelName, DisplayName); two display names repeat, the last two have no positive.
OPENIMAGES_CLASSES = [("/m/01", "Cat"), ("/m/02", "Dog"), ("/m/03", "Bird"), ("/m/04", "Cat"), ("/m/05", "Car"),
                      ("/m/06", "Tree"), ("/m/07", "House"), ("/m/08", "Boat"), ("/m/09", "Person"),
                      ("/m/0a", "Flower"), ("/m/0b", "Unseen one"), ("/m/0c", "Unseen two")]
OPENIMAGES_TRAINABLE = [name for name, _ in OPENIMAGES_CLASSES[:10]]
IMAGENET_CLASSES = [f"n{index:08d}" for index in range(10)]
CIFAR100_CLASSES = [f"fine_{index:02d}" for index in range(100)]  # CIFAR-100's release has exactly 100
CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012", "Audi R8 Coupe 2012",
                "BMW M3 Coupe 2012"]
# Backbones replaced at toy scale. Swin-L (195 M parameters: 5 GB and minutes for one toy step on
# CPU) becomes the smallest Swin built with Swin-L's 12-token windows: the same code path (channels-last
# feature maps); timm refuses inputs other than the model's 384 px unless told not to.
TOY_BACKBONES = {"swin_large": {"name": "swin_tiny_patch4_window7_224",
                                "options": {"window_size": 12, "img_size": 384, "strict_img_size": False}}}
# COCO and VOC share one GloVe file in the paper config: it covers the words of both class lists.
GLOVE_CLASS_NAMES = [name for _, name in COCO_CATEGORIES] + list(VOC_CLASSES)


# ------------------------------------------------------------------ release-format writers


def write_jpeg(path: Path, seed: int = 0) -> None:
    """A small JPEG of random colour blocks; its size (32-64 px a side) varies with `seed`, as real
    images' sizes and aspect ratios do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    size = (32 + 16 * (seed % 3), 32 + 8 * (seed % 5))
    Image.fromarray(blocks).resize(size, Image.NEAREST).save(path, "JPEG")


def write_coco(root: Path, categories: Sequence[tuple[int, str]],
               splits: Mapping[str, Sequence[tuple[int, Sequence[int]]]]) -> None:
    """MS-COCO 2014: annotations/instances_<split>.json and <split>/COCO_<split>_<id>.jpg.

    `splits` maps "train2014" / "val2014" to (image id, category ids of its annotations).
    """
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        annotations = [{"id": 1000 * image_id + n, "image_id": image_id, "category_id": category}
                       for image_id, cats in images for n, category in enumerate(cats)]
        data = {"images": [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg"} for i, _ in images],
                "annotations": annotations, "categories": [{"id": i, "name": n} for i, n in categories]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        for image_id, _ in images:
            write_jpeg(root / split / f"COCO_{split}_{image_id:012d}.jpg", seed=image_id)


def voc_annotation(objects: Iterable[tuple[str, bool]]) -> str:
    body = "".join(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult></object>"
                   for name, difficult in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def write_voc(root: Path, images: Mapping[str, Sequence[tuple[str, bool]]], lists: Mapping[str, Sequence[str]]) -> None:
    """Pascal VOC 2007: Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<list>.txt.

    `images` maps an image id to its objects (class name, difficult); `lists` maps "trainval" /
    "test" to image ids.
    """
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(exist_ok=True)
    for list_name, ids in lists.items():
        (root / "ImageSets" / "Main" / f"{list_name}.txt").write_text("".join(f"{i}\n" for i in ids))
    for number, (image_id, objects) in enumerate(images.items()):
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_annotation(objects))
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", seed=number)


def write_nuswide(root: Path, tags: Sequence[str], concepts: Sequence[str],
                  splits: Mapping[str, tuple[Sequence[str], Sequence[Sequence[int]], Sequence[Sequence[int]]]]) -> None:
    """NUS-WIDE as released: tag and concept lists, per-split image lists (Windows paths), the 1k-tag
    matrices and one ground-truth file per concept and split.

    `splits` maps "Train" / "Test" to (relative image paths with backslashes, tag rows, concept rows).
    """
    for folder in ("NUS_WID_Tags", "ConceptsList", "ImageList", "Groundtruth/TrainTestLabels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(tags) + "\n")
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    images = 0  # a seed per image across splits: no test image is a copy of a training image
    for source, (paths, tag_rows, concept_rows) in splits.items():
        (root / "ImageList" / f"{source}Imagelist.txt").write_text("\r\n".join(paths) + "\r\n")
        (root / "NUS_WID_Tags" / f"{source}_Tags1k.dat").write_text(
            "".join("\t".join(map(str, row)) + "\t\n" for row in tag_rows))
        for column, concept in enumerate(concepts):
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{source}.txt").write_text(
                "".join(f"{row[column]}\n" for row in concept_rows))
        for path in paths:
            write_jpeg(root / "Flickr" / path.replace("\\", "/"), seed=images)
            images += 1


OPENIMAGES_HEADER = "ImageID,Source,LabelName,Confidence"


def write_openimages_labels(csv_file: Path, rows: Iterable[tuple[str, str, str, float]],
                            header: str = OPENIMAGES_HEADER) -> None:
    """A human-verified image-labels CSV: (ImageID, Source, LabelName, Confidence) rows."""
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    csv_file.write_text(header + "\n" + "".join(f"{i},{s},{n},{c:g}\n" for i, s, n, c in rows))


def write_openimages_descriptions(csv_file: Path, classes: Sequence[tuple[str, str]]) -> None:
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    csv_file.write_text("LabelName,DisplayName\n" + "".join(f"{n},{d}\n" for n, d in classes))


def write_glove(path: Path, words: Iterable[str], dim: int = WORD_VECTOR_DIM) -> None:
    """GloVe text (`word v1 ... vd` per line) with a random vector per word."""
    rng = np.random.default_rng(1)
    lines = [f"{word} " + " ".join(f"{v:.4f}" for v in rng.standard_normal(dim)) for word in sorted(set(words))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_word_vectors(path: Path, names: Sequence[str], dim: int = WORD_VECTOR_DIM) -> None:
    """Class word vectors in the format the file name says: GloVe text, .npy (class order) or .npz."""
    vectors = np.random.default_rng(2).standard_normal((len(names), dim)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, names=np.array(names), vectors=vectors)
    elif path.suffix == ".npy":
        np.save(path, vectors)
    else:
        write_glove(path, [word for name in names for word in class_words(name)], dim)


def cifar_pixels(num_images: int, seed: int) -> np.ndarray:
    """Random CIFAR pixel rows [n, 3072] uint8 (1024 red, 1024 green, 1024 blue bytes, rows first)."""
    return np.random.default_rng(seed).integers(0, 256, (num_images, 3 * 32 * 32), dtype=np.uint8)


def write_cifar100_binary(folder: Path, fine_names: Sequence[str],
                          splits: Mapping[str, tuple[np.ndarray, Sequence[int]]]) -> None:
    """CIFAR-100's binary version: `<split>.bin` records of <coarse byte><fine byte><3072 pixel
    bytes> and fine_label_names.txt. `splits` maps "train" / "test" to (pixel rows, fine labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fine_label_names.txt").write_text("".join(f"{name}\n" for name in fine_names))
    (folder / "coarse_label_names.txt").write_text("".join(f"super{n}\n" for n in range(20)))
    for split, (pixels, fine) in splits.items():
        labels = np.stack([np.asarray(fine) // 5, np.asarray(fine)], axis=1).astype(np.uint8)  # coarse, fine
        (folder / f"{split}.bin").write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


class Python2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be changed
    """Protocol 2 with bytes as Python 2 `str` (BINSTRING), as CIFAR's cPickle files hold them."""

    def save_bytes(self, obj: bytes) -> None:
        opcode = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else \
            pickle.BINSTRING + struct.pack("<i", len(obj))
        self.write(opcode + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def python2_pickle(content: Any) -> bytes:
    """`content` pickled as Python 2 with NumPy 1 wrote CIFAR's files (numpy.core's module name)."""
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(content)
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def write_cifar100_python(folder: Path, fine_names: Sequence[str],
                          splits: Mapping[str, tuple[np.ndarray, Sequence[int]]]) -> None:
    """CIFAR-100's python version: pickled dicts `train`, `test` (b'data', b'fine_labels', ...) and
    `meta` (b'fine_label_names', b'coarse_label_names'), keys and names as bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"fine_label_names": [name.encode() for name in fine_names],
            b"coarse_label_names": [f"super{n}".encode() for n in range(20)]}
    (folder / "meta").write_bytes(python2_pickle(meta))
    for split, (pixels, fine) in splits.items():
        content = {b"filenames": [f"image_{n}.png".encode() for n in range(len(fine))],
                   b"batch_label": f"{split}ing batch 1 of 1".encode(), b"fine_labels": list(fine),
                   b"coarse_labels": [label // 5 for label in fine], b"data": pixels}
        (folder / split).write_bytes(python2_pickle(content))


def write_stanford_cars(root: Path, class_names: Sequence[str],
                        splits: Mapping[str, Sequence[tuple[str, int]]]) -> None:
    """Stanford Cars: cars_train/ and cars_test/ images, devkit/cars_meta.mat, devkit/cars_train_annos.mat
    and cars_test_annos_withlabels.mat (MATLAB v5, written with scipy.io.savemat in the devkit's
    structure). `splits` maps "train" / "test" to (file name, 1-based class)."""
    from scipy.io import savemat

    (root / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, len(class_names)), dtype=object)
    names[0, :] = list(class_names)
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for offset, (split, images) in enumerate(splits.items()):
        annotations = np.empty((1, len(images)), dtype=fields)
        for column, (fname, label) in enumerate(images):
            annotations[0, column] = (np.uint8(1), np.uint8(2), np.uint16(30), np.uint16(20), np.uint8(label), fname)
            # Distinct pictures in the two splits (a shared one would be refused as an overlap).
            write_jpeg(root / f"cars_{split}" / fname, seed=1000 * offset + column)
        mat_file = root / "devkit" / "cars_train_annos.mat" if split == "train" else \
            root / "cars_test_annos_withlabels.mat"
        savemat(mat_file, {"annotations": annotations})


# ------------------------------------------------------------------ the paper's datasets at toy size


def _multi_hot(num_images: int, num_classes: int, seed: int) -> np.ndarray:
    """0/1 labels where every class is positive in some image and every image has a positive."""
    labels = (np.random.default_rng(seed).random((num_images, num_classes)) < 0.25).astype(int)
    for column in range(num_classes):
        labels[column % num_images, column] = 1
    return labels


def _root(data_root: Path, spec: Mapping[str, Any]) -> Path:
    return data_root / spec["root"]


def _option(data_root: Path, spec: Mapping[str, Any], key: str) -> Path | None:
    value = spec.get("options", {}).get(key)
    return None if value is None else _root(data_root, spec) / value


def write_toy_coco(data_root: Path, spec: Mapping[str, Any]) -> int:
    root = _root(data_root, spec)
    ids = [category_id for category_id, _ in COCO_CATEGORIES]
    splits = {}
    for offset, split in enumerate(("train2014", "val2014")):
        labels = _multi_hot(IMAGES_PER_SPLIT, len(ids), seed=offset)
        splits[split] = [(100 * (offset + 1) + row, [ids[c] for c in np.flatnonzero(labels[row])])
                         for row in range(IMAGES_PER_SPLIT)]
    write_coco(root, COCO_CATEGORIES, splits)
    vectors = _option(data_root, spec, "word_vectors")
    if vectors is not None:
        write_word_vectors(vectors, GLOVE_CLASS_NAMES)
    return len(COCO_CATEGORIES)


def write_toy_voc(data_root: Path, spec: Mapping[str, Any]) -> int:
    root = _root(data_root, spec)
    images, lists = {}, {}
    for offset, list_name in enumerate(("trainval", "test")):
        labels = _multi_hot(IMAGES_PER_SPLIT, len(VOC_CLASSES), seed=10 + offset)
        ids = [f"{1000 * (offset + 1) + row:06d}" for row in range(IMAGES_PER_SPLIT)]
        for row, image_id in enumerate(ids):
            # A second, difficult object of the first class: VOC's "difficult" flag is exercised.
            objects = [(VOC_CLASSES[c], False) for c in np.flatnonzero(labels[row])]
            images[image_id] = objects + [(objects[0][0], True)]
        lists[list_name] = ids
    write_voc(root, images, lists)
    vectors = _option(data_root, spec, "word_vectors")
    if vectors is not None:
        write_word_vectors(vectors, GLOVE_CLASS_NAMES)
    return len(VOC_CLASSES)


def write_toy_nuswide(data_root: Path, spec: Mapping[str, Any]) -> int:
    root = _root(data_root, spec)
    splits = {}
    for offset, source in enumerate(("Train", "Test")):
        paths = [f"{source.lower()}{row}\\{row:04d}_{offset}.jpg" for row in range(IMAGES_PER_SPLIT)]
        splits[source] = (paths, _multi_hot(IMAGES_PER_SPLIT, len(NUS_TAGS), seed=20 + offset).tolist(),
                          _multi_hot(IMAGES_PER_SPLIT, len(NUS_CONCEPTS), seed=30 + offset).tolist())
    write_nuswide(root, NUS_TAGS, NUS_CONCEPTS, splits)
    seen = [tag for tag in NUS_TAGS if tag not in NUS_CONCEPTS]
    vectors = _option(data_root, spec, "word_vectors")
    if vectors is not None:
        write_word_vectors(vectors, seen + NUS_CONCEPTS)
    # The same release read as the 81-concept benchmark (HSVLT's) has the concepts as its classes.
    concepts_only = spec.get("options", {}).get("concepts_only", False)
    return len(NUS_CONCEPTS) if concepts_only else len(seen) + len(NUS_CONCEPTS)


def write_toy_openimages(data_root: Path, spec: Mapping[str, Any]) -> int:
    """Open Images v6 at the file names the config gives: verified positives and negatives (the rest
    unknown), and two described classes without a verified positive (not trainable)."""
    option = lambda key: _option(data_root, spec, key)  # noqa: E731
    write_openimages_descriptions(option("class_descriptions"), OPENIMAGES_CLASSES)
    if option("classes") is not None:
        option("classes").write_text("".join(f"{name}\n" for name in OPENIMAGES_TRAINABLE))
    for offset, (labels_key, images_key) in enumerate((("train_labels", "train_images"), ("val_labels", "val_images"))):
        labels = _multi_hot(IMAGES_PER_SPLIT, len(OPENIMAGES_TRAINABLE), seed=40 + offset)
        image_ids = [f"{offset}{row:015x}" for row in range(IMAGES_PER_SPLIT)]
        rows = [(image_ids[row], "verification", OPENIMAGES_TRAINABLE[c], float(labels[row, c]))
                for row in range(IMAGES_PER_SPLIT) for c in range(len(OPENIMAGES_TRAINABLE))
                if labels[row, c] or (row + c) % 3 == 0]  # positives, some verified negatives, the rest unknown
        rows.append((image_ids[0], "verification", OPENIMAGES_CLASSES[-1][0], 0.0))  # a verified negative only
        write_openimages_labels(option(labels_key), rows)
        for number, image_id in enumerate(image_ids):
            write_jpeg(option(images_key) / f"{image_id}.jpg", seed=50 + IMAGES_PER_SPLIT * offset + number)
    return len(OPENIMAGES_TRAINABLE)


def write_toy_imagenet(directory: Path) -> int:
    """ImageNet in the prepared format (it has no converter): file storage, one positive per image."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    classes = np.arange(len(IMAGENET_CLASSES) + 2) % len(IMAGENET_CLASSES)  # every class in each split
    for offset, split in enumerate(("train", "val")):
        paths = [directory / "images" / split / f"{IMAGENET_CLASSES[c]}_{row}.JPEG" for row, c in enumerate(classes)]
        for number, path in enumerate(paths):
            write_jpeg(path, seed=60 + len(paths) * offset + number)  # distinct across splits
        write_image_list(directory, split, paths)
        labels = np.zeros((len(paths), len(IMAGENET_CLASSES)), np.int8)
        labels[np.arange(len(paths)), classes] = 1
        write_labels(directory, split, labels)
        splits[split] = len(paths)
    write_meta(directory, PreparedMeta(path=directory, name="imagenet-toy", source="toy ImageNet (tests)",
                                       num_classes=len(IMAGENET_CLASSES), class_names=tuple(IMAGENET_CLASSES),
                                       task="single_label", splits=splits, image_storage="files"))
    return len(IMAGENET_CLASSES)


def write_toy_cifar100(data_root: Path, spec: Mapping[str, Any]) -> int:
    """CIFAR-100 in the release the config's root names: the python version for a `*-python` root,
    else the binary one."""
    root = _root(data_root, spec)
    writer = write_cifar100_python if root.name.endswith("python") else write_cifar100_binary
    labels = lambda offset: [(7 * row + offset) % len(CIFAR100_CLASSES) for row in range(IMAGES_PER_SPLIT)]  # noqa: E731
    writer(root, CIFAR100_CLASSES, {split: (cifar_pixels(IMAGES_PER_SPLIT, seed=70 + offset), labels(offset))
                                    for offset, split in enumerate(("train", "test"))})
    return len(CIFAR100_CLASSES)


def write_toy_stanford_cars(data_root: Path, spec: Mapping[str, Any]) -> int:
    images = {split: [(f"{row + 1:05d}.jpg", 1 + (row + offset) % len(CARS_CLASSES)) for row in range(IMAGES_PER_SPLIT)]
              for offset, split in enumerate(("train", "test"))}
    write_stanford_cars(_root(data_root, spec), CARS_CLASSES, images)
    return len(CARS_CLASSES)


ADAPTER_WRITERS = {"coco": write_toy_coco, "voc": write_toy_voc, "nuswide": write_toy_nuswide,
                   "openimages": write_toy_openimages, "cifar100": write_toy_cifar100,
                   "stanford_cars": write_toy_stanford_cars}


# ------------------------------------------------------------------ weights and the toy config


def write_backbone_weights(paper: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """For each backbone role of the paper config: its timm model, random init, saved as a state dict
    (without classifier, which the loader ignores anyway). Run in a subprocess so that the test
    process does not hold a gigabyte of models."""
    specs = {role: spec for role, spec in paper["backbones"].items() if isinstance(spec, dict)}
    files = {role: out_dir / f"{role}.pt" for role in specs}
    script = (
        "import sys, json, torch, timm\n"
        "torch.manual_seed(0)\n"
        "for name, options, path in json.loads(sys.argv[1]):\n"
        "    torch.save(timm.create_model(name, pretrained=False, num_classes=0, **options).state_dict(), path)\n"
    )
    jobs = [(spec["name"], spec.get("options", {}), str(files[role])) for role, spec in specs.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return files


def shrink(config: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that give every TOY_VALUES key of `config`, wherever it occurs, its toy value."""
    overrides: dict[str, Any] = {}
    for key, value in config.items():
        if key in TOY_VALUES and not isinstance(value, Mapping):
            if value != TOY_VALUES[key]:
                overrides[key] = TOY_VALUES[key]
        elif isinstance(value, Mapping):
            inner = shrink(value)
            if inner:
                overrides[key] = inner
    return overrides


@dataclass(frozen=True)
class ToyPaper:
    """The toy paper setup: where its data and weights are and the user config that uses them."""

    data_root: Path
    config_file: Path
    overrides: dict[str, Any]

    def variant(self, name: str, overrides: Mapping[str, Any]) -> Path:
        """Another user config on top of the toy one (e.g. a tiny memory budget)."""
        path = self.config_file.with_name(f"{name}.yaml")
        path.write_text(yaml.safe_dump({"base": str(PAPER_CONFIG), **deep_merge(self.overrides, overrides)},
                                       sort_keys=False))
        return path


def make_toy_paper(root: Path) -> ToyPaper:
    """Write the toy datasets and weights under `root` and the toy user config `root/toy-paper.yaml`."""
    paper = resolve_base(yaml.safe_load(PAPER_CONFIG.read_text()), root=REPO)
    data_root = root / "datasets"
    datasets: dict[str, Any] = {}
    for role, spec in paper["datasets"].items():
        if "adapter" in spec:
            datasets[role] = {"num_classes": ADAPTER_WRITERS[spec["adapter"]](data_root, spec)}
    imagenet = data_root / "imagenet-prepared"
    datasets["imagenet"] = {"prepared": str(imagenet), "num_classes": write_toy_imagenet(imagenet)}
    weights = write_backbone_weights(deep_merge(paper, {"backbones": TOY_BACKBONES}), root / "weights")
    overrides = deep_merge(shrink(paper), {
        "label": "toy paper config (tests: tiny real-format data, random-init paper backbones)",
        "seeds": [0],
        # A budget no toy run exceeds: every path's memory estimate runs (the paper config budgets
        # only Table 2's transformer-decoder, experiments.extreme_feasibility).
        "train": {"device": "cpu", "feasibility": {"max_memory_gb": 1000.0}},
        "data_root": str(data_root),
        "datasets": datasets,
        # `weights:` alone, as a user with local files writes it (it wins over the inherited `pretrained`).
        "backbones": {role: {"weights": str(path), **TOY_BACKBONES.get(role, {})} for role, path in weights.items()},
        "experiments": {"resolutions": TOY_RESOLUTIONS,
                        "extreme_groups": [2, 5],
                        "openimages_groups": 5,
                        "zero_shot_groups": 3,
                        "single_label_groups": 5},
        "measurements": {"throughput_classes": [20], "module_timing_classes": [20], "num_groups": 5,
                         "options": {"batch_size": 2, "warmup": 1, "repeats": 1, "device": "cpu"}},
        # Small CPU-only requests, so that the jobs fit a single-node test cluster without GPUs
        # (time limits stay the paper config's: the train rule's come from its estimate).
        "resources": {rule: {"threads": 1, "mem_mb": 3000, "gpu": 0} for rule, spec in paper["resources"].items()
                      if "mem_mb" in spec},
        # Recipes the paper trains on several GPUs (ImageNet's: 8) take the train rule's (none) too.
        "recipes": {name: {"gpu": None} for name, spec in paper["recipes"].items() if spec.get("gpu")},
    })
    config_file = root / "toy-paper.yaml"
    config_file.write_text(yaml.safe_dump({"base": str(PAPER_CONFIG), **overrides}, sort_keys=False))
    return ToyPaper(data_root=data_root, config_file=config_file, overrides=overrides)


@pytest.fixture(scope="session")
def toy_paper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToyPaper]:
    """The toy paper setup, made once per test session (about 10 s); its weight files (about a
    gigabyte) are removed when the session ends."""
    toy = make_toy_paper(tmp_path_factory.mktemp("toy-paper"))
    yield toy
    for weights in (toy.config_file.parent / "weights").glob("*.pt"):
        weights.unlink()


# ------------------------------------------------------------------ one run per code path


def end_to_end_paths(registry: Any, run: Any) -> set[str]:
    """What a run from images exercises beyond its head: its dataset (adapter and labels), backbone
    (weights file), recipe, loss and resolution, and which head trains for which task."""
    config, model = run.config, run.config["model"]
    paths = {f"dataset:{registry.run_dataset(run.run_id).role}", f"backbone:{model['backbone']}",
             f"loss:{config['train']['loss']['name']}", f"resolution:{config['train']['resolution']}",
             f"unknown_labels:{config['dataset']['unknown_labels']}", f"head:{config['task']}/{model['head']}"}
    return paths | {f"recipe:{recipe}" for recipe in run.recipes.values()}


def head_paths(registry: Any, run: Any) -> set[str]:
    """What a run's head exercises, fed images or cached features alike: per head and decoding
    (full: K = N, group: K < N) each option that switches code (query and head types, query
    augmentations, Hamburger, the interaction, stacked layers, fewer scales). Runs that differ
    only in sizes (K, class counts, layer or scale counts) share paths."""
    config, model = run.config, run.config["model"]
    options = model["head_options"]
    scope = f"{config['task']}/{model['head']}"
    if model["head"] == "ml_decoder":
        full = model["num_groups"] is None or model["num_groups"] == registry.run_dataset(run.run_id).num_classes
        scope += "/full" if full else "/group"
    paths = {scope}
    paths |= {f"{scope}/{key}={options[key]}" for key in ("query_type", "head_type", "hamburger", "interaction")
              if key in options}
    paths |= {f"{scope}/{key}={bool(options[key])}" for key in ("query_noise", "random_queries") if key in options}
    if options.get("num_layers", 1) > 1:
        paths.add(f"{scope}/stacked_layers")
    if options.get("num_scales", 4) < 4:
        paths.add(f"{scope}/fewer_scales")
    return paths


def covering_runs(registry: Any, covered: frozenset[str]) -> list[str]:
    """A small set of runs that together take every path (end to end and head) of the registry's
    runs that `covered` lacks: a greedy set cover (in registry order: deterministic), then each
    chosen run, the last chosen first, left out where the others take all its paths."""
    paths = {run_id: (end_to_end_paths(registry, run) | head_paths(registry, run)) - covered
             for run_id, run in registry.runs.items()}
    left, chosen = set().union(*paths.values()), []
    while left:
        best = max(paths, key=lambda run_id: len(paths[run_id] & left))
        chosen.append(best)
        left -= paths[best]
    for run_id in reversed(list(chosen)):
        others = [other for other in chosen if other != run_id]
        if paths[run_id] <= set().union(*(paths[other] for other in others)):
            chosen = others
    return chosen


def cached_feature_head_paths() -> frozenset[str]:
    """The head paths the tiny config trains on cached features (config/test.yaml, run whole by
    tests/test_workflow.py), so that the toy paper config need not train them again from images:
    every run of it but one under a feasibility budget (it may end infeasible, untrained)."""
    registry = build_registry(load_config(TINY_CONFIG, root=REPO))
    assert registry.config["mode"] == "cached_features", f"{TINY_CONFIG} trains from images"
    return frozenset().union(*(head_paths(registry, run) for run in registry.runs.values()
                               if not run.config["train"].get("feasibility")))


def end_to_end_runs(registry: Any) -> list[str]:
    """The toy paper runs to train from images: together every end-to-end path of the registry's
    runs and each head path the tiny config does not train on cached features."""
    return covering_runs(registry, cached_feature_head_paths())


def covering_measurements(registry: Any) -> list[str]:
    """One cost measurement of each kind (throughput, module timing)."""
    return list({measurement["kind"]: measurement_id for measurement_id, measurement
                 in reversed(registry.measurements.items())}.values())
