"""The engine's building blocks, each on its own: files, checkpoints, EMA, sampling, signals, logs."""
from __future__ import annotations

import copy
import errno
import io
import os
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn

from mld import atomic
from mld.engine.checkpoint import (
    CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint,
)
from mld.engine.costing import check_feasibility
from mld.engine.distributed import DistributedBatchNorm, World, synchronise_batchnorm
from mld.engine.ema import ModelEma
from mld.engine.features import CachedFeatures, FeatureCache, write_meta, write_split
from mld.engine.loop import Trainer, micro_batches, predict
from mld.engine.optim import build_schedule, parameter_groups
from mld.engine.precision import choose_precision
from mld.engine.progress import RunLog, track
from mld.data.sampling import EvalBatchSampler, SeededSamples, TrainBatchSampler, shard_bounds
from mld.signals import StopRequest
from mld.engine.targets import LabelPolicy
from mld.heads import extend_targets
from mld.losses import create_loss


# ---- atomic files

def test_atomic_write_replaces_the_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic.write_json(target, {"mAP": 1.5})
    atomic.write_json(target, {"mAP": 2.5})
    assert target.read_text().strip().endswith("}") and '"mAP": 2.5' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path):
    target = tmp_path / "predictions.npz"
    atomic.write_text(target, "old")

    def fill_the_disk(handle: io.BufferedWriter) -> None:
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device") as caught:
        atomic.write_bytes(target, fill_the_disk)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]


def test_non_finite_numbers_are_not_written_as_json(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        atomic.write_json(tmp_path / "x.json", {"mAP": float("nan")})
    assert list(tmp_path.iterdir()) == []


# ---- checkpoints and random state

def test_checkpoints_round_trip_tensors_and_plain_data(tmp_path):
    state = {"model": nn.Linear(3, 2).state_dict(), "progress": {"epoch": 2, "history": [{"loss": 1.0}]},
             "rng": capture_rng_state()}
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["progress"] == state["progress"]


class Arbitrary:
    """Stands for any pickled object, which could run code when unpickled."""


def test_checkpoints_with_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt.*weights_only"):
        load_checkpoint(path)


def test_truncated_checkpoints_are_reported(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"weight": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_rng_state_restores_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    first = torch.rand(3), np.random.rand(3), random.random()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


# ---- EMA

def test_ema_follows_the_exponential_average_and_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.75)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(4.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update()
    assert torch.allclose(ema.module[0].weight, start + 0.25 * 4.0)
    assert ema.module[1].num_batches_tracked.item() == 7
    assert not any(p.requires_grad for p in ema.module.parameters())


# ---- sampling

def test_batches_are_a_function_of_seed_and_epoch():
    sampler = TrainBatchSampler(50, 8, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    other_epoch = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first and first != other_epoch
    assert len(first) == 50 // 8 and all(len(batch) == 8 for batch in first)
    indices = [index for batch in first for index, _ in batch]
    assert len(set(indices)) == len(indices)


def test_resuming_skips_exactly_the_batches_already_done():
    sampler = TrainBatchSampler(40, 4, seed=0)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start_batch=3)
    assert list(sampler) == full[3:] and len(sampler) == len(full) - 3


def test_processes_split_each_global_batch():
    single = TrainBatchSampler(30, 6, seed=9)
    ranks = [TrainBatchSampler(30, 6, seed=9, rank=r, world_size=3) for r in range(3)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(4)
    for global_batch, *shares in zip(single, *ranks):
        assert [key for share in shares for key in share] == global_batch


def test_sampler_refuses_impossible_batches():
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        TrainBatchSampler(100, 10, seed=0, world_size=3)
    with pytest.raises(ValueError, match="fewer than train.batch_size"):
        TrainBatchSampler(5, 10, seed=0)


def test_evaluation_shards_cover_the_split_in_order():
    shards = [list(EvalBatchSampler(11, 2, rank, 3)) for rank in range(3)]
    indices = [index for shard in shards for batch in shard for index, _ in batch]
    assert indices == list(range(11))
    assert [len(shard_bounds(11, rank, 3)) for rank in range(3)] == [3, 4, 4]


class RandomItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return torch.rand(1).item(), np.random.rand(), random.random()


def test_sample_randomness_depends_on_its_seed_only_and_spares_torch_state():
    samples = SeededSamples(RandomItems())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    np.random.seed(5)
    assert samples[(0, 123)] == samples[(3, 123)]
    assert all(a != b for a, b in zip(samples[(0, 123)], samples[(0, 124)]))
    assert torch.equal(torch.get_rng_state(), before)


# ---- signals and progress

def test_stop_request_records_the_signal_and_restores_handlers():
    previous = signal.getsignal(signal.SIGUSR1)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.received == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_batch_jobs_get_periodic_plain_lines(tmp_path):
    stream = io.StringIO()  # not a terminal, like a Slurm log
    with RunLog(tmp_path / "train.log", stream=stream) as log:
        assert list(track(range(5), 5, "epoch 1/1", log, every_s=1e-9)) == list(range(5))
        log("done")
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines[:2]] == [
        line.split(" ", 2)[2] for line in (tmp_path / "train.log").read_text().splitlines()[:2]]
    assert any("epoch 1/1: 1/5 steps" in line for line in lines) and lines[-1].endswith("done")
    assert "\r" not in stream.getvalue()


def test_terminals_get_a_progress_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with RunLog(None, stream=stream) as log:
        list(track(range(3), 3, "epoch 1/1", log, every_s=1e-9))
    assert "\repoch 1/1:" in stream.getvalue() and "it/s" in stream.getvalue()


# ---- optimisation and feasibility

def test_weight_decay_applies_to_weights_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    model.register_buffer("fixed_queries", torch.zeros(2, 3))
    frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)
    model.register_parameter("frozen", frozen)
    decayed, exempt = parameter_groups(model, 1e-4)
    assert [p.shape for p in decayed["params"]] == [torch.Size([3, 4])] and decayed["weight_decay"] == 1e-4
    assert len(exempt["params"]) == 3 and exempt["weight_decay"] == 0.0


def test_onecycle_peaks_at_the_configured_lr_after_pct_start():
    optimizer = torch.optim.Adam(nn.Linear(2, 2).parameters())
    schedule = build_schedule(optimizer, {"schedule": "onecycle", "lr": 2e-4, "pct_start": 0.2}, 100)
    lrs = []
    for _ in range(100):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert int(np.argmax(lrs)) in (19, 20) and max(lrs) == pytest.approx(2e-4)


def schedule_lrs(train: dict, total_steps: int) -> list[float]:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=train["lr"])
    schedule = build_schedule(optimizer, train, total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return lrs


def test_cosine_warms_up_linearly_then_decays_over_the_remaining_steps():
    # 10 epochs of 10 steps, 2 warm-up epochs: 20 steps up to lr, then a cosine over 80 steps.
    train = {"schedule": "cosine", "lr": 1e-3, "epochs": 10, "warmup_epochs": 2}
    lrs = schedule_lrs(train, 100)
    assert lrs[:20] == pytest.approx([1e-3 * (step + 1) / 20 for step in range(20)])
    assert lrs[20] == pytest.approx(1e-3) and lrs[60] == pytest.approx(0.5e-3)
    assert lrs[20:] == sorted(lrs[20:], reverse=True) and lrs[-1] < 1e-6
    # Without a warm-up the cosine starts at lr; a constant schedule keeps lr after its warm-up.
    assert schedule_lrs({**train, "warmup_epochs": 0}, 100)[0] == pytest.approx(1e-3)
    constant = schedule_lrs({**train, "schedule": "constant", "warmup_epochs": 0.5}, 100)
    assert constant[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3]) and set(constant[5:]) == {1e-3}


def test_lamb_is_timms_with_decay_on_weights_only():
    from timm.optim import Lamb

    from mld.engine.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    optimizer = build_optimizer(model, {"optimizer": "lamb", "lr": 5e-3, "weight_decay": 0.02})
    assert isinstance(optimizer, Lamb)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.02, 0.0]
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).square().sum().backward()
    optimizer.step()
    # LAMB's trust ratio: each weight tensor moves by about lr x its norm, whatever its gradient scale.
    weight, new_weight = before[0], next(model.parameters()).detach()
    assert (new_weight - weight).norm() / weight.norm() == pytest.approx(5e-3, rel=0.05)


def test_feasibility_names_the_exceeded_budget():
    budget = {"max_gflops": 1.0, "max_memory_gb": None}
    assert check_feasibility(budget, {"flops_g": 0.5}) is None
    assert "2.5 GFLOPs per image exceed train.feasibility.max_gflops = 1.0" in check_feasibility(
        budget, {"flops_g": 2.5})


# ---- batch norm across processes (the two-process case is in test_engine_ddp.py)

def test_distributed_batchnorm_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    converted = synchronise_batchnorm(copy.deepcopy(plain), torch.device("cpu"))
    assert isinstance(converted[1], DistributedBatchNorm)
    assert set(converted.state_dict()) == set(plain.state_dict())
    images = torch.rand(5, 3, 4, 4)
    assert torch.allclose(converted(images), plain(images))
    assert torch.allclose(converted[1].running_var, plain[1].running_var)
    assert not World.from_environment("cpu").distributed


# ---- feature caches

def test_feature_cache_round_trip_with_batched_reads(tmp_path):
    maps = torch.randn(10, 4, 2, 2)
    shapes = write_split(tmp_path, "train", 10, [maps[:6], maps[6:]])
    write_meta(tmp_path, {"backbone": "b", "weights_sha256": None, "resolution": 32, "splits": {"train": 10},
                          "feature_kind": "single", "shapes": shapes})
    cache = FeatureCache.open(tmp_path)
    labels = np.eye(10, 3, dtype=np.int8)
    dataset = cache.dataset("train", labels)
    assert isinstance(dataset, CachedFeatures) and cache.in_channels == 4
    features, batch_labels = dataset.__getitems__([(7, 0), (2, 0)])
    assert torch.allclose(features, maps[[7, 2]].half().float())
    assert torch.equal(batch_labels, torch.from_numpy(labels[[7, 2]]))
    with pytest.raises(ValueError, match="resolution is 32 but run.yaml needs 64"):
        cache.check_matches("b", None, 64, {"train": 10}, source="run.yaml")


def test_an_incomplete_feature_cache_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split 'val' produced 6 samples, expected 10"):
        write_split(tmp_path, "val", 10, [torch.zeros(6, 4, 1, 1)])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="not a complete feature cache"):
        FeatureCache.open(tmp_path)


# ---- the training step on any module

class ToyHead(nn.Module):
    """Two classes, plus one random-query column in training mode, like query augmentation."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, inputs: torch.Tensor, class_embeddings=None) -> torch.Tensor:
        logits = self.linear(inputs)
        return torch.cat([logits, logits[:, :1]], dim=1) if self.training else logits


def test_trainer_steps_any_module_and_pads_targets_of_extra_columns():
    torch.manual_seed(0)
    model = ToyHead()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    precision = choose_precision("auto", torch.device("cpu"))
    trainer = Trainer(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                      create_loss("bce"), LabelPolicy(unknown="negative", unknown_weight=0.5), precision,
                      extend_targets=extend_targets)
    inputs = torch.randn(8, 3)
    labels = torch.tensor([[1, 0], [0, -1]] * 4, dtype=torch.int8)
    logits, targets, weights = trainer._loss_inputs(model(inputs), *trainer.labels.targets(labels))
    assert targets[:, 2].eq(1).all() and weights[1].tolist() == [1.0, 0.5, 1.0]
    progress = trainer.run_epoch([(inputs, labels)] * 20, epoch=0, first_step=0, should_stop=lambda: False)
    assert progress.steps == 20 and not progress.stopped
    trainer.step(inputs, labels, "end")
    assert trainer.read_losses()[0] < progress.loss_sum / 20
    scores, seen_labels = predict({"model": model}, [(inputs, labels)], None, precision, torch.sigmoid)
    scores = scores["model"]
    assert scores.shape == (8, 2) and torch.equal(seen_labels, labels)
    stopped = trainer.run_epoch([(inputs, labels)] * 5, epoch=1, first_step=2, should_stop=lambda: True)
    assert stopped.stopped and stopped.steps == 3


class MultiLayerHead(nn.Module):
    """Two layers without BatchNorm, called as the model contract says."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 5))

    def forward(self, inputs: torch.Tensor, class_embeddings=None) -> torch.Tensor:
        return self.layers(inputs)


@pytest.mark.parametrize("loss_name, reduction", [("asl", "sum"), ("bce", "sum"), ("bce", "mean")])
def test_accumulated_micro_batches_take_the_whole_batchs_step(loss_name, reduction):
    """Three micro-batches (sizes 4, 3, 3) give the weights one step on the whole batch of 10 gives,
    for a summed and an averaged loss (no BatchNorm in this model: with it, statistics would be per
    micro-batch), and report the whole batch's loss."""
    def trained(accumulation: int) -> tuple[dict[str, torch.Tensor], list[float]]:
        torch.manual_seed(0)
        model = MultiLayerHead()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        trainer = Trainer(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                          create_loss(loss_name, reduction=reduction), LabelPolicy(),
                          choose_precision("off", torch.device("cpu")), accumulation=accumulation)
        generator = torch.Generator().manual_seed(1)
        for i in range(3):
            trainer.step(torch.randn(10, 6, generator=generator),
                         torch.randint(0, 2, (10, 5), generator=generator, dtype=torch.int8), f"step {i}")
        return {name: value.detach().clone() for name, value in model.state_dict().items()}, trainer.read_losses()

    whole, whole_losses = trained(1)
    accumulated, accumulated_losses = trained(3)
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-5, atol=1e-6, msg=name)
    assert accumulated_losses == pytest.approx(whole_losses, rel=1e-5)


def test_micro_batches_cover_the_batch_in_order():
    inputs, labels = torch.arange(20).view(10, 2), torch.arange(10)
    parts = micro_batches(inputs, labels, 3)
    assert [len(part_labels) for _, part_labels in parts] == [4, 3, 3]
    assert torch.equal(torch.cat([part_labels for _, part_labels in parts]), labels)
    assert torch.equal(torch.cat([part_inputs for part_inputs, _ in parts]), inputs)
    stages = micro_batches([inputs, inputs * 2], labels, 2)
    assert [part_inputs[1].tolist() for part_inputs, _ in stages] == [(inputs * 2)[:5].tolist(), (inputs * 2)[5:].tolist()]
    assert micro_batches(inputs, labels, 1) == [(inputs, labels)]
