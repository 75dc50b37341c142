"""Training losses: ASL (the paper's multi-label loss), BCE and softmax cross-entropy.

Every loss is called as `loss(logits, targets, weights=None)`. Multi-label losses take float
targets in {0, 1} of the logits' shape and an optional per-element weight of the same shape;
`labels_to_targets` turns prepared int8 labels (-1 unknown) into that pair, so that unknown
labels are either ignored (weight 0) or down-weighted negatives, as the run config says.
Multi-label losses are summed over batch and classes by default, as the official ASL code does.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("sum", "mean", "none")
UNKNOWN_LABEL_POLICIES = ("ignore", "negative")


def labels_to_targets(labels: torch.Tensor, unknown_labels: str = "ignore",
                      unknown_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared labels (1 positive, 0 negative, -1 unknown) -> float (targets, weights).

    unknown_labels="ignore": unknown entries get weight 0. "negative": they are negatives with
    weight `unknown_weight` (the paper's Open Images recipe: untagged = down-weighted negative).
    Labels on the CPU are checked to be 1, 0 or -1; labels on an accelerator are not, because
    reading the check's result would make the host wait for the device at every training step
    (`mld prepare validate` checks a prepared dataset's label files).
    """
    if unknown_labels not in UNKNOWN_LABEL_POLICIES:
        raise ValueError(f"unknown_labels must be one of {UNKNOWN_LABEL_POLICIES}, "
                         f"got {unknown_labels!r}")
    if unknown_labels == "negative" and unknown_weight is None:
        raise ValueError("unknown_labels='negative' needs unknown_weight (e.g. 0.1)")
    if unknown_labels == "ignore" and unknown_weight is not None:
        raise ValueError("unknown_weight only applies to unknown_labels='negative'")
    if labels.device.type == "cpu":
        invalid = (labels != 1) & (labels != 0) & (labels != -1)
        if invalid.any():
            raise ValueError(f"labels must be 1, 0 or -1, found {labels[invalid][0].item()}")
    unknown = labels == -1
    targets = (labels == 1).float()
    fill = 0.0 if unknown_labels == "ignore" else float(unknown_weight)
    weights = torch.where(unknown, torch.full_like(targets, fill), torch.ones_like(targets))
    return targets, weights


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_multilabel(logits: torch.Tensor, targets: torch.Tensor,
                      weights: torch.Tensor | None) -> None:
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} must match logits "
                         f"{tuple(logits.shape)}; with query augmentation pad them with "
                         "mld.heads.extend_targets")
    if weights is not None and weights.shape != logits.shape:
        raise ValueError(f"weights {tuple(weights.shape)} must match logits "
                         f"{tuple(logits.shape)}")


class AsymmetricLoss(nn.Module):
    """ASL (Ridnik et al., 2021): focusing with separate exponents for positives and negatives,
    and a probability margin `clip` that discards easy negatives.

    The focusing weight (1 - p_t)^gamma is a constant for the gradient when
    `detach_focal_weight` is set, as in the official ML-Decoder training. gamma_neg=gamma_pos=
    clip=0 gives binary cross-entropy.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 eps: float = 1e-8, detach_focal_weight: bool = True,
                 reduction: str = "sum") -> None:
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0:
            raise ValueError(f"ASL exponents must be >= 0, got gamma_neg={gamma_neg}, "
                             f"gamma_pos={gamma_pos}")
        if not 0 <= clip < 1:
            raise ValueError(f"ASL clip must be in [0, 1), got {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.detach_focal_weight = detach_focal_weight
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        _check_multilabel(logits, targets, weights)
        logits, targets = logits.float(), targets.float()  # stable under mixed precision
        prob_pos = torch.sigmoid(logits)
        prob_neg = 1 - prob_pos
        if self.clip > 0:
            prob_neg = (prob_neg + self.clip).clamp(max=1)
        loss = (targets * torch.log(prob_pos.clamp(min=self.eps))
                + (1 - targets) * torch.log(prob_neg.clamp(min=self.eps)))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach_focal_weight):
                prob_true = prob_pos * targets + prob_neg * (1 - targets)
                gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
                focal_weight = torch.pow(1 - prob_true, gamma)
            loss = loss * focal_weight
        if weights is not None:
            loss = loss * weights
        return _reduce(-loss, self.reduction)


class BinaryCrossEntropy(nn.Module):
    """Sigmoid binary cross-entropy on logits, with optional per-element weights.

    `target_threshold` ("ResNet strikes back"'s BCE, timm's semantics): a target above it counts
    as 1 and every other as 0, so Mixup / CutMix targets become the classes that fill more than
    the threshold of the image; None keeps soft targets as they are.
    """

    def __init__(self, reduction: str = "sum", target_threshold: float | None = None) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if target_threshold is not None and not 0 <= target_threshold < 1:
            raise ValueError(f"target_threshold must be in [0, 1) or null, got {target_threshold}")
        self.target_threshold = target_threshold

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        _check_multilabel(logits, targets, weights)
        targets = targets.float()
        if self.target_threshold is not None:
            targets = (targets > self.target_threshold).float()
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
        if weights is not None:
            loss = loss * weights
        return _reduce(loss, self.reduction)


class SoftmaxCrossEntropy(nn.Module):
    """Softmax cross-entropy for single-label data.

    targets are class indices [B], or [B, N] rows (one-hot, as in the prepared format, or a
    distribution); weights, if given, weight each image ([B]).
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if targets.shape == logits.shape:
            targets = targets.float()
        elif targets.shape != logits.shape[:1] or targets.is_floating_point():
            raise ValueError(f"targets {tuple(targets.shape)} must be class indices "
                             f"[{logits.shape[0]}] or rows shaped like logits "
                             f"{tuple(logits.shape)}")
        if weights is not None and weights.shape != logits.shape[:1]:
            raise ValueError(f"softmax cross-entropy weights are per image [{logits.shape[0]}], "
                             f"got {tuple(weights.shape)}")
        loss = F.cross_entropy(logits.float(), targets, reduction="none",
                               label_smoothing=self.label_smoothing)
        if weights is not None:
            loss = loss * weights
        return _reduce(loss, self.reduction)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "asl": AsymmetricLoss,
    "bce": BinaryCrossEntropy,
    "softmax_ce": SoftmaxCrossEntropy,
}


def create_loss(name: str, **options: Any) -> nn.Module:
    """Build a loss by name (the run config's `train.loss` block: `name` plus options)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    try:
        inspect.signature(LOSSES[name]).bind(**options)
    except TypeError as error:
        raise ValueError(f"bad options for loss {name!r}: {error}") from None
    return LOSSES[name](**options)
