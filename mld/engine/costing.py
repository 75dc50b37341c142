"""A run's cost (cost.json) and the feasibility check made before training.

FLOPs and parameters come from mld.cost, always for the full model (backbone + head) at the run's
resolution, so that a head trained on cached features reports the cost of the network it stands
for. The memory of a training step at batch 1 is measured on the meta device: every tensor of a
real forward, backward and optimiser step is tracked by shape (torch's MemTracker), so even a
model that would not fit anywhere is measured in seconds without allocating it.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from mld.cost import cost_on_backbone, model_cost
from mld.engine.optim import build_optimizer

MEMORY_KEY = "train_memory_gb_batch1"


def measure_cost(config: Mapping[str, Any], model: nn.Module, data: Any) -> dict[str, Any]:
    """cost.json: FLOPs (G multiply-accumulates per image) and parameters (M), of model and head.

    With cached features the trained model is the head alone: its cost is added to the backbone's,
    which the cache recorded when it was made (so no backbone is built, and timm is not imported);
    a cache without that record gets the full model built again, without weights (costs depend on
    shapes only). With a memory budget (train.feasibility.max_memory_gb) the training-step memory
    at batch 1 is added.
    """
    resolution = config["train"]["resolution"]
    if config["features"] is None:
        cost = model_cost(model, resolution, class_embeddings=data.eval_class_embeddings)
    elif data.backbone_cost is not None:
        cost = cost_on_backbone(model, _one_input(config, data), data.backbone_cost, resolution,
                                class_embeddings=data.eval_class_embeddings)
    else:
        from mld.engine.modeling import build_model

        unweighted = {**config["model"], "backbone_weights": None, "pretrained": False}
        full = build_model(unweighted, data.num_train_classes, data.train_word_vectors)
        cost = model_cost(full, resolution, class_embeddings=data.eval_class_embeddings)
    if config["train"]["feasibility"]["max_memory_gb"] is not None:
        cost[MEMORY_KEY] = training_memory_gb(model, _one_input(config, data), config["train"],
                                              data.train_class_embeddings)
    return cost


def _one_input(config: Mapping[str, Any], data: Any) -> Any:
    """A batch-1 input of the trained model: an image, or (cached features) one sample's feature maps."""
    if config["features"] is None:
        resolution = config["train"]["resolution"]
        return torch.zeros(1, 3, resolution, resolution)
    features, _ = data.train_set[(0, 0)]
    return features.unsqueeze(0) if isinstance(features, torch.Tensor) else [f.unsqueeze(0) for f in features]


def training_memory_gb(model: nn.Module, inputs: Any, train: Mapping[str, Any],
                       class_embeddings: torch.Tensor | None) -> float:
    """Peak memory (GB) of one training step at batch 1: weights, gradients, optimiser state, activations."""
    from torch.distributed._tools.mem_tracker import MemTracker

    meta = torch.device("meta")
    shadow = copy.deepcopy(model).to(meta).train()
    optimizer = build_optimizer(shadow, train)
    inputs = inputs.to(meta) if isinstance(inputs, torch.Tensor) else [x.to(meta) for x in inputs]
    embeddings = None if class_embeddings is None else class_embeddings.to(meta)
    tracker = MemTracker()
    tracker.track_external(shadow, optimizer)
    with tracker:
        logits = shadow(inputs, class_embeddings=embeddings)
        logits.float().square().sum().backward()
        optimizer.step()
    peak = tracker.get_tracker_snapshot("peak")
    return sum(device_peaks["Total"] for device_peaks in peak.values()) / 1e9


def check_feasibility(budget: Mapping[str, Any], cost: Mapping[str, Any]) -> str | None:
    """Why the run exceeds its budget (train.feasibility), or None when it fits."""
    reasons = []
    if budget["max_gflops"] is not None and cost["flops_g"] > budget["max_gflops"]:
        reasons.append(f"{cost['flops_g']:.3g} GFLOPs per image exceed train.feasibility.max_gflops = "
                       f"{budget['max_gflops']}")
    if budget["max_memory_gb"] is not None and cost[MEMORY_KEY] > budget["max_memory_gb"]:
        reasons.append(f"a training step at batch 1 needs {cost[MEMORY_KEY]:.3g} GB, more than "
                       f"train.feasibility.max_memory_gb = {budget['max_memory_gb']}")
    return "; ".join(reasons) or None
