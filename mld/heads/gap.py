"""The GAP baseline head (paper section 2.1): global average pooling, then one linear layer."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mld.heads.base import Head


class GAPHead(Head):
    """l = W z + b, where z averages the feature map (or tokens) over all spatial positions."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes)
        self.fc = nn.Linear(self.in_channels, self.num_classes)

    def decode(self, tokens: torch.Tensor, class_embeddings: Any) -> torch.Tensor:
        return self.fc(tokens.mean(dim=1))
