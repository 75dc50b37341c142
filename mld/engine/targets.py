"""From prepared-format labels (1 / 0 / -1 unknown) to what a loss consumes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mld.losses import labels_to_targets


@dataclass(frozen=True)
class LabelPolicy:
    """How a run reads its labels while training.

    columns: the label columns the model predicts while training (zero-shot: the seen classes),
        or None for all.
    unknown, unknown_weight: the run config's dataset.unknown_labels / unknown_weight.
    softmax: the loss is softmax cross-entropy, which takes one-hot rows and no per-entry weights.
    """

    columns: torch.Tensor | None = None
    unknown: str = "ignore"
    unknown_weight: float | None = None
    softmax: bool = False

    def select(self, labels: torch.Tensor) -> torch.Tensor:
        return labels if self.columns is None else labels[:, self.columns.to(labels.device)]

    def targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float targets in {0, 1} and per-entry loss weights (None for softmax losses)."""
        targets, weights = labels_to_targets(self.select(labels), self.unknown, self.unknown_weight)
        return targets, (None if self.softmax else weights)
