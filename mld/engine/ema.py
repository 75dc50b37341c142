"""Exponential moving average (EMA) of a model's weights.

The paper keeps an EMA of the weights (decay 0.9997), evaluates both the trained model and its
EMA, and reports the better. The average is updated after every optimiser step and lives on the
model's device; integer buffers (BatchNorm's step counter) are copied, not averaged.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    """An averaged copy of `model`, updated in place by `update()` after each optimiser step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay {decay} must be in [0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(_tensors(self.module), _tensors(model)))
        self._averaged = [pair for pair in pairs if pair[0].is_floating_point()]
        self._copied = [pair for pair in pairs if not pair[0].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        if self._averaged:
            targets, sources = zip(*self._averaged)
            torch._foreach_lerp_(list(targets), list(sources), 1.0 - self.decay)
        for target, source in self._copied:
            target.copy_(source)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers, in a fixed order that matches between a model and its deep copy."""
    return [p.detach() for p in model.parameters()] + list(model.buffers())
