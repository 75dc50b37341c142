"""A run's cost (cost.json) and the feasibility check made before training.

FLOPs and parameters come from mld.cost, always for the full model (backbone + head) at the run's
resolution, so that a head trained on cached features reports the cost of the network it stands
for. The memory of one training step is measured at the run's batch size (per process) and
precision on fake tensors: every tensor of a real forward (under the run's autocast), backward and
optimiser step is tracked by shape and dtype (torch's MemTracker under FakeTensorMode, on the
run's device type, so CUDA runs get CUDA's autocast rules), and even a model that would not fit
anywhere is measured in seconds without allocating it.

cost.json records the hash of everything it was measured from (`COST_KEY`): a rerun with another
model block, resolution, dataset, batch size or precision measures again instead of reusing it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from mld.cost import cost_on_backbone, model_cost
from mld.engine.optim import build_optimizer
from mld.engine.precision import Precision

MEMORY_KEY = "train_memory_gb"  # peak GB of one training step at MEMORY_BATCH_KEY, MEMORY_PRECISION_KEY
MEMORY_BATCH_KEY = "train_memory_batch_size"
MEMORY_PRECISION_KEY = "train_memory_precision"
COST_KEY = "measured_for"  # sha256 of what the cost was measured from (see `cost_key`)


@dataclass(frozen=True)
class TrainingStep:
    """How one process trains: its batch size and precision (what the memory estimate uses)."""

    batch_size: int
    precision: Precision


def cost_key(config: Mapping[str, Any], step: TrainingStep) -> str:
    """A hash of every input of `measure_cost`: equal keys mean an equal cost.json."""
    train = config["train"]
    memory = None
    if train["feasibility"]["max_memory_gb"] is not None:
        memory = {"batch_size": step.batch_size, "precision": step.precision.name,
                  "device": step.precision.device.type, "optimizer": train["optimizer"]}
    described = {"model": config["model"], "features": config["features"], "task": config["task"],
                 "dataset": config["dataset"]["path"], "resolution": train["resolution"], "memory": memory}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def measure_cost(config: Mapping[str, Any], model: nn.Module, data: Any, step: TrainingStep) -> dict[str, Any]:
    """cost.json: FLOPs (G multiply-accumulates per image) and parameters (M), of model and head.

    With cached features the trained model is the head alone: its cost is added to the backbone's,
    which the cache recorded when it was made (so no backbone is built, and timm is not imported);
    a cache without that record gets the full model built again, without weights (costs depend on
    shapes only). With a memory budget (train.feasibility.max_memory_gb) the peak memory of a
    training step at `step`'s batch size and precision is added.
    """
    resolution = config["train"]["resolution"]
    if config["features"] is None:
        cost = model_cost(model, resolution, class_embeddings=data.eval_class_embeddings)
    elif data.backbone_cost is not None:
        cost = cost_on_backbone(model, _batch(config, data, 1), data.backbone_cost, resolution,
                                class_embeddings=data.eval_class_embeddings)
    else:
        from mld.engine.modeling import build_model

        unweighted = {**config["model"], "backbone_weights": None, "pretrained": False}
        full = build_model(unweighted, data.num_train_classes, data.train_word_vectors)
        cost = model_cost(full, resolution, class_embeddings=data.eval_class_embeddings)
    if config["train"]["feasibility"]["max_memory_gb"] is not None:
        cost.update(memory_cost(config, model, data, step))
    cost[COST_KEY] = cost_key(config, step)
    return cost


def memory_cost(config: Mapping[str, Any], model: nn.Module, data: Any, step: TrainingStep) -> dict[str, Any]:
    """The estimated peak memory of one training step (GB), with the batch size and precision it is for."""
    try:
        memory = training_memory_gb(model, _batch(config, data, step.batch_size), config["train"],
                                    data.train_class_embeddings, step.precision)
    except (RuntimeError, NotImplementedError) as error:  # an operation fake tensors cannot run
        raise RuntimeError(
            f"the memory estimate of train.feasibility.max_memory_gb failed for model.head = "
            f"{config['model']['head']} on {step.precision.device} ({type(error).__name__}: {error}); "
            "set train.feasibility.max_memory_gb: null to train without the estimate (an out-of-memory "
            "run is still recorded as infeasible), and report the model that failed") from error
    return {MEMORY_KEY: memory, MEMORY_BATCH_KEY: step.batch_size, MEMORY_PRECISION_KEY: step.precision.name}


def fitting_accumulation(config: Mapping[str, Any], model: nn.Module, data: Any, step: TrainingStep,
                         capacity_gb: float) -> int | None:
    """The fewest micro-batches per step whose estimated training step fits `capacity_gb`, or None.

    The estimate grows about linearly with the micro-batch, so the first guess is the ratio of the
    whole batch's estimate to the capacity; each miss adds one micro-batch.
    """
    batch = step.batch_size

    def fits(steps: int) -> bool:
        micro = TrainingStep(-(-batch // steps), step.precision)
        return memory_cost(config, model, data, micro)[MEMORY_KEY] <= capacity_gb

    whole = memory_cost(config, model, data, step)[MEMORY_KEY]
    if whole <= capacity_gb:
        return 1
    steps = min(batch, max(2, int(whole // capacity_gb)))
    while steps <= batch:
        if fits(steps):
            return steps
        steps += 1
    return None


def _batch(config: Mapping[str, Any], data: Any, batch_size: int) -> torch.Tensor | list[torch.Tensor]:
    """A zero batch of the trained model's input: images, or (cached features) feature maps."""
    if config["features"] is None:
        resolution = config["train"]["resolution"]
        return torch.zeros(batch_size, 3, resolution, resolution)
    features, _ = data.train_set[(0, 0)]
    if isinstance(features, torch.Tensor):
        return features.new_zeros(batch_size, *features.shape)
    return [f.new_zeros(batch_size, *f.shape) for f in features]


def training_memory_gb(model: nn.Module, inputs: torch.Tensor | list[torch.Tensor], train: Mapping[str, Any],
                       class_embeddings: torch.Tensor | None, precision: Precision) -> float:
    """Peak memory (GB) of one training step on `inputs`: weights, gradients, optimiser state, activations.

    Runs on fake tensors of `precision.device` under `precision.autocast()`, so the activations
    have the dtypes of the real step (bf16 / fp16 where autocast casts, float32 elsewhere).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    shadow = _meta_copy(model)
    device = precision.device
    with FakeTensorMode(allow_non_fake_inputs=True):
        shadow = shadow.to_empty(device=device).train()
        optimizer = build_optimizer(shadow, train)
        batch = (torch.empty_like(inputs, device=device) if isinstance(inputs, torch.Tensor)
                 else [torch.empty_like(x, device=device) for x in inputs])
        embeddings = None if class_embeddings is None else torch.empty_like(class_embeddings, device=device)
        tracker = MemTracker()
        tracker.track_external(shadow, optimizer)
        with tracker:
            with precision.autocast():
                logits = shadow(batch, class_embeddings=embeddings)
            logits.float().square().sum().backward()
            optimizer.step()
        peak = tracker.get_tracker_snapshot("peak")
    return sum(device_peaks["Total"] for device_peaks in peak.values()) / 1e9


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` on the meta device, made without copying its weights (which may fill a GPU)."""
    memo: dict[int, Any] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"),
                                           requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def expected_refusal(config: Mapping[str, Any], num_classes: int) -> str | None:
    """Why a run's budget (train.feasibility) will refuse it at start, judged before it is submitted.

    For `mld plan`: the full model is built without weights and measured on this machine's CPU in
    float32. A step in bf16 or fp16 needs at least half of the float32 memory (no tensor shrinks
    more), so only a run whose half still exceeds the budget is called refused; None when the run
    fits, has no budget, or cannot be built without its data (heads on word vectors).
    """
    from mld.engine.modeling import build_model
    from mld.engine.precision import Precision

    budget = config["train"]["feasibility"]
    if budget["max_gflops"] is None and budget["max_memory_gb"] is None:
        return None
    unweighted = {**config["model"], "backbone_weights": None, "pretrained": False}
    try:
        model = build_model(unweighted, num_classes, None)
    except ValueError:  # needs the dataset's word vectors
        return None
    resolution = config["train"]["resolution"]
    if budget["max_gflops"] is not None:
        flops = model_cost(model, resolution)["flops_g"]
        if flops > budget["max_gflops"]:
            return f"{flops:.3g} GFLOPs per image exceed train.feasibility.max_gflops = {budget['max_gflops']}"
    if budget["max_memory_gb"] is not None:
        images = torch.zeros(config["train"]["batch_size"], 3, resolution, resolution)
        lower = training_memory_gb(model, images, config["train"], None, Precision(torch.device("cpu"), None)) / 2
        if lower > budget["max_memory_gb"]:
            return (f"a training step at batch {config['train']['batch_size']} needs at least {lower:.3g} GB in any "
                    f"precision, more than train.feasibility.max_memory_gb = {budget['max_memory_gb']}")
    return None


def check_feasibility(budget: Mapping[str, Any], cost: Mapping[str, Any]) -> str | None:
    """Why the run exceeds its budget (train.feasibility), or None when it fits."""
    reasons = []
    if budget["max_gflops"] is not None and cost["flops_g"] > budget["max_gflops"]:
        reasons.append(f"{cost['flops_g']:.3g} GFLOPs per image exceed train.feasibility.max_gflops = "
                       f"{budget['max_gflops']}")
    if budget["max_memory_gb"] is not None and cost[MEMORY_KEY] > budget["max_memory_gb"]:
        reasons.append(f"a training step at batch {cost[MEMORY_BATCH_KEY]} ({cost[MEMORY_PRECISION_KEY]} "
                       f"precision) needs {cost[MEMORY_KEY]:.3g} GB, more than "
                       f"train.feasibility.max_memory_gb = {budget['max_memory_gb']}")
    return "; ".join(reasons) or None
