"""The training step and the prediction pass, over any model and any iterable of batches.

Nothing here knows about files, configs or datasets: a batch is `(inputs, labels)` with labels
in the prepared format, and the model is called as the model contract says
(`model(inputs, class_embeddings=...)`), so any nn.Module with that signature trains.

A training step reads nothing back from the device: reading a value (`loss.item()`) makes the host
wait until the device has finished all queued work, so the next step could not be queued while the
device still runs this one. The steps' losses stay on the device and are read together every
`Trainer.loss_read_every` steps and at the end of an epoch, where a NaN or infinite loss is found
and named by its step.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from mld.data.transforms import model_input
from mld.engine.ema import ModelEma
from mld.engine.mixing import BatchMixing
from mld.engine.precision import Precision
from mld.engine.targets import LabelPolicy

LossFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@contextlib.contextmanager
def one_pass(batches: Iterable) -> Iterator[Iterator[Any]]:
    """An iterator over `batches`, closed when the pass ends however it ends: a loader's workers
    then stop at once instead of when a failed step's traceback is freed."""
    iterator = iter(batches)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training cannot continue from these weights."""


@dataclass
class EpochProgress:
    steps: int  # steps completed in this epoch, counting those before a resume
    loss_sum: float  # sum of the per-step losses of the steps run by this call
    stopped: bool  # a stop was requested before the epoch ended
    data_s: float  # time spent waiting for batches (data loading not hidden by workers)
    compute_s: float  # time in training steps (on a GPU: queueing them, and waiting where losses are read)


@dataclass
class Trainer:
    """One optimiser step per batch: forward, loss, backward, step, schedule, EMA.

    `model` may be wrapped in DistributedDataParallel; `loss_scale` multiplies the loss before
    backward so that averaging gradients over processes reproduces the single-process gradient
    of a summed loss (it is the number of processes for summed losses, 1 for averaged ones).
    `loss_read_every`: steps between reads of the losses from the device (the official train.py
    reads its loss every 100 steps too); a non-finite loss stops the run at most that many steps
    after it happened, before anything is saved.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    loss: LossFunction
    labels: LabelPolicy
    precision: Precision
    ema: ModelEma | None = None
    class_embeddings: torch.Tensor | None = None
    loss_scale: float = 1.0
    extend_targets: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    accumulation: int = 1  # micro-batches per optimiser step (gradient accumulation)
    mixing: BatchMixing | None = None  # Mixup / CutMix of each batch (train.mix)
    loss_read_every: int = 100
    _unread: list[tuple[str, torch.Tensor]] = field(default_factory=list, init=False, repr=False)

    def step(self, inputs: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
             where: str, position: tuple[int, int] | None = None) -> torch.Tensor:
        """Train on one batch and return its loss, left on the device until `read_losses`; `where`
        names the step if its loss turns out not to be finite. `position` is its (epoch, step), which
        seeds the batch's mixing when there is one.

        With `accumulation` > 1 the batch is split into that many micro-batches whose gradients
        add up to the whole batch's (a summed loss adds as it is, a mean is weighted by each
        micro-batch's share of the rows), then one optimiser step is taken: the update is the
        whole batch's but for BatchNorm, which normalises each micro-batch on its own.
        """
        device = self.precision.device
        inputs = _to_device(inputs, device)
        labels = labels.to(device, non_blocking=True)
        targets, weights = self.labels.targets(labels)
        if self.mixing is not None:
            if position is None:
                raise ValueError("a trainer that mixes batches needs each batch's (epoch, step) position")
            inputs, targets = self.mixing(inputs, targets, *position)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        summed = getattr(self.loss, "reduction", "mean") == "sum"
        parts = micro_batches(inputs, (targets, weights), self.accumulation)
        total: torch.Tensor | None = None
        for index, (part_inputs, part_targets) in enumerate(parts):
            last = index == len(parts) - 1
            # Under DDP only the last micro-batch's backward averages gradients across processes.
            synchronised = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") \
                else self.model.no_sync()
            with synchronised:
                with self.precision.autocast():
                    logits = self.model(part_inputs, class_embeddings=self.class_embeddings)
                loss = self.loss(*self._loss_inputs(logits.float(), *part_targets))
                if not summed and len(parts) > 1:
                    loss = loss * (len(part_targets[0]) / len(labels))
                total = loss.detach() if total is None else total + loss.detach()
                scaler.scale(loss * self.loss_scale).backward()
        self._unread.append((where, total))
        scaler.step(self.optimizer)
        scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update()
        return total

    def read_losses(self) -> list[float]:
        """The losses of the steps not read yet, in step order, read from the device at once.

        Raises NonFiniteLossError naming the first of them whose loss is NaN or infinite."""
        if not self._unread:
            return []
        steps, losses = zip(*self._unread)
        self._unread.clear()
        values = torch.stack(losses).tolist()
        for where, value in zip(steps, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the training loss is {value} at {where}; the run stops because the weights are now "
                    "unusable. Lower train.lr, check the inputs for NaN, or use train.amp: off")
        return values

    def _loss_inputs(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None):
        if logits.shape[1] != targets.shape[1]:
            if self.extend_targets is None:
                raise ValueError(f"the model returned {logits.shape[1]} logits for {targets.shape[1]} "
                                 "targets; only heads with query augmentations may add columns")
            targets = self.extend_targets(logits, targets)
            if weights is not None:
                weights = self.extend_targets(logits, weights)
        return logits, targets, weights

    def run_epoch(self, batches: Iterable, epoch: int, first_step: int,
                  should_stop: Callable[[], bool]) -> EpochProgress:
        """Run the steps of one epoch from `first_step`, stopping early when `should_stop()`; the
        losses are read every `loss_read_every` steps and before it returns."""
        step, loss_sum, data_s, compute_s = first_step, 0.0, 0.0, 0.0
        with one_pass(batches) as batch_iterator:
            while True:
                waited = time.perf_counter()
                batch = next(batch_iterator, None)
                started = time.perf_counter()
                data_s += started - waited
                if batch is None:
                    return EpochProgress(step, self._add_losses(loss_sum), False, data_s, compute_s)
                self.step(*batch, where=f"epoch {epoch + 1}, step {step + 1}", position=(epoch, step))
                if len(self._unread) >= self.loss_read_every:
                    loss_sum = self._add_losses(loss_sum)
                compute_s += time.perf_counter() - started
                step += 1
                if should_stop():
                    return EpochProgress(step, self._add_losses(loss_sum), True, data_s, compute_s)

    def _add_losses(self, loss_sum: float) -> float:
        """`loss_sum` plus the unread losses, added one by one in step order as they always were."""
        for value in self.read_losses():
            loss_sum += value
        return loss_sum


@torch.no_grad()
def predict(models: Mapping[str, nn.Module], batches: Iterable, class_embeddings: torch.Tensor | None,
            precision: Precision, activation: Callable[[torch.Tensor], torch.Tensor],
            should_stop: Callable[[], bool] = lambda: False,
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
    """Scores of each model (unwrapped, not DDP) on every batch, and the labels; None if stopped.

    One pass over `batches` serves every model: each batch is loaded and moved to the device once
    and scored by each model in turn (the model and its EMA cost one decode, not two)."""
    for model in models.values():
        model.eval()
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    all_labels = []
    with one_pass(batches) as batch_iterator:
        for inputs, labels in batch_iterator:
            inputs = _to_device(inputs, precision.device)
            for name, model in models.items():
                with precision.autocast():
                    logits = model(inputs, class_embeddings=class_embeddings)
                scores[name].append(activation(logits.float()).cpu())
            all_labels.append(labels)
            if should_stop():
                return None
    return {name: torch.cat(values) for name, values in scores.items()}, torch.cat(all_labels)


def micro_batches(inputs: torch.Tensor | list[torch.Tensor], labels: torch.Tensor | tuple[torch.Tensor | None, ...],
                  count: int) -> list[tuple[torch.Tensor | list[torch.Tensor], Any]]:
    """The batch cut into `count` consecutive micro-batches (sizes differing by at most one);
    `labels` is a tensor or a tuple of tensors (or None) cut alike."""
    if count <= 1:
        return [(inputs, labels)]
    rows = len(labels[0] if isinstance(labels, tuple) else labels)
    sizes = [len(part) for part in torch.arange(rows).tensor_split(count) if len(part)]
    if isinstance(labels, tuple):
        label_parts = list(zip(*(tensor.split(sizes) if tensor is not None else [None] * len(sizes)
                                 for tensor in labels)))
    else:
        label_parts = labels.split(sizes)
    if isinstance(inputs, (list, tuple)):
        input_parts = list(zip(*(tensor.split(sizes) for tensor in inputs)))
        return [(list(part), label_part) for part, label_part in zip(input_parts, label_parts)]
    return list(zip(inputs.split(sizes), label_parts))


def _to_device(inputs: torch.Tensor | list[torch.Tensor], device: torch.device):
    return model_input(inputs, device)
