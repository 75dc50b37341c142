"""The training step and the prediction pass, over any model and any iterable of batches.

Nothing here knows about files, configs or datasets: a batch is `(inputs, labels)` with labels
in the prepared format, and the model is called as the model contract says
(`model(inputs, class_embeddings=...)`), so any nn.Module with that signature trains.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from mld.data.transforms import model_input
from mld.engine.ema import ModelEma
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
    compute_s: float  # time spent in training steps


@dataclass
class Trainer:
    """One optimiser step per batch: forward, loss, backward, step, schedule, EMA.

    `model` may be wrapped in DistributedDataParallel; `loss_scale` multiplies the loss before
    backward so that averaging gradients over processes reproduces the single-process gradient
    of a summed loss (it is the number of processes for summed losses, 1 for averaged ones).
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

    def step(self, inputs: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
             where: str) -> float:
        """Train on one batch and return its loss; `where` names the step in error messages."""
        device = self.precision.device
        inputs = _to_device(inputs, device)
        labels = labels.to(device, non_blocking=True)
        self.model.train()
        with self.precision.autocast():
            logits = self.model(inputs, class_embeddings=self.class_embeddings)
        loss = self.loss(*self._loss_inputs(logits.float(), labels))
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"the training loss is {value} at {where}; the run stops because the weights are now "
                "unusable. Lower train.lr, check the inputs for NaN, or use train.amp: off")
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss * self.loss_scale).backward()
        scaler.step(self.optimizer)
        scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update()
        return value

    def _loss_inputs(self, logits: torch.Tensor, labels: torch.Tensor):
        targets, weights = self.labels.targets(labels)
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
        """Run the steps of one epoch from `first_step`, stopping early when `should_stop()`."""
        step, loss_sum, data_s, compute_s = first_step, 0.0, 0.0, 0.0
        with one_pass(batches) as batch_iterator:
            while True:
                waited = time.perf_counter()
                batch = next(batch_iterator, None)
                started = time.perf_counter()
                data_s += started - waited
                if batch is None:
                    return EpochProgress(step, loss_sum, False, data_s, compute_s)
                loss_sum += self.step(*batch, where=f"epoch {epoch + 1}, step {step + 1}")
                compute_s += time.perf_counter() - started
                step += 1
                if should_stop():
                    return EpochProgress(step, loss_sum, True, data_s, compute_s)


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable, class_embeddings: torch.Tensor | None,
            precision: Precision, activation: Callable[[torch.Tensor], torch.Tensor],
            should_stop: Callable[[], bool] = lambda: False) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Scores of `model` (unwrapped, not DDP) on every batch, and the labels; None if stopped."""
    model.eval()
    scores, all_labels = [], []
    with one_pass(batches) as batch_iterator:
        for inputs, labels in batch_iterator:
            with precision.autocast():
                logits = model(_to_device(inputs, precision.device), class_embeddings=class_embeddings)
            scores.append(activation(logits.float()).cpu())
            all_labels.append(labels)
            if should_stop():
                return None
    return torch.cat(scores), torch.cat(all_labels)


def _to_device(inputs: torch.Tensor | list[torch.Tensor], device: torch.device):
    return model_input(inputs, device)
