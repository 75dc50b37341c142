"""`mld prepare` refuses a dataset whose evaluation split shares an image with its training split."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from mld.cli import main
from mld.data import open_prepared, prepare_synthetic
from mld.data.overlap import (
    SAME_CONTENT, SAME_FILE, SharedImage, SplitOverlapError, check_no_shared_images, shared_arrays, shared_files,
)
from toy_paper import write_jpeg, write_voc


def _voc_sharing_two_images(root):
    """VOC 2007 whose test list names a trainval image (000001) and a byte copy of another (000003 of 000002)."""
    images = {"000001": [("dog", False)], "000002": [("cat", False)], "000003": [("person", False)],
              "000004": [("car", False)]}
    write_voc(root, images, {"trainval": ["000001", "000002"], "test": ["000001", "000003", "000004"]})
    shutil.copyfile(root / "JPEGImages" / "000002.jpg", root / "JPEGImages" / "000003.jpg")


def test_mld_prepare_refuses_shared_images_naming_them_and_the_flag(tmp_path, capsys):
    root = tmp_path / "VOC2007"
    _voc_sharing_two_images(root)
    images = root.resolve() / "JPEGImages"
    arguments = ["prepare", "voc", "--root", str(root)]
    assert main([*arguments, "--out", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        f"mld prepare: error: Pascal VOC 2007 at {root}: 2 of 3 val images are also train images, e.g. "
        f"val {images / '000001.jpg'} = train {images / '000001.jpg'} (same file); "
        f"val {images / '000003.jpg'} = train {images / '000002.jpg'} (same content). Scores on them would be "
        "inflated: fix the split lists, or pass --allow-overlap to `mld prepare`")
    assert not (tmp_path / "refused").exists()
    assert main([*arguments, "--allow-overlap", "--out", str(tmp_path / "kept")]) == 0
    assert open_prepared(tmp_path / "kept").splits == {"train": 2, "val": 3}


def test_a_clean_split_is_prepared(tmp_path):
    root = tmp_path / "VOC2007"
    write_voc(root, {"000001": [("dog", False)], "000002": [("cat", False)]},
              {"trainval": ["000001"], "test": ["000002"]})
    assert main(["prepare", "voc", "--root", str(root), "--out", str(tmp_path / "voc")]) == 0


def test_shared_files_sees_through_links_and_other_spellings_and_compares_bytes(tmp_path):
    train = [tmp_path / "train" / f"{name}.jpg" for name in "abcd"]
    for seed, path in enumerate(train):
        write_jpeg(path, seed=seed)
    evaluation = tmp_path / "val"
    evaluation.mkdir()
    (evaluation / "link.jpg").symlink_to(train[0])
    os.link(train[1], evaluation / "hard.jpg")
    shutil.copyfile(train[2], evaluation / "copy.jpg")
    same_size = bytearray(train[3].read_bytes())
    same_size[-3] ^= 0xFF  # same size, one byte differs: not the same image
    (evaluation / "edited.jpg").write_bytes(bytes(same_size))
    write_jpeg(evaluation / "new.jpg", seed=10)
    spelled = tmp_path / "val" / ".." / "train" / "d.jpg"
    listed = [evaluation / name for name in ("new.jpg", "link.jpg", "hard.jpg", "copy.jpg", "edited.jpg")] + [spelled]
    assert shared_files(train, listed) == [
        SharedImage(str(listed[1]), str(train[0]), SAME_FILE), SharedImage(str(listed[2]), str(train[1]), SAME_FILE),
        SharedImage(str(listed[3]), str(train[2]), SAME_CONTENT), SharedImage(str(spelled), str(train[3]), SAME_FILE)]


def test_shared_arrays_compares_pixels_and_the_message_counts_beyond_five():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    evaluation = np.concatenate([train[[7, 1, 2, 3, 4, 5]], rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)])
    shared = shared_arrays(train, evaluation)
    assert [(image.evaluation, image.train) for image in shared] == [
        ("image 0", "image 7"), ("image 1", "image 1"), ("image 2", "image 2"), ("image 3", "image 3"),
        ("image 4", "image 4"), ("image 5", "image 5")]
    with pytest.raises(SplitOverlapError, match=r"^toy: 6 of 8 val images are also train images, e\.g\. val image 0 = "
                                                r"train image 7 \(same content\); .* val image 4 = train image 4 "
                                                r"\(same content\); and 1 more\. "):
        check_no_shared_images({"train": train, "val": evaluation}, "toy")
    check_no_shared_images({"train": train, "val": evaluation[6:]}, "toy")


@pytest.mark.parametrize("preset", ["coco-like", "nus-like"])
def test_synthetic_splits_share_no_image(tmp_path, preset):
    meta = prepare_synthetic(preset, tmp_path / preset, image_size=16, num_train=300, num_val=200)
    assert shared_arrays(meta.images("train"), meta.images("val")) == []  # prepare_synthetic checks it too
