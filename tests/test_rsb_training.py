"""'ResNet strikes back' training (Table 13's A2, the A1 row) through timm's pieces: the transforms,
repeated augmentation, Mixup / CutMix and BCE's target threshold, each a function of the seeds."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mld.data import create_loader, prepare_synthetic
from mld.data.loading import workers_stopped
from mld.data.sampling import TrainBatchSampler
from mld.data.transforms import AugmentSettings, build_transform
from mld.engine.config import ConfigError, check_components, validate_run_config
from mld.engine.mixing import BatchMixing
from mld.losses import create_loss

# Table 13's A2 transforms (config/paper.yaml recipes.imagenet_a2) at toy scale.
A2_AUGMENT = {"cutout": 0.0, "randaugment": "rand-m7-mstd0.5-inc1", "crop": "random_resized", "hflip": 0.5,
              "interpolation": "bicubic", "eval_crop_pct": 0.95, "repeats": 3}
MIX_OFF = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5, "label_smoothing": 0.0}


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    return prepare_synthetic("imagenet-like", tmp_path_factory.mktemp("data") / "imagenet", image_size=32,
                             num_train=16, num_val=4).path


def _epoch(loader, epoch, start_batch=0):
    loader.set_epoch(epoch, start_batch)
    return [images.clone() for images, _ in loader]


# ---------------------------------------------------------------- transforms


def test_timm_transforms_give_each_seed_epoch_and_index_the_same_pixels(imagenet_like):
    def loader(workers=0):
        return create_loader(imagenet_like, "train", batch_size=4, resolution=24, train=True, seed=5,
                             augment=A2_AUGMENT, num_workers=workers)

    first, other, with_workers = loader(), loader(), loader(workers=2)
    epoch = _epoch(first, 1)
    assert len(epoch) == 4 and epoch[0].dtype == torch.uint8 and epoch[0].shape == (4, 3, 24, 24)
    with workers_stopped():
        for images in (_epoch(other, 1), _epoch(with_workers, 1)):
            assert all(torch.equal(a, b) for a, b in zip(epoch, images))
    resumed = _epoch(loader(), 1, start_batch=2)  # a resumed run sees the rest of the same epoch
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(epoch[2:], resumed))
    assert not torch.equal(epoch[0], _epoch(first, 2)[0])


def test_repeated_copies_of_an_image_are_augmented_differently(imagenet_like):
    loader = create_loader(imagenet_like, "train", batch_size=4, resolution=24, train=True, seed=5,
                           augment=A2_AUGMENT)
    loader.set_epoch(0)
    keys = list(loader.batch_sampler)[0]
    assert keys[0][0] == keys[1][0] == keys[2][0] and len({seed for _, seed in keys[:3]}) == 3
    images = _epoch(loader, 0)[0]
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])


def test_the_evaluation_crop_keeps_the_centre_of_the_shorter_side_resized_bicubic():
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    transform = build_transform(24, train=False, settings=AugmentSettings(interpolation="bicubic", eval_crop_pct=0.95))
    # Shorter side 30 -> floor(24 / 0.95) = 25, longer 40 -> 33; the centre 24 x 24 of 25 x 33.
    expected = np.asarray(image.resize((33, 25), Image.BICUBIC))[0:24, 4:28].transpose(2, 0, 1)
    assert torch.equal(transform(image), torch.from_numpy(np.ascontiguousarray(expected)))


def test_the_papers_transforms_are_unchanged_by_default():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((24, 24), Image.BILINEAR)).transpose(2, 0, 1)
    assert torch.equal(build_transform(24, train=False)(image), torch.from_numpy(np.ascontiguousarray(expected)))
    assert AugmentSettings.from_config({"cutout": 0.5, "randaugment": True}) == AugmentSettings()


# ---------------------------------------------------------------- repeated augmentation


def test_repeated_augmentation_lists_each_image_three_times_in_a_row():
    sampler = TrainBatchSampler(8, 4, seed=0, repeats=3)
    batches = list(sampler)
    assert len(batches) == 2  # an epoch has as many samples as the split: 8 of the 24 copies
    indices = [index for batch in batches for index, _ in batch]
    assert indices == [7, 7, 7, 5, 5, 5, 6, 6]
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == 8  # every copy has its own augmentation
    sampler.set_epoch(0, start_batch=1)
    assert list(sampler) == batches[1:]
    # Without repeats the keys are those the sampler drew before repeats existed.
    plain = [key for batch in TrainBatchSampler(8, 4, seed=0) for key in batch]
    assert plain == [(7, 1509005879), (5, 10579637), (6, 553485501), (3, 563185411), (2, 1243315298),
                     (1, 1755742556), (0, 1789246709), (4, 1360637443)]


def test_repeated_batches_shard_over_processes_and_mixup_pairs_stay_on_one():
    single = list(TrainBatchSampler(16, 8, seed=2, repeats=3))
    for keep_pairs in (False, True):
        ranks = [list(TrainBatchSampler(16, 8, seed=2, rank=rank, world_size=2, repeats=3, keep_pairs=keep_pairs))
                 for rank in range(2)]
        for batch, (first, second) in zip(single, zip(*ranks)):
            if keep_pairs:  # batch Mixup pairs i with B-1-i of each process's batch: the global pairs
                assert first == batch[0:2] + batch[6:8] and second == batch[2:6]
            else:
                assert first == batch[:4] and second == batch[4:]
    with pytest.raises(ValueError, match="need an even number"):
        TrainBatchSampler(16, 6, seed=0, world_size=2, keep_pairs=True)


# ---------------------------------------------------------------- Mixup / CutMix


def _one_hot(classes: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float()


def test_mixup_mixes_images_and_targets_with_one_lambda_per_batch():
    mixing = BatchMixing({**MIX_OFF, "mixup_alpha": 0.1}, num_classes=5, seed=3)
    images = torch.stack([torch.full((3, 4, 4), value) for value in (0.0, 0.25, 0.5, 1.0)])
    targets = _one_hot([0, 1, 2, 4], 5)
    mixed, soft = mixing(images.clone(), targets, epoch=2, step=7)
    lam = 1.0 - mixed[0, 0, 0, 0].item()  # image 0 (zeros) took 1 - lambda of image 3 (ones)
    assert 0.0 < lam < 1.0
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-6)
    expected = torch.tensor([[lam, 0, 0, 0, 1 - lam], [0, lam, 1 - lam, 0, 0],
                             [0, 1 - lam, lam, 0, 0], [1 - lam, 0, 0, 0, lam]])
    assert torch.allclose(soft, expected, atol=1e-6)
    again, _ = mixing(images.clone(), targets, epoch=2, step=7)  # a function of (seed, epoch, step)
    assert torch.equal(again, mixed)
    other, _ = mixing(images.clone(), targets, epoch=2, step=8)
    assert not torch.equal(other, mixed)


def test_cutmix_pastes_a_box_and_mixes_targets_by_its_area():
    mixing = BatchMixing({**MIX_OFF, "cutmix_alpha": 1.0}, num_classes=3, seed=0)
    images = torch.stack([torch.full((3, 8, 8), float(value)) for value in (1, 2, 3, 4)])
    targets = _one_hot([0, 1, 1, 2], 3)
    boxes = []
    for step in range(4):
        mixed, soft = mixing(images.clone(), targets, epoch=0, step=step)
        pasted = (mixed[0, 0] == 4).sum().item()  # image 0 received a box of image 3
        assert torch.equal(mixed[3, 0] == 1, mixed[0, 0] == 4)  # the same box, the other way
        lam = 1 - pasted / 64
        assert soft[0].tolist() == pytest.approx([lam, 0, 1 - lam], abs=1e-6)
        boxes.append(pasted)
    assert 0 < max(boxes) < 64


def test_label_smoothing_applies_to_the_mixed_one_hot_targets():
    mixing = BatchMixing({**MIX_OFF, "mixup_alpha": 0.2, "label_smoothing": 0.1}, num_classes=4, seed=1)
    images = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    mixed, soft = mixing(images, _one_hot([0, 3], 4), epoch=0, step=0)
    lam = 1.0 - mixed[0, 0, 0, 0].item()
    on, off = 1 - 0.1 + 0.1 / 4, 0.1 / 4
    assert soft[0].tolist() == pytest.approx([lam * on + (1 - lam) * off, off, off, lam * off + (1 - lam) * on],
                                             abs=1e-6)


# ---------------------------------------------------------------- BCE target threshold


def test_bce_counts_targets_above_the_threshold_as_positives():
    loss = create_loss("bce", reduction="none", target_threshold=0.2)
    logits = torch.full((1, 5), 2.0)
    targets = torch.tensor([[0.1, 0.2, 0.2001, 0.9, 1.0]])
    positive, negative = math.log1p(math.exp(-2.0)), math.log1p(math.exp(2.0))
    assert loss(logits, targets)[0].tolist() == pytest.approx([negative, negative, positive, positive, positive],
                                                              rel=1e-6)
    # Without a threshold soft targets stay soft.
    soft = create_loss("bce", reduction="none")(logits, targets)[0, 0].item()
    assert soft == pytest.approx(0.9 * negative + 0.1 * positive, rel=1e-6)
    with pytest.raises(ValueError, match="target_threshold must be in"):
        create_loss("bce", target_threshold=1.5)


# ---------------------------------------------------------------- run config


BASE = {"run_id": "a2", "dataset": {"path": "/data/imagenet"}, "task": "single_label",
        "model": {"backbone": "resnet18", "head": "gap"},
        "train": {"batch_size": 8, "loss": {"name": "bce"}, "augment": dict(A2_AUGMENT),
                  "mix": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0}}}


def _with(**changes):
    """BASE with each change applied, its key path written with `__` (train__mix__prob)."""
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        section = config
        for part in parents:
            section = section[part]
        section[key] = value
    return config


def test_the_a2_settings_validate():
    config = validate_run_config(_with())
    assert config["train"]["augment"]["crop"] == "random_resized" and config["train"]["mix"]["prob"] == 1.0


@pytest.mark.parametrize("changes, message", [
    ({"train__augment__crop": "centre"}, "train.augment.crop = centre: expected one of resize, random_resized"),
    ({"train__mix__mixup": 0.1}, "train.mix.mixup: unknown key"),
    ({"train__augment__crop_scale": [0.5, 0.1]}, "train.augment.crop_scale = [0.5, 0.1]: the first value"),
    ({"train__augment__crop_scale": [0.0, 1.0]}, "train.augment.crop_scale = [0.0, 1.0]: expected a list of 2 numbers"),
    ({"train__augment__randaugment": "m7"}, "train.augment.randaugment = m7: expected true, false or a timm"),
    ({"train__augment__cutout": 0.5}, "train.augment.cutout = 0.5: timm's pipeline"),
    ({"train__augment__crop": "resize"}, "train.augment.hflip = 0.5: flips are part of timm's pipeline"),
    ({"train__augment__repeats": 0}, "train.augment.repeats = 0: expected an integer >= 1"),
    ({"train__mix__switch_prob": 2}, "train.mix.switch_prob = 2: expected a number >= 0.0 and <= 1.0"),
    ({"task": "multilabel"}, "train.mix: Mixup / CutMix mix one class per image; a multilabel run"),
    ({"train__batch_size": 7}, "train.batch_size = 7: Mixup / CutMix mix image i with image B-1-i"),
    ({"features": "/cache"}, "train.mix: Mixup / CutMix mix images, and this run trains on cached features"),
    ({"train__mix__mixup_alpha": 0.0, "train__mix__cutmix_alpha": 0.0, "train__mix__label_smoothing": 0.1},
     "train.mix.label_smoothing = 0.1: smooths the mixed targets"),
    ({"dataset__store": "/stores/imagenet-224"}, "dataset.store: the image store holds the images resized to squares, "
                                                 "but train.augment.crop = random_resized, interpolation = bicubic, "
                                                 "eval_crop_pct = 0.95 needs"),
])
def test_contradicting_or_bad_settings_are_refused_naming_the_key(changes, message):
    with pytest.raises(ConfigError) as error:
        validate_run_config(_with(**changes))
    assert message in str(error.value)


def test_a_randaugment_string_timm_cannot_read_is_refused_before_any_work():
    config = validate_run_config(_with(train__augment__randaugment="rand-m7-x3"))
    with pytest.raises(ConfigError, match="train.augment.randaugment = rand-m7-x3: timm cannot read it"):
        check_components(config)


# ---------------------------------------------------------------- a run, killed and resumed


@pytest.mark.slow
def test_an_a2_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    """Every A2 draw (crop, flip, RandAugment, repeats, Mixup / CutMix) is a function of the seeds:
    a run killed (SIGKILL: nothing saved) mid-epoch and rerun ends exactly as an uninterrupted one."""
    import json
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from mld.signals import TEST_SIGNAL_ENV
    from test_engine_support import make_dataset, run_config, train_on_one_thread, without_timing

    dataset = make_dataset(tmp_path, "imagenet-like", num_train=48, num_val=16)
    config = run_config(dataset, task="single_label", model={"head": "gap", "head_options": {}},
                        train={"epochs": 2, "batch_size": 8, "log_every_s": 1e-6, "optimizer": "lamb",
                               "loss": {"name": "bce", "reduction": "mean", "target_threshold": 0.2},
                               "augment": {**A2_AUGMENT, "eval_crop_pct": 0.9},
                               "mix": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0}})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    uninterrupted = train_on_one_thread(config, tmp_path / "uninterrupted")

    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "mld", "train", "--run-config", str(config_file), "--out", str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(command, env={**environment, TEST_SIGNAL_ENV: "SIGKILL:epoch 2/2: 3/6 steps"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout
    resumed = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert "resuming from" in (out / "train.log").read_text()
    assert without_timing(json.loads((out / "metrics.json").read_text())) == without_timing(uninterrupted)


@pytest.mark.slow
def test_two_processes_mix_and_repeat_like_one(tmp_path):
    """Under torchrun each process takes its share of the global batch, with Mixup's pairs and the
    one lambda per batch: two processes follow the single-process loss trajectory."""
    import yaml

    from test_engine_support import make_dataset, run_config, train_on_one_thread, train_under_torchrun

    dataset = make_dataset(tmp_path, "imagenet-like", num_train=48, num_val=16)
    config = run_config(dataset, task="single_label", model={"head": "gap", "head_options": {}},
                        train={"epochs": 2, "batch_size": 16, "eval_every": 0, "device": "cpu", "ema_decay": None,
                               "loss": {"name": "bce", "reduction": "mean", "target_threshold": 0.2},
                               "augment": A2_AUGMENT, "mix": {"mixup_alpha": 0.1, "cutmix_alpha": 1.0}})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    single = train_on_one_thread(config, tmp_path / "one")
    double = train_under_torchrun(config_file, tmp_path / "two")
    losses = [[entry["train_loss"] for entry in run["history"]] for run in (single, double)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_runs_with_timms_crops_read_the_images_not_a_store(tmp_path):
    """An image store holds square-resized pixels: the workflow gives a store only to runs whose
    transforms start from them (here CIFAR-100 trained with A2's transforms decodes its files)."""
    from pathlib import Path

    import yaml

    from mld.experiments import build_registry, load_config

    repo = Path(__file__).resolve().parents[1]
    user = tmp_path / "a2-cifar.yaml"
    user.write_text(yaml.safe_dump({"base": str(repo / "config" / "paper.yaml"),
                                    "recipes": {"cifar100": {"train": {"augment": A2_AUGMENT}}}}))
    registry = build_registry(load_config(user, root=repo))
    datasets = {}
    for run in registry.runs.values():
        if run.config["task"] == "single_label" and "table14_transfer" in run.rows:
            datasets[run.config["train"]["augment"].get("crop", "resize")] = run.config["dataset"]
    assert "store" not in datasets["random_resized"]
    assert datasets["resize"]["store"] == "results/stores/stanford-cars/224px"  # Stanford Cars keeps its store
    assert {entry.dataset for entry in registry.stores.values()} >= {"stanford-cars"}
    assert not any(entry.dataset.startswith("cifar") for entry in registry.stores.values())


def test_a_run_recorded_before_the_new_keys_is_the_same_run():
    """Finished runs and resume points written before train.mix and the new augment keys existed
    computed what their defaults compute: they are not refused as another config."""
    from pathlib import Path

    from mld.engine.run import check_same_run

    config = validate_run_config({**BASE, "train": {"batch_size": 8, "loss": {"name": "bce"}}})
    recorded = copy.deepcopy(config)
    del recorded["train"]["mix"]
    recorded["train"]["augment"] = {"cutout": 0.5, "randaugment": True}
    check_same_run(recorded, config, Path("run/metrics.json"))
    recorded["train"]["lr"] = 1.0
    with pytest.raises(ValueError, match=r"different config \(differs in: train.lr\)"):
        check_same_run(recorded, config, Path("run/metrics.json"))
