"""Reading prepared splits for training and evaluation.

`PreparedDataset` serves one split: synthetic sets from their memory-mapped image array (no
decoding: fast on CPU), real datasets by decoding their JPEG files (give the loader worker
processes). `ImageDataset` is the same at a run's resolution with the paper's augmentation.
`create_loader` wraps it with the deterministic samplers of `mld.data.sampling`: the
order of epoch e and each sample's augmentation are functions of (seed, e), so a resumed or
multi-process run sees exactly the data of an uninterrupted one.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mld.data.images import read_image
from mld.data.prepared import PreparedMeta, open_prepared
from mld.data.sampling import EvalBatchSampler, SeededSamples, TrainBatchSampler
from mld.data.store import ImageStore, open_store
from mld.data.transforms import AugmentSettings, build_transform, to_tensor
from mld.signals import held_while_forking, ignore_in_worker


class PreparedDataset(Dataset):
    """One split of a prepared dataset; item i is (image uint8 [3, H, W], labels int8 [N]).

    `transform` maps a PIL image to the image tensor; without one, images are returned at their
    stored size. With a `store` (mld.data.store, checked to match by the caller) the images come
    from its array, not from the dataset's. Memory maps are opened lazily in each process, so the
    dataset pickles small.
    """

    def __init__(self, path: str | Path | PreparedMeta, split: str,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None,
                 store: ImageStore | None = None) -> None:
        self.meta: PreparedMeta = path if isinstance(path, PreparedMeta) else open_prepared(path)
        self.split = split
        self.transform = transform
        self.store = store
        self.meta.split_dir(split)  # refuses an unknown split, naming the dataset
        self.length = self.meta.splits[split]
        decoded = store is None and self.meta.image_storage == "files"
        self._paths = self.meta.image_paths(split) if decoded else None
        self._labels: np.ndarray | None = None
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_labels": None, "_images": None}

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = self.meta.labels(self.split)
        return self._labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for split {self.split!r} of {self.length} images")
        labels = torch.from_numpy(np.array(self.labels[index], dtype=np.int8))
        if self._paths is not None:
            image = read_image(self._paths[index])
            return (self.transform or to_tensor)(image), labels
        if self._images is None:
            self._images = (self.store or self.meta).images(self.split)
        pixels = np.asarray(self._images[index])
        if self.transform is None:
            return to_tensor(pixels), labels
        return self.transform(Image.fromarray(pixels)), labels


class ImageDataset(PreparedDataset):
    """A split at a run's input resolution, transformed as a run config's `train.augment` block
    (`augment`; left-out keys take the paper's values) says: the training transform when `train`
    (by default: when `augment` is given), else the evaluation one (the paper's: resize only).
    Stored images already at the resolution (an array dataset at it, or a `store` of it) skip PIL
    for the paper's evaluation, and skip the resize for its training."""

    def __init__(self, path: str | Path | PreparedMeta, split: str, resolution: int,
                 augment: Mapping[str, Any] | None = None, store: ImageStore | None = None,
                 train: bool | None = None) -> None:
        meta = path if isinstance(path, PreparedMeta) else open_prepared(path)
        stored_size = meta.image_size if meta.image_storage == "array" else None
        if store is not None:
            stored_size = store.resolution
        train = augment is not None if train is None else train
        super().__init__(meta, split, image_transform(stored_size, resolution, AugmentSettings.from_config(augment),
                                                      train), store)


def image_transform(stored_size: int | None, resolution: int, settings: AugmentSettings,
                    train: bool) -> Callable[[Image.Image], torch.Tensor] | None:
    """The transform of images stored at `stored_size` px (None: files of any size); None where
    the stored pixels are already what evaluation takes."""
    if not train and settings.eval_crop_pct is None and stored_size == resolution:
        return None
    return build_transform(resolution, train, settings)


class Loader(DataLoader):
    """A DataLoader whose persistent worker processes leave a job's stop signals to the main process.

    Slurm signals every process of a job; a worker killed by SIGTERM would end the main process
    with "DataLoader worker ... killed by signal" before it could save (see mld.signals).
    Workers start with the first pass and serve every later one (an epoch's training and
    evaluation passes reuse them); a pass that does not run to its end (an error in a worker or in
    the training step, a stop) stops them at once, and `stop_workers` (or leaving a
    `workers_stopped` block) stops them when their user is done.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, worker_init_fn=ignore_in_worker, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        with held_while_forking():  # the workers start here, on the first pass
            batches = super().__iter__()
        if self.num_workers == 0:
            return batches
        _running.add(self)
        if _scopes:
            _scopes[-1].add(self)
        return self._pass(batches)

    def _pass(self, batches: Iterator[Any]) -> Iterator[Any]:
        """The batches of one pass; the workers stop unless the pass reaches its end.

        Without this a failed pass (a worker's broken JPEG, an error in the training step) kept its
        workers alive for as long as the exception's traceback referenced the pass."""
        finished = False
        try:
            yield from batches
            finished = True
        finally:
            if not finished:
                self.stop_workers()

    def stop_workers(self) -> None:
        """Stop the worker processes now (a later pass starts new ones)."""
        batches, self._iterator = self._iterator, None
        shutdown = getattr(batches, "_shutdown_workers", None)  # what torch itself calls at the end
        if shutdown is not None:
            shutdown()
        _running.discard(self)


# Loaders whose workers run. A worker ignores SIGTERM (see above), so one left running when the
# interpreter exits would block multiprocessing's exit handler, which terminates and then joins it,
# for ever; stopping them first (atexit runs this before multiprocessing's handler) prevents that.
_running: "weakref.WeakSet[Loader]" = weakref.WeakSet()
_scopes: list["weakref.WeakSet[Loader]"] = []


@contextlib.contextmanager
def workers_stopped() -> Iterator[None]:
    """A block (a run, an evaluation) at whose end, however it ends, the workers of every loader
    that iterated in it stop: at once, rather than when garbage collection frees the loader
    (which stalls whatever runs then for seconds)."""
    scope: "weakref.WeakSet[Loader]" = weakref.WeakSet()
    _scopes.append(scope)
    try:
        yield
    finally:
        _scopes.remove(scope)
        for loader in list(scope):
            loader.stop_workers()


@atexit.register
def _stop_all_workers() -> None:
    for loader in list(_running):
        loader.stop_workers()


class PreparedLoader(Loader):
    """A loader whose batches are lists of (index, sample seed) keys from a deterministic sampler."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate (training), skipping its first `start_batch` batches (resume)."""
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch, start_batch)


def create_loader(path: str | Path, split: str, batch_size: int, resolution: int, train: bool,
                  num_workers: int = 0, seed: int = 0, augment: Mapping[str, Any] | None = None,
                  rank: int = 0, world_size: int = 1, store: str | Path | None = None) -> PreparedLoader:
    """A loader over one split at `resolution` px, its images read from `store` when given (an
    image store of the dataset at that resolution: mld.data.store).

    `augment`: a run config's `train.augment` block (None or left-out keys: the paper's).
    Training (`train=True`): its training transform, batches of `batch_size` images (the global
    batch over `world_size` processes; the last incomplete batch is dropped), shuffled by
    (seed, epoch), each image `augment["repeats"]` times - call `loader.set_epoch(epoch)` before
    each epoch. Evaluation: its evaluation transform, in order, this process's shard of the split.
    """
    meta = open_prepared(path)
    image_store = None if store is None else open_store(store)
    if image_store is not None:
        image_store.check_matches(meta, resolution, f"the loader of {path}")
    dataset = ImageDataset(meta, split, resolution, augment or {}, image_store, train=train)
    if train:
        sampler = TrainBatchSampler(len(dataset), batch_size, seed, rank=rank, world_size=world_size,
                                    repeats=int((augment or {}).get("repeats", 1)))
    else:
        sampler = EvalBatchSampler(len(dataset), batch_size, rank=rank, world_size=world_size)
    return make_loader(SeededSamples(dataset), sampler, None, num_workers, torch.device("cpu"),
                       loader_class=PreparedLoader)


def make_loader(dataset: Dataset, batch_sampler: Any, collate: Callable[[Any], Any] | None,
                num_workers: int, device: torch.device,
                loader_class: type[Loader] = Loader) -> Loader:
    """A loader over engine keys, with pinned memory on GPUs.

    The loader's own generator is fixed: sample randomness comes from the keys (see
    mld.data.sampling), and a fixed generator keeps loaders from drawing on the global one.
    Workers persist across passes (see Loader): iterate it inside `workers_stopped()`.
    """
    options: dict[str, Any] = {}
    num_workers = min(num_workers, len(os.sched_getaffinity(0)))  # more workers than CPUs only slow down
    if num_workers > 0:
        options.update(prefetch_factor=4, persistent_workers=True)
    return loader_class(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(0), **options)
