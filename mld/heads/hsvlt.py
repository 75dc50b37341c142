"""HSVLT (Hierarchical Scale-Aware Vision-Language Transformer) as an `mld` head.

The compared system of the suite: label tokens made from frozen word vectors interact with every
stage of a hierarchical backbone (Interactive Visual-Linguistic Attention), the stages' multi-modal
features are concatenated and refined (Cross-Scale Aggregation, optionally with an NMF Hamburger)
and scored per class. The backbone stays a plain timm model built with `features_only=True`, so its
path and cost never depend on the class count; everything label-dependent lives here.
See docs/hsvlt.md for the mapping to the paper and what is approximated.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Mapping

import torch
from torch import nn

from mld.heads.base import Head, as_word_vectors
from mld.heads.dropout import Dropout
from mld.heads.hsvlt_blocks import INTERACTIONS, make_interaction_block
from mld.heads.hsvlt_hamburger import NMFHamburger

SCORINGS = ("per_class", "shared")


def _per_stage(value: int | Sequence[int], num_stages: int, name: str) -> list[int]:
    """Broadcast an int option to every used stage, or check a per-stage list."""
    values = [value] * num_stages if isinstance(value, int) else list(value)
    if len(values) != num_stages or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"HSVLT: {name}={value!r} must be a positive int or a list of {num_stages} positive ints "
            f"(one per aggregated stage)"
        )
    return values


class InteractionStage(nn.Module):
    """One backbone stage's part of HSVLT: project the stage's visual tokens and the incoming label
    tokens to the stage width, run the interaction blocks, return (labels, multimodal)."""

    def __init__(
        self, visual_channels: int, label_channels: int, dim: int, num_blocks: int,
        num_heads: int, interaction: str, dropout: float, last_stage: bool,
    ) -> None:
        super().__init__()
        self.visual_proj = nn.Identity() if visual_channels == dim else nn.Linear(visual_channels, dim)
        self.label_proj = nn.Linear(label_channels, dim)
        self.blocks = nn.ModuleList(
            make_interaction_block(
                interaction, dim, num_heads, dropout,
                visual_read_later=i < num_blocks - 1,
                labels_read_later=i < num_blocks - 1 or not last_stage,
            )
            for i in range(num_blocks)
        )

    def forward(self, visual: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.visual_proj(visual)
        labels = self.label_proj(labels)
        multimodal = None
        for block in self.blocks:
            visual, labels, multimodal = block(visual, labels, multimodal)
        return labels, multimodal


class HSVLTHead(Head):
    """HSVLT over the last `num_scales` stages of a multi-scale backbone.

    Options:
        word_vectors: [N, d_w] frozen label embeddings (BERT in the paper; the dataset's
            word_vectors.npy here), as an array, tensor or .npy path. Required; kept as a buffer,
            never trained.
        embed_dim: width of the interaction at every stage; None (default) keeps each stage's own
            width, as the paper does (visual tokens are then used as they are).
        num_blocks: interaction blocks per stage (int, or one int per aggregated stage).
        num_heads: attention heads (must divide every interaction width).
        num_scales: aggregate the last 1-4 stages (the first stages are then not used at all).
        interaction: "ivla" (the paper) or "cross_attention" (the ablation's plain attention).
        hamburger: refine the aggregated features with the NMF Hamburger (the paper) or not.
        dropout: on attention weights and outputs, multi-modal features and the aggregate.
        scoring: "per_class" (the paper: one weight vector per class) or "shared" (one scorer for
            all label tokens, which lets `class_embeddings` select any class set).
    """

    feature_kind = "multiscale"

    @classmethod
    def needs_word_vectors(cls, options: Mapping[str, Any]) -> bool:
        """Always: the label tokens are the classes' word vectors."""
        return True

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        word_vectors: Any = None,
        embed_dim: int | None = None,
        num_blocks: int | Sequence[int] = 1,
        num_heads: int = 1,
        num_scales: int = 4,
        interaction: str = "ivla",
        hamburger: bool = True,
        dropout: float = 0.1,
        scoring: str = "per_class",
    ) -> None:
        super().__init__(in_channels, num_classes)
        if word_vectors is None:
            raise ValueError(
                "HSVLT needs word_vectors, an [N, d_w] array of label embeddings (e.g. the dataset's "
                "word_vectors.npy); pass word_vectors=... to create_model"
            )
        word_vectors = as_word_vectors(word_vectors, "HSVLT word_vectors", rows=num_classes)
        if not 1 <= num_scales <= min(4, len(self.in_channels)):
            raise ValueError(
                f"HSVLT: num_scales={num_scales} must be between 1 and {min(4, len(self.in_channels))} "
                f"(the backbone gives {len(self.in_channels)} stages)"
            )
        if interaction not in INTERACTIONS:
            raise ValueError(
                f"HSVLT: unknown interaction {interaction!r}; use one of {', '.join(INTERACTIONS)}"
            )
        if scoring not in SCORINGS:
            raise ValueError(f"HSVLT: unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
        if embed_dim is not None and (not isinstance(embed_dim, int) or embed_dim < 1):
            raise ValueError(f"HSVLT: embed_dim={embed_dim!r} must be a positive int or None")

        self.num_scales = num_scales
        self.register_buffer("word_vectors", word_vectors)
        used_channels = self.in_channels[-num_scales:]
        widths = [embed_dim or channels for channels in used_channels]
        label_inputs = [word_vectors.shape[1], *widths[:-1]]
        blocks_per_stage = _per_stage(num_blocks, num_scales, "num_blocks")
        self.stages = nn.ModuleList(
            InteractionStage(
                channels, label_in, width, blocks, num_heads, interaction, dropout,
                last_stage=index == num_scales - 1,
            )
            for index, (channels, label_in, width, blocks) in enumerate(
                zip(used_channels, label_inputs, widths, blocks_per_stage)
            )
        )
        aggregate_dim = sum(widths)
        self.hamburger = NMFHamburger(aggregate_dim) if hamburger else None
        self.dropout = Dropout(dropout)
        if scoring == "per_class":
            self.class_weight = nn.Parameter(torch.empty(num_classes, aggregate_dim))
            self.class_bias = nn.Parameter(torch.zeros(num_classes))
            nn.init.xavier_normal_(self.class_weight)
            self.scorer = None
        else:
            self.scorer = nn.Linear(aggregate_dim, 1)

    @property
    def supports_class_embeddings(self) -> bool:
        """Only the shared scorer can score a class set chosen at call time."""
        return self.scorer is not None

    def forward(self, features: Sequence[torch.Tensor], class_embeddings: Any = None) -> torch.Tensor:
        """Per-stage maps [B, C_i, H_i, W_i] (or tokens [B, L_i, C_i]) -> logits [B, N or N']."""
        if class_embeddings is not None and not self.supports_class_embeddings:
            raise ValueError(
                f"HSVLT: scoring='per_class' has weights for exactly its {self.num_classes} classes; "
                "build it with scoring='shared' to score a class set given by class_embeddings"
            )
        return super().forward(features, class_embeddings)

    def decode(self, tokens: list[torch.Tensor], class_embeddings: Any) -> torch.Tensor:
        labels = self._label_tokens(class_embeddings, tokens[0].device)
        multimodal = []
        for stage, visual in zip(self.stages, tokens[-self.num_scales:]):
            labels, stage_multimodal = stage(visual, labels)
            multimodal.append(stage_multimodal)
        aggregate = torch.cat(multimodal, dim=-1)  # Cross-Scale Aggregation: [B, N, sum of widths]
        if self.hamburger is not None:
            aggregate = self.hamburger(aggregate)
        return self._score(self.dropout(aggregate))

    def _label_tokens(self, class_embeddings: Any, device: torch.device) -> torch.Tensor:
        """Label tokens [1, N, d_w]: the stored word vectors or the call's class set."""
        if class_embeddings is None:
            return self.word_vectors.unsqueeze(0)
        embeddings = as_word_vectors(
            class_embeddings, "HSVLT class_embeddings", dim=self.word_vectors.shape[1]
        )
        return embeddings.to(device=device, dtype=self.word_vectors.dtype).unsqueeze(0)

    def _score(self, aggregate: torch.Tensor) -> torch.Tensor:
        if self.scorer is not None:
            return self.scorer(aggregate).squeeze(-1)
        return torch.einsum("bnd,nd->bn", aggregate, self.class_weight) + self.class_bias
