"""`mld prepare ...`: make prepared datasets, check them, convert pickled word vectors.

  mld prepare synthetic --preset coco-like --image-size 64 --seed 0 --out results/data/coco-like
  mld prepare coco --root /data/coco --out results/data/coco --word-vectors glove.6B.300d.txt
  mld prepare voc | nuswide | openimages | cifar100 | stanford_cars ...
  mld prepare validate results/data/coco-like
  mld prepare convert-pickle SRC --out DST.npz --names TAGS.txt ...
  mld prepare store --dataset results/data/coco --resolution 448 --out results/stores/coco/448px

Every dataset is written atomically: a crash leaves nothing where the finished dataset belongs.
A dataset whose evaluation split shares an image with its training split is refused unless
--allow-overlap (mld.data.overlap).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mld.data.overlap import OVERRIDE_FLAG
from mld.commands.store import add_store_parser
from mld.data.prepared import PreparedMeta, validate_prepared
from mld.data.synthetic import PRESETS, prepare_synthetic
from mld.data.synthetic.presets import DEFAULT_IMAGE_SIZE


def register(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser("prepare", help="make, check or convert prepared datasets",
                                    description=__doc__.splitlines()[0])
    kinds = prepare.add_subparsers(dest="kind", required=True, metavar="KIND")

    synthetic = kinds.add_parser("synthetic", help="render a synthetic preset (no downloads)")
    synthetic.add_argument("--preset", required=True, choices=sorted(PRESETS))
    synthetic.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="px (default %(default)s)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--num-train", type=int, help="training images (default: the preset's)")
    synthetic.add_argument("--num-val", type=int, help="validation images (default: the preset's)")
    _add_output(synthetic)
    synthetic.set_defaults(func=_prepare_synthetic)

    for name, helptext in (("coco", "MS-COCO 2014 (root holds annotations/, train2014/, val2014/)"),
                           ("voc", "Pascal VOC 2007 (root is VOCdevkit/VOC2007)"),
                           ("nuswide", "NUS-WIDE zero-shot, 925 seen / 81 unseen (root: the official release)"),
                           ("cifar100", "CIFAR-100, binary or python version (root: its folder or the one above)"),
                           ("stanford_cars", "Stanford Cars (root holds cars_train/, cars_test/, devkit/ and "
                                             "cars_test_annos_withlabels.mat)")):
        parser = kinds.add_parser(name, help=helptext)
        parser.add_argument("--root", required=True, type=Path)
        if name == "nuswide":
            parser.add_argument("--keep-unlabelled", action="store_true",
                                help="keep every listed image (default: training images with a seen-class "
                                     "positive, evaluation images with any positive)")
            parser.add_argument("--concepts-only", action="store_true",
                                help="the multi-label benchmark of the 81 concepts (HSVLT's NUS-WIDE) instead of "
                                     "the zero-shot split; each split keeps the images with a concept positive")
        _add_real_dataset_options(parser)
        parser.set_defaults(func=_prepare_real, adapter=name)

    openimages = kinds.add_parser("openimages", help="Open Images v6 human-verified image labels")
    openimages.add_argument("--class-descriptions", required=True, type=Path, help="oidv6-class-descriptions.csv")
    openimages.add_argument("--train-labels", required=True, type=Path,
                            help="oidv6-train-annotations-human-imagelabels.csv")
    openimages.add_argument("--val-labels", required=True, type=Path,
                            help="validation- or test-annotations-human-imagelabels.csv")
    openimages.add_argument("--train-images", required=True, type=Path, help="directory of <ImageID>.jpg")
    openimages.add_argument("--val-images", required=True, type=Path, help="directory of <ImageID>.jpg")
    openimages.add_argument("--classes", type=Path, help="class list, one LabelName per line (default: every "
                                                          "class with a verified positive training label)")
    openimages.add_argument("--num-classes", type=int, help="the class count the experiment expects "
                            "(the config's num_classes); another count is refused")
    _add_real_dataset_options(openimages)
    openimages.set_defaults(func=_prepare_real, adapter="openimages")

    validate = kinds.add_parser("validate", help="check a prepared dataset's files against its meta.json")
    validate.add_argument("directory", type=Path)
    validate.add_argument("--no-check-files", action="store_true",
                          help="do not check that every listed image file exists")
    validate.set_defaults(func=_validate)

    convert = kinds.add_parser("convert-pickle", help="unpickle a TRUSTED word-vector file once into .npy/.npz")
    convert.add_argument("source", type=Path)
    convert.add_argument("--out", required=True, type=Path, help=".npy (one array) or .npz (named vectors)")
    convert.add_argument("--names", nargs="+", type=Path, default=[],
                         help="for a pickled sequence of arrays: one class-name list per array")
    convert.set_defaults(func=_convert_pickle)

    add_store_parser(kinds)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="the prepared dataset directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument(OVERRIDE_FLAG, action="store_true",
                        help="prepare it even if an evaluation image is also a training image (same file or "
                             "same content); default: refuse, naming them")


def _add_real_dataset_options(parser: argparse.ArgumentParser) -> None:
    _add_output(parser)
    vectors = parser.add_mutually_exclusive_group()
    vectors.add_argument("--word-vectors", type=Path, help="class word vectors: GloVe text, .npy or .npz")
    vectors.add_argument("--sentence-model", help="sentence-transformers model name or directory")
    parser.add_argument("--skip-missing-images", action="store_true",
                        help="leave out listed images whose file is missing (default: refuse)")


def _summary(meta: PreparedMeta) -> str:
    splits = ", ".join(f"{split} {count}" for split, count in meta.splits.items())
    storage = f"array, {meta.image_size} px" if meta.image_storage == "array" else "image files"
    zero_shot = f", {len(meta.seen_classes or ())} seen / {len(meta.unseen_classes or ())} unseen" \
        if meta.zero_shot else ""
    return f"{meta.path}: {meta.name}, {meta.num_classes} classes{zero_shot}, {meta.task}; {splits} images ({storage})"


def _prepare_synthetic(args: argparse.Namespace) -> int:
    meta = prepare_synthetic(args.preset, args.out, image_size=args.image_size, seed=args.seed,
                             num_train=args.num_train, num_val=args.num_val, overwrite=args.overwrite,
                             allow_overlap=args.allow_overlap)
    print(f"wrote {_summary(meta)}")
    return 0


def _word_vector_source(args: argparse.Namespace) -> Callable[[Sequence[str]], np.ndarray] | None:
    from mld.data import word_vectors

    if args.word_vectors is not None:
        return lambda names: word_vectors.load_word_vectors(args.word_vectors, names)
    if args.sentence_model is not None:
        return lambda names: word_vectors.sentence_model_vectors(args.sentence_model, names)
    return None


def _prepare_real(args: argparse.Namespace) -> int:
    from mld.data import adapters

    skip = args.skip_missing_images
    if args.adapter == "coco":
        dataset = adapters.read_coco(args.root, skip_missing_images=skip)
    elif args.adapter == "voc":
        dataset = adapters.read_voc(args.root, skip_missing_images=skip)
    elif args.adapter == "nuswide":
        dataset = adapters.read_nuswide(args.root, skip_missing_images=skip, keep_unlabelled=args.keep_unlabelled,
                                        concepts_only=args.concepts_only)
    elif args.adapter == "cifar100":
        dataset = adapters.read_cifar100(args.root)  # the pixels are in the release: nothing can be missing
    elif args.adapter == "stanford_cars":
        dataset = adapters.read_stanford_cars(args.root, skip_missing_images=skip)
    else:
        dataset = adapters.read_openimages(args.class_descriptions, args.train_labels, args.val_labels,
                                           args.train_images, args.val_images, classes=args.classes,
                                           skip_missing_images=skip, num_classes=args.num_classes)
    meta = adapters.write_read_dataset(dataset, args.out, _word_vector_source(args), overwrite=args.overwrite,
                                       allow_overlap=args.allow_overlap)
    print(f"wrote {_summary(meta)}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    meta = validate_prepared(args.directory, check_image_files=not args.no_check_files)
    print(f"ok {_summary(meta)}")
    return 0


def _convert_pickle(args: argparse.Namespace) -> int:
    from mld.data.pickle_conversion import convert_pickle

    print(f"wrote {convert_pickle(args.source, args.out, args.names)}")
    return 0
