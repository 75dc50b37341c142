"""Mixup / CutMix of a training batch ("ResNet strikes back"), through timm's `Mixup`.

timm's batch mode draws one lambda per batch and mixes image i with image B-1-i, in place, on
the float images `model_input` made on the device; the one-hot targets mix with the same lambda
(after label smoothing, if any). timm draws from NumPy's global generator: here it is seeded
from (run seed, epoch, step) for each batch, so a batch mixes the same way however the run was
executed (resumed, on any number of processes: every process draws the same lambda and box, and
the sampler keeps each pair on one process: mld.data.sampling `keep_pairs`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from mld.data.sampling import mix_seed, seeded_generators

MIX_STREAM = 1  # keeps the mixing seeds apart from the sampler's, which mix (seed, epoch) only


class BatchMixing:
    """A run config's `train.mix` block (Mixup / CutMix on) for `num_classes` single-label classes."""

    def __init__(self, mix: Mapping[str, Any], num_classes: int, seed: int) -> None:
        from timm.data import Mixup  # timm is heavy: import on use

        self.mixup = Mixup(mixup_alpha=mix["mixup_alpha"], cutmix_alpha=mix["cutmix_alpha"], prob=mix["prob"],
                           switch_prob=mix["switch_prob"], mode="batch", label_smoothing=mix["label_smoothing"],
                           num_classes=num_classes)
        self.seed = seed

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int,
                 step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix batch `step` of `epoch` (global index): images [B, 3, H, W] float (mixed in place) and
        one-hot targets [B, N] -> the mixed images and soft targets."""
        with seeded_generators(mix_seed(self.seed, epoch, step, MIX_STREAM)):
            return self.mixup(images, targets.argmax(dim=1))
