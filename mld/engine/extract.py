"""`mld extract-features`: cache a dataset's backbone feature maps for cached_features runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

import torch

from mld import cost
from mld.atomic import file_sha256
from mld.engine import features
from mld.data.loading import ImageDataset, make_loader, workers_stopped
from mld.data.transforms import model_input
from mld.engine.data import EVAL_SPLIT, TRAIN_SPLIT, open_run_data, open_run_store
from mld.engine.distributed import World
from mld.engine.modeling import build_model
from mld.engine.precision import Precision, choose_precision
from mld.engine.progress import RunLog, track
from mld.engine.run import as_run_config, seed_everything
from mld.data.sampling import EvalBatchSampler, SeededSamples


def extract_features(config: Mapping[str, Any] | str | Path, out_dir: str | Path, batch_size: int = 64,
                     log_stream: IO[str] | None = None,
                     execution: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the feature maps of every split of the config's dataset under its backbone; return meta.

    Uses the config's dataset, model (backbone, weights, options; the head only decides between one
    map and every stage) and train.resolution. Images get the evaluation transform (no augmentation).
    """
    config, source = as_run_config(config, execution)
    out_dir = Path(out_dir)
    if config["features"] is not None:
        raise ValueError(f"{source}: features is set; extraction reads images, so give a config with "
                         "features: null (the cache is what this command makes)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("extract-features runs as one process; start it without torchrun")
    device = World.from_environment(config["train"]["device"]).device
    seed_everything(config["seed"])
    data = open_run_data(config, source)
    model = build_model(config["model"], data.num_train_classes, data.train_word_vectors)
    model = model.to(device).eval()
    precision = choose_precision(config["train"]["amp"], device)
    meta, shapes = data.meta, []
    store = open_run_store(config, meta, source)
    with RunLog(None, stream=log_stream) as log:
        for split in (TRAIN_SPLIT, EVAL_SPLIT):
            dataset = SeededSamples(ImageDataset(meta, split, config["train"]["resolution"], store=store))
            loader = make_loader(dataset, EvalBatchSampler(len(dataset), batch_size), None,
                                 config["train"]["num_workers"], device)
            batches = track(_feature_batches(model, loader, precision), len(loader), f"features of {split}", log,
                            config["train"]["log_every_s"])
            with workers_stopped():
                shapes = features.write_split(out_dir, split, len(dataset), batches)
            log(f"{split}: {len(dataset)} samples, feature shapes {shapes}")
    weights = config["model"]["backbone_weights"]
    meta_out = {"backbone": config["model"]["backbone"], "weights": weights,
                "weights_sha256": file_sha256(weights) if weights else None,
                "pretrained": config["model"]["pretrained"], "resolution": config["train"]["resolution"],
                "dataset": str(meta.path), "splits": {TRAIN_SPLIT: meta.splits[TRAIN_SPLIT],
                                                      EVAL_SPLIT: meta.splits[EVAL_SPLIT]},
                "feature_kind": "multiscale" if model.multiscale else "single", "shapes": shapes,
                "dtype": "float16", "backbone_cost": cost.backbone_cost(model, config["train"]["resolution"])}
    features.write_meta(out_dir, meta_out)
    return meta_out


@torch.no_grad()
def _feature_batches(model: torch.nn.Module, loader: Iterable, precision: Precision
                     ) -> Iterator[torch.Tensor | list[torch.Tensor]]:
    for images, _ in loader:
        with precision.autocast():
            yield model.forward_features(model_input(images, precision.device))
