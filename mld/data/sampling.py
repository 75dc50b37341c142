"""Data order and augmentation randomness as pure functions of (seed, epoch).

Exact resume and multi-process training both need every sample of every epoch to be the same no
matter how the run is executed. So the order of an epoch comes from a generator seeded by
(seed, epoch), and each sample carries its own seed, drawn from the same generator, that seeds
the random generators while the dataset prepares it. Results then depend on neither the number
of loader workers, nor the number of processes, nor the step a resumed run restarts from.
"""
from __future__ import annotations

import contextlib
import math
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

Key = tuple[int, int]  # (sample index, sample seed)


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (e.g. run seed and epoch)."""
    words = np.random.SeedSequence([int(part) for part in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class TrainBatchSampler(Sampler[list[Key]]):
    """This process's share of each global batch of one epoch; incomplete last batches are dropped.

    Global batch b of epoch e is the same set of samples for any world size; rank r takes its
    r-th slice, so the union over processes equals the single-process batch.

    `repeats` > 1 is repeated augmentation (timm's RepeatAugSampler): the epoch's order lists each
    image `repeats` times in a row, each copy with its own sample seed, and the epoch takes as many
    samples of it as the split has. `keep_pairs` gives each rank the positions (i, B-1-i) of a
    global batch B together, in mirrored order, so that batch Mixup (image i with image B-1-i of
    the rank's batch) mixes the same pairs for any world size; the slices are otherwise contiguous.
    """

    def __init__(self, num_samples: int, global_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, repeats: int = 1, keep_pairs: bool = False) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"train.batch_size = {global_batch_size} is the global batch and must be "
                             f"divisible by the number of processes ({world_size})")
        if num_samples < global_batch_size:
            raise ValueError(f"the training split has {num_samples} samples, fewer than "
                             f"train.batch_size = {global_batch_size}; lower the batch size")
        if repeats < 1:
            raise ValueError(f"train.augment.repeats = {repeats}: expected an integer >= 1")
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        if keep_pairs and self.local_batch_size % 2:
            raise ValueError(f"train.batch_size = {global_batch_size} over {world_size} processes leaves "
                             f"{self.local_batch_size} images per process; Mixup / CutMix pair the images of "
                             "each process's batch and need an even number")
        self.seed = seed
        self.rank = rank
        self.repeats = repeats
        self.positions = _rank_positions(global_batch_size, self.local_batch_size, rank, keep_pairs)
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate, skipping its first `start_batch` batches (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[Key]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        # Copy c of image i has seed seeds[i * repeats + c] (one seed per image without repeats).
        seeds = torch.randint(0, 2**31 - 1, (self.num_samples * self.repeats,), generator=generator).tolist()
        sequence = order.repeat_interleave(self.repeats).tolist()
        for batch in range(self.start_batch, self.batches_per_epoch):
            start = batch * self.global_batch_size
            yield [(sequence[position], seeds[sequence[position] * self.repeats + position % self.repeats])
                   for position in (start + offset for offset in self.positions)]


def _rank_positions(global_batch: int, local_batch: int, rank: int, keep_pairs: bool) -> list[int]:
    """The positions of a global batch that process `rank` takes, in its batch's order."""
    if not keep_pairs:
        return list(range(rank * local_batch, (rank + 1) * local_batch))
    half = local_batch // 2
    front = list(range(rank * half, (rank + 1) * half))
    return front + [global_batch - 1 - position for position in reversed(front)]


def shard_bounds(num_samples: int, rank: int, world_size: int) -> range:
    """The contiguous block of an evaluation split that process `rank` scores (sizes differ by <= 1)."""
    return range(rank * num_samples // world_size, (rank + 1) * num_samples // world_size)


class EvalBatchSampler(Sampler[list[Key]]):
    """This process's contiguous shard of an evaluation split, in order, in batches."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if num_samples < world_size:
            raise ValueError(f"the evaluation split has {num_samples} samples, fewer than the "
                             f"{world_size} processes; evaluate with fewer processes")
        self.indices = shard_bounds(num_samples, rank, world_size)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[list[Key]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield [(index, index) for index in self.indices[start:start + self.batch_size]]


class SeededSamples(Dataset):
    """Wrap a map-style dataset so that `dataset[(index, seed)]` draws its randomness from `seed`.

    torch's global generator is restored afterwards, so loading data in the main process does not
    disturb the training step's own draws (dropout, query augmentation). NumPy's and Python's
    generators are left as the last sample seeded them: training steps do not use them, and their
    state stays a function of the data order, so runs remain exactly reproducible.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Key):
        index, seed = key
        with seeded_generators(seed):
            return self.dataset[index]


@contextlib.contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Seed torch's (CPU), NumPy's and Python's generators for a block; put torch's state back.

    Only the CPU generator is seeded (`torch.manual_seed` would also seed every CUDA device,
    a hundred times slower, and data transforms run on the CPU).
    """
    saved = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved)
