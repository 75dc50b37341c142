"""The data side of a run: which samples, labels, classes and word vectors it trains and scores.

Two sources share one shape: images of a prepared dataset (end to end, through mld.data's
datasets and transforms) or feature maps of a cache (cached_features). Either way a dataset is
indexed by (index, seed) keys from the engine's samplers and yields (inputs, labels).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mld.data.loading import PreparedDataset
from mld.data.prepared import PreparedMeta, open_prepared
from mld.data.transforms import build_transform
from mld.engine.config import SOFTMAX_LOSS
from mld.engine.features import FeatureCache, file_sha256, keep_batch
from mld.engine.sampling import SeededSamples
from mld.engine.targets import LabelPolicy

TRAIN_SPLIT, EVAL_SPLIT = "train", "val"


@dataclass
class RunData:
    """Everything a run needs to know about its data.

    num_train_classes / train_word_vectors: the classes the model is built for (zero-shot: the
    seen classes only). train_class_embeddings: what the model is called with while training
    (zero-shot: the seen classes' word vectors; otherwise None). eval_class_embeddings: the same
    for evaluation (zero-shot: every class, so that ZSL and GZSL metrics come from one pass).
    """

    meta: PreparedMeta
    train_set: Dataset
    eval_set: Dataset
    collate: Callable[[Any], Any] | None
    labels: LabelPolicy
    num_train_classes: int
    train_word_vectors: torch.Tensor | None
    train_class_embeddings: torch.Tensor | None
    eval_class_embeddings: torch.Tensor | None
    feature_channels: int | list[int] | None  # cached features: what the head takes

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)


def task_of(meta: PreparedMeta) -> str:
    """The run task a prepared dataset supports."""
    return "zero_shot" if meta.zero_shot else meta.task


def open_run_data(config: Mapping[str, Any], source: str) -> RunData:
    """Open the dataset (and feature cache) of a validated run config; `source` names the config."""
    meta = open_prepared(config["dataset"]["path"])
    if task_of(meta) != config["task"]:
        raise ValueError(f"{source}: task = {config['task']}, but the dataset {meta.path} is a "
                         f"{task_of(meta)} dataset; set task: {task_of(meta)}")
    for split in (TRAIN_SPLIT, EVAL_SPLIT):
        meta.split_dir(split)
    train_labels = meta.labels(TRAIN_SPLIT)
    columns = torch.tensor(meta.seen_classes) if meta.zero_shot else None
    word_vectors = torch.from_numpy(np.asarray(meta.word_vectors())) if _word_vectors_exist(meta) else None
    train_vectors = word_vectors if word_vectors is None or columns is None else word_vectors[columns]
    labels = LabelPolicy(columns=columns, unknown=config["dataset"]["unknown_labels"],
                         unknown_weight=config["dataset"]["unknown_weight"],
                         softmax=config["train"]["loss"]["name"] == SOFTMAX_LOSS)
    common = dict(meta=meta, labels=labels,
                  num_train_classes=meta.num_classes if columns is None else len(columns),
                  train_word_vectors=train_vectors,
                  train_class_embeddings=train_vectors if meta.zero_shot else None,
                  eval_class_embeddings=word_vectors if meta.zero_shot else None)
    if config["features"] is not None:
        cache = open_feature_cache(config, meta, source)
        return RunData(train_set=cache.dataset(TRAIN_SPLIT, train_labels),
                       eval_set=cache.dataset(EVAL_SPLIT, meta.labels(EVAL_SPLIT)),
                       collate=keep_batch, feature_channels=cache.in_channels, **common)
    return RunData(train_set=SeededSamples(image_dataset(meta, TRAIN_SPLIT, config["train"], training=True)),
                   eval_set=SeededSamples(image_dataset(meta, EVAL_SPLIT, config["train"], training=False)),
                   collate=None, feature_channels=None, **common)


def _word_vectors_exist(meta: PreparedMeta) -> bool:
    return (meta.path / "word_vectors.npy").exists()


def open_feature_cache(config: Mapping[str, Any], meta: PreparedMeta, source: str) -> FeatureCache:
    """The run's feature cache, checked to come from its backbone, weights, resolution and dataset."""
    cache = FeatureCache.open(config["features"])
    weights = config["model"]["backbone_weights"]
    cache.check_matches(backbone=config["model"]["backbone"],
                        weights_sha256=file_sha256(weights) if weights else None,
                        resolution=config["train"]["resolution"],
                        splits={split: meta.splits[split] for split in cache.meta["splits"]},
                        source=source)
    return cache


def image_dataset(meta: PreparedMeta, split: str, train: Mapping[str, Any], training: bool) -> Dataset:
    """Images of a prepared split at the run's resolution, augmented (Cutout, RandAugment) when training."""
    resolution, augment = train["resolution"], train["augment"]
    stored_at_resolution = meta.image_storage == "array" and meta.image_size == resolution
    transform = None
    if training:
        transform = build_transform(resolution, train=True, cutout=augment["cutout"],
                                    randaugment_enabled=augment["randaugment"])
    elif not stored_at_resolution:
        transform = build_transform(resolution, train=False)
    return PreparedDataset(meta.path, split, transform)


def make_loader(dataset: Dataset, batch_sampler: Any, collate: Callable[[Any], Any] | None,
                num_workers: int, device: torch.device) -> DataLoader:
    """A DataLoader over engine keys, with pinned memory on GPUs.

    The loader's own generator is fixed: sample randomness comes from the keys (see
    mld.engine.sampling), and a fixed generator keeps loaders from drawing on the global one.
    Workers are not persistent: each pass starts them and, when it ends, stops them, instead of
    leaving them to garbage collection (which stalls whatever runs then for seconds).
    """
    options: dict[str, Any] = {}
    num_workers = min(num_workers, len(os.sched_getaffinity(0)))  # more workers than CPUs only slow down
    if num_workers > 0:
        options.update(prefetch_factor=4)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(0), **options)
