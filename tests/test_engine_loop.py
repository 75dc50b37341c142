"""The training loop's loss bookkeeping (nothing read from the device per step, non-finite losses
named) and the channels_last inputs of GPU runs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mld.engine.cuda_settings import channels_last_inputs, use_channels_last
from mld.engine.ema import ModelEma
from mld.engine.loop import NonFiniteLossError, Trainer
from mld.engine.modeling import HeadOnlyModel
from mld.engine.precision import Precision
from mld.engine.targets import LabelPolicy
from mld.heads import create_head, extend_targets
from mld.losses import create_loss, labels_to_targets

CLASSES, CHANNELS = 5, 8


def trainer_on(device: torch.device, model: nn.Module, read_every: int) -> Trainer:
    """The engine's training step as runs build it: Adam, a schedule, ASL, EMA, query augmentation."""
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return Trainer(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                   create_loss("asl"), LabelPolicy(unknown="negative", unknown_weight=0.5), Precision(device, None),
                   ema=ModelEma(model, 0.9), extend_targets=extend_targets, loss_read_every=read_every)


def batches(count: int, nan_at: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of feature maps and labels; batch `nan_at` (1-based) holds a NaN."""
    generator = torch.Generator().manual_seed(0)
    made = []
    for index in range(1, count + 1):
        features = torch.randn(4, CHANNELS, 2, 2, generator=generator)
        if index == nan_at:
            features[0, 0, 0, 0] = float("nan")
        made.append((features, torch.randint(-1, 2, (4, CLASSES), generator=generator, dtype=torch.int8)))
    return made


def decoder() -> nn.Module:
    torch.manual_seed(0)
    return HeadOnlyModel(create_head("ml_decoder", CHANNELS, CLASSES, decoder_dim=16, num_heads=2, ff_dim=32,
                                     random_queries=2, query_noise=0.1))


def test_training_steps_read_nothing_from_the_device_until_the_losses_are_read(monkeypatch):
    """On the meta device every read of a value on the host raises, so steps that run there read
    nothing back (no .item(), no `if tensor`); only read_losses does, every `loss_read_every` steps
    and at the end of the epoch."""
    trainer = trainer_on(torch.device("meta"), decoder(), read_every=5)
    reads = []

    def read_losses(self):
        reads.append([where for where, _ in self._unread])
        self._unread.clear()
        return [1.0] * len(reads[-1])

    monkeypatch.setattr(Trainer, "read_losses", read_losses)
    progress = trainer.run_epoch(batches(12), epoch=0, first_step=0, should_stop=lambda: False)
    assert [len(read) for read in reads] == [5, 5, 2] and progress.steps == 12 and progress.loss_sum == 12.0
    assert reads[1][0] == "epoch 1, step 6"
    stopped = trainer.run_epoch(batches(12), epoch=1, first_step=0, should_stop=lambda: True)
    assert stopped.stopped and reads[-1] == ["epoch 2, step 1"]  # a stop reads what it has


def test_the_epoch_loss_is_the_same_sum_as_per_step_reads():
    data = batches(7)
    trainer = trainer_on(torch.device("cpu"), decoder(), read_every=3)
    progress = trainer.run_epoch(data, epoch=0, first_step=0, should_stop=lambda: False)
    again = trainer_on(torch.device("cpu"), decoder(), read_every=1)
    expected = 0.0
    for step, batch in enumerate(data, start=1):
        again.step(*batch, where=f"step {step}")
        expected += again.read_losses()[0]
    assert progress.loss_sum == expected


def test_a_nan_loss_is_named_by_its_step_when_the_losses_are_read():
    trainer = trainer_on(torch.device("cpu"), decoder(), read_every=4)
    taken = []

    def counted(items):
        for item in items:
            taken.append(item)
            yield item

    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 3, step 6;"):
        trainer.run_epoch(counted(batches(10, nan_at=6)), epoch=2, first_step=0, should_stop=lambda: False)
    assert len(taken) == 8  # found at the read after step 8, naming step 6 (not 7 or 8, NaN too)


def test_labels_are_checked_on_the_cpu_only():
    with pytest.raises(ValueError, match="1, 0 or -1, found 2"):
        labels_to_targets(torch.tensor([[1, 2]], dtype=torch.int8))
    targets, weights = labels_to_targets(torch.tensor([[1, 2]], dtype=torch.int8, device="meta"))
    assert targets.device.type == weights.device.type == "meta"


class SeesItsInput(nn.Module):
    """A convolution that records whether its input arrived in channels_last memory format."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.seen = nn.Conv2d(3, 4, 3), []

    def forward(self, images: torch.Tensor, class_embeddings=None) -> torch.Tensor:
        self.seen.append(images.is_contiguous(memory_format=torch.channels_last))
        return self.conv(images)


def test_a_channels_last_model_gets_channels_last_images_and_keeps_its_values():
    images = torch.randn(2, 3, 8, 8)
    converted = channels_last_inputs(nn.Identity(), (images,))
    assert converted[0].is_contiguous(memory_format=torch.channels_last) and torch.equal(converted[0], images)
    assert channels_last_inputs(nn.Identity(), (torch.randn(2, 3),)) is None  # not images: left alone
    torch.manual_seed(0)
    model = SeesItsInput()
    expected = model(images)
    use_channels_last(model)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(images, class_embeddings=None), expected)
    assert model.seen == [False, True]
    ema = ModelEma(model, 0.9).module
    ema.seen.clear()
    ema(images)
    assert ema.seen == [True]  # the EMA's copy keeps the conversion
