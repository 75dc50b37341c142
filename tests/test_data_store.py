"""The image store: a dataset's images decoded once at a run's resolution, read as the raw files."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mld.cli import main
from mld.data import loading
from mld.data.adapters.common import FileSplit, ReadDataset, write_read_dataset
from mld.data.loading import ImageDataset, PreparedLoader, make_loader
from mld.data.prepared import open_prepared
from mld.data.sampling import EvalBatchSampler, SeededSamples, TrainBatchSampler
from mld.data.store import STORE_FILE, StoreError, open_store, store_bytes, write_store
from mld.engine import train
from test_engine_support import one_thread, run_config  # noqa: F401  (one_thread: a fixture)

RESOLUTION = 24


def photo_dataset(root: Path, count: int = 12) -> Path:
    """JPEG files of several sizes and aspect ratios, as a real dataset's adapter writes them."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        height, width = (30 + 7 * index, 52 - 2 * index)
        path = root / "images" / f"{index:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    labels = np.zeros((count, 3), np.int8)
    labels[np.arange(count), np.arange(count) % 3] = 1
    dataset = ReadDataset("photos", "test", ["a", "b", "c"],
                          {"train": FileSplit(paths, labels), "val": FileSplit(paths[:5], labels[:5])})
    # Validation reuses training files on purpose (few files): the overlap check is told so.
    return write_read_dataset(dataset, root / "prepared", allow_overlap=True).path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    dataset = photo_dataset(root)
    write_store(dataset, RESOLUTION, root / "store")
    return dataset, root / "store"


def batches(dataset: Path, store: Path | None, train: bool, epoch: int) -> list[torch.Tensor]:
    meta = open_prepared(dataset)
    opened = None if store is None else open_store(store)
    augment = {"cutout": 0.5, "randaugment": True} if train else None
    images = SeededSamples(ImageDataset(meta, "train", RESOLUTION, augment, opened))
    sampler = TrainBatchSampler(len(images), 4, seed=7) if train else EvalBatchSampler(len(images), 4)
    loader = make_loader(images, sampler, None, 0, torch.device("cpu"), loader_class=PreparedLoader)
    loader.set_epoch(epoch)
    return [batch for batch, _ in loader]


@pytest.mark.parametrize("train", [True, False], ids=["training", "evaluation"])
def test_batches_from_the_store_equal_batches_from_the_raw_images(photos, train):
    dataset, store = photos
    for epoch in (0, 1):
        raw, stored = batches(dataset, None, train, epoch), batches(dataset, store, train, epoch)
        assert len(raw) == len(stored) == 3
        assert all(torch.equal(a, b) for a, b in zip(raw, stored))


def test_writing_a_store_decodes_each_raw_image_once(tmp_path, monkeypatch):
    dataset = photo_dataset(tmp_path, count=6)
    decoded = []
    read_image = loading.read_image
    monkeypatch.setattr(loading, "read_image", lambda path: decoded.append(Path(path).name) or read_image(path))
    store = write_store(dataset, 16, tmp_path / "store")
    assert sorted(decoded) == sorted([f"{i:03d}.jpg" for i in range(6)] + [f"{i:03d}.jpg" for i in range(5)])
    assert store.splits == {"train": 6, "val": 5} and store.images("val").shape == (5, 16, 16, 3)
    assert sorted(path.name for path in store.path.iterdir()) == [STORE_FILE, "train.npy", "val.npy"]
    assert store_bytes(11, 16) == 11 * 16 * 16 * 3 == sum(
        np.load(store.path / f"{split}.npy", mmap_mode="r").nbytes for split in ("train", "val"))


def test_a_store_of_another_resolution_or_dataset_is_refused(photos, tmp_path):
    dataset, store_path = photos
    store = open_store(store_path)
    with pytest.raises(StoreError, match=r"holds 24 px images, but train.resolution = 32; write it again"):
        store.check_matches(open_prepared(dataset), 32, "run.yaml")
    other = photo_dataset(tmp_path, count=5)  # same splits' names, other images
    with pytest.raises(StoreError, match=r"run.yaml: dataset.store .* was written from another dataset"):
        store.check_matches(open_prepared(other), RESOLUTION, "run.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"store.json: missing; .* is not a complete image store"):
        open_store(tmp_path / "empty")
    (tmp_path / "empty" / STORE_FILE).write_text(json.dumps({"format": "mld-store/1", "resolution": 24}))
    with pytest.raises(StoreError, match=r"store.json: incomplete or malformed \(KeyError: 'dataset'\)"):
        open_store(tmp_path / "empty")


def test_a_run_reading_the_store_trains_and_scores_exactly_as_from_the_raw_images(photos, tmp_path, monkeypatch):
    dataset, store = photos
    config = run_config(dataset, train={"batch_size": 4, "resolution": RESOLUTION})
    raw = train(config, tmp_path / "raw")

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded although the run reads the store")

    monkeypatch.setattr(loading, "read_image", no_decoding)
    stored = train({**config, "dataset": {"path": str(dataset), "store": str(store)}}, tmp_path / "stored")
    assert stored["final"] == raw["final"]
    assert [entry["train_loss"] for entry in stored["history"]] == [entry["train_loss"] for entry in raw["history"]]
    wrong = {**config, "dataset": {"path": str(dataset), "store": str(store)}, "train": {**config["train"], "resolution": 32}}
    with pytest.raises(StoreError, match="train.resolution = 32"):
        train(wrong, tmp_path / "wrong")


def test_prepare_store_command_writes_the_store(tmp_path, capsys):
    dataset = photo_dataset(tmp_path, count=4)
    assert main(["prepare", "store", "--dataset", str(dataset), "--resolution", "16", "--out",
                 str(tmp_path / "store"), "--workers", "0"]) == 0
    assert "8 images of" in capsys.readouterr().out
    meta = json.loads((tmp_path / "store" / STORE_FILE).read_text())
    assert meta["resolution"] == 16 and meta["splits"] == {"train": 4, "val": 4}


def test_a_compressed_store_holds_the_jpegs_of_the_exact_pixels(photos, tmp_path, capsys):
    """`--compress`: each image is the JPEG (at --quality) of the exact store's image, read back
    by the loaders as any store; store.json says so."""
    dataset, exact_store = photos
    assert main(["prepare", "store", "--dataset", str(dataset), "--resolution", str(RESOLUTION), "--out",
                 str(tmp_path / "jpeg"), "--workers", "0", "--compress", "--quality", "95"]) == 0
    assert "(JPEG quality 95)" in capsys.readouterr().out
    exact, compressed = open_store(exact_store), open_store(tmp_path / "jpeg")
    assert (compressed.encoding, compressed.quality, compressed.splits) == ("jpeg", 95, exact.splits)
    for split, count in exact.splits.items():
        images = compressed.images(split)
        assert len(images) == count
        for index in range(count):
            encoded = io.BytesIO()
            pixels = np.asarray(exact.images(split)[index])
            Image.fromarray(pixels).save(encoded, format="JPEG", quality=95, subsampling=0)  # colour at full size
            assert np.array_equal(images[index], np.asarray(Image.open(encoded)))
    first = batches(dataset, tmp_path / "jpeg", train=False, epoch=0)[0]
    assert first.dtype == torch.uint8 and first.shape == (4, 3, RESOLUTION, RESOLUTION)
    (tmp_path / "jpeg" / "val.offsets.npy").unlink()
    with pytest.raises(StoreError, match="val's JPEG file or offsets missing"):
        open_store(tmp_path / "jpeg").images("val")
