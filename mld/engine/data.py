"""The data side of a run: which samples, labels, classes and word vectors it trains and scores.

Two sources share one shape: images of a prepared dataset (end to end, through mld.data's
datasets and transforms) or feature maps of a cache (cached_features). Either way a dataset is
indexed by (index, seed) keys from the engine's samplers and yields (inputs, labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from mld.data.loading import ImageDataset
from mld.data.prepared import PreparedMeta, open_prepared
from mld.data.store import ImageStore, open_store
from mld.engine.config import SOFTMAX_LOSS
from mld.atomic import file_sha256
from mld.engine.features import FeatureCache, keep_batch
from mld.data.sampling import SeededSamples
from mld.engine.targets import LabelPolicy

TRAIN_SPLIT, EVAL_SPLIT = "train", "val"


@dataclass
class RunData:
    """Everything a run needs to know about its data.

    num_train_classes / train_word_vectors: the classes the model is built for (zero-shot: the
    seen classes only). train_class_embeddings: what the model is called with while training
    (zero-shot: the seen classes' word vectors; otherwise None). eval_class_embeddings: the same
    for evaluation (zero-shot: every class's word vectors, in dataset order; mld.engine.evaluation
    scores the unseen classes alone for ZSL and the seen then the unseen ones for GZSL).
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
    backbone_cost: dict[str, float] | None = None  # cached features: the backbone's flops_g and params_m

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
                       collate=keep_batch, feature_channels=cache.in_channels,
                       backbone_cost=cache.meta.get("backbone_cost"), **common)
    resolution, store = config["train"]["resolution"], open_run_store(config, meta, source)
    augment = config["train"]["augment"]
    return RunData(train_set=SeededSamples(ImageDataset(meta, TRAIN_SPLIT, resolution, augment, store)),
                   eval_set=SeededSamples(ImageDataset(meta, EVAL_SPLIT, resolution, augment, store, train=False)),
                   collate=None, feature_channels=None, **common)


def open_run_store(config: Mapping[str, Any], meta: PreparedMeta, source: str) -> ImageStore | None:
    """The run's image store (dataset.store), checked to hold this dataset at train.resolution."""
    if config["dataset"]["store"] is None:
        return None
    store = open_store(config["dataset"]["store"])
    store.check_matches(meta, config["train"]["resolution"], source)
    return store


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
