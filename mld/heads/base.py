"""What every classification head shares: its feature contract and input checks.

A head maps backbone features to logits. Backbones give either a spatial map [B, C, H, W]
(CNNs, ConvNeXt) or tokens [B, L, C] (ViT); heads with `feature_kind = "multiscale"` get one
such tensor per backbone stage. Converting all of them to tokens here means no head repeats
that logic, and every head reports bad features the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

FEATURE_KINDS = ("single", "multiscale")

Features = torch.Tensor | Sequence[torch.Tensor]


class Head(nn.Module):
    """Base class: `Head(in_channels, num_classes, **options)`, called as `head(features, class_embeddings)`.

    Subclasses implement `decode(tokens, class_embeddings)`, where `tokens` is [B, L, C] (or a
    list of per-stage [B, L_i, C_i] for multiscale heads). Heads that can score a class set chosen
    at call time set `supports_class_embeddings` to True.
    """

    feature_kind: ClassVar[str] = "single"

    def __init__(self, in_channels: int | Sequence[int], num_classes: int) -> None:
        super().__init__()
        name = type(self).__name__
        if self.feature_kind not in FEATURE_KINDS:
            raise TypeError(f"{name}.feature_kind={self.feature_kind!r}; use one of {FEATURE_KINDS}")
        if self.feature_kind == "multiscale":
            if isinstance(in_channels, int) or not _all_positive_ints(in_channels):
                raise ValueError(
                    f"{name}: in_channels={in_channels!r} must be a list of per-stage channel counts "
                    "(a backbone built with features_only=True)"
                )
            self.in_channels: int | list[int] = list(in_channels)
        else:
            if not _all_positive_ints([in_channels]):
                raise ValueError(f"{name}: in_channels={in_channels!r} must be a positive int")
            self.in_channels = int(in_channels)
        if not _all_positive_ints([num_classes]):
            raise ValueError(f"{name}: num_classes={num_classes!r} must be a positive int")
        self.num_classes = int(num_classes)

    @classmethod
    def needs_word_vectors(cls, options: Mapping[str, Any]) -> bool:
        """Whether this head, built with `options`, builds on class word vectors (so callers pass them)."""
        return False

    @property
    def supports_class_embeddings(self) -> bool:
        """Whether `class_embeddings` may select the scored class set at call time."""
        return False

    def forward(self, features: Features, class_embeddings: Any = None) -> torch.Tensor:
        """Features -> logits [B, N] (or [B, N'] for a call-time class set of N' classes)."""
        if class_embeddings is not None and not self.supports_class_embeddings:
            raise ValueError(
                f"{type(self).__name__} was built without word vectors, so it cannot score a class "
                "set given by class_embeddings; build it with NLP-based queries or head weights"
            )
        return self.decode(self.tokens(features), class_embeddings)

    def decode(self, tokens: Any, class_embeddings: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement decode(tokens, class_embeddings)")

    def tokens(self, features: Features) -> torch.Tensor | list[torch.Tensor]:
        """[B, C, H, W] maps or [B, L, C] tokens -> [B, L, C] tokens (a list for multiscale heads)."""
        name = type(self).__name__
        if self.feature_kind == "single":
            if not isinstance(features, torch.Tensor):
                raise ValueError(f"{name} takes one feature tensor, got {type(features).__name__}")
            return as_tokens(features, self.in_channels, name)
        if isinstance(features, torch.Tensor) or len(features) != len(self.in_channels):
            got = "one tensor" if isinstance(features, torch.Tensor) else f"{len(features)} tensors"
            raise ValueError(
                f"{name} takes a list of {len(self.in_channels)} stage features "
                f"(backbone with features_only=True), got {got}"
            )
        return [
            as_tokens(feature, channels, f"{name} stage {index}")
            for index, (feature, channels) in enumerate(zip(features, self.in_channels))
        ]


def as_tokens(features: torch.Tensor, channels: int, owner: str) -> torch.Tensor:
    """A [B, C, H, W] map or [B, L, C] tokens with C == channels -> [B, L, C] tokens."""
    if features.ndim == 4 and features.shape[1] == channels:
        return features.flatten(2).transpose(1, 2)
    if features.ndim == 3 and features.shape[2] == channels:
        return features
    raise ValueError(
        f"{owner}: features of shape {tuple(features.shape)}; expected a map [B, {channels}, H, W] "
        f"or tokens [B, L, {channels}]"
    )


def as_word_vectors(value: Any, name: str, rows: int | None = None, dim: int | None = None) -> torch.Tensor:
    """Word vectors given as a tensor, array, nested list or .npy path -> float32 tensor [rows, dim].

    `rows` / `dim`, when given, are the shape the caller needs; a mismatch is reported with both.
    A tensor stays on its device.
    """
    if isinstance(value, (str, PathLike)):
        value = np.load(value, allow_pickle=False)
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
        matrix = value.float()
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
        matrix = torch.from_numpy(array.astype(np.float32))
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-d [classes, d_w] matrix, got shape {tuple(matrix.shape)}")
    expected = (rows if rows is not None else matrix.shape[0], dim if dim is not None else matrix.shape[1])
    if tuple(matrix.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(matrix.shape)}, expected {expected} "
            f"({expected[0]} classes x {expected[1]}-d word vectors)"
        )
    if _holds_values(matrix) and not torch.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix.contiguous()


def _holds_values(tensor: torch.Tensor) -> bool:
    """False for meta and fake tensors (the memory estimate's), which have shapes but no values to check."""
    from torch._subclasses.fake_tensor import is_fake

    return tensor.device.type != "meta" and not is_fake(tensor)


def _all_positive_ints(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values)
