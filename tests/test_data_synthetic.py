"""The synthetic benchmark: determinism, presets, labels that follow the pixels, word vectors."""
from __future__ import annotations

import numpy as np
import pytest

from mld.data import open_prepared, prepare_synthetic, preset_num_classes, validate_prepared
from mld.data.synthetic import PRESETS, get_preset, preset_classes, render_split
from mld.data.synthetic import generate
from mld.data.synthetic.labels import object_labels
from mld.data.synthetic.render import render_layout
from mld.data.synthetic.scenes import CLUTTER, EMPTY, OBJECT, Layout
from mld.data.synthetic.vocabulary import ATTRIBUTES, composition_grid, composition_word_vectors


def _files(directory):
    return {path.relative_to(directory): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_other_images(tmp_path):
    first = prepare_synthetic("voc-like", tmp_path / "a", image_size=32, seed=3, num_train=24, num_val=8)
    prepare_synthetic("voc-like", tmp_path / "b", image_size=32, seed=3, num_train=24, num_val=8)
    other = prepare_synthetic("voc-like", tmp_path / "c", image_size=32, seed=4, num_train=24, num_val=8)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert not np.array_equal(first.images("train"), other.images("train"))
    assert first.class_names == other.class_names  # the class set belongs to the preset, not the seed


def test_train_and_val_show_different_scenes(tmp_path):
    meta = prepare_synthetic("coco-like", tmp_path / "d", image_size=32, num_train=16, num_val=16)
    assert not np.array_equal(meta.images("train"), meta.images("val"))


def test_a_seed_shows_the_same_scenes_at_every_image_size():
    preset = get_preset("coco-like")
    classes = preset_classes(preset)
    small, large = np.zeros((24, 48, 48, 3), np.uint8), np.zeros((24, 96, 96, 3), np.uint8)
    render_split(preset, classes, "train", 24, 48, 0, small)
    render_split(preset, classes, "train", 24, 96, 0, large)
    shrunk = large.reshape(24, 48, 2, 48, 2, 3).mean(axis=(2, 4))
    same_scene = np.abs(shrunk - small).mean()
    other_scene = np.abs(shrunk - np.roll(small, 1, axis=0)).mean()
    assert same_scene < other_scene / 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_prepares_a_valid_dataset(tmp_path, name):
    meta = prepare_synthetic(name, tmp_path / name, image_size=40, num_train=40, num_val=20)
    validate_prepared(meta.path)
    assert meta.num_classes == preset_num_classes(name) == len(meta.word_vectors())
    assert meta.images("train").shape == (40, 40, 40, 3)
    assert meta.task == ("single_label" if name == "imagenet-like" else "multilabel")
    labels = np.asarray(meta.labels("train"))
    assert (labels == 1).any(axis=0).sum() > 1  # more than one class actually appears


def test_presets_have_their_documented_default_sizes():
    for preset in PRESETS.values():
        assert 2000 <= preset.num_train <= 4000 and preset.num_val == 1000


def test_single_label_set_has_one_dominant_class_per_image(tmp_path):
    meta = prepare_synthetic("imagenet-like", tmp_path / "in", image_size=32, num_train=50, num_val=10)
    labels = np.asarray(meta.labels("train"))
    assert ((labels == 1).sum(axis=1) == 1).all() and (labels >= 0).all()


def test_zero_shot_set_trains_on_seen_classes_and_validates_on_all(tmp_path):
    meta = prepare_synthetic("nus-like", tmp_path / "nus", image_size=32, num_train=200, num_val=200)
    unseen = list(meta.unseen_classes)
    assert len(meta.seen_classes) == 100 and len(unseen) == 20
    assert not (np.asarray(meta.labels("train"))[:, unseen] == 1).any()
    assert (np.asarray(meta.labels("val"))[:, unseen] == 1).any()
    compositions = preset_classes(get_preset("nus-like")).compositions
    seen = np.delete(compositions, unseen, axis=0)
    for column in range(len(ATTRIBUTES)):  # every unseen attribute value is learnable from seen classes
        assert np.isin(compositions[unseen, column], seen[:, column]).all()


def test_open_images_like_labels_are_partial(tmp_path):
    meta = prepare_synthetic("oi-like", tmp_path / "oi", image_size=32, num_train=60, num_val=20)
    labels = np.asarray(meta.labels("train"))
    assert meta.num_classes == 2000
    assert (labels == -1).mean() > 0.9 and (labels == 0).any() and (labels == 1).any()


def test_pretraining_labels_name_the_attributes_of_visible_objects(tmp_path):
    preset = get_preset("pretrain")
    classes = preset_classes(preset)
    images = np.zeros((30, 48, 48, 3), np.uint8)
    labels = render_split(preset, classes, "train", 30, 48, 0, images)
    shapes, colours = len(ATTRIBUTES["shape"]), len(ATTRIBUTES["colour"])
    # Every image with an object shows at least one shape, colour and texture, never a plain rim.
    has_object = labels.any(axis=1)
    assert (labels[has_object, :shapes].any(axis=1)).all()
    assert (labels[has_object, shapes:shapes + colours].any(axis=1)).all()
    assert classes.class_names[-2:] == ["rim: white-rimmed", "rim: black-rimmed"]


def _layout(items):
    """A one-image layout from (kind, class, shape, colour, centre, radius) tuples."""
    slots = len(items)
    field = lambda values, dtype: np.array([values], dtype=dtype)  # noqa: E731
    return Layout(
        kind=field([item[0] for item in items], np.int8), class_index=field([item[1] for item in items], np.int32),
        shape=field([item[2] for item in items], np.int16), colour=field([item[3] for item in items], np.int16),
        texture=np.zeros((1, slots), np.int16), rim=np.zeros((1, slots), np.int16),
        rgb=field([[(200, 30, 30), (30, 30, 200), (30, 200, 30)][item[3]] for item in items], np.float32),
        centre=field([item[4] for item in items], np.float32), radius=field([item[5] for item in items], np.float32),
        angle=np.zeros((1, slots), np.float32), aspect=np.ones((1, slots), np.float32),
        background=np.full((1, 4, 4, 3), 128, np.float32), grating=np.zeros((1, 4), np.float32),
    )


def test_labels_follow_visibility_occlusion_and_truncation():
    layout = _layout([
        (OBJECT, 0, 0, 0, (0.3, 0.3), 0.08),   # small circle ...
        (OBJECT, 1, 1, 1, (0.3, 0.3), 0.25),   # ... hidden by a large square drawn after it
        (OBJECT, 2, 0, 2, (1.2, 0.5), 0.1),    # outside the image
        (EMPTY, -1, 0, 0, (0.5, 0.5), 0.1),
    ])
    images = np.zeros((1, 64, 64, 3), np.uint8)
    visible = render_layout(layout, 64, [0], images)
    assert visible[0, 0] == 0 and visible[0, 1] > 0.9 and visible[0, 2] == 0
    assert object_labels(layout, visible, 3).tolist() == [[0, 1, 0]]
    square_pixel = images[0, int(0.3 * 64), int(0.3 * 64)]
    assert square_pixel[2] > 150 and square_pixel[0] < 80  # the blue square covers the red circle


def test_clutter_is_never_labelled():
    layout = _layout([(CLUTTER, -1, 12, 0, (0.5, 0.5), 0.2)])
    images = np.zeros((1, 32, 32, 3), np.uint8)
    visible = render_layout(layout, 32, [0], images)
    assert object_labels(layout, visible, 3).sum() == 0


def test_class_frequencies_are_long_tailed_and_classes_co_occur_by_context():
    preset = get_preset("coco-like")
    classes = preset_classes(preset)
    images = np.zeros((1500, 16, 16, 3), np.uint8)
    labels = render_split(preset, classes, "train", 1500, 16, 0, images).astype(float)
    frequency = np.sort(labels.mean(axis=0))[::-1]
    assert frequency[0] > 5 * np.median(frequency)
    context = classes.prior.argmax(axis=0)
    same_context = context[:, None] == context[None, :]
    joint = labels.T @ labels / len(labels)
    lift = joint / np.maximum(np.outer(labels.mean(0), labels.mean(0)), 1e-9)
    off_diagonal = ~np.eye(len(context), dtype=bool)
    assert lift[same_context & off_diagonal].mean() > 1.5 * lift[~same_context].mean()


def test_word_vectors_follow_the_attributes():
    grid = composition_grid(6, 6, 4)
    vectors = composition_word_vectors(grid)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    shared = (grid[:, None, :] == grid[None, :, :]).sum(axis=2) - 1  # the rim column always matches
    similarity = vectors @ vectors.T
    means = [similarity[shared == count].mean() for count in (0, 1, 2)]
    assert means[0] < means[1] < means[2]
    # A class keeps its vector whichever preset uses it.
    assert np.allclose(composition_word_vectors(grid[5:9]), vectors[5:9])


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic preset 'cifar'"):
        prepare_synthetic("cifar", tmp_path / "x")
    with pytest.raises(ValueError, match="too small"):
        prepare_synthetic("voc-like", tmp_path / "x", image_size=8)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        prepare_synthetic("voc-like", tmp_path / "x", seed=-1)


def test_a_failed_render_leaves_no_dataset_and_no_temporary_files(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "render_split", explode)
    with pytest.raises(RuntimeError, match="disk full"):  # the render's own error, not another
        prepare_synthetic("voc-like", tmp_path / "voc", num_train=10, num_val=10)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_finished_dataset(tmp_path):
    prepare_synthetic("voc-like", tmp_path / "voc", image_size=32, num_train=10, num_val=5)
    with pytest.raises(ValueError, match="already exists"):
        prepare_synthetic("voc-like", tmp_path / "voc", image_size=32, num_train=10, num_val=5)
    meta = prepare_synthetic("voc-like", tmp_path / "voc", image_size=32, num_train=12, num_val=5, overwrite=True)
    assert open_prepared(tmp_path / "voc").splits == {"train": 12, "val": 5} == meta.splits
    assert [path.name for path in tmp_path.iterdir()] == ["voc"]
