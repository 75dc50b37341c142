"""Datasets, transforms and loaders over prepared splits."""
from __future__ import annotations

import multiprocessing
import random

import numpy as np
import pytest
import torch
from PIL import Image

from mld.data import ImageDataset, PreparedDataset, create_loader, prepare_synthetic
from mld.data.adapters.common import FileSplit, ReadDataset, write_read_dataset
from mld.data.images import ImageReadError
from mld.data.loading import workers_stopped
from mld.data.sampling import seeded_generators
from mld.data.transforms import Cutout, build_transform, model_input


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return prepare_synthetic("coco-like", tmp_path_factory.mktemp("data") / "coco", image_size=32,
                             num_train=20, num_val=7).path


@pytest.fixture
def jpeg_dataset(tmp_path):
    paths = []
    for index in range(3):
        path = tmp_path / "images" / f"{index}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), (40 * index, 90, 200)).save(path, "JPEG")
        paths.append(path)
    labels = np.array([[1, 0], [0, 1], [1, -1]], np.int8)
    dataset = ReadDataset("jpegs", "test files", ["cat", "dog"], {"train": FileSplit(paths, labels),
                                                                  "val": FileSplit(paths[:1], labels[:1])})
    return write_read_dataset(dataset, tmp_path / "prepared", allow_overlap=True).path, paths  # val reuses image 0


def test_array_items_are_the_stored_pixels_as_bytes(synthetic):
    dataset = PreparedDataset(synthetic, "val")
    image, labels = dataset[3]
    stored = np.asarray(dataset.meta.images("val")[3])
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(image, torch.tensor(stored).permute(2, 0, 1))
    assert labels.dtype == torch.int8 and labels.tolist() == dataset.meta.labels("val")[3].tolist()
    assert len(dataset) == 7
    with pytest.raises(IndexError):
        dataset[7]


def test_jpeg_items_are_decoded_and_resized(jpeg_dataset):
    path, _ = jpeg_dataset
    image, labels = ImageDataset(path, "train", resolution=16)[2]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert labels.tolist() == [1, -1]
    assert abs(image[0].float().mean().item() - 80) < 13  # the red channel of image 2


def test_missing_or_corrupt_image_names_the_file(jpeg_dataset):
    path, paths = jpeg_dataset
    paths[0].write_bytes(b"not a jpeg")
    paths[1].unlink()
    dataset = PreparedDataset(path, "train")
    with pytest.raises(ImageReadError, match=r"cannot read image file .*0.jpg"):
        dataset[0]
    with pytest.raises(FileNotFoundError, match=r"image file .*1.jpg does not exist"):
        dataset[1]


def test_cutout_paints_a_rectangle_of_half_the_sides():
    random.seed(1)
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    painted = np.asarray(Cutout(0.5)(image)).any(axis=2)
    rows, columns = np.nonzero(painted)
    assert 0 < painted.sum() <= 21 * 21
    assert rows.max() - rows.min() <= 20 and columns.max() - columns.min() <= 20
    assert not np.asarray(image).any()  # the input is left untouched


def test_training_transform_augments_and_validation_only_resizes():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    validation = build_transform(24, train=False)
    assert torch.equal(validation(image), validation(image)) and validation(image).shape == (3, 24, 24)
    training = build_transform(24, train=True)
    outputs = [training(image) for _ in range(4)]
    assert all(output.shape == (3, 24, 24) for output in outputs)
    assert not all(torch.equal(outputs[0], output) for output in outputs[1:])


def float_transform_of_before(image: Image.Image) -> torch.Tensor:
    """What the transforms returned before workers shipped bytes: CHW float32, uint8 / 255 on the CPU."""
    return torch.from_numpy(np.asarray(image, np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))


def test_model_input_gives_every_pixel_value_the_float_the_workers_computed_before():
    """Bit for bit: multiplying by 1 / 255 instead (what CUDA does for a scalar) misses 126 of the 256."""
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    scaled = model_input(values, torch.device("cpu"))
    before = float_transform_of_before(Image.fromarray(values[0].permute(1, 2, 0).numpy()))
    assert scaled.dtype == torch.float32 and torch.equal(scaled[0], before)
    features = [torch.ones(2, 4, dtype=torch.float16)]
    assert model_input(features, torch.device("cpu"))[0].dtype == torch.float16  # cached features pass


def test_an_augmented_batch_scaled_on_the_device_equals_the_float_batch_of_before(synthetic):
    """Cutout and RandAugment work on uint8 PIL images, so scaling after them is exact."""
    loader = create_loader(synthetic, "train", batch_size=4, resolution=24, train=True, seed=3)
    loader.set_epoch(1)
    keys = next(iter(loader.batch_sampler))
    images, _ = next(iter(loader))
    transform = build_transform(24, train=True)
    stored = PreparedDataset(synthetic, "train").meta.images("train")
    before = []
    for index, seed in keys:  # the float pipeline of before: the same PIL steps, then uint8 / 255
        with seeded_generators(seed):
            image = Image.fromarray(np.asarray(stored[index]))
            for step in transform.steps:
                image = step(image)
        before.append(float_transform_of_before(image))
    assert images.dtype == torch.uint8
    assert torch.equal(model_input(images, torch.device("cpu")), torch.stack(before))


def _batches(loader, epoch, start_batch=0):
    loader.set_epoch(epoch, start_batch)
    return [(images.clone(), labels.clone()) for images, labels in loader]


def test_training_loader_is_a_function_of_seed_and_epoch(synthetic):
    loader = create_loader(synthetic, "train", batch_size=4, resolution=32, train=True, seed=5)
    first, again = _batches(loader, 0), _batches(loader, 0)
    assert len(first) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], _batches(loader, 1)[0][0])
    resumed = _batches(loader, 0, start_batch=3)  # a resumed run sees the rest of the same epoch
    assert len(resumed) == 2 and torch.equal(resumed[0][0], first[3][0])


def test_persistent_worker_processes_do_not_change_the_data(synthetic):
    single = create_loader(synthetic, "train", batch_size=4, resolution=24, train=True, seed=2)
    workers = create_loader(synthetic, "train", batch_size=4, resolution=24, train=True, seed=2, num_workers=2)
    with workers_stopped():
        for epoch in (3, 4):
            for (a, _), (b, _) in zip(_batches(single, epoch), _batches(workers, epoch)):
                assert torch.equal(a, b)


def test_workers_serve_every_pass_and_stop_when_their_block_ends(synthetic):
    loader = create_loader(synthetic, "train", batch_size=4, resolution=24, train=True, seed=2, num_workers=2)
    with workers_stopped():
        _batches(loader, 0)
        first = sorted(child.pid for child in multiprocessing.active_children())
        _batches(loader, 1)
        assert len(first) == 2 and sorted(child.pid for child in multiprocessing.active_children()) == first
    assert multiprocessing.active_children() == []
    assert len(_batches(loader, 2)) == 5  # a later pass starts new workers
    loader.stop_workers()
    assert multiprocessing.active_children() == []


def test_a_failed_pass_stops_its_workers_while_its_traceback_lives(synthetic):
    """Workers ignore SIGTERM, so one left running blocks the interpreter's exit for ever."""
    from mld.engine.loop import one_pass

    loader = create_loader(synthetic, "train", batch_size=4, resolution=24, train=True, seed=2, num_workers=2)
    loader.set_epoch(0)
    _batches(loader, 1)  # the workers a finished pass leaves running serve the next one
    with pytest.raises(RuntimeError) as failure:
        with one_pass(loader) as batches:
            next(batches)
            assert len(multiprocessing.active_children()) == 2
            raise RuntimeError("a failed training step")
    assert failure.traceback  # the frames that reference the pass are still alive
    assert multiprocessing.active_children() == []


def test_evaluation_loader_keeps_order_and_shards(synthetic):
    loader = create_loader(synthetic, "val", batch_size=3, resolution=32, train=False)
    labels = torch.cat([batch_labels for _, batch_labels in loader])
    assert labels.tolist() == PreparedDataset(synthetic, "val").meta.labels("val").tolist()
    shards = [create_loader(synthetic, "val", batch_size=3, resolution=32, train=False, rank=rank, world_size=2)
              for rank in range(2)]
    assert sum(len(torch.cat([b for _, b in shard])) for shard in shards) == 7
