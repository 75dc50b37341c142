"""Optimiser and learning-rate schedule of a run (the paper: Adam, "true" weight decay, OneCycle;
ImageNet's A2 recipe of "ResNet strikes back": LAMB, cosine after a linear warm-up)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weights only: biases, normalisation parameters (all 1-D) and frozen tensors are exempt.

    Frozen tensors (e.g. fixed random queries registered as parameters without gradients, or a
    frozen backbone) are left out of the optimiser entirely.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters; check model.head and features")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    groups = parameter_groups(model, train["weight_decay"])
    if train["optimizer"] == "lamb":
        from timm.optim import Lamb  # imported here: head-only jobs never import timm

        return Lamb(groups, lr=train["lr"])  # timm's defaults, as the A2 recipe (trust ratio, grad norm 1)
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[train["optimizer"]]
    return optimizer_class(groups, lr=train["lr"])


def warmup_steps(train: Mapping[str, Any], total_steps: int) -> int:
    """The steps of train.warmup_epochs (fractions of an epoch allowed)."""
    return round(total_steps * train["warmup_epochs"] / train["epochs"])


def build_schedule(optimizer: torch.optim.Optimizer, train: Mapping[str, Any],
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over the whole run: OneCycle (max lr = train.lr, its own warm-up), or
    cosine or constant after a linear warm-up to train.lr over train.warmup_epochs (none by
    default); the cosine then decays over the steps that remain."""
    name = train["schedule"]
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=train["lr"], total_steps=total_steps,
                                                   pct_start=train["pct_start"])
    warmup = warmup_steps(train, total_steps)
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay_steps) / decay_steps))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
